"""The project's chores, one command each: ``nox -s lint``, ``nox -s generated``,
``nox -s types``, ``nox -s fast``, ``nox -s tests``, ``nox -s docs``, ``nox -s build``.

The sessions run in the environment nox is started from (the development install:
``pip install -e ".[dev]" --group test``), so the pinned tools of the ``test``
group judge the code, and nothing is installed twice. ``.ci/run`` calls them.
"""

from pathlib import Path

import nox

nox.options.default_venv_backend = "none"
nox.options.sessions = ["lint", "generated", "types", "fast"]

CODE = ["src", "tests", "examples", "bench", "tools", "conftest.py", "noxfile.py"]


@nox.session
def lint(session: nox.Session) -> None:
    """Style and the layering contracts: fails in seconds."""
    session.run("ruff", "check", *CODE)
    session.run("ruff", "format", "--check", *CODE)
    session.run("lint-imports")


@nox.session
def generated(session: nox.Session) -> None:
    """The blocking driver is what tools/async_to_sync.py makes of the asyncio one."""
    session.run("python", "tools/async_to_sync.py", "--check")


@nox.session
def types(session: nox.Session) -> None:
    """mypy, strict, on the package, its tests and its tools."""
    session.run("mypy")


@nox.session
def fast(session: nox.Session) -> None:
    """The suite without its slow, browser and failover tests (a few minutes)."""
    session.run(
        "python",
        "-m",
        "pytest",
        "-m",
        "not slow and not browser and not failover",
        *session.posargs,
    )


@nox.session
def tests(session: nox.Session) -> None:
    """The whole suite, as the README runs it."""
    session.run("python", "-m", "pytest", *session.posargs)


@nox.session
def docs(session: nox.Session) -> None:
    """The documentation site, built strictly: a broken link or reference fails."""
    session.run(
        "mkdocs", "build", "--strict", "--site-dir", "build/site", env={"NO_MKDOCS_2_WARNING": "1"}
    )


@nox.session
def build(session: nox.Session) -> None:
    """The artifacts a release publishes, checked as the package index renders them."""
    session.run("rm", "-rf", "dist", external=True)
    session.run("python", "-m", "build")
    session.run("twine", "check", "--strict", *sorted(str(path) for path in Path("dist").iterdir()))
