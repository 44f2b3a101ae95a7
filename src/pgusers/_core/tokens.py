"""One-time tokens: issued for a purpose (a password reset, an email to verify or
to change to), stored as digests, and used once.
"""

import time
from typing import Any, Final

from psycopg import errors as pgerrors

from pgusers._core import checks, identities, recording
from pgusers._core.base import LOGS, Part, duplicate
from pgusers._core.keys import digest, looks_like_session_key, new_token
from pgusers._core.logins import SUBJECT_PREFIXES, failures_of_name
from pgusers._core.retries import retry_safe
from pgusers._core.steps import Execute, Offload, Operation
from pgusers._errors import BadCallError
from pgusers._results import EXPIRED, NOT_FOUND, OK, Status

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

TOKEN_LIFETIMES: Final = {
    "reset_password": 3600.0,
    "verify_email": 3 * 86400.0,
    "change_email": 3 * 86400.0,
}
"""The purposes of one-time tokens, and how long each lives unless told otherwise."""


class TokensPart(Part):
    """The operations on tokens."""

    @retry_safe  # a repeated issue revokes the first token and returns a working one
    def issue_token(
        self, userid: object, purpose: object, ttl: object, email: object
    ) -> Operation[str]:
        uid = checks.userid(userid)
        if not isinstance(purpose, str) or purpose not in TOKEN_LIFETIMES:
            raise BadCallError(f"purpose must be one of {', '.join(TOKEN_LIFETIMES)}")
        seconds = TOKEN_LIFETIMES[purpose] if ttl is None else checks.ttl(ttl)
        if (purpose == "change_email") != (email is not None):
            raise BadCallError("email= is the new address, given with change_email only")
        address, address_key = (None, None) if email is None else identities.email(email)
        token = new_token()
        params = {
            "userid": uid,
            "purpose": purpose,
            "digest": digest(token),
            "email": address,
            "email_key": address_key,
            "ttl": seconds,
            **recording.parameters(time.time()),
        }
        return self._issue_token(token, params)

    def _issue_token(self, token: str, params: dict[str, Any]) -> Operation[str]:
        row = yield from self._logged(self._sql(ISSUE_TOKEN, **LOGS), params)
        assert row is not None  # the statement always returns one row
        issued, taken = row
        if taken:
            raise BadCallError("a user with that email already exists")
        if not issued:
            raise BadCallError(f"no user has userid {params['userid']}")
        return token

    def reset_password(
        self, token: object, newpassword: object, end_sessions: object
    ) -> Operation[Status]:
        text = checks.session_key(token)
        secret = checks.password(newpassword, "newpassword")
        ending = checks.flag(end_sessions, "end_sessions")
        params: dict[str, Any] = {
            "purposes": ["reset_password"],
            "new_hash": None,
            "end_sessions": ending,
            **SUBJECT_PREFIXES,
            **recording.parameters(time.time()),
        }
        return self._reset_password(text, secret, params)

    def _reset_password(self, token: str, secret: str, params: dict[str, Any]) -> Operation[Status]:
        if not looks_like_session_key(token):
            return NOT_FOUND
        params["digest"] = digest(token)
        state = yield Execute(self._sql(TOKEN_STATE), params)
        if state is None:
            return NOT_FOUND
        if state[0]:  # alive: check and hash only for a token that can be used
            yield from self._policy_allows(secret, "newpassword", params)
            params["new_hash"] = yield Offload(self.passwords.hash, (secret,))
        used = yield from self._logged(self._sql(RESET_PASSWORD, **LOGS), params)
        return _token_status(used)

    def verify_email(self, token: object) -> Operation[Status]:
        text = checks.session_key(token)
        return self._verify_email(text, recording.parameters(time.time()))

    def _verify_email(self, token: str, params: dict[str, Any]) -> Operation[Status]:
        if not looks_like_session_key(token):
            return NOT_FOUND
        params["digest"] = digest(token)
        try:
            used = yield from self._logged(self._sql(VERIFY_EMAIL, **LOGS), params)
        except pgerrors.UniqueViolation as error:  # the new address was taken meanwhile
            raise duplicate(error) from None
        return _token_status(used)


def _token_status(used: tuple[bool] | None) -> Status:
    """The status of a token use: no row, the token was not there (or used already)."""
    if used is None:
        return NOT_FOUND
    return OK if used[0] else EXPIRED
