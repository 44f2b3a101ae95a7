"""This release's version: the one place it is written (``pgusers.__version__``, the
package metadata and ``pgusers --version`` all read it from here)."""

__version__ = "1.0.0.dev0"
