"""Logins: checking a password, throttling failures, opening the session a
login earns, and changing a password.

Failures are counted per *subject*: a login name, a name from one source (the
*pair*), or a source; the statements below share the fragments that name them.
"""

import time
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Final

from psycopg import errors as pgerrors
from psycopg.types.json import Jsonb

from pgusers._core import checks, identities, recording
from pgusers._core.base import LOGS, RECORD_EVENT, Part, Query
from pgusers._core.keys import digest, new_session_key, new_token, stored_form
from pgusers._core.retries import retry_safe
from pgusers._core.steps import Execute, Offload, Operation
from pgusers._errors import BadCallError
from pgusers._results import (
    DISABLED,
    FAILED_LOGIN,
    MFA_REQUIRED,
    NOT_FOUND,
    OK,
    REJECTED,
    REJECTED_LOGIN,
    THROTTLED,
    LoginFailureRow,
    LoginOutcome,
    LoginResult,
    Status,
)

NAME_SUBJECT: Final = "name:"

PAIR_SUBJECT: Final = "pair:"

SOURCE_SUBJECT: Final = "source:"
"""How the failure counts of a login name, of a name from one source (``pair:`` name,
the unit separator chr(31), source) and of a source are told apart in login_failures."""

PAIR_SEPARATOR: Final = "\x1f"

NAME_PART: Final = """(CASE
    WHEN EXISTS (SELECT 1 FROM {schema}.users WHERE username_key = %(name_key)s)
    THEN %(name_key)s
    ELSE chr(30) || encode(sha256(
        (SELECT failure_key FROM {schema}.settings) || convert_to(%(name_key)s, 'UTF8')), 'hex')
END)"""
"""How a login name (``%(name_key)s``) stands in its failure counts: as itself when a
user has it, else as chr(30) and a digest keyed with the userspace's failure_key, so
that a password typed into the name box is never stored or listed."""

NAME_COUNT: Final = "(%(name_prefix)s || " + NAME_PART + ")"
"""The subject of a login name's failures from every source."""

PAIR_COUNT: Final = (
    "(%(pair_prefix)s || " + NAME_PART + " || chr(31) || coalesce(%(source)s::text, ''))"
)
"""The subject of a login name's failures from ``%(source)s`` (all calls without a
source share one)."""


def counted(template: str) -> str:
    """``template`` with its ``{name_count}`` and ``{pair_count}`` put in place."""
    return template.replace("{name_count}", NAME_COUNT).replace("{pair_count}", PAIR_COUNT)


def failures_of_name(name: str) -> str:
    """SQL: row ``f`` of login_failures counts against the login name ``name`` (an SQL
    expression), from all sources or from one."""
    return (
        f"(f.subject = %(name_prefix)s || {name}"
        f" OR starts_with(f.subject, %(pair_prefix)s || {name} || chr(31)))"
    )


FACTORS_DUE: Final = """ARRAY(SELECT DISTINCT f.kind FROM {schema}.factors f
                     WHERE f.userid = u.userid AND f.confirmed_at IS NOT NULL
                     ORDER BY f.kind) AS factor_kinds,
               EXISTS (SELECT 1 FROM {schema}.recovery_codes c WHERE c.userid = u.userid)
                   AS has_codes"""
"""Two columns of the user ``u``: the kinds of their confirmed second factors, and
whether they hold recovery codes (see :func:`factors_due`)."""


def factors_due(kinds: list[str], has_codes: bool) -> tuple[str, ...]:
    """What a user whose sign-in needs a second step can answer with (FACTORS_DUE's
    columns): their factors' kinds, and recovery codes when they hold some."""
    return (*kinds, "recovery_code") if has_codes else tuple(kinds)


# One row whether or not the user exists: the throttle is the same for both. It
# answers how many seconds this attempt must still wait. Failures are counted per
# login name from this source (the pair), per login name from every source, and per
# source (see RECORD_FAILURE). A pair with free_failures or more failures (counted
# until a day passes without one) waits from its last failure 1 s, doubled with each
# further failure, up to max_backoff. A name with NAME_CEILING times as many, from
# all sources together, waits the same way, but only for sources that have failed
# for that name themselves: a stranger's guesses never refuse the user's own correct
# password from a source that never failed. A source with source_limit failures
# within source_window waits source_block from its last failure. A throttled
# attempt is recorded here.
LOGIN_LOOKUP: Final = counted("""
    WITH looked AS (
        SELECT u.userid, u.password_hash, u.generation AS user_generation,
               t.generation AS space_generation, u.disabled,
               greatest(0, extract(epoch FROM (
                   SELECT max({until}) FROM {schema}.login_failures f
                   WHERE f.subject IN ({pair_count}, %(source_subject)s)
                      OR (f.subject = {name_count} AND EXISTS (
                          SELECT 1 FROM {schema}.login_failures p
                          WHERE p.subject = {pair_count}))
               ) - to_timestamp(%(now)s)))::float8 AS wait,
               EXISTS (
                   SELECT 1 FROM {schema}.users
                   WHERE starts_with(password_hash, '$pbkdf2-sha512$')
               ) AS legacy_present,
               {factors_due}
        FROM {settings} t
        LEFT JOIN {schema}.users u ON u.username_key = %(name_key)s
    ), happened AS (
        SELECT 'login.throttled' AS kind, userid, NULL::text AS session_id,
               jsonb_build_object('retry_after', wait) AS detail
        FROM looked
        -- A refusal changes nothing, so its event does not wait for the WAL flush
        -- (a crash may lose it), and one a minute per user and source is recorded:
        -- the throttle stays cheap, and the events table small, under a flood.
        WHERE wait > 0 AND set_config('synchronous_commit', 'off', true) IS NOT NULL
          AND NOT EXISTS (
              SELECT 1 FROM {schema}.events e
              WHERE e.kind = 'login.throttled'
                AND e.at > to_timestamp(%(now)s) - interval '1 minute'
                AND e.userid IS NOT DISTINCT FROM looked.userid
                AND e.source IS NOT DISTINCT FROM %(event_source)s::text)
    ), {log}
    SELECT userid, password_hash, user_generation, space_generation, disabled, wait,
           legacy_present, factor_kinds, has_codes, {logged}
    FROM looked
""").replace("{factors_due}", FACTORS_DUE)

THROTTLE_WAIT: Final = counted("""greatest(0, extract(epoch FROM (
        SELECT max({until}) FROM {schema}.login_failures f
        WHERE f.subject IN ({pair_count}, %(source_subject)s)
           OR (f.subject = {name_count} AND EXISTS (
               SELECT 1 FROM {schema}.login_failures p WHERE p.subject = {pair_count}))
    ) - to_timestamp(%(now)s)))::float8""")
"""How long the login name ``%(name_key)s`` from ``%(source)s`` must still wait, as
LOGIN_LOOKUP computes it."""

LIVE_SESSION: Final = """s.key IN (%(key)s, %(stored)s) AND s.legacy = %(legacy)s
      AND s.generation = u.generation + t.generation AND NOT u.disabled
      AND s.expires_at > to_timestamp(%(now)s)
      AND coalesce(s.created_at + make_interval(secs => t.session_max_age)
                   > to_timestamp(%(now)s), true)
      AND coalesce(s.ends_at > to_timestamp(%(now)s), true)"""
"""Row ``s`` of sessions is the live session of the key ``%(key)s`` (stored as given or
as ``%(stored)s``), row ``u`` its user and ``t`` the settings."""

NAME_CEILING: Final = 20
"""How many times free_failures a login name may fail from all sources together
before the sources that failed for it wait too."""

THROTTLED_UNTIL: Final = """CASE
    WHEN starts_with(f.subject, %(pair_prefix)s) AND f.failures >= t.free_failures
    THEN f.last_at + make_interval(
        secs => least(power(2, greatest(f.failures - t.free_failures, 0)), t.max_backoff))
    WHEN starts_with(f.subject, %(name_prefix)s) AND f.failures >= t.free_failures * {ceiling}
    THEN f.last_at + make_interval(secs => least(
        power(2, greatest(f.failures - t.free_failures * {ceiling}, 0)), t.max_backoff))
    WHEN starts_with(f.subject, %(source_prefix)s) AND f.failures >= t.source_limit
    THEN f.last_at + make_interval(secs => t.source_block)
END""".replace("{ceiling}", str(NAME_CEILING))
"""Until when the failures of row ``f`` throttle, under the policy in ``t``: LOGIN_LOOKUP's
and LIST_LOGIN_FAILURES' {until}."""

# A failed login (or a wrong answer to a second factor) counts once against its name
# from its source, once against its name, and once against its source, each in one
# atomic upsert, so failures at the same moment are all counted. A name's count
# starts again after a day without failures, a source's when its window has passed.
# Rows a day past their last failure no longer throttle anything (the policy's
# durations are at most a day) and go, a few at a time, as part of this statement.
# The attempt's name is recorded only as the userid of an existing user: a name that
# matches no user may be a password typed into the wrong field. The event's kind and
# reason are parameters; {also} may add a step of the caller's (a CTE and a comma).
RECORD_FAILURE: Final = counted("""
    WITH policy AS (
        SELECT source_window, to_timestamp(%(now)s) AS now FROM {schema}.settings
    ), counted AS (
        INSERT INTO {schema}.login_failures AS f (subject, failures, window_start, last_at)
        SELECT subject, 1, p.now, p.now
        FROM policy p,
             unnest(ARRAY[{pair_count}, {name_count}, %(source_subject)s]::text[])
                 AS subject
        WHERE subject IS NOT NULL
        ON CONFLICT (subject) DO UPDATE SET
            failures = CASE WHEN {restart} THEN 1 ELSE f.failures + 1 END,
            window_start = CASE WHEN {restart} THEN excluded.last_at ELSE f.window_start END,
            last_at = excluded.last_at
        RETURNING 1
    ), tidied AS (
        DELETE FROM {schema}.login_failures WHERE subject IN (
            SELECT subject FROM {schema}.login_failures, policy p
            WHERE last_at < p.now - interval '1 day'
            LIMIT 100
        )
    ), {also}happened AS (
        SELECT %(failure_kind)s::text AS kind, %(userid)s::bigint AS userid,
               NULL::text AS session_id,
               jsonb_build_object('reason', %(failure_reason)s::text) AS detail
    ), {log}
    SELECT (SELECT count(*) FROM counted), {logged}
""")

COUNT_RESTARTS: Final = """(CASE WHEN starts_with(f.subject, %(source_prefix)s)
    THEN f.window_start < excluded.last_at
                          - make_interval(secs => (SELECT source_window FROM policy))
    ELSE f.last_at < excluded.last_at - interval '1 day' END)"""
"""Whether a failure starts its subject's count again: RECORD_FAILURE's {restart}."""

UPGRADE_HASH: Final = """upgrade AS (  -- a stale hash, verified just now, replaced
        UPDATE {schema}.users SET password_hash = %(new_hash)s::text
        WHERE userid = %(userid)s AND password_hash = %(old_hash)s
          AND %(new_hash)s::text IS NOT NULL
    )"""
"""The step of a login that replaces the hash the password was verified against with
an up-to-date one (``%(new_hash)s``; none when it is current)."""

SESSION_CAP: Final = """capped AS (  -- past the cap, the oldest sessions make room for the new one
        DELETE FROM {schema}.sessions WHERE key IN (
            SELECT r.key FROM (
                SELECT s.key, row_number() OVER (
                           ORDER BY s.created_at DESC, s.session_id DESC) AS newer
                FROM {schema}.sessions s WHERE s.userid = (SELECT userid FROM opened)
            ) r CROSS JOIN {settings} t
            WHERE r.newer >= t.sessions_per_user
        )
        RETURNING userid
    )"""
"""The step of a statement that opens a session (CTE ``opened``) which ends the user's
oldest sessions past sessions_per_user; CAPPED_EVENT is its event."""

CAPPED_EVENT: Final = """SELECT 'session.ended', min(userid), NULL,
               jsonb_build_object('how', 'sessions_per_user', 'count', count(*))
        FROM capped HAVING count(*) > 0"""

CLEARED_ON_SUCCESS: Final = counted("""cleared AS (  -- a success forgets the name's failures
        DELETE FROM {schema}.login_failures
        WHERE subject IN ({name_count}, {pair_count}) AND EXISTS (SELECT 1 FROM opened)
    )""")
"""The step of a statement that opens a session (CTE ``opened``) which forgets the
failures of its login name, from every source and from this one."""

OPENED_ANSWER: Final = """SELECT EXISTS (SELECT 1 FROM opened),
           (SELECT u.admin FROM opened o JOIN {schema}.users u ON u.userid = o.userid),
           {logged}"""
"""What a statement that opens a session answers: whether it did, and the user's
admin flag, read by the same statement."""

# A login verifies the password between LOGIN_LOOKUP and this statement, which takes
# a tenth of a second or more. The session is opened only if, meanwhile, the password
# hash did not change and no call ended the user's sessions (the user's generation)
# or everyone's (the userspace's generation); the admin flag returned is read by
# this same statement. A session records the sum of both generations, and check_key
# accepts it only while the sum is unchanged: both only grow, so the sum moves with
# either. That also ends a session whose insert races a call ending sessions, which
# the DELETE of that call cannot see. The key is stored as given, or as its digest
# once the userspace keeps keys hashed (%(stored)s).
OPEN_SESSION: Final = (
    counted("""
    WITH {upgrade}, opened AS (
        INSERT INTO {schema}.sessions (
            key, userid, created_at, last_seen_at, expires_at, extra_data, generation,
            source, user_agent
        )
        SELECT CASE WHEN t.key_storage = 'hashed' THEN %(stored)s ELSE %(key)s END,
               u.userid, to_timestamp(%(now)s), to_timestamp(%(now)s),
               to_timestamp(%(now)s)
                   + make_interval(secs => least(t.session_ttl, t.session_max_age)),
               %(extra_data)s::jsonb, u.generation + t.generation, %(source)s, %(user_agent)s
        FROM {schema}.users u CROSS JOIN {settings} t
        WHERE u.userid = %(userid)s AND u.password_hash = %(old_hash)s AND NOT u.disabled
          AND u.generation = %(user_generation)s AND t.generation = %(space_generation)s
        RETURNING userid, session_id
    ), {cap}, {cleared}, happened AS (
        SELECT 'login.succeeded' AS kind, userid, session_id,
               jsonb_strip_nulls(jsonb_build_object('user_agent', %(user_agent)s::text))
                   AS detail
        FROM opened
        UNION ALL
        {capped_event}
        UNION ALL
        SELECT 'login.failed', %(userid)s::bigint, NULL,
               jsonb_build_object('reason', 'sessions ended meanwhile')
        WHERE NOT EXISTS (SELECT 1 FROM opened)
    ), {log}
    {opened_answer}
""")
    .replace("{upgrade}", UPGRADE_HASH)
    .replace("{cap}", SESSION_CAP)
    .replace("{cleared}", CLEARED_ON_SUCCESS)
    .replace("{opened_answer}", OPENED_ANSWER)
    .replace("{capped_event}", CAPPED_EVENT)
)

TICKET_LIFETIME: Final = 300.0
"""Seconds a login's ticket waits for its second factor."""

TICKET_ATTEMPTS: Final = 5
"""Wrong answers a ticket takes before it is spent."""

TICKETS_PER_USER: Final = 5
"""Tickets a user has at most: a newer login's replaces the oldest."""

NEW_SESSION: Final = """INSERT INTO {schema}.sessions (
            key, userid, created_at, last_seen_at, expires_at, extra_data, generation,
            source, user_agent, auth_methods, authenticated_at
        )
        SELECT CASE WHEN t.key_storage = 'hashed' THEN %(stored)s ELSE %(key)s END,
               {who}, to_timestamp(%(now)s), to_timestamp(%(now)s),
               to_timestamp(%(now)s)
                   + make_interval(secs => least(t.session_ttl, t.session_max_age)),
               %(extra_data)s::jsonb, {generation}, %(source)s, %(user_agent)s, {methods},
               to_timestamp(%(now)s)"""


def new_session(who: str, generation: str, methods: str) -> str:
    """SQL: the INSERT of a session that proved itself just now with ``methods`` (an
    SQL array), for the user ``who`` under ``generation``; its FROM clause must name
    the settings as ``t``."""
    return (
        NEW_SESSION.replace("{who}", who)
        .replace("{generation}", generation)
        .replace("{methods}", methods)
    )


PROVEN_STEPS: Final = (
    """opened AS (
        {new_session}
        FROM proven p CROSS JOIN {settings} t
        WHERE NOT %(ticket_due)s
        RETURNING userid, session_id
    ), issued AS (
        INSERT INTO {schema}.login_tickets (
            digest, userid, name_key, password_digest, generation, expires_at, source,
            user_agent, extra_data, first_method
        )
        SELECT %(ticket)s, p.userid, p.username_key,
               sha256(convert_to(p.password_hash, 'UTF8')), p.gen,
               to_timestamp(%(now)s) + make_interval(secs => %(lifetime)s),
               %(source)s, %(user_agent)s, %(extra_data)s::jsonb, %(method)s
        FROM proven p WHERE %(ticket_due)s
        RETURNING userid
    )"""
).replace("{new_session}", new_session("p.userid", "p.gen", "ARRAY[%(method)s::text]"))
"""The steps of a sign-in proven by other means than a password (another site, a
mailed link or code), after a CTE ``proven`` (the user, their name key, password hash
and generations): a session, or, when a second factor is due (``%(ticket_due)s``), a
ticket for complete_login that remembers ``%(method)s``."""


PROVEN_EVENTS: Final = (
    """SELECT 'login.succeeded', userid, session_id,
               jsonb_strip_nulls(jsonb_build_object(
                   'user_agent', %(user_agent)s::text, 'method', %(method)s::text))
        FROM opened
        UNION ALL
        SELECT 'login.mfa_required', userid, NULL,
               jsonb_build_object('method', %(method)s::text)
        FROM issued
        UNION ALL
        {capped_event}"""
).replace("{capped_event}", CAPPED_EVENT)
"""The events of PROVEN_STEPS (and of SESSION_CAP), for a ``happened`` CTE's union."""


TICKET_ROOM: Final = """crowded AS (  -- a user keeps at most %(kept)s tickets
        DELETE FROM {schema}.login_tickets WHERE digest IN (
            SELECT digest FROM {schema}.login_tickets
            WHERE userid = (SELECT userid FROM issued)
            ORDER BY expires_at DESC OFFSET %(kept)s
        )
    ), tidied AS (  -- spent and expired tickets go a few at a time
        DELETE FROM {schema}.login_tickets WHERE digest IN (
            SELECT digest FROM {schema}.login_tickets
            WHERE expires_at < to_timestamp(%(now)s) LIMIT 100
        )
    )"""
"""The steps of a statement that issues a ticket (CTE ``issued``) which keep the
tickets few."""

# The password was right and a second factor is due: instead of a session, the login
# leaves a ticket (its digest) that complete_login turns into one. It holds what the
# session will need and what it was issued under: the login name (for the throttle),
# the digest of the password hash and the sum of the generations, so that a password
# changed, a user disabled or sessions ended meanwhile voids it (see OPEN_SESSION).
# A stale hash is upgraded here as on any login. Spent and expired tickets go a few
# at a time, and a user keeps at most TICKETS_PER_USER.
OPEN_TICKET: Final = """
    WITH {upgrade}, issued AS (
        INSERT INTO {schema}.login_tickets (
            digest, userid, name_key, password_digest, generation, expires_at, source,
            user_agent, extra_data
        )
        SELECT %(ticket)s, u.userid, %(name_key)s,
               sha256(convert_to(coalesce(%(new_hash)s::text, u.password_hash), 'UTF8')),
               u.generation + t.generation,
               to_timestamp(%(now)s) + make_interval(secs => %(lifetime)s),
               %(source)s, %(user_agent)s, %(extra_data)s::jsonb
        FROM {schema}.users u CROSS JOIN {settings} t
        WHERE u.userid = %(userid)s AND u.password_hash = %(old_hash)s AND NOT u.disabled
          AND u.generation = %(user_generation)s AND t.generation = %(space_generation)s
        RETURNING userid
    ), {ticket_room}, happened AS (
        SELECT 'login.mfa_required' AS kind, userid, NULL::text AS session_id,
               jsonb_strip_nulls(jsonb_build_object('user_agent', %(user_agent)s::text))
                   AS detail
        FROM issued
        UNION ALL
        SELECT 'login.failed', %(userid)s::bigint, NULL,
               jsonb_build_object('reason', 'sessions ended meanwhile')
        WHERE NOT EXISTS (SELECT 1 FROM issued)
    ), {log}
    SELECT EXISTS (SELECT 1 FROM issued), {logged}
""".replace("{upgrade}", UPGRADE_HASH).replace("{ticket_room}", TICKET_ROOM)

# Clearing a name clears its counts from every source; clearing a source, every
# name's count from it.
CLEAR_LOGIN_FAILURES: Final = counted("""
    WITH cleared AS (
        DELETE FROM {schema}.login_failures f
        WHERE f.subject IN ({name_count}, %(source_subject)s)
           OR (%(name_key)s::text IS NOT NULL AND {of_name})
           OR (%(source)s::text IS NOT NULL AND starts_with(f.subject, %(pair_prefix)s)
               AND right(f.subject, length(%(source)s) + 1) = chr(31) || %(source)s)
        RETURNING subject
    ), happened AS (
        SELECT 'login_failures.cleared' AS kind, NULL::bigint AS userid, NULL::text AS session_id,
               jsonb_build_object('subjects', jsonb_agg(subject ORDER BY subject)) AS detail
        FROM cleared HAVING count(*) > 0
    ), {log}
    SELECT (SELECT count(*) FROM cleared), {logged}
""").replace("{of_name}", failures_of_name(NAME_PART))

LIST_LOGIN_FAILURES: Final = """
    SELECT f.subject, f.failures, f.last_at,
           greatest(0, extract(epoch FROM {until} - to_timestamp(%(now)s)))::float8
    FROM {schema}.login_failures f CROSS JOIN {settings} t
    WHERE f.last_at >= to_timestamp(%(now)s) - interval '1 day'
      AND position(chr(30) IN f.subject) = 0  -- names of no user are not shown
    ORDER BY f.last_at DESC, f.subject
"""

SET_LOGIN_POLICY: Final = """
    WITH changed AS (
        UPDATE {schema}.settings SET
            free_failures = coalesce(%(free_failures)s, free_failures),
            max_backoff = coalesce(%(max_backoff)s, max_backoff),
            source_limit = coalesce(%(source_limit)s, source_limit),
            source_window = coalesce(%(source_window)s, source_window),
            source_block = coalesce(%(source_block)s, source_block),
            admins_need_mfa = coalesce(%(admins_need_mfa)s, admins_need_mfa)
        RETURNING 1
    ), happened AS (
        SELECT 'settings.changed' AS kind, NULL::bigint AS userid, NULL::text AS session_id,
               jsonb_strip_nulls(jsonb_build_object(
                   'free_failures', %(free_failures)s::integer,
                   'max_backoff', %(max_backoff)s::float8,
                   'source_limit', %(source_limit)s::integer,
                   'source_window', %(source_window)s::float8,
                   'source_block', %(source_block)s::float8,
                   'admins_need_mfa', %(admins_need_mfa)s::boolean)) AS detail
        FROM changed
    ), {log}
    SELECT {logged}
"""

PASSWORD_HASH: Final = "SELECT password_hash FROM {schema}.users WHERE userid = %s"

# %(old_hash)s guards against a concurrent change between reading and writing.
# Ending the sessions also moves the user's generation on, which ends any session a
# racing login is committing at this moment (see OPEN_SESSION).
SET_PASSWORD: Final = """
    WITH changed AS (
        UPDATE {schema}.users SET
            password_hash = %(new_hash)s,
            generation = generation + CASE WHEN %(end_sessions)s THEN 1 ELSE 0 END
        WHERE userid = %(userid)s
          AND (%(old_hash)s::text IS NULL OR password_hash = %(old_hash)s::text)
        RETURNING userid
    ), ended AS (
        DELETE FROM {schema}.sessions s USING changed c
        WHERE s.userid = c.userid AND %(end_sessions)s
        RETURNING 1
    ), tokens_ended AS (
        DELETE FROM {schema}.tokens k USING changed c WHERE k.userid = c.userid
    ), happened AS (
        SELECT 'password.changed' AS kind, userid, NULL::text AS session_id,
               jsonb_build_object(
                   'old_password_checked', %(old_hash)s::text IS NOT NULL,
                   'sessions_ended', (SELECT count(*) FROM ended)) AS detail
        FROM changed
    ), {log}
    SELECT userid, {logged} FROM changed
"""

MAX_AGENT: Final = 512

RECENT_PROOF: Final = 600.0
"""Seconds after a proof of who they are during which a user may add a way to sign in
(a passkey, a provider's account) or remove one."""

PASSWORD_FAILURE: Final = {"failure_kind": "login.failed", "failure_reason": "password"}
"""RECORD_FAILURE's event for a wrong password."""

SUBJECT_PREFIXES: Final = {
    "name_prefix": NAME_SUBJECT,
    "pair_prefix": PAIR_SUBJECT,
    "source_prefix": SOURCE_SUBJECT,
}


@dataclass(frozen=True, slots=True)
class Attempt:
    """A login attempt's checked arguments."""

    name_key: str
    secret: str
    source: str | None
    user_agent: str | None
    extra: str | None
    audit: dict[str, Any]
    may_continue: bool = True
    """Whether a second factor may follow (``login``), or a login that needs one fails
    (``validate_user``, the original's call, which has no way to ask for it)."""


class LoginsPart(Part):
    """The operations on logins."""

    @retry_safe  # a login repeated after a lost reply leaves at most one unused session
    def validate_user(
        self, username: object, password: object, extra_data: object
    ) -> Operation[LoginResult]:
        attempt = self._attempt(username, password, None, None, extra_data)
        return self._validate_user(replace(attempt, may_continue=False))

    def _validate_user(self, attempt: Attempt) -> Operation[LoginResult]:
        outcome = yield from self._login(attempt)
        if outcome.status is not OK:
            return FAILED_LOGIN
        return LoginResult(outcome.key, outcome.admin, outcome.userid)

    @retry_safe  # as validate_user; a lost failure may be counted twice
    def login(
        self,
        username: object,
        password: object,
        source: object,
        user_agent: object,
        extra_data: object,
    ) -> Operation[LoginOutcome]:
        return self._login(self._attempt(username, password, source, user_agent, extra_data))

    def _attempt(
        self,
        username: object,
        password: object,
        source: object,
        user_agent: object,
        extra_data: object,
    ) -> Attempt:
        name_key = identities.username_key(username)
        checked_source = checks.source(source)
        return Attempt(
            name_key=name_key,
            secret=checks.password(password),
            source=checked_source,
            user_agent=(
                None if user_agent is None else checks.label(user_agent, "user_agent", MAX_AGENT)
            ),
            extra=self.codec.dumps(extra_data),
            audit=recording.parameters(time.time(), checked_source),
        )

    def _login(self, attempt: Attempt) -> Operation[LoginOutcome]:
        params: dict[str, Any] = {
            "name_key": attempt.name_key,
            "source": attempt.source,
            "source_subject": attempt.source and SOURCE_SUBJECT + attempt.source,
            **SUBJECT_PREFIXES,
            **attempt.audit,
        }
        query = self._sql(LOGIN_LOOKUP, until=THROTTLED_UNTIL, **LOGS)
        row = yield from self._logged(query, params)
        assert row is not None  # the statement always returns one row
        (userid, stored_hash, user_generation, space_generation, disabled, wait, legacy,
         kinds, has_codes) = row  # fmt: skip
        if wait > 0:  # refused without checking the password
            return LoginOutcome(THROTTLED, "", False, None, wait)
        params["userid"] = userid
        verdict = yield Offload(self.passwords.verify, (stored_hash, attempt.secret, legacy))
        if not verdict.matches:
            query = self._sql(RECORD_FAILURE, restart=COUNT_RESTARTS, also="", **LOGS)
            yield from self._logged(query, params | PASSWORD_FAILURE)
            return REJECTED_LOGIN
        if disabled:
            refused = {"kind": "login.failed", "detail": Jsonb({"reason": "disabled"})}
            yield from self._logged(self._sql(RECORD_EVENT, **LOGS), params | refused)
            return LoginOutcome(DISABLED, "", False, None, 0.0)
        if kinds:
            factors = factors_due(kinds, has_codes)
            return (yield from self._ticket(attempt, params, factors, verdict.upgraded_hash, row))
        key = new_session_key()
        params.update(
            key=key,
            stored=stored_form(key),
            extra_data=attempt.extra,
            old_hash=stored_hash,
            new_hash=verdict.upgraded_hash,
            user_generation=user_generation,
            space_generation=space_generation,
            source=attempt.source,
            user_agent=attempt.user_agent,
        )
        try:
            row = yield from self._logged(self._sql(OPEN_SESSION, **LOGS), params)
        except pgerrors.ForeignKeyViolation:  # the user was deleted meanwhile
            return REJECTED_LOGIN
        assert row is not None  # the statement always returns one row
        opened, admin = row
        if not opened:
            # While the password was verified, it changed, or the user's sessions were
            # ended: this login belongs to the past.
            return REJECTED_LOGIN
        return LoginOutcome(OK, key, bool(admin), userid, 0.0)

    def _ticket(
        self,
        attempt: Attempt,
        params: dict[str, Any],
        factors: tuple[str, ...],
        upgraded_hash: str | None,
        looked: tuple[Any, ...],
    ) -> Operation[LoginOutcome]:
        """The password was right and a second factor is due: leave a ticket for it,
        or, for ``validate_user``, fail."""
        if not attempt.may_continue:
            refused = {"kind": "login.failed", "detail": Jsonb({"reason": "second factor due"})}
            yield from self._logged(self._sql(RECORD_EVENT, **LOGS), params | refused)
            return REJECTED_LOGIN
        ticket = new_token()
        params.update(
            ticket=digest(ticket),
            old_hash=looked[1],
            new_hash=upgraded_hash,
            user_generation=looked[2],
            space_generation=looked[3],
            user_agent=attempt.user_agent,
            extra_data=attempt.extra,
            lifetime=TICKET_LIFETIME,
            kept=TICKETS_PER_USER,
        )
        try:
            row = yield from self._logged(self._sql(OPEN_TICKET, **LOGS), params)
        except pgerrors.ForeignKeyViolation:  # the user was deleted meanwhile
            return REJECTED_LOGIN
        assert row is not None  # the statement always returns one row
        if not row[0]:  # changed meanwhile, as for a session (see OPEN_SESSION)
            return REJECTED_LOGIN
        return LoginOutcome(MFA_REQUIRED, "", False, looked[0], 0.0, ticket, factors)

    def change_password(
        self, userid: object, newpassword: object, oldpassword: object, end_sessions: object
    ) -> Operation[Status]:
        if userid is None:
            raise BadCallError("change_password needs the userid of the user")
        uid = checks.userid(userid)
        new = checks.password(newpassword, "newpassword")
        old = None if oldpassword is None else checks.password(oldpassword, "oldpassword")
        ending = checks.flag(end_sessions, "end_sessions")
        return self._change_password(uid, new, old, ending, recording.parameters(time.time()))

    def _change_password(
        self, uid: int, new: str, old: str | None, ending: bool, logging: dict[str, Any]
    ) -> Operation[Status]:
        old_hash = None
        yield from self._policy_allows(new, "newpassword", logging, uid)
        if old is None:
            new_hash = yield Offload(self.passwords.hash, (new,))
        else:
            row = yield Execute(self._sql(PASSWORD_HASH), (uid,))
            if row is None:
                return NOT_FOUND
            old_hash = row[0]
            new_hash = yield Offload(self.passwords.verify_and_hash, (old_hash, old, new))
            if new_hash is None:
                return REJECTED
        params = {
            "userid": uid,
            "new_hash": new_hash,
            "old_hash": old_hash,
            "end_sessions": ending,
            **logging,
        }
        row = yield from self._logged(self._sql(SET_PASSWORD, **LOGS), params)
        if row is not None:
            return OK
        # Nothing was updated: the user is gone, or its password changed since it was read.
        return NOT_FOUND if old is None else REJECTED

    @retry_safe
    def login_failures(self) -> Query[LoginFailureRow]:
        params = {**SUBJECT_PREFIXES, "now": time.time()}
        query = self._sql(LIST_LOGIN_FAILURES, until=THROTTLED_UNTIL)
        return Query(query, params, _failure_row)

    @retry_safe
    def clear_login_failures(self, username: object, source: object) -> Operation[int]:
        if username is None and source is None:
            raise BadCallError("give a username, a source, or both")
        name_key = None if username is None else identities.username_key(username)
        checked = checks.source(source)
        params = {
            "name_key": name_key,
            "source": checked,
            "source_subject": checked and SOURCE_SUBJECT + checked,
            **SUBJECT_PREFIXES,
            **recording.parameters(time.time()),
        }
        return self._count(self._sql(CLEAR_LOGIN_FAILURES, **LOGS), params)

    @retry_safe
    def set_login_policy(  # noqa: PLR0917 - the facades pass them in order
        self,
        free_failures: object,
        max_backoff: object,
        source_limit: object,
        source_window: object,
        source_block: object,
        admins_need_mfa: object = None,
    ) -> Operation[None]:
        params = {
            "free_failures": checks.optional_count(free_failures, "free_failures", 0),
            "max_backoff": checks.optional_duration(max_backoff, "max_backoff"),
            "source_limit": checks.optional_count(source_limit, "source_limit", 1),
            "source_window": checks.optional_duration(source_window, "source_window"),
            "source_block": checks.optional_duration(source_block, "source_block"),
            "admins_need_mfa": None
            if admins_need_mfa is None
            else checks.flag(admins_need_mfa, "admins_need_mfa"),
            **recording.parameters(time.time()),
        }
        return self._change(self._sql(SET_LOGIN_POLICY, **LOGS), params)


def _failure_row(row: tuple[str, int, datetime, float]) -> LoginFailureRow:
    subject, failures, last_at, retry_after = row
    kind, _, value = subject.partition(":")
    if kind == "pair":  # a name from one source: "ada from 198.51.100.7"
        name, _, source = value.partition(PAIR_SEPARATOR)
        value = f"{name} from {source or 'no source'}"
    return LoginFailureRow(kind, value, failures, last_at.timestamp(), retry_after)
