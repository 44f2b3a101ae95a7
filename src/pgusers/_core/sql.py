"""How pgusers' SQL is put together: rendering a template for a schema, the
fragments with which every changing statement writes its events and announces
session changes, and the transaction and lock statements.

Templates name the schema as ``{schema}``; :func:`render` fills it in with
psycopg's SQL composition, so the identifier is quoted by the driver. The few
templates with other ``{...}`` parts take them only from constant fragments of
pgusers' own, never from caller input. Values are always ``%s``/``%(name)s``
parameters.
"""

import hashlib
from functools import cache
from typing import Final

from psycopg import sql

EVERY_ROW: Final = "true"

BEGIN: Final = "BEGIN"
COMMIT: Final = "COMMIT"
ROLLBACK: Final = "ROLLBACK"
# A transaction-scoped lock: it is released at COMMIT, so nothing outlives the
# transaction (safe behind a transaction-pooling PgBouncer). Its number comes from
# lock_id(), for what is locked (migrations, an import) and the schema.
ADVISORY_LOCK: Final = "SELECT pg_advisory_xact_lock(%s)"


def lock_id(purpose: str, schema: str) -> int:
    """The advisory lock number that serialises ``purpose`` (``"migrations"``,
    ``"import"``) in ``schema``: 64 bits of a digest of both."""
    digest = hashlib.blake2b(f"pgusers {purpose} {schema}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


SESSION_CHANGES: Final = frozenset(
    {
        "session.ended",
        "user.deleted",
        "user.disabled",
        "user.modified",
        "password.changed",
        "admin.changed",
        "settings.changed",
        "token.used",
        "legacy.imported",
        "session.reauthenticated",
        "role.defined",
        "role.deleted",
        "role.granted",
        "role.revoked",
        "org.deleted",
        "org.member_removed",
    }
)
"""The kinds of event that may change what check_key answers: the statements that
write one also NOTIFY on the schema's channel, for session caches to forget."""

# What the events of a statement send (see LOG_EVENTS): a call to each webhook that
# asked for the event's kind (or for every kind, '*'); a mail for each event that asks
# for one (mail.queued), a notice to the user of a change to how they sign in, and,
# when the mail settings ask for it, of a sign-in from a browser or program (its user
# agent) that never signed in as them before within the events kept (not their first).
# Mail is written only while mail is set up, and at most per_recipient messages an
# hour go to one address: past that, a request is dropped (its event still says so).
OUTGOING: Final = """
            SELECT 'webhook' AS channel, l.kind AS purpose, l.userid, w.id AS recipient,
                   jsonb_build_object(
                       'type', l.kind,
                       'timestamp', to_char(to_timestamp(l.at) AT TIME ZONE 'UTC',
                                            'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
                       'data', jsonb_build_object(
                           'event_id', l.id, 'userid', l.userid, 'actor', l.actor,
                           'source', l.source, 'session_id', l.session_id,
                           'detail', l.detail)) AS payload
            FROM logged l JOIN {schema}.webhooks w
                ON l.kind = ANY (w.kinds) OR '*' = ANY (w.kinds)
            UNION ALL
            SELECT 'mail', m.purpose, m.userid, m.recipient, m.payload
            FROM (
                SELECT CASE l.kind WHEN 'mail.queued' THEN l.detail ->> 'purpose'
                                   WHEN 'password.changed' THEN 'password_changed'
                                   WHEN 'mfa.enrolled' THEN 'factor_added'
                                   ELSE 'factor_removed' END AS purpose,
                       l.userid,
                       coalesce(l.detail ->> 'email', u.email) AS recipient,
                       jsonb_strip_nulls(jsonb_build_object(
                           'username', u.username, 'detail', l.detail,
                           'at', l.at)) AS payload
                FROM logged l JOIN {schema}.users u ON u.userid = l.userid
                WHERE l.kind IN ('mail.queued', 'password.changed', 'mfa.enrolled',
                                 'mfa.removed')
                UNION ALL
                SELECT 'new_device', l.userid, u.email,
                       jsonb_build_object('username', u.username, 'detail', l.detail,
                                          'at', l.at)
                FROM logged l JOIN {schema}.users u ON u.userid = l.userid
                WHERE l.kind = 'login.succeeded'
                  AND (SELECT new_device FROM {schema}.mail_settings)
                  AND EXISTS (
                      SELECT 1 FROM {schema}.events e
                      WHERE e.userid = l.userid AND e.kind = 'login.succeeded' AND e.id < l.id)
                  AND NOT EXISTS (
                      SELECT 1 FROM {schema}.events e
                      WHERE e.userid = l.userid AND e.kind = 'login.succeeded' AND e.id < l.id
                        AND e.detail ->> 'user_agent'
                            IS NOT DISTINCT FROM l.detail ->> 'user_agent')
            ) m CROSS JOIN {schema}.mail_settings s
            WHERE (SELECT count(*) FROM {schema}.outbox b
                   WHERE b.channel = 'mail' AND b.recipient = m.recipient
                     AND b.created_at > to_timestamp(%(now)s) - interval '1 hour')
                  < s.per_recipient"""

# Every statement that changes something writes its events itself: it names them in a
# CTE called ``happened`` (kind, userid, session_id, detail), and LOG_EVENTS, put in
# as its {log}, inserts them with the time, the actor and the source, so an event is
# committed exactly when its change is. The statement returns them as its last
# column ({logged}), for the ``pgusers.events`` logger. A statement that writes
# events also removes up to 100 events older than the retention period, so old
# events go as part of normal work (the cutoff is a scalar subquery, so that the
# index on events.at finds them, or that there are none, at once).
LOG_EVENTS: Final = """logged AS (
        INSERT INTO {schema}.events (at, kind, userid, actor, source, session_id, detail)
        SELECT to_timestamp(%(now)s), h.kind, h.userid, %(actor)s::text, %(event_source)s::text,
               h.session_id, h.detail
        FROM happened h
        RETURNING id, extract(epoch FROM at)::float8 AS at, kind, userid, actor, source,
                  session_id, detail
    ), retired AS (
        DELETE FROM {schema}.events WHERE id IN (
            SELECT e.id FROM {schema}.events e
            WHERE EXISTS (SELECT 1 FROM happened)
              AND e.at < to_timestamp(%(now)s) - make_interval(
                  secs => (SELECT event_retention FROM {schema}.settings) * 86400)
            ORDER BY e.at
            LIMIT 100
            FOR UPDATE OF e SKIP LOCKED
        )
    ), notified AS (
        SELECT pg_notify({channel}, json_build_object(
                   'kind', l.kind, 'userid', l.userid, 'session_id', l.session_id)::text)
        FROM logged l
        WHERE l.kind IN ({kinds})
    ), outgoing AS (
        INSERT INTO {schema}.outbox (
            id, channel, purpose, userid, recipient, payload, created_at, due_at)
        SELECT 'msg_' || replace(gen_random_uuid()::text, '-', ''), o.channel, o.purpose,
               o.userid, o.recipient, o.payload, to_timestamp(%(now)s), to_timestamp(%(now)s)
        FROM ({outgoing}) o
        RETURNING 1
    ), woken AS (
        SELECT pg_notify({outbox_channel}, '') WHERE EXISTS (SELECT 1 FROM outgoing)
    )""".replace("{kinds}", ", ".join(f"'{kind}'" for kind in sorted(SESSION_CHANGES))).replace(
    "{outgoing}", OUTGOING
)

LOGGED: Final = (
    "(SELECT json_agg(l ORDER BY l.id) FROM logged l"
    " WHERE (SELECT count(*) FROM notified) + (SELECT count(*) FROM woken) >= 0)"
)
"""The events a statement wrote, as a JSON array (NULL for none): its last column.
Reading ``notified`` and ``woken`` here is what runs them: a CTE that nothing reads is
skipped (``outgoing`` changes rows, so it runs in any case)."""


@cache
def channel(schema: str) -> str:
    """The LISTEN/NOTIFY channel on which the statements that end or change sessions
    of ``schema`` announce it (a fixed-length name, whatever the schema's)."""
    return "pgusers_" + hashlib.blake2b(schema.encode(), digest_size=8).hexdigest()


@cache
def outbox_channel(schema: str) -> str:
    """The channel on which a statement that writes to the outbox of ``schema`` wakes
    the delivery workers."""
    return "pgusers_outbox_" + hashlib.blake2b(schema.encode(), digest_size=8).hexdigest()


@cache
def settings_row(schema: str) -> sql.Composed:
    """The settings as a statement joins them (``{settings}``): a subquery the planner
    knows to give one row. The one-row table is too small for autovacuum ever to
    analyse, so joined directly it is estimated at hundreds of rows, and once the
    other tables are analysed a prepared statement's generic plan then looks dearer
    than a custom one: it would be planned again on every call."""
    return sql.SQL("(SELECT * FROM {} LIMIT 1)").format(sql.Identifier(schema, "settings"))


@cache
def render(template: str, schema: str, **fragments: str) -> str:
    """Return ``template`` with the schema quoted as an identifier and ``fragments``
    (SQL text made only from this module's constants) put in place."""
    names = {
        "schema": sql.Identifier(schema),
        "settings": settings_row(schema),
        "channel": sql.Literal(channel(schema)),
        "outbox_channel": sql.Literal(outbox_channel(schema)),
    }
    parts = {part: sql.SQL(text).format(**names) for part, text in fragments.items()}
    return sql.SQL(template).format(**names, **parts).as_string()


@cache
def render_legacy(template: str, schema: str, legacy: str, **fragments: str) -> str:
    """:func:`render`, with ``{legacy}`` as well: the schema of pgusers 0.9's tables,
    quoted as an identifier."""
    names = {
        "schema": sql.Identifier(schema),
        "legacy": sql.Identifier(legacy),
        "settings": settings_row(schema),
        "channel": sql.Literal(channel(schema)),
        "outbox_channel": sql.Literal(outbox_channel(schema)),
    }
    parts = {part: sql.SQL(text).format(**names) for part, text in fragments.items()}
    return sql.SQL(template).format(**names, **parts).as_string()


def conjunction(fragments: list[str]) -> str:
    """Join WHERE fragments of this module with AND (``true`` when there are none)."""
    return " AND ".join(fragments) or EVERY_ROW
