"""The ``pgusers`` command line: user and session administration for operators.

Exit codes: 0 done; 1 not found, rejected or expired; 2 usage or bad input (an
ambiguous USER included); 3 database unreachable, or holding data pgusers cannot
read.
"""

from pgusers.cli._commands import main

__all__ = ["main"]
