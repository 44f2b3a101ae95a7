"""Second factors: TOTP (RFC 6238) and recovery codes; finishing a login that needs
one (``complete_login``), and proving again who one is (``reauthenticate``).

A TOTP seed must be read again to check a code, so it is sealed under the
application's secret key (:mod:`pgusers._core.sealing`); recovery codes, tickets and
everything else the server need not read again are kept as SHA-256 digests. A code
or a recovery code is accepted once: the statement that accepts a TOTP code records
its time step and accepts only a later one, the one that accepts a recovery code
deletes it, and the one that finishes a login deletes its ticket, each guarded so
that of two racing uses exactly one succeeds. Wrong answers count in the login
throttle, per name and per source, as wrong passwords do.
"""

import hmac
import re
import secrets
import time
from datetime import datetime
from typing import Any, Final

from psycopg import errors as pgerrors

from pgusers._core import checks, recording, relying_party
from pgusers._core.base import LOGS, Part, is_last_way
from pgusers._core.keys import (
    digest,
    looks_like_legacy_key,
    looks_like_session_key,
    new_session_key,
    stored_form,
)
from pgusers._core.logins import (
    CAPPED_EVENT,
    CLEARED_ON_SUCCESS,
    COUNT_RESTARTS,
    LIVE_SESSION,
    RECORD_FAILURE,
    SESSION_CAP,
    SOURCE_SUBJECT,
    SUBJECT_PREFIXES,
    THROTTLE_WAIT,
    THROTTLED_UNTIL,
    TICKET_ATTEMPTS,
    counted,
)
from pgusers._core.retries import retry_safe
from pgusers._core.sealing import NEEDS_EXTRA, SecretBox
from pgusers._core.steps import Execute, Fetch, Offload, Operation
from pgusers._errors import BadCallError
from pgusers._results import (
    EXPIRED,
    NOT_FOUND,
    OK,
    REJECTED,
    REJECTED_LOGIN,
    THROTTLED,
    Enrollment,
    Factor,
    Factors,
    LoginOutcome,
    Status,
)

TOTP_DIGITS: Final = 6
TOTP_PERIOD: Final = 30
TOTP_SKEW: Final = 1
"""Time steps a code may be late or early (a clock that is off, a code typed slowly)."""
ENROLLMENT_LIFETIME: Final = 900.0
"""Seconds an enrollment waits for ``confirm_totp``."""
RECOVERY_CODES: Final = 10
RECOVERY_ALPHABET: Final = "0123456789abcdefghjkmnpqrstvwxyz"
"""Crockford's base 32: no i, l, o or u, so a code read aloud or retyped stays whole."""
RECOVERY_LENGTH: Final = 10
"""Characters of a recovery code: 50 random bits, shown as two groups of five."""
MAX_LABEL: Final = 64
MAX_ISSUER: Final = 64
DEFAULT_ISSUER: Final = "pgusers"

_CODE_SHAPE: Final = re.compile(rf"[0-9]{{{TOTP_DIGITS}}}")
_FACTOR_ID_SHAPE: Final = re.compile(r"[A-Za-z0-9_-]{16}")
_CROCKFORD_SAME: Final = str.maketrans({"i": "1", "l": "1", "o": "0", "-": None, " ": None})


def _totp() -> Any:
    try:
        import pyotp  # noqa: PLC0415 - an extra's library, loaded when a factor is used
    except ImportError:  # pragma: no cover - the mfa extra is missing
        raise BadCallError(NEEDS_EXTRA) from None
    return pyotp


def matching_step(seed: str, code: str, now: float) -> int | None:
    """The time step at which ``seed`` gives ``code``, within the skew of ``now``
    (the latest such step), or None."""
    totp = _totp().TOTP(seed, digits=TOTP_DIGITS, interval=TOTP_PERIOD)
    current = int(now // TOTP_PERIOD)
    found = None
    for step in range(current - TOTP_SKEW, current + TOTP_SKEW + 1):
        if hmac.compare_digest(totp.generate_otp(step), code):
            found = step
    return found


def totp_code(seed: str, now: float) -> str:
    """The code ``seed`` gives at ``now`` (what an authenticator app shows)."""
    totp = _totp().TOTP(seed, digits=TOTP_DIGITS, interval=TOTP_PERIOD)
    return str(totp.generate_otp(int(now // TOTP_PERIOD)))


def new_recovery_code() -> str:
    """A fresh recovery code: ``xxxxx-xxxxx``, 50 random bits."""
    text = "".join(secrets.choice(RECOVERY_ALPHABET) for _ in range(RECOVERY_LENGTH))
    return f"{text[:5]}-{text[5:]}"


def recovery_digest(code: str) -> bytes | None:
    """What is stored of a recovery code, from the code as a person typed it (any case,
    spaces and hyphens anywhere, i/l for 1 and o for 0); None for one that cannot be."""
    text = code.lower().translate(_CROCKFORD_SAME)
    if len(text) != RECOVERY_LENGTH or not set(text) <= set(RECOVERY_ALPHABET):
        return None
    return digest(f"{text[:5]}-{text[5:]}")


def _code(code: object, name: str = "totp") -> str | None:
    """A TOTP code as typed (spaces allowed), or None when it has not the shape of one."""
    text = checks.text(code, name, 64).replace(" ", "")
    return text if _CODE_SHAPE.fullmatch(text) else None


# -- enrolling, listing, removing -----------------------------------------------------

# Enrolling leaves an unconfirmed factor, which replaces any earlier unconfirmed one
# of the user, so repeated enrollments keep one row; a user has at most MAX_FACTORS
# confirmed ones. The statement answers with the username (for the authenticator
# app's label) and whether the user has room for another factor.
BEGIN_TOTP: Final = """
    WITH owner AS (
        SELECT u.userid, u.username,
               (SELECT count(*) FROM {schema}.factors f
                WHERE f.userid = u.userid AND f.confirmed_at IS NOT NULL) < %(most)s AS room
        FROM {schema}.users u WHERE u.userid = %(userid)s
    ), pending AS (
        DELETE FROM {schema}.factors
        WHERE userid = %(userid)s AND confirmed_at IS NULL AND (SELECT room FROM owner)
    ), made AS (
        INSERT INTO {schema}.factors (factor_id, userid, kind, label, secret, created_at)
        SELECT %(factor_id)s, userid, 'totp', %(label)s, %(secret)s, to_timestamp(%(now)s)
        FROM owner WHERE room
        RETURNING userid
    )
    SELECT username, room FROM owner
"""

MAX_FACTORS: Final = 10
"""Confirmed second factors a user may have."""

FACTOR_SECRET: Final = """
    SELECT secret FROM {schema}.factors
    WHERE factor_id = %(factor_id)s AND userid = %(userid)s AND kind = 'totp'
      AND confirmed_at IS NULL
      AND created_at > to_timestamp(%(now)s) - make_interval(secs => %(lifetime)s)
"""

CONFIRM_TOTP: Final = """
    WITH confirmed AS (
        UPDATE {schema}.factors
        SET confirmed_at = to_timestamp(%(now)s), last_step = %(step)s
        WHERE factor_id = %(factor_id)s AND userid = %(userid)s AND confirmed_at IS NULL
          AND created_at > to_timestamp(%(now)s) - make_interval(secs => %(lifetime)s)
        RETURNING userid, factor_id, kind, label
    ), happened AS (
        SELECT 'mfa.enrolled' AS kind, userid, NULL::text AS session_id,
               jsonb_strip_nulls(jsonb_build_object(
                   'factor_id', factor_id, 'kind', kind, 'label', label)) AS detail
        FROM confirmed
    ), {log}
    SELECT EXISTS (SELECT 1 FROM confirmed), {logged}
"""

# A new set replaces the old one whole.
NEW_RECOVERY_CODES: Final = """
    WITH owner AS (
        SELECT userid FROM {schema}.users WHERE userid = %(userid)s
    ), dropped AS (
        DELETE FROM {schema}.recovery_codes WHERE userid = (SELECT userid FROM owner)
        RETURNING 1
    ), made AS (
        INSERT INTO {schema}.recovery_codes (digest, userid, created_at)
        SELECT code, o.userid, to_timestamp(%(now)s)
        FROM owner o, unnest(%(digests)s::bytea[]) AS code
        RETURNING 1
    ), happened AS (
        SELECT 'mfa.recovery_codes_generated' AS kind, userid, NULL::text AS session_id,
               jsonb_build_object('count', (SELECT count(*) FROM made),
                                  'replaced', (SELECT count(*) FROM dropped)) AS detail
        FROM owner
    ), {log}
    SELECT EXISTS (SELECT 1 FROM owner), {logged}
"""

# One row at least: the count of recovery codes comes with no factor too.
LIST_FACTORS: Final = """
    SELECT (SELECT count(*) FROM {schema}.recovery_codes c WHERE c.userid = %(userid)s),
           f.factor_id, f.kind, f.label, f.created_at, f.last_used_at,
           f.confirmed_at IS NOT NULL, f.cloned_at IS NOT NULL
    FROM (SELECT 1) AS one
    LEFT JOIN {schema}.factors f
        ON f.userid = %(userid)s
       AND (f.confirmed_at IS NOT NULL
            OR f.created_at > to_timestamp(%(now)s) - make_interval(secs => %(lifetime)s))
    ORDER BY f.created_at, f.factor_id
"""

# Whether the login policy holds this user to a second factor they do not have yet.
NEEDS_ENROLLMENT: Final = """
    SELECT u.admin AND s.admins_need_mfa AND NOT EXISTS (
               SELECT 1 FROM {schema}.factors f
               WHERE f.userid = u.userid AND f.confirmed_at IS NOT NULL)
    FROM {schema}.users u CROSS JOIN {schema}.settings s
    WHERE u.userid = %(userid)s
"""

# With the last confirmed factor, the recovery codes go too: they stand in for a
# factor, and a user with none is asked for none.
REMOVE_FACTOR: Final = """
    WITH removed AS (
        DELETE FROM {schema}.factors
        WHERE factor_id = %(factor_id)s AND userid = %(userid)s
        RETURNING userid, factor_id, kind, label, confirmed_at
    ), others AS (
        SELECT count(*) AS confirmed FROM {schema}.factors f
        WHERE f.userid = %(userid)s AND f.confirmed_at IS NOT NULL
          AND f.factor_id <> %(factor_id)s
    ), codes AS (
        DELETE FROM {schema}.recovery_codes
        WHERE userid = (SELECT userid FROM removed) AND (SELECT confirmed FROM others) = 0
        RETURNING 1
    ), happened AS (
        SELECT 'mfa.removed' AS kind, userid, NULL::text AS session_id,
               jsonb_strip_nulls(jsonb_build_object(
                   'factor_id', factor_id, 'kind', kind, 'label', label,
                   'last', (SELECT confirmed FROM others) = 0 AND confirmed_at IS NOT NULL,
                   'recovery_codes_removed', (SELECT count(*) FROM codes))) AS detail
        FROM removed
    ), {log}
    SELECT factor_id, {logged} FROM removed
"""

# Every factor of a user removed at once (an administrator's reset, when the user
# lost the device and the codes), with the recovery codes.
RESET_FACTORS: Final = """
    WITH removed AS (
        DELETE FROM {schema}.factors WHERE userid = %(userid)s
        RETURNING userid, factor_id, kind
    ), codes AS (
        DELETE FROM {schema}.recovery_codes WHERE userid = %(userid)s
        RETURNING userid
    ), happened AS (
        SELECT 'mfa.removed' AS kind, %(userid)s::bigint AS userid, NULL::text AS session_id,
               jsonb_build_object(
                   'reset', true, 'factors', (SELECT count(*) FROM removed),
                   'recovery_codes_removed', (SELECT count(*) FROM codes)) AS detail
        WHERE EXISTS (SELECT 1 FROM removed UNION ALL SELECT 1 FROM codes)
    ), {log}
    SELECT (SELECT count(*) FROM removed), {logged}
"""

# Rotating the secret key: the secrets sealed under another key than the current one
# (TOTP seeds, identity providers' client secrets, providers' tokens kept) are opened
# and sealed again, a batch at a time in the order of their row's id; each is written
# only if it did not change meanwhile. Each sealed column: its table, the row's id,
# what the value is bound to when sealed, and the column.
SEALED: Final = (
    ("factors", "factor_id", "factor_id", "secret"),
    ("identity_providers", "name", "'provider:' || name", "client_secret"),
    ("identities", "provider || chr(31) || subject", "'tokens:' || provider || ':' || subject",
     "tokens"),
)  # fmt: skip

STALE_SECRETS: Final = """
    SELECT {id} AS id, {bound}, {column} FROM {schema}.{table}
    WHERE {column} IS NOT NULL AND NOT starts_with({column}, %(sealed_now)s)
      AND {id} > %(after)s
    ORDER BY 1 LIMIT %(batch)s
"""

RESEAL_SECRETS: Final = """
    WITH resealed AS (
        UPDATE {schema}.{table} SET {column} = v.new_value
        FROM unnest(%(ids)s::text[], %(olds)s::text[], %(news)s::text[])
            AS v(row_id, old_value, new_value)
        WHERE {id} = v.row_id AND {column} = v.old_value
        RETURNING 1
    ), happened AS (
        SELECT 'secrets.resealed' AS kind, NULL::bigint AS userid, NULL::text AS session_id,
               jsonb_build_object('count', count(*), 'key_id', %(key_id)s::text) AS detail
        FROM resealed HAVING count(*) > 0
    ), {log}
    SELECT (SELECT count(*) FROM resealed), {logged}
"""


def _sealed_in(template: str, table: str, row_id: str, bound: str, column: str) -> str:
    return (
        template.replace("{table}", table)
        .replace("{id}", row_id)
        .replace("{bound}", bound)
        .replace("{column}", column)
    )


RESEAL_BATCH: Final = 500

# -- answering ----------------------------------------------------------------------

TOTP_SEEDS: Final = """
    ARRAY(SELECT f.factor_id FROM {schema}.factors f
          WHERE f.userid = {owner} AND f.kind = 'totp' AND f.confirmed_at IS NOT NULL
          ORDER BY f.created_at, f.factor_id),
    ARRAY(SELECT f.secret FROM {schema}.factors f
          WHERE f.userid = {owner} AND f.kind = 'totp' AND f.confirmed_at IS NOT NULL
          ORDER BY f.created_at, f.factor_id)"""
"""The ids and sealed seeds of a user's confirmed TOTP factors."""

# One row for a ticket that exists: its user, login name and source (an answer
# without a source of its own comes from the login's), whether it can still be
# answered, the throttle of that name and source, and the user's TOTP seeds.
TICKET_LOOKUP: Final = (
    """
    SELECT k.userid, k.name_key, k.source,
           k.expires_at > to_timestamp(%(now)s) AND k.attempts < %(attempts)s AS usable,
           {wait}, {seeds}
    FROM {schema}.login_tickets k CROSS JOIN {settings} t
    WHERE k.digest = %(ticket)s
""".replace(
        "{wait}",
        THROTTLE_WAIT.replace("%(name_key)s", "k.name_key")
        .replace("%(source_subject)s", "(%(source_prefix)s || coalesce(%(source)s, k.source))")
        .replace("%(source)s", "coalesce(%(source)s::text, k.source)"),
    )
    .replace("{seeds}", TOTP_SEEDS)
    .replace("{owner}", "k.userid")
)

# For a passkey answer, the same and more: the ticket's challenge, taken (deleted) so
# that it is answered once, and the credential the answer names, if it is one of the
# ticket's user's passkeys.
TICKET_PASSKEY_LOOKUP: Final = """
    WITH taken AS (
        DELETE FROM {schema}.passkey_challenges
        WHERE ticket = %(ticket)s AND purpose = 'second_factor'
          AND expires_at > to_timestamp(%(now)s)
        RETURNING challenge
    )
    SELECT k.userid, k.name_key, k.source,
           k.expires_at > to_timestamp(%(now)s) AND k.attempts < %(attempts)s AS usable,
           {wait}, (SELECT challenge FROM taken), f.factor_id, f.public_key, f.sign_count,
           f.cloned_at IS NOT NULL, st.webauthn_rp_id, st.webauthn_rp_name,
           st.webauthn_origins
    FROM {schema}.login_tickets k CROSS JOIN {settings} t CROSS JOIN {schema}.settings st
    LEFT JOIN {schema}.factors f
        ON f.credential_id = %(credential_id)s AND f.kind = 'passkey'
       AND f.userid = k.userid AND f.confirmed_at IS NOT NULL
    WHERE k.digest = %(ticket)s
""".replace(
    "{wait}",
    THROTTLE_WAIT.replace("%(name_key)s", "k.name_key")
    .replace("%(source_subject)s", "(%(source_prefix)s || coalesce(%(source)s, k.source))")
    .replace("%(source)s", "coalesce(%(source)s::text, k.source)"),
)

CODE_USED_EVENT: Final = """SELECT 'mfa.recovery_code_used', userid, NULL,
               jsonb_build_object('remaining', (
                   SELECT count(*) - 1 FROM {schema}.recovery_codes c
                   WHERE c.userid = s.userid))
        FROM spent s"""
"""The event of a recovery code used (CTE ``spent``), with how many remain."""

# The proof (a TOTP step later than the factor's last, or a recovery code that is
# there) is consumed with the ticket, and the session opened, in one statement. The
# ticket row is locked first: of two answers to one ticket, the second waits and
# then finds it gone. The session is opened only under the password and generations
# the ticket was issued under (see OPEN_SESSION).
COMPLETE_LOGIN: Final = (
    counted("""
    WITH ticket AS (
        SELECT k.* FROM {schema}.login_tickets k
        WHERE k.digest = %(ticket)s AND k.expires_at > to_timestamp(%(now)s)
          AND k.attempts < %(attempts)s
        FOR UPDATE
    ), stepped AS (
        UPDATE {schema}.factors f
        SET last_step = %(step)s, last_used_at = to_timestamp(%(now)s)
        FROM ticket k
        WHERE f.factor_id = %(factor_id)s AND f.userid = k.userid
          AND f.confirmed_at IS NOT NULL AND coalesce(f.last_step < %(step)s, true)
        RETURNING f.userid
    ), spent AS (
        DELETE FROM {schema}.recovery_codes c USING ticket k
        WHERE c.digest = %(code)s AND c.userid = k.userid
        RETURNING c.userid
    ), keyed AS (  -- a passkey's count moves on from the value read, if not flagged
        UPDATE {schema}.factors f
        SET sign_count = %(sign_count)s, last_used_at = to_timestamp(%(now)s)
        FROM ticket k
        WHERE f.factor_id = %(passkey_id)s AND f.userid = k.userid AND f.kind = 'passkey'
          AND f.sign_count = %(old_count)s AND f.cloned_at IS NULL
        RETURNING f.userid
    ), used AS (
        DELETE FROM {schema}.login_tickets k
        WHERE k.digest = %(ticket)s
          AND EXISTS (SELECT 1 FROM stepped UNION ALL SELECT 1 FROM spent
                      UNION ALL SELECT 1 FROM keyed)
        RETURNING k.*
    ), opened AS (
        INSERT INTO {schema}.sessions (
            key, userid, created_at, last_seen_at, expires_at, extra_data, generation,
            source, user_agent, auth_methods, authenticated_at
        )
        SELECT CASE WHEN t.key_storage = 'hashed' THEN %(stored)s ELSE %(key)s END,
               u.userid, to_timestamp(%(now)s), to_timestamp(%(now)s),
               to_timestamp(%(now)s)
                   + make_interval(secs => least(t.session_ttl, t.session_max_age)),
               k.extra_data, u.generation + t.generation,
               coalesce(%(source)s, k.source), coalesce(%(user_agent)s, k.user_agent),
               ARRAY[k.first_method, %(method)s::text], to_timestamp(%(now)s)
        FROM used k
        JOIN {schema}.users u ON u.userid = k.userid
        CROSS JOIN {settings} t
        WHERE NOT u.disabled AND u.generation + t.generation = k.generation
          AND sha256(convert_to(u.password_hash, 'UTF8')) = k.password_digest
        RETURNING userid, session_id
    ), {cap}, {cleared}, happened AS (
        SELECT 'login.succeeded' AS kind, userid, session_id,
               jsonb_strip_nulls(jsonb_build_object(
                   'user_agent', %(user_agent)s::text, 'second_factor', %(method)s::text))
                   AS detail
        FROM opened
        UNION ALL
        {code_used}
        UNION ALL
        {capped_event}
        UNION ALL
        SELECT 'login.failed', userid, NULL,
               jsonb_build_object('reason', 'sessions ended meanwhile')
        FROM used WHERE NOT EXISTS (SELECT 1 FROM opened)
    ), {log}
    SELECT EXISTS (SELECT 1 FROM ticket),
           EXISTS (SELECT 1 FROM used),
           EXISTS (SELECT 1 FROM opened),
           (SELECT u.admin FROM opened o JOIN {schema}.users u ON u.userid = o.userid),
           {logged}
""")
    .replace("{cap}", SESSION_CAP)
    .replace("{cleared}", CLEARED_ON_SUCCESS)
    .replace("{capped_event}", CAPPED_EVENT)
    .replace("{code_used}", CODE_USED_EVENT)
)

# A wrong answer to a ticket: it counts in the throttle as a wrong password does, and
# against the ticket, which answers EXPIRED after its last allowed attempt (and goes
# with the expired ones).
SPEND_ATTEMPT: Final = """spent_attempt AS (
        UPDATE {schema}.login_tickets SET attempts = attempts + 1
        WHERE digest = %(ticket)s
    ), """

# The session a key opened, if it is live: its user, the user's name (for the
# throttle), password hash and TOTP seeds.
SESSION_PROOFS: Final = (
    """
    SELECT s.userid, u.username_key, u.password_hash,
           starts_with(u.password_hash, '$pbkdf2-sha512$'), {wait}, {seeds}
    FROM {schema}.sessions s
    JOIN {schema}.users u ON u.userid = s.userid
    CROSS JOIN {settings} t
    WHERE {live}
""".replace("{live}", LIVE_SESSION)
    .replace("{wait}", THROTTLE_WAIT.replace("%(name_key)s", "u.username_key"))
    .replace("{seeds}", TOTP_SEEDS)
    .replace("{owner}", "u.userid")
)

# A proof given again: the session's proof time moves to now and its methods gain the
# one used, with the TOTP step or recovery code consumed as in COMPLETE_LOGIN.
# Processes that cache sessions hear of it.
REAUTHENTICATE: Final = counted("""
    WITH stepped AS (
        UPDATE {schema}.factors f
        SET last_step = %(step)s, last_used_at = to_timestamp(%(now)s)
        WHERE f.factor_id = %(factor_id)s AND f.userid = %(userid)s
          AND f.confirmed_at IS NOT NULL AND coalesce(f.last_step < %(step)s, true)
        RETURNING f.userid
    ), spent AS (
        DELETE FROM {schema}.recovery_codes c
        WHERE c.digest = %(code)s AND c.userid = %(userid)s
        RETURNING c.userid
    ), proved AS (
        SELECT %(userid)s::bigint AS userid
        WHERE %(method)s::text = 'password'
           OR EXISTS (SELECT 1 FROM stepped UNION ALL SELECT 1 FROM spent)
    ), refreshed AS (
        UPDATE {schema}.sessions s
        SET authenticated_at = to_timestamp(%(now)s),
            auth_methods = ARRAY(
                SELECT DISTINCT m FROM unnest(s.auth_methods || %(method)s::text) AS m
                ORDER BY m)
        FROM proved p
        WHERE s.key IN (%(key)s, %(stored)s) AND s.userid = p.userid
        RETURNING s.userid, s.session_id
    ), cleared AS (
        DELETE FROM {schema}.login_failures
        WHERE subject IN ({name_count}, {pair_count}) AND EXISTS (SELECT 1 FROM refreshed)
    ), happened AS (
        SELECT 'session.reauthenticated' AS kind, userid, session_id,
               jsonb_build_object('method', %(method)s::text) AS detail
        FROM refreshed
        UNION ALL
        {code_used}
    ), {log}
    SELECT EXISTS (SELECT 1 FROM refreshed), {logged}
""").replace("{code_used}", CODE_USED_EVENT)

NO_PROOF: Final = {
    "step": None,
    "factor_id": None,
    "code": None,
    "passkey_id": None,
    "sign_count": None,
    "old_count": None,
}


class FactorsPart(Part):
    """The operations on second factors."""

    issuer: str = DEFAULT_ISSUER

    # -- enrolling, listing, removing -------------------------------------------------

    def begin_totp(self, userid: object, label: object) -> Operation[Enrollment]:
        uid = checks.userid(userid)
        name = None if label is None else checks.label(label, "label", MAX_LABEL)
        box = self._sealing()
        seed = _totp().random_base32()
        factor_id = secrets.token_urlsafe(12)
        params = {
            "userid": uid,
            "factor_id": factor_id,
            "label": name,
            "secret": box.seal(seed.encode(), factor_id),
            "most": MAX_FACTORS,
            "now": time.time(),
        }
        return self._begin_totp(params, seed)

    def _begin_totp(self, params: dict[str, Any], seed: str) -> Operation[Enrollment]:
        row = yield Execute(self._sql(BEGIN_TOTP), params)
        if row is None:
            raise BadCallError(f"no user has userid {params['userid']}")
        if not row[1]:
            raise BadCallError(f"a user has at most {MAX_FACTORS} second factors")
        pyotp = _totp()
        uri = pyotp.TOTP(seed, digits=TOTP_DIGITS, interval=TOTP_PERIOD).provisioning_uri(
            name=row[0], issuer_name=self.issuer
        )
        return Enrollment(params["factor_id"], seed, uri, _qr_svg(uri))

    def confirm_totp(self, userid: object, factor_id: object, code: object) -> Operation[Status]:
        uid = checks.userid(userid)
        factor = checks.text(factor_id, "factor_id", 64)
        typed = _code(code, "code")
        params = {
            "userid": uid,
            "factor_id": factor,
            "lifetime": ENROLLMENT_LIFETIME,
            **recording.parameters(time.time()),
        }
        return self._confirm_totp(params, typed)

    def _confirm_totp(self, params: dict[str, Any], code: str | None) -> Operation[Status]:
        if not _FACTOR_ID_SHAPE.fullmatch(params["factor_id"]):
            return NOT_FOUND
        row = yield Execute(self._sql(FACTOR_SECRET), params)
        if row is None:
            return NOT_FOUND
        seed = self._sealing().open(row[0], params["factor_id"]).decode()
        step = None if code is None else matching_step(seed, code, params["now"])
        if step is None:
            return REJECTED
        confirmed = yield from self._logged(
            self._sql(CONFIRM_TOTP, **LOGS), {**params, "step": step}
        )
        assert confirmed is not None  # the statement always returns one row
        return OK if confirmed[0] else NOT_FOUND

    def new_recovery_codes(self, userid: object) -> Operation[list[str]]:
        uid = checks.userid(userid)
        codes = [new_recovery_code() for _ in range(RECOVERY_CODES)]
        params = {
            "userid": uid,
            "digests": [digest(code) for code in codes],
            **recording.parameters(time.time()),
        }
        return self._new_recovery_codes(params, codes)

    def _new_recovery_codes(self, params: dict[str, Any], codes: list[str]) -> Operation[list[str]]:
        row = yield from self._logged(self._sql(NEW_RECOVERY_CODES, **LOGS), params)
        assert row is not None  # the statement always returns one row
        if not row[0]:
            raise BadCallError(f"no user has userid {params['userid']}")
        return codes

    @retry_safe
    def factors(self, userid: object) -> Operation[Factors]:
        params = {
            "userid": checks.userid(userid),
            "lifetime": ENROLLMENT_LIFETIME,
            "now": time.time(),
        }
        return self._factors(params)

    def _factors(self, params: dict[str, Any]) -> Operation[Factors]:
        rows = yield Execute(self._sql(LIST_FACTORS), params, Fetch.ALL)
        listed = tuple(
            Factor(factor_id, kind, label, created.timestamp(), _when(used), confirmed, cloned)
            for _, factor_id, kind, label, created, used, confirmed, cloned in rows
            if factor_id is not None
        )
        return Factors(listed, int(rows[0][0]))

    @retry_safe
    def needs_enrollment(self, userid: object) -> Operation[bool]:
        row = yield Execute(self._sql(NEEDS_ENROLLMENT), {"userid": checks.userid(userid)})
        return bool(row and row[0])

    def remove_factor(self, userid: object, factor_id: object) -> Operation[Status]:
        params = {
            "userid": checks.userid(userid),
            "factor_id": checks.text(factor_id, "factor_id", 64),
            **recording.parameters(time.time()),
        }
        return self._remove_factor(params)

    def _remove_factor(self, params: dict[str, Any]) -> Operation[Status]:
        query = self._sql(REMOVE_FACTOR, **LOGS)
        return (yield from self._status_keeping_a_way_in(query, params))

    def reset_factors(self, userid: object) -> Operation[int]:
        """Remove every factor of a user, and their recovery codes: how many factors
        went (for the command line's ``mfa reset``)."""
        params = {"userid": checks.userid(userid), **recording.parameters(time.time())}
        return self._reset_factors(params)

    def _reset_factors(self, params: dict[str, Any]) -> Operation[int]:
        try:
            return (yield from self._count(self._sql(RESET_FACTORS, **LOGS), params))
        except pgerrors.RaiseException as error:
            if not is_last_way(error):
                raise
            raise BadCallError(
                "this user signs in only with a passkey: give them a password or link an "
                "account at another site first"
            ) from None

    def reseal_secrets(self, progress: object = None) -> Operation[int]:
        """Seal again under the current secret key every seed sealed under an older
        one; how many (for the command line's ``rotate-secret-key``). ``progress`` is
        called with the count so far after each batch."""
        if progress is not None and not callable(progress):
            raise BadCallError("progress must be a callable taking the count so far")
        box = self._sealing()
        return self._reseal(box, progress, recording.parameters(time.time()))

    def _reseal(self, box: SecretBox, progress: Any, logging: dict[str, Any]) -> Operation[int]:
        batch = {"sealed_now": box.sealed_prefix, "batch": RESEAL_BATCH}
        done = 0
        for sealed_column in SEALED:
            stale = self._sql(_sealed_in(STALE_SECRETS, *sealed_column))
            reseal = self._sql(_sealed_in(RESEAL_SECRETS, *sealed_column), **LOGS)
            after = ""
            while True:
                rows = yield Execute(stale, {**batch, "after": after}, Fetch.ALL)
                if not rows:
                    break
                params = {
                    "ids": [row_id for row_id, _, _ in rows],
                    "olds": [sealed for _, _, sealed in rows],
                    "news": [box.seal(box.open(sealed, bound), bound) for _, bound, sealed in rows],
                    "key_id": box.current,
                    **logging,
                }
                done += yield from self._count(reseal, params)
                after = rows[-1][0]
                if progress is not None:
                    progress(done)
        return done

    # -- answering ----------------------------------------------------------------------

    def complete_login(  # noqa: PLR0917 - the facades pass them in order
        self,
        ticket: object,
        totp: object,
        recovery_code: object,
        source: object,
        user_agent: object,
        passkey: object = None,
    ) -> Operation[LoginOutcome]:
        text = checks.session_key(ticket)
        if passkey is not None:
            if totp is not None or recovery_code is not None:
                raise BadCallError("give exactly one of totp, recovery_code and passkey")
            credential = relying_party.credential_json(passkey, "passkey")
            params = self._ticket_params(text, "passkey", source, user_agent)
            params["credential_id"] = relying_party.credential_id(credential)
            return self._complete_with_passkey(looks_like_session_key(text), credential, params)
        method, answer = _one_answer(totp, recovery_code)
        params = self._ticket_params(text, method, source, user_agent)
        return self._complete_login(looks_like_session_key(text), answer, params)

    def _ticket_params(
        self, text: str, method: str, source: object, user_agent: object
    ) -> dict[str, Any]:
        checked_source = checks.source(source)
        agent = None if user_agent is None else checks.label(user_agent, "user_agent", 512)
        return {
            "ticket": digest(text),
            "attempts": TICKET_ATTEMPTS,
            "source": checked_source,
            "source_subject": checked_source and SOURCE_SUBJECT + checked_source,
            "user_agent": agent,
            "method": method,
            **SUBJECT_PREFIXES,
            **recording.parameters(time.time(), checked_source),
        }

    def _complete_with_passkey(
        self, well_formed: bool, credential: dict[str, Any], params: dict[str, Any]
    ) -> Operation[LoginOutcome]:
        if not well_formed:
            return _refused(NOT_FOUND)
        row = yield Execute(self._sql(TICKET_PASSKEY_LOOKUP, until=THROTTLED_UNTIL), params)
        if row is None:
            return _refused(NOT_FOUND)
        userid, name_key, login_source, usable, wait, challenge, *passkey = row[:10]
        factor_id, public_key, count, cloned = passkey
        if not usable:
            return _refused(EXPIRED)
        if wait > 0:
            return LoginOutcome(THROTTLED, "", False, None, wait)
        self._answer_from(params, userid, name_key, login_source)
        if challenge is None or factor_id is None or cloned:
            return (yield from self._wrong_answer(params))
        rp = relying_party.party(*row[10:])
        checked = yield Offload(
            relying_party.verify_assertion, (rp, bytes(challenge), credential, bytes(public_key))
        )
        if isinstance(checked, str) or relying_party.went_backwards(count, checked):
            return (yield from self._wrong_answer(params))
        proof = {**NO_PROOF, "passkey_id": factor_id, "sign_count": checked, "old_count": count}
        return (yield from self._open_from_ticket(params, proof))

    def _answer_from(
        self, params: dict[str, Any], userid: int, name_key: str, login_source: str | None
    ) -> None:
        """Who a ticket's answer is counted against: the ticket's user and login name,
        and the source the answer gives (else the login's)."""
        source = params["source"] or login_source
        params.update(
            userid=userid,
            name_key=name_key,
            source=source,
            source_subject=source and SOURCE_SUBJECT + source,
            event_source=params["event_source"] or login_source,
        )

    def _complete_login(
        self, well_formed: bool, answer: str | None, params: dict[str, Any]
    ) -> Operation[LoginOutcome]:
        if not well_formed:
            return _refused(NOT_FOUND)
        row = yield Execute(self._sql(TICKET_LOOKUP, until=THROTTLED_UNTIL), params)
        if row is None:
            return _refused(NOT_FOUND)
        userid, name_key, login_source, usable, wait, factor_ids, seeds = row
        if not usable:
            return _refused(EXPIRED)
        if wait > 0:
            return LoginOutcome(THROTTLED, "", False, None, wait)
        self._answer_from(params, userid, name_key, login_source)
        proof = self._proof(params["method"], answer, factor_ids, seeds, params["now"])
        if proof is None:
            return (yield from self._wrong_answer(params))
        return (yield from self._open_from_ticket(params, proof))

    def _open_from_ticket(
        self, params: dict[str, Any], proof: dict[str, Any]
    ) -> Operation[LoginOutcome]:
        """Consume the proof and the ticket, and open the session, in one statement."""
        key = new_session_key()
        params.update(proof, key=key, stored=stored_form(key))
        done = yield from self._logged(self._sql(COMPLETE_LOGIN, **LOGS), params)
        assert done is not None  # the statement always returns one row
        had_ticket, proved, opened, admin = done
        if not had_ticket:  # answered meanwhile, or gone
            return _refused(NOT_FOUND)
        if not proved:  # a code used already, or a recovery code that is not there
            return (yield from self._wrong_answer(params))
        if not opened:  # the password changed or the sessions were ended meanwhile
            return REJECTED_LOGIN
        return LoginOutcome(OK, key, bool(admin), params["userid"], 0.0)

    def _proof(
        self,
        method: str,
        answer: str | None,
        factor_ids: list[str],
        seeds: list[str],
        now: float,
    ) -> dict[str, Any] | None:
        """What proves ``answer`` (a TOTP factor's id and step, or a recovery code's
        digest), or None when nothing can."""
        if answer is None:
            return None
        if method == "recovery_code":
            code = recovery_digest(answer)
            return None if code is None else {**NO_PROOF, "code": code}
        for factor_id, sealed in zip(factor_ids, seeds, strict=True):
            seed = self._sealing().open(sealed, factor_id).decode()
            step = matching_step(seed, answer, now)
            if step is not None:
                return {**NO_PROOF, "factor_id": factor_id, "step": step}
        return None

    def _wrong_answer(self, params: dict[str, Any]) -> Operation[LoginOutcome]:
        failure = {"failure_kind": "login.mfa_failed", "failure_reason": params["method"]}
        query = self._sql(RECORD_FAILURE, restart=COUNT_RESTARTS, also=SPEND_ATTEMPT, **LOGS)
        yield from self._logged(query, {**params, **failure})
        return REJECTED_LOGIN

    def reauthenticate(
        self, key: object, password: object, totp: object, recovery_code: object
    ) -> Operation[Status]:
        text = checks.session_key(key)
        given = [
            (name, value)
            for name, value in (
                ("password", password),
                ("totp", totp),
                ("recovery_code", recovery_code),
            )
            if value is not None
        ]
        if len(given) != 1:
            raise BadCallError("give exactly one of password, totp and recovery_code")
        method, value = given[0]
        answer = checks.password(value) if method == "password" else _answer(method, value)
        params: dict[str, Any] = {
            "key": text,
            "stored": stored_form(text),
            "legacy": looks_like_legacy_key(text),
            "method": method,
            "source": None,
            "source_subject": None,
            **SUBJECT_PREFIXES,
            **recording.parameters(time.time()),
        }
        return self._reauthenticate(text, answer, params)

    def _reauthenticate(
        self, key: str, answer: str | None, params: dict[str, Any]
    ) -> Operation[Status]:
        if not (looks_like_session_key(key) or looks_like_legacy_key(key)):
            return NOT_FOUND
        row = yield Execute(self._sql(SESSION_PROOFS, until=THROTTLED_UNTIL), params)
        if row is None:
            return NOT_FOUND
        userid, name_key, stored_hash, legacy, wait, factor_ids, seeds = row
        if wait > 0:
            return THROTTLED
        params.update(userid=userid, name_key=name_key, **NO_PROOF)
        method = params["method"]
        if method == "password":
            assert answer is not None  # a password is always checked
            verdict = yield Offload(self.passwords.verify, (stored_hash, answer, legacy))
            proof = NO_PROOF if verdict.matches else None
        else:
            proof = self._proof(method, answer, factor_ids, seeds, params["now"])
        if proof is not None:
            params.update(proof)
            row = yield from self._logged(self._sql(REAUTHENTICATE, **LOGS), params)
            assert row is not None  # the statement always returns one row
            if row[0]:
                return OK
        failure = {"failure_kind": "login.failed", "failure_reason": f"reauthenticate: {method}"}
        query = self._sql(RECORD_FAILURE, restart=COUNT_RESTARTS, also="", **LOGS)
        yield from self._logged(query, {**params, **failure})
        return REJECTED


def _one_answer(totp: object, recovery_code: object) -> tuple[str, str | None]:
    """The one second-factor answer given: its method and its text (None for text that
    cannot be one, which counts as a wrong answer)."""
    if (totp is None) == (recovery_code is None):
        raise BadCallError("give exactly one of totp and recovery_code")
    if totp is not None:
        return "totp", _answer("totp", totp)
    return "recovery_code", _answer("recovery_code", recovery_code)


def _answer(method: str, value: object) -> str | None:
    if method == "totp":
        return _code(value)
    text = checks.text(value, "recovery_code", 64)
    return text if recovery_digest(text) is not None else None


def _refused(status: Status) -> LoginOutcome:
    return LoginOutcome(status, "", False, None, 0.0)


def _when(moment: datetime | None) -> float | None:
    return None if moment is None else moment.timestamp()


def _qr_svg(uri: str) -> str:
    try:
        import segno  # noqa: PLC0415 - an extra's library, loaded when a factor is made
    except ImportError:  # pragma: no cover - the mfa extra is missing
        raise BadCallError(NEEDS_EXTRA) from None
    return str(segno.make(uri, error="m").svg_inline(scale=4, border=2))
