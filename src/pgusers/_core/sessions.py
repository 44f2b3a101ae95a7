"""Sessions: the per-request check of a key (the hot path), their data, listing
and ending them, and how their keys are stored.
"""

import time
from collections.abc import Callable
from datetime import datetime
from typing import Any, Final

from pgusers._core import checks, recording
from pgusers._core.base import LOGS, MAX_SOURCE, Part, Query
from pgusers._core.keys import (
    SESSION_ID_SHAPE,
    STORED_PREFIX,
    could_be_stored,
    looks_like_legacy_key,
    looks_like_session_key,
    stored_form,
)
from pgusers._core.retries import retry_safe
from pgusers._core.sql import BEGIN, COMMIT, conjunction
from pgusers._core.steps import Execute, Fetch, Operation
from pgusers._errors import BadCallError
from pgusers._results import (
    EXPIRED,
    NO_SESSION_INFO,
    NOT_FOUND,
    OK,
    CheckResult,
    Session,
    SessionInfo,
    SessionRow,
    Status,
)

# The per-request hot path, in one statement and one round trip: find the session
# by its key (as given, or its digest: both are tried, so the statement is the same
# in either storage mode and while keys are converted); if it is alive, slide its
# expiry to now + TTL (never past created_at + the maximum age, when one is set,
# nor past the end of a session imported from pgusers 0.9, whose key has the old
# shape: such a key is looked up among imported sessions only) and record when it
# was last seen, but only when the stored expiry is more than
# min(60 s, TTL / 100) short of that or past it, so a busy session is written at
# most about once a minute; and commit that write without waiting for the WAL flush
# (losing a slide in a crash only shortens a session); if it has expired, delete it.
# The main SELECT sees the row as it was before either change. Each part matches
# the key parameters themselves, so every part is a primary-key lookup.
SESSION_CURRENT: Final = "s.generation = u.generation + t.generation AND NOT u.disabled"
"""A session row ``s`` of user ``u`` under settings ``t`` was not ended by a change
that raced its login (see OPEN_SESSION), and its user is not disabled."""

SESSION_ALIVE: Final = """s.expires_at > to_timestamp(%(now)s)
    AND coalesce(s.created_at + make_interval(secs => t.session_max_age)
                 > to_timestamp(%(now)s), true)
    AND coalesce(s.ends_at > to_timestamp(%(now)s), true)"""
"""A session row ``s`` under settings ``t`` has not expired: its sliding expiry, its
maximum age and an imported end are all ahead."""

CHECK_KEY: Final = """
    WITH looked AS (
        SELECT s.key, s.userid, s.session_id, s.expires_at, s.extra_data, u.username,
               u.admin, s.auth_methods, coalesce(s.authenticated_at, s.created_at)
                   AS authenticated_at,
               t.session_ttl, to_timestamp(%(now)s) AS now,
               least(to_timestamp(%(now)s) + make_interval(secs => t.session_ttl),
                     s.created_at + make_interval(secs => t.session_max_age),
                     s.ends_at) AS target,
               least(s.created_at + make_interval(secs => t.session_max_age),
                     s.ends_at) AS hard_end,
               {current} AS current,
               {alive} AS alive
        FROM {schema}.sessions s
        JOIN {schema}.users u ON u.userid = s.userid
        CROSS JOIN {settings} t
        WHERE s.key IN (%(key)s, %(stored)s) AND s.legacy = %(legacy)s
    ), found AS (
        SELECT *, expires_at NOT BETWEEN
                  target - make_interval(secs => least(60, session_ttl / 100)) AND target
                  AS slides
        FROM looked
    )
    SELECT current, alive, username, userid, extra_data, session_ttl, session_id,
           extract(epoch FROM CASE WHEN slides THEN target ELSE expires_at END)::float8,
           extract(epoch FROM hard_end)::float8, admin, array_to_string(auth_methods, ' '),
           extract(epoch FROM authenticated_at)::float8,
           CASE WHEN NOT (alive AND current) THEN {schema}.remove_session(key)
                WHEN slides THEN {schema}.slide_session(key, target, now)
           END
    FROM found
""".replace("{current}", SESSION_CURRENT).replace("{alive}", SESSION_ALIVE)
"""The per-request statement of both check_key and check_session: a plain SELECT that
slides the expiry, or removes a session that can no longer answer, by calling the
schema's functions (version 7) only when that is due. Besides the answer, it returns
what a session cache needs: the session id, its expiry as stored after this call,
and its hard end (the maximum age or an imported end; NULL for none); then what
check_session adds (the admin flag, how and when the user last proved who they
are: as text and a number, which cost the client less to read than an array and a
timestamp); its last column is what a function returned
(NULL when none ran). Settings come as ``{settings}``, which the planner knows to be
one row: it then keeps one generic plan for the statement, analysed tables or not,
instead of planning it again on every call."""

GRANTS_OF: Final = """(
        SELECT gs.roles || chr(31) || gs.permissions FROM {schema}.grant_sums gs
        WHERE gs.userid = found.userid AND gs.org_id IS NULL)"""
"""A user's roles and permissions everywhere, read from their sum (one row by its
key): the roles' names, a unit separator, then the permissions, each list sorted and
space-separated (the names hold no space); NULL for none."""

GRANTS_IN_ORG: Final = """(
        SELECT string_agg(gs.roles, ' ') || chr(31) || string_agg(gs.permissions, ' ')
        FROM {schema}.grant_sums gs
        WHERE gs.userid = found.userid AND {scope})"""
"""GRANTS_OF, with the sum in the organization asked about (a second row, whose names
may repeat the first's: the reader drops repetitions)."""

ORG_NAMED: Final = """(
            SELECT o.org_id FROM {schema}.orgs o
            WHERE o.org_id = %(org_id)s OR o.slug = %(org_slug)s)"""

IN_ORG: Final = "(gs.org_id IS NULL OR gs.org_id = {org})".replace("{org}", ORG_NAMED)

LAST_COLUMN: Final = "           CASE WHEN NOT (alive AND current)"

WITH_GRANTS: Final = """{grants},
           CASE WHEN NOT (alive AND current)"""

CHECK_SESSION: Final = CHECK_KEY.replace(LAST_COLUMN, WITH_GRANTS.replace("{grants}", GRANTS_OF))
"""CHECK_KEY, answering also the roles held everywhere and their permissions."""

CHECK_SESSION_IN_ORG: Final = CHECK_KEY.replace(
    LAST_COLUMN, WITH_GRANTS.replace("{grants}", GRANTS_IN_ORG).replace("{scope}", IN_ORG)
)
"""CHECK_SESSION for one organization: the roles held there too."""

# authorize(): check_session's answer, and, for a live session, the claims the
# schema's functions read (current_userid(), current_org(), has_permission()) set
# for the rest of the caller's transaction. For a key that is not live nothing is set.
CLAIMS: Final = """claims.grants,
           CASE WHEN alive AND current THEN concat(
               set_config('pgusers.userid', userid::text, true),
               set_config('pgusers.org_id', coalesce(claims.org_id::text, ''), true),
               set_config('pgusers.permissions',
                          coalesce(split_part(claims.grants, chr(31), 2), ''), true))
           END,
           CASE WHEN NOT (alive AND current)"""

CLAIMS_FROM: Final = """    FROM found CROSS JOIN LATERAL (
        SELECT {grants} AS grants, {org} AS org_id) AS claims
"""

AUTHORIZE: Final = CHECK_KEY.replace(LAST_COLUMN, CLAIMS).replace(
    "    FROM found\n",
    CLAIMS_FROM.replace("{grants}", GRANTS_OF).replace("{org}", "NULL::bigint"),
)

AUTHORIZE_IN_ORG: Final = CHECK_KEY.replace(LAST_COLUMN, CLAIMS).replace(
    "    FROM found\n",
    CLAIMS_FROM.replace("{grants}", GRANTS_IN_ORG)
    .replace("{scope}", IN_ORG)
    .replace("{org}", ORG_NAMED),
)

# Replace a live session's data. An expired or raced session is left for check_key
# to remove; the answer tells which it was. Processes that cache sessions hear of it.
SET_SESSION_DATA: Final = """
    WITH found AS (
        SELECT s.key, s.session_id, {current} AS current, {alive} AS alive
        FROM {schema}.sessions s
        JOIN {schema}.users u ON u.userid = s.userid
        CROSS JOIN {settings} t
        WHERE s.key IN (%(key)s, %(stored)s) AND s.legacy = %(legacy)s
    ), changed AS (
        UPDATE {schema}.sessions s SET extra_data = %(data)s::jsonb
        FROM found f
        WHERE s.key = f.key AND f.current AND f.alive
    ), notified AS (
        SELECT pg_notify({channel}, json_build_object(
                   'kind', 'session.data', 'session_id', f.session_id)::text)
        FROM found f WHERE f.current AND f.alive
    )
    SELECT current, alive FROM found WHERE (SELECT count(*) FROM notified) >= 0
""".replace("{current}", SESSION_CURRENT).replace("{alive}", SESSION_ALIVE)

SESSION_EXPIRY: Final = (
    "least(s.expires_at, s.created_at + make_interval(secs => t.session_max_age), s.ends_at)"
)
"""When a session ends unless it is used (the maximum age included)."""

# A session ended by a call that raced its login (see OPEN_SESSION) is not listed,
# though its row stays until check_key meets it or it expires. Once keys are kept
# hashed, the session id stands where the key was.
LIST_SESSIONS: Final = """
    SELECT u.username,
           CASE WHEN t.key_storage = 'hashed' THEN s.session_id ELSE s.key END AS key,
           {expiry} AS expiration
    FROM {schema}.sessions s
    JOIN {schema}.users u ON u.userid = s.userid
    CROSS JOIN {settings} t
    WHERE {where} AND s.generation = u.generation + t.generation
    ORDER BY s.expires_at, s.key
"""

SESSIONS: Final = """
    SELECT s.session_id, s.userid, u.username, s.created_at,
           coalesce(s.last_seen_at, s.created_at) AS last_seen_at, {expiry} AS expires_at,
           s.source, s.user_agent, s.key IN (%(key)s, %(stored)s) AS current
    FROM {schema}.sessions s
    JOIN {schema}.users u ON u.userid = s.userid
    CROSS JOIN {settings} t
    WHERE {where} AND s.generation = u.generation + t.generation
    ORDER BY s.userid, s.created_at, s.session_id
"""

# Deleting in batches keeps each transaction short, so a purge of a million
# expired sessions never holds locks that stall check_key for long. Ending live
# sessions also moves the generation of the user (or of the whole userspace) on, so
# that a login verifying a password at this moment opens no session that lives
# (see OPEN_SESSION). A session left behind that way is answered NOT_FOUND and
# removed by check_key, or purged once it expires. Each batch that ends sessions
# (and the first, which ends the racing logins) records one event with its count.
KILL_SESSIONS: Final = """
    WITH by_user AS (
        UPDATE {schema}.users SET generation = generation + 1
        WHERE userid = %(userid)s AND %(end_live)s
    ), by_space AS (
        UPDATE {schema}.settings SET generation = generation + 1
        WHERE %(userid)s = 0 AND %(end_live)s
    ), ended AS (
        DELETE FROM {schema}.sessions WHERE key IN (
            SELECT key FROM {schema}.sessions s WHERE {where} LIMIT %(batch)s
        )
        RETURNING 1
    ), happened AS (
        SELECT 'session.ended' AS kind, nullif(%(userid)s::bigint, 0) AS userid,
               NULL::text AS session_id,
               jsonb_build_object('how', %(how)s::text, 'count', count(*)) AS detail
        FROM ended HAVING count(*) > 0 OR (%(first)s AND %(end_live)s)
    ), {log}
    SELECT (SELECT count(*) FROM ended), {logged}
"""

KILL_BATCH: Final = 5000

SESSIONS_OF_USER: Final = "s.userid = %(userid)s"

SESSIONS_EXPIRED: Final = """(s.expires_at <= to_timestamp(%(now)s)
    OR s.created_at <= to_timestamp(%(now)s)
                       - make_interval(secs => (SELECT session_max_age FROM {schema}.settings)))"""

ONE_SESSION_ENDED: Final = """happened AS (
        SELECT 'session.ended' AS kind, userid, session_id,
               jsonb_build_object('how', 'end_session', 'count', 1) AS detail
        FROM ended
    ), {log}
    SELECT (SELECT count(*) FROM ended), {logged}
"""
"""The rest of a statement that ends one session (the CTE ``ended``, returning its
user and id): its event, and the count."""

END_SESSION: Final = """
    WITH ended AS (
        DELETE FROM {schema}.sessions WHERE session_id = %(session_id)s
        RETURNING userid, session_id
    ), {one_ended}""".replace("{one_ended}", ONE_SESSION_ENDED)

# Logging out: the live session a key opened ends, found by the key itself (one
# statement, where finding its id among the user's sessions and ending that took
# two). An expired or raced session is left for check_key, as by end_session's
# callers before.
END_KEY_SESSION: Final = (
    """
    WITH ended AS (
        DELETE FROM {schema}.sessions s
        USING {schema}.users u, {settings} t
        WHERE s.key IN (%(key)s, %(stored)s) AND s.legacy = %(legacy)s
          AND u.userid = s.userid AND {current} AND {alive}
        RETURNING s.userid, s.session_id
    ), {one_ended}""".replace("{current}", SESSION_CURRENT)
    .replace("{alive}", SESSION_ALIVE)
    .replace("{one_ended}", ONE_SESSION_ENDED)
)

# "Log out everywhere else": the user's generation moves on (so a login being
# verified at this moment opens no session that lives, see OPEN_SESSION) and the
# current session moves with it, so it alone stays.
END_OTHER_SESSIONS: Final = """
    WITH mine AS (
        SELECT s.key, s.userid, s.session_id
        FROM {schema}.sessions s
        JOIN {schema}.users u ON u.userid = s.userid
        CROSS JOIN {settings} t
        WHERE s.key IN (%(key)s, %(stored)s) AND {current} AND {alive}
    ), moved AS (
        UPDATE {schema}.users u SET generation = u.generation + 1
        FROM mine c WHERE u.userid = c.userid
    ), kept AS (
        UPDATE {schema}.sessions s SET generation = s.generation + 1
        FROM mine c WHERE s.key = c.key
    ), ended AS (
        DELETE FROM {schema}.sessions s USING mine c
        WHERE s.userid = c.userid AND s.key <> c.key
        RETURNING 1
    ), happened AS (
        SELECT 'session.ended' AS kind, userid, session_id,
               jsonb_build_object('how', 'end_other_sessions', 'count',
                                  (SELECT count(*) FROM ended)) AS detail
        FROM mine
    ), {log}
    SELECT (SELECT count(*) FROM ended), {logged}
""".replace("{current}", SESSION_CURRENT).replace("{alive}", SESSION_ALIVE)

# Switching to hashed keys: under a SHARE lock on sessions, which waits for every
# statement writing sessions (a login's insert among them) to finish and holds new
# ones back until the commit, so no login that read the old mode can insert a plain
# key after the switch. Then the stored keys are converted in batches, in key
# order; check_key finds a key in either form meanwhile.
LOCK_SESSIONS: Final = "LOCK TABLE {schema}.sessions IN SHARE MODE"

HASH_KEYS: Final = """
    WITH changed AS (
        UPDATE {schema}.settings SET key_storage = 'hashed'
        WHERE key_storage <> 'hashed' RETURNING 1
    ), happened AS (
        SELECT 'settings.changed' AS kind, NULL::bigint AS userid, NULL::text AS session_id,
               jsonb_build_object('key_storage', 'hashed') AS detail
        FROM changed
    ), {log}
    SELECT {logged}
"""

KEY_STORAGE: Final = "SELECT key_storage FROM {schema}.settings"

CONVERT_KEYS: Final = """
    WITH batch AS (
        SELECT key FROM {schema}.sessions
        WHERE key > %(after)s AND NOT starts_with(key, %(prefix)s)
        ORDER BY key LIMIT %(batch)s
        FOR UPDATE
    ), converted AS (
        UPDATE {schema}.sessions s
        SET key = %(prefix)s || encode(sha256(convert_to(s.key, 'UTF8')), 'hex')
        FROM batch b WHERE s.key = b.key
        RETURNING 1
    )
    SELECT (SELECT count(*) FROM converted), (SELECT max(key) FROM batch)
"""

CONVERT_BATCH: Final = 5000

KEY_STORAGE_MODES: Final = ("plain", "hashed")


class SessionsPart(Part):
    """The operations on sessions."""

    @retry_safe
    def check_key(self, key: object) -> Operation[CheckResult]:
        text = checks.session_key(key)
        return self._check_key(text)

    def _check_key(self, key: str) -> Operation[CheckResult]:
        info = yield from self._check_session(key, None)
        return info.checked()

    @retry_safe
    def check_session(self, key: object, org: object = None) -> Operation[SessionInfo]:
        text = checks.session_key(key)
        scope = checks.org(org)
        return self._check_session(text, scope)

    def authorize(self, key: object, org: object = None) -> Operation[SessionInfo]:
        text = checks.session_key(key)
        return self._check_session(text, checks.org(org), claims=True)

    def _check_session(
        self, key: str, scope: dict[str, Any] | None, *, claims: bool = False
    ) -> Operation[SessionInfo]:
        """check_key's statement (``scope`` None) or check_session's, which answers the
        roles too: everywhere, or in the organization ``scope`` names as well; with
        ``claims``, authorize's, which also sets them for the caller's transaction."""
        legacy = looks_like_legacy_key(key)
        if not (legacy or looks_like_session_key(key)):
            return NO_SESSION_INFO
        params = {"key": key, "stored": stored_form(key), "legacy": legacy, "now": time.time()}
        epoch = 0 if self.cache is None else self.cache.epoch
        if scope is None:
            template = CHECK_KEY
        elif scope["org_given"]:
            template = AUTHORIZE_IN_ORG if claims else CHECK_SESSION_IN_ORG
            params = {**params, **scope}
        else:
            template = AUTHORIZE if claims else CHECK_SESSION
        row = yield Execute(self._sql(template), params)
        if row is None:
            return NO_SESSION_INFO
        (current, alive, username, userid, extra_data, ttl, session_id, expiry, hard_end,
         admin, methods, proved) = row[:12]  # fmt: skip
        self.ttl = ttl
        if not current:  # ended by a call that raced its login
            return NO_SESSION_INFO
        if not alive:
            return SessionInfo(EXPIRED, None, None, None)
        held, _, granted = (row[12] if scope is not None and row[12] else "").partition("\x1f")
        in_org = scope is not None and scope["org_given"]
        result = SessionInfo(
            OK,
            username,
            userid,
            self._decode(extra_data),
            admin,
            session_id,
            tuple(methods.split()),
            proved,
            tuple(sorted(set(held.split()))) if in_org else tuple(held.split()),
            tuple(sorted(set(granted.split()))) if in_org else tuple(granted.split()),
        )
        if self.cache is not None and not claims and (scope is None or not scope["org_given"]):
            self.cache.keep(
                key,
                result,
                session_id=session_id,
                stored_expiry=expiry,
                hard_end=hard_end,
                ttl=ttl,
                epoch=epoch,
                full=scope is not None,
            )
        return result

    def cached(self, key: object) -> CheckResult | None:
        """check_key's answer from the session cache, when it may be served now."""
        if self.cache is None or not isinstance(key, str):
            return None
        info = self.cache.get(key)
        return None if info is None else info.checked()

    def cached_session(self, key: object) -> SessionInfo | None:
        """check_session's answer from the session cache, when it may be served now."""
        if self.cache is None or not isinstance(key, str):
            return None
        return self.cache.get(key, full=True)

    @retry_safe  # writing the same data twice leaves what writing it once does
    def set_session_data(self, key: object, data: object) -> Operation[Status]:
        text = checks.session_key(key)
        return self._set_session_data(text, self.codec.dumps(data))

    def _set_session_data(self, key: str, data: str | None) -> Operation[Status]:
        if not could_be_stored(key):
            return NOT_FOUND
        params = {
            "key": key,
            "stored": stored_form(key),
            "legacy": looks_like_legacy_key(key),
            "data": data,
            "now": time.time(),
        }
        row = yield Execute(self._sql(SET_SESSION_DATA), params)
        if self.cache is not None:
            self.cache.forget_key(key)
        if row is None or not row[0]:
            return NOT_FOUND
        return OK if row[1] else EXPIRED

    def _session_filter(self, uid: object, expired: object) -> tuple[str, dict[str, Any]]:
        userid = checks.userid(uid, allow_all=True)
        only_expired = checks.flag(expired, "expired")
        fragments = []
        if userid:
            fragments.append(SESSIONS_OF_USER)
        if only_expired:
            fragments.append(SESSIONS_EXPIRED)
        params = {
            "userid": userid,
            "batch": KILL_BATCH,
            "end_live": not only_expired,
            "how": "purge" if only_expired else "kill_sessions",
            **recording.parameters(time.time()),
        }
        return conjunction(fragments), params

    @retry_safe
    def list_sessions(self, uid: object, expired: object) -> Query[SessionRow]:
        where, params = self._session_filter(uid, expired)
        query = self._sql(LIST_SESSIONS, where=where, expiry=SESSION_EXPIRY)
        return Query(query, params, _session_row)

    @retry_safe
    def sessions(self, uid: object, expired: object, key: object) -> Query[Session]:
        where, params = self._session_filter(uid, expired)
        text = None if key is None else checks.session_key(key)
        if text is None or not could_be_stored(text):  # no session is the current one
            params.update(key=None, stored=None)
        else:
            params.update(key=text, stored=stored_form(text))
        query = self._sql(SESSIONS, where=where, expiry=SESSION_EXPIRY)
        return Query(query, params, _session)

    @retry_safe
    def kill_sessions(self, uid: object, expired: object) -> Operation[int]:
        where, params = self._session_filter(uid, expired)
        query = self._sql(KILL_SESSIONS, where=where, **LOGS)
        return self._in_batches(query, params, KILL_BATCH)

    @retry_safe
    def end_session(self, session_id: object) -> Operation[int]:
        text = checks.text(session_id, "session_id", MAX_SOURCE)
        params = {"session_id": text, **recording.parameters(time.time())}
        return self._end_session(params)

    def _end_session(self, params: dict[str, Any]) -> Operation[int]:
        if not SESSION_ID_SHAPE.fullmatch(params["session_id"]):
            return 0
        return (yield from self._count(self._sql(END_SESSION, **LOGS), params))

    @retry_safe
    def end_key_session(self, key: object) -> Operation[int]:
        """End the live session ``key`` opened: 1, or 0 when it has none (the facades'
        ``logout``)."""
        text = checks.session_key(key)
        return self._end_key_session(text)

    def _end_key_session(self, key: str) -> Operation[int]:
        if not could_be_stored(key):
            return 0
        params = {
            "key": key,
            "stored": stored_form(key),
            "legacy": looks_like_legacy_key(key),
            **recording.parameters(time.time()),
        }
        return (yield from self._count(self._sql(END_KEY_SESSION, **LOGS), params))

    @retry_safe
    def end_other_sessions(self, key: object) -> Operation[int]:
        text = checks.session_key(key)
        return self._end_other_sessions(text)

    def _end_other_sessions(self, key: str) -> Operation[int]:
        if not could_be_stored(key):
            return 0
        params = {"key": key, "stored": stored_form(key), **recording.parameters(time.time())}
        return (yield from self._count(self._sql(END_OTHER_SESSIONS, **LOGS), params))

    @retry_safe  # converting is idempotent; a second switch finds it done
    def set_session_key_storage(
        self, mode: object, progress: Callable[[int], object] | None
    ) -> Operation[int]:
        if not isinstance(mode, str) or mode not in KEY_STORAGE_MODES:
            modes = " or ".join(map(repr, KEY_STORAGE_MODES))
            raise BadCallError(f"key storage must be {modes}")
        if progress is not None and not callable(progress):
            raise BadCallError("progress must be a callable taking the count converted so far")
        return self._set_key_storage(mode, progress, recording.parameters(time.time()))

    def _set_key_storage(
        self, mode: str, progress: Callable[[int], object] | None, params: dict[str, Any]
    ) -> Operation[int]:
        if mode == "plain":
            (current,) = yield Execute(self._sql(KEY_STORAGE))
            if current != "plain":
                raise BadCallError(
                    "session keys are kept hashed; that cannot be undone (the keys "
                    "themselves are no longer stored)"
                )
            return 0
        yield Execute(BEGIN, fetch=Fetch.ROWCOUNT)
        yield Execute(self._sql(LOCK_SESSIONS), fetch=Fetch.ROWCOUNT)
        (events,) = yield Execute(self._sql(HASH_KEYS, **LOGS), params)
        yield Execute(COMMIT, fetch=Fetch.ROWCOUNT)
        recording.emit(events)
        converted, after = 0, ""
        batch = {"prefix": STORED_PREFIX, "batch": CONVERT_BATCH}
        while True:
            count, last = yield Execute(self._sql(CONVERT_KEYS), {**batch, "after": after})
            if last is None:
                return converted
            converted += count
            after = last
            if progress is not None:
                progress(converted)


def _session_row(row: tuple[str, str, datetime]) -> SessionRow:
    username, key, expires_at = row
    return SessionRow(username, key, expires_at.timestamp())


def _session(row: tuple[Any, ...]) -> Session:
    session_id, userid, username, created, seen, expires, source, agent, current = row
    return Session(
        session_id,
        userid,
        username,
        created.timestamp(),
        seen.timestamp(),
        expires.timestamp(),
        source,
        agent,
        bool(current),
    )
