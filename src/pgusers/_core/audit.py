"""The audit trail: the kinds of event pgusers writes, reading events back, and
purging old ones. The events themselves are written by the statements that make
each change (see :data:`pgusers._core.sql.LOG_EVENTS`)."""

import time
from typing import Any, Final

from pgusers._core import checks, recording
from pgusers._core.base import Part, Query
from pgusers._core.retries import retry_safe
from pgusers._core.sql import LOGGED, conjunction
from pgusers._core.steps import Operation
from pgusers._results import Event

KINDS: Final = frozenset(
    {
        "user.created",
        "user.modified",
        "user.deleted",
        "user.disabled",
        "user.enabled",
        "password.changed",
        "admin.changed",
        "login.succeeded",
        "login.failed",
        "login.throttled",
        "login_failures.cleared",
        "session.ended",
        "token.issued",
        "token.used",
        "email.verified",
        "settings.changed",
        "events.purged",
        "legacy.imported",
        "legacy.resolved",
        "apikey.created",
        "apikey.revoked",
        "login.mfa_required",
        "login.mfa_failed",
        "mfa.enrolled",
        "mfa.removed",
        "mfa.recovery_codes_generated",
        "mfa.recovery_code_used",
        "mfa.renamed",
        "passkey.cloned",
        "passkey.flag_cleared",
        "role.defined",
        "role.deleted",
        "role.granted",
        "role.revoked",
        "org.created",
        "org.deleted",
        "org.member_added",
        "org.member_removed",
        "session.reauthenticated",
        "secrets.resealed",
        "password.breach_check_failed",
        "provider.added",
        "provider.changed",
        "provider.removed",
        "identity.linked",
        "identity.unlinked",
        "mail.changed",
        "mail.queued",
        "mail.retried",
        "webhook.added",
        "webhook.removed",
        "webhook.rotated",
    }
)
"""Every kind of event pgusers writes."""

EVENTS: Final = """
    SELECT id, at, kind, userid, actor, source, session_id, detail
    FROM {schema}.events WHERE {where} ORDER BY {order}
"""

EVENTS_BY: Final = {
    "userid": "userid = %(userid)s",
    "kinds": "kind = ANY(%(kinds)s)",
    "since": "at >= to_timestamp(%(since)s)",
    "until": "at < to_timestamp(%(until)s)",
}

NEWEST_FIRST: Final = "id DESC"

OLDEST_FIRST: Final = "id"

# An explicit purge is recorded too, in the statement that deletes (one event per
# batch that deleted any).
PURGE_EVENTS: Final = """
    WITH purged AS (
        DELETE FROM {schema}.events WHERE id IN (
            SELECT id FROM {schema}.events WHERE at < to_timestamp(%(before)s)
            ORDER BY at LIMIT %(batch)s
        )
        RETURNING 1
    ), happened AS (
        SELECT 'events.purged' AS kind, NULL::bigint AS userid, NULL::text AS session_id,
               jsonb_build_object('count', count(*), 'before', %(before)s::float8) AS detail
        FROM purged HAVING count(*) > 0
    ), logged AS (
        INSERT INTO {schema}.events (at, kind, userid, actor, source, session_id, detail)
        SELECT to_timestamp(%(now)s), h.kind, h.userid, %(actor)s::text, %(event_source)s::text,
               h.session_id, h.detail
        FROM happened h
        RETURNING id, extract(epoch FROM at)::float8 AS at, kind, userid, actor, source,
                  session_id, detail
    ), notified AS (  -- a purge of events changes no session: nothing to announce
        SELECT WHERE false
    ), woken AS (  -- and sends nothing
        SELECT WHERE false
    )
    SELECT (SELECT count(*) FROM purged), {logged}
"""

PURGE_BATCH: Final = 5000


class AuditPart(Part):
    """The operations on the audit trail."""

    @retry_safe
    def events(
        self, userid: object, kinds: object, since: object, until: object, newest_first: object
    ) -> Query[Event]:
        params: dict[str, Any] = {}
        if userid is not None:
            params["userid"] = checks.userid(userid)
        if kinds is not None:
            params["kinds"] = checks.names(kinds, "kinds", KINDS)
        if since is not None:
            params["since"] = checks.moment(since, "since")
        if until is not None:
            params["until"] = checks.moment(until, "until")
        newest = checks.flag(newest_first, "newest_first")
        order = NEWEST_FIRST if newest else OLDEST_FIRST
        where = conjunction([EVENTS_BY[name] for name in params])
        return Query(self._sql(EVENTS, where=where, order=order), params, _event)

    @retry_safe
    def purge_events(self, before: object) -> Operation[int]:
        params = {
            "before": checks.moment(before, "before"),
            "batch": PURGE_BATCH,
            **recording.parameters(time.time()),
        }
        query = self._sql(PURGE_EVENTS, logged=LOGGED)
        return self._in_batches(query, params, PURGE_BATCH)


def _event(row: tuple[Any, ...]) -> Event:
    event_id, at, kind, userid, actor, source, session_id, detail = row
    return Event(event_id, at.timestamp(), kind, userid, actor, source, session_id, detail)
