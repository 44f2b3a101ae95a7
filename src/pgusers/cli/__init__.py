"""The ``pgusers`` command line: user and session administration for operators.

Exit codes: 0 done; 1 not found, rejected or expired; 2 usage or bad input (an
ambiguous USER included); 3 database unreachable, or holding data pgusers cannot
read.
"""

from pgusers.cli._commands import main
from pgusers.cli._serve import apikey, serve

main.add_command(apikey)
main.add_command(serve)

__all__ = ["main"]
