"""Where a UserSpace lives: the connection string, and the identity of its target."""

import os
import re
from dataclasses import dataclass
from typing import Any, Final

import psycopg
from psycopg import pq
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from pgusers.errors import BadCallError

IDENTITY: Final = ("host", "hostaddr", "port", "dbname", "user")
"""The connection parameters that tell two userspaces apart (a password does not)."""

DRIVER_OPTIONS: Final = frozenset({"prepare_threshold"})
"""psycopg connection options that are not libpq parameters but may be passed on."""

MANAGED_OPTIONS: Final = frozenset({"autocommit", "row_factory", "cursor_factory", "context"})

DEFAULT_CONNECT_TIMEOUT: Final = "10"

_SCHEMA_NAME: Final = re.compile(r"[^\x00]{1,63}")


@dataclass(frozen=True, slots=True)
class Target:
    """A resolved connection target."""

    conninfo: str
    driver_options: dict[str, Any]
    identity: tuple[str, ...]

    @property
    def connection_options(self) -> dict[str, Any]:
        """psycopg's keyword arguments for every connection to this target."""
        return {"autocommit": True, **self.driver_options}

    def describe(self) -> str:
        """Return ``user@host:port/dbname``, never a password."""
        host, hostaddr, port, dbname, user = self.identity
        return f"{user}@{host or hostaddr or 'local socket'}:{port}/{dbname}"


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
    try:
        merged = conninfo_to_dict(make_conninfo(conninfo, **params))
    except psycopg.ProgrammingError as error:
        raise BadCallError(f"bad connection parameters: {error}") from None
    merged.setdefault("connect_timeout", DEFAULT_CONNECT_TIMEOUT)
    defaults = _libpq_defaults()
    if not (merged.get("dbname") or defaults.get("dbname")):
        raise BadCallError(
            "UserSpace needs the name of an existing database: UserSpace('userlist', ...)"
        )
    identity = tuple(str(merged.get(name) or defaults.get(name, "")) for name in IDENTITY)
    return Target(make_conninfo("", **merged), driver_options, identity)


def schema_name(value: object) -> str:
    """Check the name of the schema that holds the pgusers tables."""
    if not isinstance(value, str) or not _SCHEMA_NAME.fullmatch(value):
        raise BadCallError("schema must be a str of 1 to 63 characters without NUL")
    return value
