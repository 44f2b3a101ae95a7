"""Creating and migrating the pgusers tables, by version, safely under concurrency.

Each migration in :data:`pgusers.queries.MIGRATIONS` runs once, in order, inside a
transaction that holds an advisory lock keyed by the schema name: when several
processes start against an empty database at once, one creates the tables and
the others wait, then find the work done.
"""

import hashlib
import logging

from psycopg import errors as pgerrors
from psycopg import sql

from pgusers import queries
from pgusers.errors import PgUsersError
from pgusers.steps import Execute, Fetch, Operation

LATEST = len(queries.MIGRATIONS)
ATTEMPTS = 3
# What creating objects raises when another process has just created them.
CREATED_MEANWHILE = (
    pgerrors.UniqueViolation,
    pgerrors.DuplicateObject,
    pgerrors.DuplicateSchema,
    pgerrors.DuplicateTable,
)

logger = logging.getLogger("pgusers")


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
    for attempt in range(1, ATTEMPTS + 1):
        version = yield from _read_version(schema)
        if version == LATEST:
            return 0
        try:
            ran = yield from _migrate_locked(schema)
        except CREATED_MEANWHILE as error:
            # Another process created the same objects, and this transaction did not
            # see them yet (seen behind PgBouncer); start again from a fresh read.
            yield Execute(queries.ROLLBACK, fetch=Fetch.ROWCOUNT)
            if attempt == ATTEMPTS:
                raise SchemaVersionError(f"could not migrate schema {schema!r}: {error}") from None
            continue
        if ran:
            logger.info("migrated schema %r to version %d", schema, LATEST)
        return ran
    raise AssertionError("unreachable")


def _migrate_locked(schema: str) -> Operation[int]:
    # On any other failure the driver rolls the open transaction back.
    yield Execute(queries.BEGIN, fetch=Fetch.ROWCOUNT)
    yield Execute(queries.LOCK_MIGRATIONS, (lock_id(schema),))
    # Read again under the lock: another process may have just done the work.
    version = yield from _read_version(schema)
    if version is None:
        for statement in queries.CREATE_SCHEMA:
            yield Execute(queries.render(statement, schema), fetch=Fetch.ROWCOUNT)
        version = 0
    for script in queries.MIGRATIONS[version:]:
        yield Execute(queries.render(script, schema), fetch=Fetch.ROWCOUNT)
    yield Execute(queries.render(queries.WRITE_SCHEMA_VERSION, schema), (LATEST,), Fetch.ROWCOUNT)
    yield Execute(queries.COMMIT, fetch=Fetch.ROWCOUNT)
    return LATEST - version


def _read_version(schema: str) -> Operation[int | None]:
    """Return the schema's version, or None when it has no pgusers tables yet."""
    version_table = sql.Identifier(schema, "schema_version").as_string()
    exists = (yield Execute(queries.SCHEMA_VERSION_TABLE, (version_table,)))[0]
    if not exists:
        return None
    version = int((yield Execute(queries.render(queries.READ_SCHEMA_VERSION, schema)))[0])
    _check(version, schema)
    return version
