"""The SQL statements pgusers runs on a live schema (the migrations' own are in
:mod:`pgusers._core.schema`; how they are rendered, and the fragments every
change's statement shares, in :mod:`pgusers._core.sql`).

Templates name the schema as ``{schema}``; :func:`render` fills it in with
psycopg's SQL composition, so the identifier is quoted by the driver. The few
templates with other ``{...}`` parts take them only from the constant fragments
defined here, never from caller input. Values are always ``%s``/``%(name)s``
parameters.
"""

from typing import Final

# -- the audit trail -------------------------------------------------------------

RECORD_EVENT: Final = """
    WITH happened AS (
        SELECT %(kind)s::text AS kind, %(userid)s::bigint AS userid,
               NULL::text AS session_id, %(detail)s::jsonb AS detail
    ), {log}
    SELECT {logged}
"""
"""Write one event that comes with no change of its own (a login of a disabled user)."""

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
    )
    SELECT (SELECT count(*) FROM purged), {logged}
"""
PURGE_BATCH: Final = 5000

# -- users ---------------------------------------------------------------------

CREATE_USER: Final = """
    WITH created AS (
        INSERT INTO {schema}.users (
            username, username_key, username_skeleton, email, email_key, password_hash, admin,
            extra_data
        )
        VALUES (%(username)s, %(username_key)s, %(skeleton)s, %(email)s, %(email_key)s,
                %(password_hash)s, %(admin)s, %(extra_data)s::jsonb)
        RETURNING userid, username, email, admin
    ), happened AS (
        SELECT 'user.created' AS kind, userid, NULL::text AS session_id,
               jsonb_build_object('username', username, 'email', email, 'admin', admin) AS detail
        FROM created
    ), {log}
    SELECT userid, {logged} FROM created
"""

FIND_USER: Final = """
    SELECT userid, username, email, admin, extra_data, email_verified, disabled
    FROM {schema}.users WHERE {where}
"""

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
               ) AS legacy_present
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
           legacy_present, {logged}
    FROM looked
""")

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

# A failed login counts once against its name from its source, once against its
# name, and once against its source, each in one atomic upsert, so failures at the
# same moment are all counted. A name's count
# starts again after a day without failures, a source's when its window has passed.
# Rows a day past their last failure no longer throttle anything (the policy's
# durations are at most a day) and go, a few at a time, as part of this statement.
# The attempt's name is recorded only as the userid of an existing user: a name that
# matches no user may be a password typed into the wrong field.
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
    ), happened AS (
        SELECT 'login.failed' AS kind, %(userid)s::bigint AS userid, NULL::text AS session_id,
               jsonb_build_object('reason', 'password') AS detail
    ), {log}
    SELECT (SELECT count(*) FROM counted), {logged}
""")

COUNT_RESTARTS: Final = """(CASE WHEN starts_with(f.subject, %(source_prefix)s)
    THEN f.window_start < excluded.last_at
                          - make_interval(secs => (SELECT source_window FROM policy))
    ELSE f.last_at < excluded.last_at - interval '1 day' END)"""
"""Whether a failure starts its subject's count again: RECORD_FAILURE's {restart}."""

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
            source_block = coalesce(%(source_block)s, source_block)
        RETURNING free_failures, max_backoff, source_limit, source_window, source_block
    ), happened AS (
        SELECT 'settings.changed' AS kind, NULL::bigint AS userid, NULL::text AS session_id,
               jsonb_strip_nulls(jsonb_build_object(
                   'free_failures', %(free_failures)s::integer,
                   'max_backoff', %(max_backoff)s::float8,
                   'source_limit', %(source_limit)s::integer,
                   'source_window', %(source_window)s::float8,
                   'source_block', %(source_block)s::float8)) AS detail
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

# A new email address is not verified yet, and ends the user's one-time tokens.
MODIFY_USER: Final = """
    WITH changed AS (
        UPDATE {schema}.users u SET
            username = coalesce(%(username)s, u.username),
            username_key = coalesce(%(username_key)s, u.username_key),
            username_skeleton = coalesce(%(username_skeleton)s, u.username_skeleton),
            email = coalesce(%(email)s, u.email),
            email_key = coalesce(%(email_key)s, u.email_key),
            email_verified = u.email_verified
                AND u.email_key = coalesce(%(email_key)s, u.email_key),
            extra_data =
                CASE WHEN %(set_extra)s THEN %(extra_data)s::jsonb ELSE u.extra_data END
        FROM {schema}.users old
        WHERE u.userid = %(userid)s AND old.userid = u.userid
        RETURNING u.userid, old.email_key <> u.email_key AS new_email,
                  old.username AS old_username, old.email AS old_email
    ), tokens_ended AS (
        DELETE FROM {schema}.tokens k USING changed c WHERE k.userid = c.userid AND c.new_email
    ), happened AS (
        SELECT 'user.modified' AS kind, userid, NULL::text AS session_id,
               jsonb_strip_nulls(jsonb_build_object(
                   'username', %(username)s::text,
                   'old_username', CASE WHEN %(username)s::text IS NOT NULL THEN old_username END,
                   'email', %(email)s::text,
                   'old_email', CASE WHEN %(email)s::text IS NOT NULL THEN old_email END,
                   'extra_data', CASE WHEN %(set_extra)s THEN 'replaced' END)) AS detail
        FROM changed
    ), {log}
    SELECT userid, {logged} FROM changed
"""

DELETE_USER: Final = """
    WITH deleted AS (
        DELETE FROM {schema}.users WHERE {where} RETURNING userid, username
    ), happened AS (
        SELECT 'user.deleted' AS kind, userid, NULL::text AS session_id,
               jsonb_build_object('username', username) AS detail
        FROM deleted
    ), {log}
    SELECT userid, {logged} FROM deleted
"""

IS_ADMIN: Final = "SELECT admin FROM {schema}.users WHERE userid = %s"

SET_ADMIN: Final = """
    WITH changed AS (
        UPDATE {schema}.users SET admin = %(admin)s WHERE userid = %(userid)s RETURNING userid
    ), happened AS (
        SELECT 'admin.changed' AS kind, userid, NULL::text AS session_id,
               jsonb_build_object('admin', %(admin)s::boolean) AS detail
        FROM changed
    ), {log}
    SELECT userid, {logged} FROM changed
"""

# Disabling ends the user's sessions and moves its generation on, so a login being
# verified at this moment opens none either (see OPEN_SESSION).
DISABLE_USER: Final = """
    WITH changed AS (
        UPDATE {schema}.users SET
            disabled = %(disabled)s,
            generation = generation + CASE WHEN %(disabled)s THEN 1 ELSE 0 END
        WHERE userid = %(userid)s
        RETURNING userid
    ), ended AS (
        DELETE FROM {schema}.sessions s USING changed c
        WHERE s.userid = c.userid AND %(disabled)s
        RETURNING 1
    ), happened AS (
        SELECT CASE WHEN %(disabled)s THEN 'user.disabled' ELSE 'user.enabled' END AS kind,
               userid, NULL::text AS session_id,
               jsonb_build_object('sessions_ended', (SELECT count(*) FROM ended)) AS detail
        FROM changed
    ), {log}
    SELECT userid, {logged} FROM changed
"""

# -- one-time tokens -------------------------------------------------------------

# A new token of a purpose revokes the user's older ones of that purpose. For
# change_email, the new address must not be another user's (checked again at use).
ISSUE_TOKEN: Final = """
    WITH taken AS (
        SELECT 1 FROM {schema}.users
        WHERE email_key = %(email_key)s::text AND userid <> %(userid)s
    ), owner AS (
        SELECT userid FROM {schema}.users
        WHERE userid = %(userid)s AND NOT EXISTS (SELECT 1 FROM taken)
    ), revoked AS (
        DELETE FROM {schema}.tokens k USING owner o
        WHERE k.userid = o.userid AND k.purpose = %(purpose)s
    ), issued AS (
        INSERT INTO {schema}.tokens (digest, userid, purpose, email, email_key, expires_at)
        SELECT %(digest)s, o.userid, %(purpose)s, %(email)s, %(email_key)s,
               to_timestamp(%(now)s) + make_interval(secs => %(ttl)s)
        FROM owner o
        RETURNING userid, purpose, email, expires_at
    ), happened AS (
        SELECT 'token.issued' AS kind, userid, NULL::text AS session_id,
               jsonb_strip_nulls(jsonb_build_object(
                   'purpose', purpose, 'email', email,
                   'expires_at', extract(epoch FROM expires_at)::float8)) AS detail
        FROM issued
    ), {log}
    SELECT EXISTS (SELECT 1 FROM issued), EXISTS (SELECT 1 FROM taken), {logged}
"""

TOKEN_STATE: Final = """
    SELECT expires_at > to_timestamp(%(now)s) FROM {schema}.tokens
    WHERE digest = %(digest)s AND purpose = ANY(%(purposes)s)
"""

# Using a token deletes it, in the statement that makes its change: of two racing
# uses, one finds the row and the other finds it gone. An expired token is deleted
# and changes nothing. A password or email that changes ends every other token.
RESET_PASSWORD: Final = """
    WITH used AS (
        DELETE FROM {schema}.tokens
        WHERE digest = %(digest)s AND purpose = 'reset_password'
        RETURNING userid, expires_at > to_timestamp(%(now)s) AS alive
    ), changed AS (
        UPDATE {schema}.users u SET
            password_hash = %(new_hash)s,
            generation = u.generation + CASE WHEN %(end_sessions)s THEN 1 ELSE 0 END
        FROM used t
        WHERE u.userid = t.userid AND t.alive
        RETURNING u.userid, u.username_key
    ), ended AS (
        DELETE FROM {schema}.sessions s USING changed c
        WHERE s.userid = c.userid AND %(end_sessions)s
        RETURNING 1
    ), tokens_ended AS (
        DELETE FROM {schema}.tokens k USING changed c WHERE k.userid = c.userid
    ), unthrottled AS (  -- a reset lifts the throttle on the user's name
        DELETE FROM {schema}.login_failures f USING changed c
        WHERE {of_changed_name}
    ), happened AS (
        SELECT 'token.used' AS kind, userid, NULL::text AS session_id,
               jsonb_build_object('purpose', 'reset_password') AS detail
        FROM changed
        UNION ALL
        SELECT 'password.changed', userid, NULL,
               jsonb_build_object(
                   'reset_token', true, 'sessions_ended', (SELECT count(*) FROM ended))
        FROM changed
    ), {log}
    SELECT alive, {logged} FROM used
""".replace("{of_changed_name}", failures_of_name("c.username_key"))

VERIFY_EMAIL: Final = """
    WITH used AS (
        DELETE FROM {schema}.tokens
        WHERE digest = %(digest)s AND purpose IN ('verify_email', 'change_email')
        RETURNING userid, purpose, email, email_key,
                  expires_at > to_timestamp(%(now)s) AS alive
    ), changed AS (
        UPDATE {schema}.users u SET
            email = coalesce(t.email, u.email),
            email_key = coalesce(t.email_key, u.email_key),
            email_verified = true
        FROM used t
        WHERE u.userid = t.userid AND t.alive
        RETURNING u.userid, t.purpose, u.email
    ), tokens_ended AS (
        DELETE FROM {schema}.tokens k USING changed c
        WHERE k.userid = c.userid AND c.purpose = 'change_email'
    ), happened AS (
        SELECT 'token.used' AS kind, userid, NULL::text AS session_id,
               jsonb_build_object('purpose', purpose) AS detail
        FROM changed
        UNION ALL
        SELECT 'email.verified', userid, NULL,
               jsonb_build_object('email', email, 'changed', purpose = 'change_email')
        FROM changed
    ), {log}
    SELECT alive, {logged} FROM used
"""

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

# A login verifies the password between LOGIN_LOOKUP and this statement, which takes
# a tenth of a second or more. The session is opened only if, meanwhile, the password
# hash did not change and no call ended the user's sessions (the user's generation)
# or everyone's (the userspace's generation); the admin flag returned is read by
# this same statement. A session records the sum of both generations, and check_key
# accepts it only while the sum is unchanged: both only grow, so the sum moves with
# either. That also ends a session whose insert races a call ending sessions, which
# the DELETE of that call cannot see. The key is stored as given, or as its digest
# once the userspace keeps keys hashed (%(stored)s).
OPEN_SESSION: Final = counted("""
    WITH upgrade AS (
        UPDATE {schema}.users SET password_hash = %(new_hash)s::text
        WHERE userid = %(userid)s AND password_hash = %(old_hash)s
          AND %(new_hash)s::text IS NOT NULL
    ), opened AS (
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
    ), capped AS (  -- past the cap, the oldest sessions make room for the new one
        DELETE FROM {schema}.sessions WHERE key IN (
            SELECT r.key FROM (
                SELECT s.key, row_number() OVER (
                           ORDER BY s.created_at DESC, s.session_id DESC) AS newer
                FROM {schema}.sessions s WHERE s.userid = (SELECT userid FROM opened)
            ) r CROSS JOIN {settings} t
            WHERE r.newer >= t.sessions_per_user
        )
        RETURNING userid
    ), cleared AS (  -- a success clears the name's failures, and its source's for it
        DELETE FROM {schema}.login_failures
        WHERE subject IN ({name_count}, {pair_count}) AND EXISTS (SELECT 1 FROM opened)
    ), happened AS (
        SELECT 'login.succeeded' AS kind, userid, session_id,
               jsonb_strip_nulls(jsonb_build_object('user_agent', %(user_agent)s::text))
                   AS detail
        FROM opened
        UNION ALL
        SELECT 'session.ended', min(userid), NULL,
               jsonb_build_object('how', 'sessions_per_user', 'count', count(*))
        FROM capped HAVING count(*) > 0
        UNION ALL
        SELECT 'login.failed', %(userid)s::bigint, NULL,
               jsonb_build_object('reason', 'sessions ended meanwhile')
        WHERE NOT EXISTS (SELECT 1 FROM opened)
    ), {log}
    SELECT EXISTS (SELECT 1 FROM opened),
           (SELECT u.admin FROM opened o JOIN {schema}.users u ON u.userid = o.userid),
           {logged}
""")

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
           extract(epoch FROM hard_end)::float8,
           CASE WHEN NOT (alive AND current) THEN {schema}.remove_session(key)
                WHEN slides THEN {schema}.slide_session(key, target, now)
           END
    FROM found
""".replace("{current}", SESSION_CURRENT).replace("{alive}", SESSION_ALIVE)
"""The per-request statement: a plain SELECT that slides the expiry, or removes a
session that can no longer answer, by calling the schema's functions (version 7) only
when that is due. Besides the answer, it returns what a session cache needs: the
session id, its expiry as stored after this call, and its hard end (the maximum age
or an imported end; NULL for none); its last column is what a function returned
(NULL when none ran). Settings come as ``{settings}``, which the planner knows to be
one row: it then keeps one generic plan for the statement, analysed tables or not,
instead of planning it again on every call."""

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

GET_TTL: Final = "SELECT session_ttl FROM {schema}.settings"

SET_SETTING: Final = """
    WITH changed AS (
        UPDATE {schema}.settings SET {column} = %(value)s RETURNING 1
    ), happened AS (
        SELECT 'settings.changed' AS kind, NULL::bigint AS userid, NULL::text AS session_id,
               jsonb_build_object(%(name)s::text, %(value)s::float8) AS detail
        FROM changed
    ), {log}
    SELECT {logged}
"""
"""Set one numeric setting ({column}, a name from SETTING_COLUMNS), with its event."""
SETTING_COLUMNS: Final = {
    "session_ttl": "session_ttl",
    "session_max_age": "session_max_age",
    "event_retention": "event_retention",
    "sessions_per_user": "sessions_per_user",
}

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


# -- importing from pgusers 0.9 ------------------------------------------------------

# The legacy tables are named by {legacy} (the schema given to import_legacy,
# quoted like {schema}). The import runs in one transaction: users are read in
# pages, checked and converted in Python, and staged in a temporary table, where
# set-based statements find duplicates and conflicts before anything is written.

LEGACY_COLUMNS: Final = """
    SELECT table_name::text, array_agg(column_name::text ORDER BY ordinal_position)
    FROM information_schema.columns
    WHERE table_schema = %(from_schema)s AND table_name IN ('users', 'sessions')
    GROUP BY table_name
"""
PREVIOUS_IMPORT: Final = """
    SELECT extract(epoch FROM at)::float8, users, sessions FROM {schema}.legacy_imports
    WHERE from_schema = %(from_schema)s
"""

STAGE: Final = """
    CREATE TEMPORARY TABLE pgusers_legacy_stage (
        userid        bigint PRIMARY KEY,
        username      text,
        username_key  text COLLATE "C",
        skeleton      text COLLATE "C",
        email         text,
        email_key     text COLLATE "C",
        password_hash text,
        admin         boolean NOT NULL,
        extra_data    jsonb,
        own_problems  jsonb NOT NULL,
        problems      jsonb NOT NULL,
        skipped       boolean NOT NULL DEFAULT false
    ) ON COMMIT DROP
"""
LEGACY_USERS_PAGE: Final = """
    SELECT userid, username, email, salt, kpasswd, admin, extra_data
    FROM {legacy}.users WHERE userid > %s ORDER BY userid LIMIT %s
"""
STAGE_USERS: Final = """
    INSERT INTO pgusers_legacy_stage (
        userid, username, username_key, skeleton, email, email_key, password_hash, admin,
        extra_data, own_problems, problems
    )
    SELECT v.*, v.own_problems FROM unnest(
        %s::bigint[], %s::text[], %s::text[], %s::text[], %s::text[], %s::text[], %s::text[],
        %s::boolean[], %s::jsonb[], %s::jsonb[]
    ) AS v(userid, username, username_key, skeleton, email, email_key, password_hash, admin,
           extra_data, own_problems)
"""
RESET_PROBLEMS: Final = """
    UPDATE pgusers_legacy_stage SET problems = own_problems
    WHERE NOT skipped AND problems <> own_problems
"""
# All but the lowest userid of each group sharing a value are marked.
MARK_DUPLICATES: Final = """
    UPDATE pgusers_legacy_stage s
    SET problems = s.problems || to_jsonb(%(problem)s || ' (as userid ' || d.first || ')')
    FROM (
        SELECT userid, min(userid) OVER (PARTITION BY {column}) AS first
        FROM pgusers_legacy_stage WHERE {column} IS NOT NULL AND NOT skipped
    ) d
    WHERE d.userid = s.userid AND d.userid <> d.first
"""
DUPLICATE_COLUMNS: Final = {
    "username_key": "username_key",
    "skeleton": "skeleton",
    "email_key": "email_key",
}
MARK_TAKEN: Final = """
    UPDATE pgusers_legacy_stage s
    SET problems = s.problems || to_jsonb(%(problem)s || ' (by userid ' || u.userid || ')')
    FROM {schema}.users u
    WHERE {match} AND NOT s.skipped
"""
TAKEN_MATCHES: Final = {
    "userid": "u.userid = s.userid",
    "username": "u.username_key = s.username_key",
    "look-alike username": "u.username_skeleton = s.skeleton AND u.username_key <> s.username_key",
    "email": "u.email_key = s.email_key",
}
PROBLEM_PAGE: Final = """
    SELECT userid, username, email, password_hash IS NULL, problems FROM pgusers_legacy_stage
    WHERE userid > %s AND NOT skipped AND jsonb_array_length(problems) > 0
    ORDER BY userid LIMIT %s
"""
RESOLVE: Final = """
    UPDATE pgusers_legacy_stage s SET
        username = coalesce(v.username, s.username),
        username_key = coalesce(v.username_key, s.username_key),
        skeleton = coalesce(v.skeleton, s.skeleton),
        email = coalesce(v.email, s.email),
        email_key = coalesce(v.email_key, s.email_key),
        password_hash = coalesce(v.password_hash, s.password_hash),
        own_problems = v.own_problems, skipped = v.skipped
    FROM unnest(%s::bigint[], %s::text[], %s::text[], %s::text[], %s::text[], %s::text[],
                %s::text[], %s::jsonb[], %s::boolean[])
        AS v(userid, username, username_key, skeleton, email, email_key, password_hash,
             own_problems, skipped)
    WHERE s.userid = v.userid
"""
COPY_USERS: Final = """
    INSERT INTO {schema}.users (
        userid, username, username_key, username_skeleton, email, email_key, password_hash,
        admin, extra_data, email_verified, created_at
    )
    OVERRIDING SYSTEM VALUE
    SELECT userid, username, username_key, skeleton, email, email_key, password_hash, admin,
           extra_data, false, to_timestamp(%(now)s)
    FROM pgusers_legacy_stage WHERE NOT skipped
"""
# The next userid follows the largest of pgusers' own, the legacy table's and what
# the legacy sequence handed out, so the ids of deleted legacy users never return.
MOVE_USERIDS: Final = """
    SELECT setval(pg_get_serial_sequence(%(users)s, 'userid'), greatest(
        (SELECT max(userid) FROM {schema}.users),
        (SELECT max(userid) FROM {legacy}.users),
        (SELECT pg_sequence_last_value(pg_get_serial_sequence(%(legacy_users)s, 'userid'))),
        1))
"""
COUNT_LEGACY_SESSIONS: Final = """
    SELECT count(*),
           count(*) FILTER (WHERE s.userid IS NULL),
           count(*) FILTER (WHERE s.skipped),
           count(*) FILTER (WHERE NOT s.skipped AND NOT {key_shape}),
           count(*) FILTER (WHERE NOT s.skipped AND {key_shape}
                            AND NOT coalesce(l.expiration::float8 > %(now)s, false))
    FROM {legacy}.sessions l LEFT JOIN pgusers_legacy_stage s ON s.userid = l.userid
"""
LEGACY_KEY_SHAPE: Final = "(length(l.key) = 32 AND l.key ~ '^[0-9a-f]+$')"
"""A key as pgusers 0.9 made it: 32 lower-case hex characters."""
LIVE_SESSIONS: Final = """
    CREATE TEMPORARY TABLE pgusers_legacy_live ON COMMIT DROP AS
    SELECT DISTINCT ON (l.key) l.key, l.userid, l.expiration::float8 AS expiration,
           l.extra_data,
           l.extra_data IS NULL OR l.extra_data IN (
               '\\x4e2e'::bytea, '\\x80024e2e', '\\x80034e2e', '\\x80044e2e', '\\x80054e2e'
           ) AS plain
    FROM {legacy}.sessions l
    JOIN pgusers_legacy_stage s ON s.userid = l.userid AND NOT s.skipped
    WHERE {key_shape} AND l.expiration::float8 > %(now)s
    ORDER BY l.key, l.expiration DESC
"""
"""The live sessions of imported users (of two rows with the same key, which 0.9 did
not prevent, the later-expiring one); ``plain``: no data, or None pickled (by any
protocol), so Python need not read it."""
OPEN_LIVE_SESSIONS: Final = """
    DECLARE pgusers_legacy_sessions NO SCROLL CURSOR FOR
    SELECT key, userid, expiration, extra_data FROM pgusers_legacy_live WHERE NOT plain
"""
# Imported sessions, from {rows}: their key stored as the userspace keeps keys, and
# their 0.9 expiry as the end they never slide past.
COPY_SESSIONS: Final = """
    INSERT INTO {schema}.sessions (
        key, userid, created_at, expires_at, ends_at, extra_data, generation, legacy
    )
    SELECT CASE WHEN t.key_storage = 'hashed'
                THEN %(prefix)s || encode(sha256(convert_to(v.key, 'UTF8')), 'hex')
                ELSE v.key END,
           v.userid, to_timestamp(%(now)s), to_timestamp(v.expiration),
           to_timestamp(v.expiration), v.extra_data, u.generation + t.generation, true
    FROM {rows}
    JOIN {schema}.users u ON u.userid = v.userid
    CROSS JOIN {settings} t
"""
PLAIN_LIVE_SESSIONS: Final = """(
    SELECT key, userid, expiration, NULL::jsonb AS extra_data
    FROM pgusers_legacy_live WHERE plain) AS v"""
"""COPY_SESSIONS' {rows}: the live sessions without data, copied in one statement."""
CONVERTED_SESSIONS: Final = """unnest(%(keys)s::text[], %(userids)s::bigint[],
    %(expirations)s::float8[], %(extra)s::jsonb[]) AS v(key, userid, expiration, extra_data)"""
"""COPY_SESSIONS' {rows}: a page of sessions whose data Python converted."""
NEXT_LEGACY_SESSIONS: Final = "FETCH 5000 FROM pgusers_legacy_sessions"
"""The next IMPORT_BATCH sessions (FETCH takes no parameter)."""
RECORD_IMPORT: Final = """
    WITH recorded AS (
        INSERT INTO {schema}.legacy_imports (from_schema, at, users, sessions, report)
        VALUES (%(from_schema)s, to_timestamp(%(now)s), %(users)s, %(sessions)s, %(report)s)
        RETURNING 1
    ), happened AS (
        SELECT 'legacy.imported' AS kind, NULL::bigint AS userid, NULL::text AS session_id,
               %(summary)s::jsonb AS detail
        FROM recorded
        UNION ALL
        SELECT 'legacy.resolved', r.userid, NULL, r.detail
        FROM unnest(%(resolved_userids)s::bigint[], %(resolved_details)s::jsonb[])
            AS r(userid, detail)
    ), {log}
    SELECT {logged}
"""
IMPORT_BATCH: Final = 5000


# -- for the HTTP service and the command line (not on the facades) --------------

API_KEY_EVENT: Final = """happened AS (
        SELECT %(kind)s::text AS kind, NULL::bigint AS userid, NULL::text AS session_id,
               jsonb_build_object('key_id', key_id, 'name', name, 'scope', scope) AS detail
        FROM changed
    )"""
"""The event of an API key made or revoked (``kind``), from the CTE ``changed``."""

CREATE_API_KEY: Final = """
    WITH changed AS (
        INSERT INTO {schema}.api_keys (
            key_id, digest, name, scope, created_at, created_by, maker_userid
        )
        VALUES (%(key_id)s, %(digest)s, %(name)s, %(scope)s, to_timestamp(%(now)s), %(actor)s,
                %(maker)s)
        RETURNING key_id, name, scope
    ), {happened}, {log}
    SELECT key_id, {logged} FROM changed
"""

REVOKE_API_KEY: Final = """
    WITH changed AS (
        UPDATE {schema}.api_keys SET revoked_at = to_timestamp(%(now)s)
        WHERE key_id = %(key_id)s AND revoked_at IS NULL
        RETURNING key_id, name, scope
    ), {happened}, {log}
    SELECT key_id, {logged} FROM changed
"""

API_KEYS: Final = """
    SELECT key_id, name, scope, extract(epoch FROM created_at)::float8 AS created_at,
           created_by, extract(epoch FROM revoked_at)::float8 AS revoked_at
    FROM {schema}.api_keys ORDER BY created_at, key_id
"""

# A key works while its maker exists, is enabled, and (for scope admin) is an
# administrator: it never has more rights than the user who made it has now.
API_KEY_SCOPE: Final = """
    SELECT k.key_id, k.scope, k.maker_userid
    FROM {schema}.api_keys k LEFT JOIN {schema}.users u ON u.userid = k.maker_userid
    WHERE k.digest = %s AND k.revoked_at IS NULL
      AND (k.maker_userid IS NULL OR (NOT u.disabled AND (u.admin OR k.scope = 'check')))
"""

# One page of users for an administrator, in userid order after a given userid
# (keyset paging), with the filters in {where}. "Throttled" means the user's login
# name is blocked now, by the same rule as LOGIN_LOOKUP's.
USER_THROTTLED: Final = """EXISTS (
    SELECT 1 FROM {schema}.login_failures f CROSS JOIN {settings} t
    WHERE {of_user} AND {until} > to_timestamp(%(now)s))""".replace(
    "{until}", THROTTLED_UNTIL
).replace("{of_user}", failures_of_name("u.username_key"))
ADMIN_USERS: Final = """
    SELECT u.userid, u.username, u.email, u.admin, u.disabled, u.email_verified,
           extract(epoch FROM u.created_at)::float8 AS created_at, {throttled} AS throttled,
           u.extra_data
    FROM {schema}.users u
    WHERE u.userid > %(after)s AND {where}
    ORDER BY u.userid LIMIT %(limit)s
""".replace("{throttled}", USER_THROTTLED)
ADMIN_USERS_BY: Final = {
    "userid": "u.userid = %(userid)s",
    "pattern": "(u.username_key LIKE %(pattern)s OR u.email_key LIKE %(pattern)s)",
    "admin": "u.admin = %(admin)s",
    "disabled": "u.disabled = %(disabled)s",
    "verified": "u.email_verified = %(verified)s",
    "throttled": USER_THROTTLED + " = %(throttled)s",
}

READ_SETTINGS: Final = """
    SELECT session_ttl, session_max_age, key_storage, event_retention, free_failures,
           max_backoff, source_limit, source_window, source_block, sessions_per_user
    FROM {schema}.settings
"""
