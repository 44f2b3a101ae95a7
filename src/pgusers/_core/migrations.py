"""Creating and migrating the pgusers tables, by version, safely under concurrency.

Each migration in :data:`MIGRATIONS` runs once, in order, inside a transaction that
holds an advisory lock keyed by the schema name: when several processes start
against an empty database at once, one creates the tables and the others wait,
then find the work done. A migration that fails leaves the tables as they were.
"""

import logging
from collections.abc import Callable

from psycopg import errors as pgerrors
from psycopg import sql

from pgusers._core import identities
from pgusers._core import schema as schema_sql
from pgusers._core.sql import ADVISORY_LOCK, BEGIN, COMMIT, ROLLBACK, lock_id, render
from pgusers._core.steps import Execute, Fetch, Operation
from pgusers._errors import MigrationError, SchemaVersionError


def _migration_1(schema: str) -> Operation[None]:
    yield Execute(render(schema_sql.MIGRATION_1, schema), fetch=Fetch.ROWCOUNT)


def _migration_2(schema: str) -> Operation[None]:
    """Recompute every user's lookup keys under the identity rules of
    :mod:`pgusers.identities`; refuse, listing them, users who would collide."""
    yield Execute(render(schema_sql.MIGRATION_2_BEGIN, schema), fetch=Fetch.ROWCOUNT)
    last = 0
    while True:
        rows = yield Execute(
            render(schema_sql.USERS_PAGE, schema), (last, schema_sql.REKEY_BATCH), Fetch.ALL
        )
        if not rows:
            break
        userids = [userid for userid, _, _ in rows]
        name_keys = [identities.fold(name) for _, name, _ in rows]
        email_keys = [identities.stored_email_key(address) for _, _, address in rows]
        skeletons = [identities.skeleton(key) for key in name_keys]
        yield Execute(
            render(schema_sql.SET_USER_KEYS, schema),
            (userids, name_keys, email_keys, skeletons),
            Fetch.ROWCOUNT,
        )
        last = userids[-1]
    collisions = yield Execute(render(schema_sql.KEY_COLLISIONS, schema), fetch=Fetch.ALL)
    if collisions:
        groups = "; ".join(f"{field}: userids {ids}" for field, ids in collisions)
        raise MigrationError(
            f"cannot bring schema {schema!r} to version 2: under the new username and email "
            f"rules (case, width and look-alike characters fold together) these users "
            f"would collide: {groups}. Rename or remove all but one of each group, then "
            "open it again; nothing was changed"
        )
    yield Execute(render(schema_sql.MIGRATION_2_END, schema), fetch=Fetch.ROWCOUNT)


def _migration_3(schema: str) -> Operation[None]:
    yield Execute(render(schema_sql.MIGRATION_3, schema), fetch=Fetch.ROWCOUNT)


def _migration_4(schema: str) -> Operation[None]:
    yield Execute(render(schema_sql.MIGRATION_4, schema), fetch=Fetch.ROWCOUNT)


def _migration_5(schema: str) -> Operation[None]:
    yield Execute(render(schema_sql.MIGRATION_5, schema), fetch=Fetch.ROWCOUNT)


def _migration_6(schema: str) -> Operation[None]:
    yield Execute(render(schema_sql.MIGRATION_6, schema), fetch=Fetch.ROWCOUNT)


def _migration_7(schema: str) -> Operation[None]:
    statement = sql.SQL(schema_sql.MIGRATION_7).format(
        schema=sql.Identifier(schema),
        slide=sql.Literal(render(schema_sql.SLIDE_SESSION, schema)),
        remove=sql.Literal(render(schema_sql.REMOVE_SESSION, schema)),
    )
    yield Execute(statement.as_string(), fetch=Fetch.ROWCOUNT)


def _migration_8(schema: str) -> Operation[None]:
    yield Execute(render(schema_sql.MIGRATION_8, schema), fetch=Fetch.ROWCOUNT)


def _migration_9(schema: str) -> Operation[None]:
    yield Execute(render(schema_sql.MIGRATION_9, schema), fetch=Fetch.ROWCOUNT)


def _migration_10(schema: str) -> Operation[None]:
    yield Execute(render(schema_sql.MIGRATION_10, schema), fetch=Fetch.ROWCOUNT)


def _migration_11(schema: str) -> Operation[None]:
    yield Execute(render(schema_sql.MIGRATION_11, schema), fetch=Fetch.ROWCOUNT)


def _migration_12(schema: str) -> Operation[None]:
    yield Execute(render(schema_sql.MIGRATION_12, schema), fetch=Fetch.ROWCOUNT)


def _migration_13(schema: str) -> Operation[None]:
    yield Execute(render(schema_sql.MIGRATION_13, schema), fetch=Fetch.ROWCOUNT)


def _migration_14(schema: str) -> Operation[None]:
    yield Execute(render(schema_sql.MIGRATION_14, schema), fetch=Fetch.ROWCOUNT)


def _migration_15(schema: str) -> Operation[None]:
    yield Execute(render(schema_sql.MIGRATION_15, schema), fetch=Fetch.ROWCOUNT)


def _migration_16(schema: str) -> Operation[None]:
    statement = sql.SQL(schema_sql.MIGRATION_16).format(
        schema=sql.Identifier(schema),
        sum_grants=sql.Literal(render(schema_sql.SUM_GRANTS, schema)),
        grants_changed=sql.Literal(render(schema_sql.GRANTS_CHANGED, schema)),
        role_changed=sql.Literal(render(schema_sql.ROLE_CHANGED, schema)),
    )
    yield Execute(statement.as_string(), fetch=Fetch.ROWCOUNT)


def _migration_17(schema: str) -> Operation[None]:
    message = sql.Literal(schema_sql.LAST_WAY_IN).as_string()
    body = render(schema_sql.KEEP_A_WAY_IN, schema, message=message)
    statement = sql.SQL(schema_sql.MIGRATION_17).format(
        schema=sql.Identifier(schema), keep_a_way_in=sql.Literal(body)
    )
    yield Execute(statement.as_string(), fetch=Fetch.ROWCOUNT)


def _migration_18(schema: str) -> Operation[None]:
    yield Execute(render(schema_sql.MIGRATION_18, schema), fetch=Fetch.ROWCOUNT)


MIGRATIONS: tuple[Callable[[str], Operation[None]], ...] = (
    _migration_1,
    _migration_2,
    _migration_3,
    _migration_4,
    _migration_5,
    _migration_6,
    _migration_7,
    _migration_8,
    _migration_9,
    _migration_10,
    _migration_11,
    _migration_12,
    _migration_13,
    _migration_14,
    _migration_15,
    _migration_16,
    _migration_17,
    _migration_18,
)
"""Each version's migration, in order: the tables of version N are made by the first N."""

LATEST = len(MIGRATIONS)
ATTEMPTS = 3
# What creating objects raises when another process has just created them.
CREATED_MEANWHILE = (
    pgerrors.UniqueViolation,
    pgerrors.DuplicateObject,
    pgerrors.DuplicateSchema,
    pgerrors.DuplicateTable,
)

logger = logging.getLogger("pgusers")


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
            yield Execute(ROLLBACK, fetch=Fetch.ROWCOUNT)
            if attempt == ATTEMPTS:
                raise SchemaVersionError(f"could not migrate schema {schema!r}: {error}") from None
            continue
        if ran:
            logger.info("migrated schema %r to version %d", schema, LATEST)
        return ran
    raise AssertionError("unreachable")


def _migrate_locked(schema: str) -> Operation[int]:
    # On any other failure the driver rolls the open transaction back.
    yield Execute(BEGIN, fetch=Fetch.ROWCOUNT)
    yield Execute(ADVISORY_LOCK, (lock_id("migrations", schema),))
    # Read again under the lock: another process may have just done the work.
    version = yield from _read_version(schema)
    if version is None:
        for statement in schema_sql.CREATE_SCHEMA:
            yield Execute(render(statement, schema), fetch=Fetch.ROWCOUNT)
        version = 0
    for migration in MIGRATIONS[version:]:
        yield from migration(schema)
    yield Execute(render(schema_sql.WRITE_SCHEMA_VERSION, schema), (LATEST,), Fetch.ROWCOUNT)
    yield Execute(COMMIT, fetch=Fetch.ROWCOUNT)
    return LATEST - version


def _read_version(schema: str) -> Operation[int | None]:
    """Return the schema's version, or None when it has no pgusers tables yet."""
    version_table = sql.Identifier(schema, "schema_version").as_string()
    exists = (yield Execute(schema_sql.SCHEMA_VERSION_TABLE, (version_table,)))[0]
    if not exists:
        return None
    version = int((yield Execute(render(schema_sql.READ_SCHEMA_VERSION, schema)))[0])
    _check(version, schema)
    return version
