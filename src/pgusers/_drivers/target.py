"""Where a UserSpace lives: the connection string, and the identity of its target."""

import os
import re
from dataclasses import dataclass, field
from typing import Any, Final

import psycopg
from psycopg import pq
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from pgusers._core.checks import storable
from pgusers._errors import BadCallError

IDENTITY: Final = ("host", "hostaddr", "port", "dbname", "user", "service")
"""The connection parameters that tell two userspaces apart (a password does not). A
service names its server in a file libpq reads at connect time, so the service name
itself is part of the identity."""

SECURITY_PARAMETERS: Final = frozenset(
    {
        "password",
        "passfile",
        "sslmode",
        "sslnegotiation",
        "sslrootcert",
        "sslcert",
        "sslkey",
        "sslpassword",
        "sslcrl",
        "sslcrldir",
        "ssl_min_protocol_version",
        "ssl_max_protocol_version",
        "requirepeer",
        "require_auth",
        "channel_binding",
        "gssencmode",
        "krbsrvname",
        "options",
        "target_session_attrs",
    }
)
"""The libpq parameters that decide how safely, as whom or to which server a connection
is made: an open userspace's are compared with a new caller's even when the caller
does not give them, so that nobody asking for ``sslmode=verify-full`` gets a userspace
that connects without it."""

DRIVER_OPTIONS: Final = frozenset({"prepare_threshold"})
"""psycopg connection options that are not libpq parameters but may be passed on."""

MANAGED_OPTIONS: Final = frozenset({"autocommit", "row_factory", "cursor_factory", "context"})

DEFAULT_CONNECT_TIMEOUT: Final = "10"

ENUMERATED: Final = {
    "sslmode": {"disable", "allow", "prefer", "require", "verify-ca", "verify-full"},
    "gssencmode": {"disable", "prefer", "require"},
    "channel_binding": {"disable", "prefer", "require"},
    "target_session_attrs": {
        "any",
        "read-write",
        "read-only",
        "primary",
        "standby",
        "prefer-standby",
    },
    "load_balance_hosts": {"disable", "random"},
    "sslnegotiation": {"postgres", "direct"},
}
"""libpq parameters with a fixed set of values: a wrong one is the caller's mistake,
and is refused before connecting rather than reported as an unreachable server."""

_PORTS: Final = re.compile(r"\d{1,5}(,\d{0,5})*")
_QUOTED: Final = re.compile(r'"[^"]*"')
_SCHEMA_REFUSED: Final = re.compile(r"[\x00-\x1f\x7f%]")


@dataclass(frozen=True, slots=True)
class Target:
    """A resolved connection target."""

    conninfo: str = field(repr=False)
    driver_options: dict[str, Any]
    identity: tuple[str, ...]

    @property
    def connection_options(self) -> dict[str, Any]:
        """psycopg's keyword arguments for every connection to this target."""
        return {"autocommit": True, **self.driver_options}

    def describe(self) -> str:
        """Return ``user@host:port/dbname``, never a password."""
        host, hostaddr, port, dbname, user, service = self.identity
        where = f"{user}@{host or hostaddr or 'local socket'}:{port}/{dbname}"
        return f"{where} (service {service})" if service else where


def differences(given: Target, opened: Target) -> list[str]:
    """The connection parameters in which ``given`` differs from ``opened`` (an open
    userspace's), libpq's defaults applied: the ones given, and every one of
    :data:`SECURITY_PARAMETERS` whether given or not."""
    mine, theirs = conninfo_to_dict(given.conninfo), conninfo_to_dict(opened.conninfo)
    defaults = _libpq_defaults()

    def in_force(parameters: dict[str, Any], name: str) -> str:
        return str(parameters.get(name) or defaults.get(name) or "")

    names = mine.keys() | (SECURITY_PARAMETERS & (mine.keys() | theirs.keys()))
    return sorted(name for name in names if in_force(mine, name) != in_force(theirs, name))


def _libpq_defaults() -> dict[str, str]:
    # PQconndefaults reads the PG* environment variables at each call, as psql does.
    return {
        option.keyword.decode(): option.val.decode()
        for option in pq.Conninfo.get_defaults()
        if option.val is not None
    }


def prepare_threshold_from_environment() -> int | None:
    """Return psycopg's ``prepare_threshold`` as ``PGUSERS_PREPARE_THRESHOLD`` sets it."""
    # psycopg prepares a statement after it ran 5 times on a connection, which makes
    # check_key about three times cheaper for the server. PgBouncer before 1.21, in
    # transaction mode, cannot carry prepared statements: PGUSERS_PREPARE_THRESHOLD=none
    # turns preparing off for every userspace of the process (the command line too).
    value = os.environ.get("PGUSERS_PREPARE_THRESHOLD", "5").strip().lower()
    if value in ("none", "off", ""):
        return None
    if not value.isdigit():
        raise BadCallError(f"PGUSERS_PREPARE_THRESHOLD must be a number or 'none', not {value!r}")
    return int(value)


def _storable(value: object, what: str) -> None:
    # libpq reads a connection string up to its first NUL, so everything after one
    # (sslmode included) would silently be dropped.
    if isinstance(value, str):
        storable(value, what)
    elif isinstance(value, bool) or not isinstance(value, int | float):
        raise BadCallError(f"{what} must be a str or a number, not {type(value).__name__}")


def _check_values(merged: dict[str, Any]) -> None:
    for name, allowed in ENUMERATED.items():
        value = merged.get(name)
        if value is not None and str(value) not in allowed:
            raise BadCallError(f"{name} must be one of {', '.join(sorted(allowed))}")
    port = merged.get("port")
    if port is not None and not (
        _PORTS.fullmatch(str(port))
        and all(0 < int(part) < 65536 for part in str(port).split(",") if part)
    ):
        raise BadCallError("port must be a number from 1 to 65535 (or a comma-separated list)")
    timeout = merged.get("connect_timeout")
    if timeout is not None and not str(timeout).strip().lstrip("-").isdigit():
        raise BadCallError("connect_timeout must be a whole number of seconds")


def resolve(dbname: object, conninfo: object, params: dict[str, Any]) -> Target:
    """Merge a database name, a conninfo string or URI and keyword parameters."""
    if dbname is not None and not isinstance(dbname, str):
        raise BadCallError(f"dbname must be a str, not {type(dbname).__name__}")
    if not isinstance(conninfo, str):
        raise BadCallError(f"conninfo must be a str, not {type(conninfo).__name__}")
    managed = MANAGED_OPTIONS & params.keys()
    if managed:
        raise BadCallError(f"pgusers sets {', '.join(sorted(managed))} itself; do not pass it")
    driver_options = {name: params.pop(name) for name in DRIVER_OPTIONS & params.keys()}
    driver_options.setdefault("prepare_threshold", prepare_threshold_from_environment())
    if dbname is not None:
        params["dbname"] = dbname
    _storable(conninfo, "conninfo")
    for name, value in params.items():
        _storable(value, f"connection parameter {name}")
    try:
        merged = conninfo_to_dict(make_conninfo(conninfo, **params))
    except psycopg.ProgrammingError as error:
        # libpq quotes the part it could not read, which may be a password.
        reason = _QUOTED.sub('"…"', str(error).strip().splitlines()[0])
        raise BadCallError(f"bad connection parameters: {reason}") from None
    _check_values(merged)
    merged.setdefault("connect_timeout", DEFAULT_CONNECT_TIMEOUT)
    defaults = _libpq_defaults()
    if not (merged.get("dbname") or defaults.get("dbname") or merged.get("service")):
        raise BadCallError(
            "UserSpace needs the name of an existing database: UserSpace('userlist', ...)"
        )
    identity = tuple(str(merged.get(name) or defaults.get(name, "")) for name in IDENTITY)
    return Target(make_conninfo("", **merged), driver_options, identity)


def schema_name(value: object) -> str:
    """Check the name of the schema that holds the pgusers tables."""
    if not isinstance(value, str) or not value:
        raise BadCallError("schema must be a non-empty str")
    _storable(value, "schema")
    if _SCHEMA_REFUSED.search(value):
        raise BadCallError("schema must not contain control characters or '%'")
    # PostgreSQL cuts a longer name at 63 bytes, so two long names would share tables.
    if len(value.encode()) > 63:
        raise BadCallError("schema must be at most 63 bytes long in UTF-8")
    return value
