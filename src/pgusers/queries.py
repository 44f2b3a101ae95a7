"""Every SQL statement pgusers runs, in one place.

Templates name the schema as ``{schema}``; :func:`render` fills it in with
psycopg's SQL composition, so the identifier is quoted by the driver. The few
templates with other ``{...}`` parts take them only from the constant fragments
defined here, never from caller input. Values are always ``%s``/``%(name)s``
parameters.
"""

from functools import cache
from typing import Final

from psycopg import sql

# -- schema --------------------------------------------------------------------

MIGRATIONS: Final[tuple[str, ...]] = (
    # version 1
    """
    CREATE TABLE {schema}.users (
        userid        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        username      text NOT NULL,
        username_key  text COLLATE "C" NOT NULL,
        email         text NOT NULL,
        email_key     text COLLATE "C" NOT NULL,
        password_hash text NOT NULL,
        admin         boolean NOT NULL DEFAULT false,
        extra_data    jsonb,
        created_at    timestamptz NOT NULL DEFAULT now(),
        CONSTRAINT users_username_key UNIQUE (username_key),
        CONSTRAINT users_email_key UNIQUE (email_key)
    );
    CREATE TABLE {schema}.sessions (
        key         text PRIMARY KEY,
        userid      bigint NOT NULL REFERENCES {schema}.users (userid) ON DELETE CASCADE,
        expires_at  timestamptz NOT NULL,
        created_at  timestamptz NOT NULL DEFAULT now(),
        extra_data  jsonb
    );
    CREATE INDEX sessions_userid_idx ON {schema}.sessions (userid);
    CREATE INDEX sessions_expires_at_idx ON {schema}.sessions (expires_at);
    CREATE TABLE {schema}.settings (
        singleton   boolean PRIMARY KEY DEFAULT true CHECK (singleton),
        session_ttl double precision NOT NULL DEFAULT 864000 CHECK (session_ttl > 0)
    );
    INSERT INTO {schema}.settings DEFAULT VALUES;
    """,
)

SCHEMA_VERSION_TABLE: Final = "SELECT to_regclass(%s) IS NOT NULL"
READ_SCHEMA_VERSION: Final = "SELECT version FROM {schema}.schema_version"
BEGIN: Final = "BEGIN"
COMMIT: Final = "COMMIT"
ROLLBACK: Final = "ROLLBACK"
# A transaction-scoped lock: it is released at COMMIT, so nothing outlives the
# transaction (safe behind a transaction-pooling PgBouncer).
LOCK_MIGRATIONS: Final = "SELECT pg_advisory_xact_lock(%s)"
CREATE_SCHEMA: Final = (
    # The schema may exist already, created by an administrator for pgusers.
    "CREATE SCHEMA IF NOT EXISTS {schema}",
    """CREATE TABLE {schema}.schema_version (
        singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
        version   integer NOT NULL
    )""",
    "INSERT INTO {schema}.schema_version (version) VALUES (0)",
)
WRITE_SCHEMA_VERSION: Final = "UPDATE {schema}.schema_version SET version = %s"

# -- users ---------------------------------------------------------------------

CREATE_USER: Final = """
    INSERT INTO {schema}.users
        (username, username_key, email, email_key, password_hash, admin, extra_data)
    VALUES (%s, %s, %s, %s, %s, %s, %s::jsonb)
    RETURNING userid
"""

FIND_USER: Final = """
    SELECT userid, username, email, admin, extra_data FROM {schema}.users WHERE {where}
"""

LOGIN_LOOKUP: Final = """
    SELECT userid, password_hash, admin FROM {schema}.users WHERE username_key = %s
"""

PASSWORD_HASH: Final = "SELECT password_hash FROM {schema}.users WHERE userid = %s"

# %(old_hash)s guards against a concurrent change between reading and writing.
SET_PASSWORD: Final = """
    WITH changed AS (
        UPDATE {schema}.users SET password_hash = %(new_hash)s
        WHERE userid = %(userid)s
          AND (%(old_hash)s::text IS NULL OR password_hash = %(old_hash)s::text)
        RETURNING userid
    ), ended AS (
        DELETE FROM {schema}.sessions s USING changed c
        WHERE s.userid = c.userid AND %(end_sessions)s
    )
    SELECT userid FROM changed
"""

MODIFY_USER: Final = """
    UPDATE {schema}.users SET
        username = coalesce(%(username)s, username),
        username_key = coalesce(%(username_key)s, username_key),
        email = coalesce(%(email)s, email),
        email_key = coalesce(%(email_key)s, email_key),
        extra_data = CASE WHEN %(set_extra)s THEN %(extra_data)s::jsonb ELSE extra_data END
    WHERE userid = %(userid)s
    RETURNING userid
"""

DELETE_USER: Final = "DELETE FROM {schema}.users WHERE {where} RETURNING userid"

IS_ADMIN: Final = "SELECT admin FROM {schema}.users WHERE userid = %s"

SET_ADMIN: Final = "UPDATE {schema}.users SET admin = %s WHERE userid = %s RETURNING userid"

ALL_USERS: Final = """
    SELECT userid, username, email, admin FROM {schema}.users ORDER BY username_key
"""

USER_BY: Final = {
    "userid": "userid = %(userid)s",
    "username": "username_key = %(username_key)s",
    "email": "email_key = %(email_key)s",
}
"""WHERE fragments that select a user; joined with AND when several are given."""

# -- sessions ------------------------------------------------------------------

OPEN_SESSION: Final = """
    WITH upgrade AS (
        UPDATE {schema}.users SET password_hash = %(new_hash)s::text
        WHERE userid = %(userid)s AND password_hash = %(old_hash)s
          AND %(new_hash)s::text IS NOT NULL
    )
    INSERT INTO {schema}.sessions (key, userid, expires_at, extra_data)
    SELECT %(key)s, %(userid)s, to_timestamp(%(now)s) + make_interval(secs => session_ttl),
           %(extra_data)s::jsonb
    FROM {schema}.settings
"""

# The per-request hot path, in one statement and one round trip: find the session
# by its primary key; if it is alive, slide its expiry to now + TTL, but only when
# the stored expiry is more than min(60 s, TTL / 100) short of that or past it (a
# shorter TTL was set), so a busy session is written at most about once a minute;
# and commit that write without waiting for the WAL
# flush (losing a slide in a crash only shortens a session); if it has expired,
# delete it. The main SELECT sees the row as it was before either change. Each part
# matches the key parameter itself, so every part is a primary-key lookup.
CHECK_KEY: Final = """
    WITH found AS (
        SELECT s.key, s.userid, s.expires_at, s.extra_data, u.username, t.session_ttl,
               to_timestamp(%(now)s) AS now
        FROM {schema}.sessions s
        JOIN {schema}.users u ON u.userid = s.userid
        CROSS JOIN {schema}.settings t
        WHERE s.key = %(key)s
    ), slid AS (
        UPDATE {schema}.sessions s
        SET expires_at = f.now + make_interval(secs => f.session_ttl)
        FROM found f
        WHERE s.key = %(key)s AND f.expires_at > f.now
          AND f.expires_at NOT BETWEEN
              f.now + make_interval(secs => f.session_ttl - least(60, f.session_ttl / 100))
              AND f.now + make_interval(secs => f.session_ttl)
          AND set_config('synchronous_commit', 'off', true) IS NOT NULL
    ), ended AS (
        DELETE FROM {schema}.sessions s USING found f
        WHERE s.key = %(key)s AND f.expires_at <= f.now
    )
    SELECT expires_at > now, username, userid, extra_data, session_ttl FROM found
"""

LIST_SESSIONS: Final = """
    SELECT u.username, s.key, s.expires_at
    FROM {schema}.sessions s JOIN {schema}.users u ON u.userid = s.userid
    WHERE {where}
    ORDER BY s.expires_at, s.key
"""

# Deleting in batches keeps each transaction short, so a purge of a million
# expired sessions never holds locks that stall check_key for long.
KILL_SESSIONS: Final = """
    DELETE FROM {schema}.sessions WHERE key IN (
        SELECT key FROM {schema}.sessions s WHERE {where} LIMIT %(batch)s
    )
"""
KILL_BATCH: Final = 5000

SESSIONS_OF_USER: Final = "s.userid = %(userid)s"
SESSIONS_EXPIRED: Final = "expires_at <= to_timestamp(%(now)s)"
EVERY_ROW: Final = "true"

GET_TTL: Final = "SELECT session_ttl FROM {schema}.settings"
SET_TTL: Final = "UPDATE {schema}.settings SET session_ttl = %s"


@cache
def render(template: str, schema: str, **fragments: str) -> str:
    """Return ``template`` with the schema quoted as an identifier and ``fragments``
    (SQL text made only from this module's constants) put in place."""
    parts = {name: sql.SQL(text) for name, text in fragments.items()}
    return sql.SQL(template).format(schema=sql.Identifier(schema), **parts).as_string()


def conjunction(fragments: list[str]) -> str:
    """Join WHERE fragments of this module with AND (``true`` when there are none)."""
    return " AND ".join(fragments) or EVERY_ROW
