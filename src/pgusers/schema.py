"""Creating and migrating the pgusers tables, by version, safely under concurrency.

Each migration in :data:`pgusers.queries.MIGRATIONS` runs once, in order, inside a
transaction that holds an advisory lock keyed by the schema name: when several
processes start against an empty database at once, one creates the tables and
the others wait, then find the work done.
"""

import hashlib

from psycopg import sql

from pgusers import queries
from pgusers.errors import PgUsersError
from pgusers.steps import Execute, Fetch, Operation

LATEST = len(queries.MIGRATIONS)


class SchemaVersionError(PgUsersError):
    """The database holds a pgusers schema newer than this version of pgusers."""


def lock_id(schema: str) -> int:
    """Return the advisory lock number that serialises migrations of ``schema``."""
    digest = hashlib.blake2b(f"pgusers migrations {schema}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def _check(version: int, schema: str) -> None:
    if version > LATEST:
        raise SchemaVersionError(
            f"schema {schema!r} is at version {version}, newer than the {LATEST} "
            "this pgusers knows; upgrade pgusers"
        )


def migrate(schema: str) -> Operation[int]:
    """Bring ``schema`` to the latest version; return how many migrations ran."""
    version_table = sql.Identifier(schema, "schema_version").as_string()
    exists = (yield Execute(queries.SCHEMA_VERSION_TABLE, (version_table,)))[0]
    if exists:
        version = (yield Execute(queries.render(queries.READ_SCHEMA_VERSION, schema)))[0]
        _check(version, schema)
        if version == LATEST:
            return 0
    # On any failure the driver rolls the open transaction back.
    yield Execute(queries.BEGIN, fetch=Fetch.ROWCOUNT)
    yield Execute(queries.LOCK_MIGRATIONS, (lock_id(schema),))
    yield Execute(queries.render(queries.CREATE_SCHEMA, schema), fetch=Fetch.ROWCOUNT)
    version = (yield Execute(queries.render(queries.READ_SCHEMA_VERSION, schema)))[0]
    _check(version, schema)
    for script in queries.MIGRATIONS[version:]:
        yield Execute(queries.render(script, schema), fetch=Fetch.ROWCOUNT)
    yield Execute(queries.render(queries.WRITE_SCHEMA_VERSION, schema), (LATEST,), Fetch.ROWCOUNT)
    yield Execute(queries.COMMIT, fetch=Fetch.ROWCOUNT)
    return LATEST - int(version)
