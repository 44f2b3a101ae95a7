"""The ``pgusers`` command line: user and session administration for operators.

Exit codes: 0 done; 1 not found, rejected or expired; 2 usage or bad input (an
ambiguous USER included); 3 database unreachable, or holding data pgusers cannot
read.
"""

# Each module adds its commands to the group as it is imported.
from pgusers.cli import (
    _audit,
    _breaches,
    _delivery,
    _factors,
    _legacy,
    _providers,
    _roles,
    _server,
    _sessions,
    _settings,
    _users,
)
from pgusers.cli._group import main
from pgusers.cli._serve import apikey, serve

main.add_command(apikey)
main.add_command(serve)

__all__ = ["main"]
del (
    _audit,
    _breaches,
    _delivery,
    _factors,
    _legacy,
    _providers,
    _roles,
    _server,
    _sessions,
    _settings,
    _users,
)
