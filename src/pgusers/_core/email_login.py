"""Signing in by email: a link, or the 6-digit code that came with it, turned into a
session (or, when a second factor is due, a ticket for ``complete_login``).

The link and the code are one token (see :mod:`pgusers._core.outbox`, which issues it
as the mail goes out): using either spends both. A wrong code counts in the login
throttle, against the address and the source, as a wrong password counts against a
login name; a code is only ever tried with the address its mail went to.
"""

import time
from typing import Any, Final

from psycopg import errors as pgerrors

from pgusers._core import checks, identities, recording
from pgusers._core.base import LOGS, Part
from pgusers._core.keys import (
    digest,
    looks_like_session_key,
    new_session_key,
    new_token,
    stored_form,
)
from pgusers._core.logins import (
    CLEARED_ON_SUCCESS,
    COUNT_RESTARTS,
    FACTORS_DUE,
    MAX_AGENT,
    PROVEN_EVENTS,
    PROVEN_STEPS,
    RECORD_FAILURE,
    SESSION_CAP,
    SOURCE_SUBJECT,
    SUBJECT_PREFIXES,
    THROTTLE_WAIT,
    THROTTLED_UNTIL,
    TICKET_LIFETIME,
    TICKET_ROOM,
    TICKETS_PER_USER,
    factors_due,
)
from pgusers._core.steps import Execute, Operation
from pgusers._results import (
    EXPIRED,
    MFA_REQUIRED,
    NOT_FOUND,
    OK,
    REJECTED,
    THROTTLED,
    LoginOutcome,
)

METHOD: Final = "email"
"""How a session opened by a link or a code proved who its user is (auth_methods)."""

USER_STATE: Final = """u.userid, u.disabled, u.generation + t.generation,
           {factors_due},
           t.login_by_email""".replace("{factors_due}", FACTORS_DUE)

LINK_LOOKUP: Final = (
    """
    SELECT {user_state}
    FROM {schema}.tokens k
    JOIN {schema}.users u ON u.userid = k.userid
    CROSS JOIN {settings} t
    WHERE k.digest = %(digest)s AND k.purpose = 'login_link'
"""
).replace("{user_state}", USER_STATE)

# One row whether or not a user has the address: how long the address must still wait
# from this source, and the user's state.
CODE_LOOKUP: Final = (
    """
    SELECT {user_state}, {wait}
    FROM {settings} t
    LEFT JOIN {schema}.users u ON u.email_key = %(name_key)s
"""
).replace("{user_state}", USER_STATE)

BY_LINK: Final = "k.digest = %(digest)s"
BY_CODE: Final = (
    "k.userid = %(userid)s AND k.code = sha256(k.digest || convert_to(%(code)s, 'UTF8'))"
)

# The token is spent by the statement that opens the session (or leaves the ticket):
# of two racing uses, one finds it. The session opens only under the generations
# read before (see OPEN_SESSION), for a user not disabled, while the setting allows.
OPEN_BY_EMAIL: Final = (
    """
    WITH used AS (
        DELETE FROM {schema}.tokens k
        WHERE k.purpose = 'login_link' AND {match}
        RETURNING k.userid, k.expires_at > to_timestamp(%(now)s) AS alive
    ), proven AS (
        SELECT u.userid, u.username_key, u.password_hash, u.generation + t.generation AS gen
        FROM used k
        JOIN {schema}.users u ON u.userid = k.userid
        CROSS JOIN {settings} t
        WHERE k.alive AND NOT u.disabled AND t.login_by_email
          AND u.generation + t.generation = %(generation)s
    ), {proven_steps}, {ticket_room}, {cap}, {cleared}, happened AS (
        SELECT 'token.used' AS kind, userid, NULL::text AS session_id,
               jsonb_build_object('purpose', 'login_link') AS detail
        FROM used WHERE alive
        UNION ALL
        {proven_events}
    ), {log}
    SELECT (SELECT bool_or(alive) FROM used),
           EXISTS (SELECT 1 FROM opened) OR EXISTS (SELECT 1 FROM issued),
           (SELECT u.admin FROM proven p JOIN {schema}.users u ON u.userid = p.userid),
           {logged}
""".replace("{ticket_room}", TICKET_ROOM)
    .replace("{proven_steps}", PROVEN_STEPS)
    .replace("{proven_events}", PROVEN_EVENTS)
    .replace("{cap}", SESSION_CAP)
    .replace("{cleared}", CLEARED_ON_SUCCESS)
)

CODE_FAILURE: Final = {"failure_kind": "login.failed", "failure_reason": "email code"}
CODE_LENGTH: Final = 6


class EmailLoginPart(Part):
    """Signing in by a link or a code sent by mail."""

    def login_with_link(
        self, token: object, source: object, user_agent: object, extra_data: object
    ) -> Operation[LoginOutcome]:
        text = checks.session_key(token)
        params = self._email_attempt(source, user_agent, extra_data) | {"name_key": ""}
        return self._with_link(text, params)

    def _with_link(self, token: str, params: dict[str, Any]) -> Operation[LoginOutcome]:
        if not looks_like_session_key(token):
            return LoginOutcome(NOT_FOUND, "", False, None, 0.0)
        params["digest"] = digest(token)
        user = yield Execute(self._sql(LINK_LOOKUP), params)
        if user is None:
            return LoginOutcome(NOT_FOUND, "", False, None, 0.0)
        outcome = yield from self._open_by_email(params, BY_LINK, user)
        return outcome or LoginOutcome(NOT_FOUND, "", False, None, 0.0)

    def login_with_code(
        self,
        email: object,
        code: object,
        source: object,
        user_agent: object,
        extra_data: object,
    ) -> Operation[LoginOutcome]:
        address_key = identities.email(email)[1]
        answer = checks.text(code, "code", 100).replace(" ", "").replace("-", "")
        params = self._email_attempt(source, user_agent, extra_data) | {
            "name_key": address_key,
            "code": answer,
        }
        return self._with_code(params)

    def _with_code(self, params: dict[str, Any]) -> Operation[LoginOutcome]:
        query = self._sql(CODE_LOOKUP, wait=THROTTLE_WAIT.replace("{until}", THROTTLED_UNTIL))
        row = yield Execute(query, params)
        *user, wait = row
        if wait > 0:
            return LoginOutcome(THROTTLED, "", False, None, wait)
        params["userid"] = user[0]
        well_formed = len(params["code"]) == CODE_LENGTH and params["code"].isdigit()
        if user[0] is not None and well_formed:
            outcome = yield from self._open_by_email(params, BY_CODE, user)
            if outcome is not None:
                return outcome
        query = self._sql(RECORD_FAILURE, restart=COUNT_RESTARTS, also="", **LOGS)
        yield from self._logged(query, params | CODE_FAILURE)
        return LoginOutcome(REJECTED, "", False, None, 0.0)

    def _email_attempt(
        self, source: object, user_agent: object, extra_data: object
    ) -> dict[str, Any]:
        checked_source = checks.source(source)
        agent = None if user_agent is None else checks.label(user_agent, "user_agent", MAX_AGENT)
        return {
            "source": checked_source,
            "source_subject": checked_source and SOURCE_SUBJECT + checked_source,
            "user_agent": agent,
            "extra_data": self.codec.dumps(extra_data),
            "method": METHOD,
            **SUBJECT_PREFIXES,
            **recording.parameters(time.time(), checked_source),
        }

    def _open_by_email(
        self, params: dict[str, Any], match: str, user: list[Any] | tuple[Any, ...]
    ) -> Operation[LoginOutcome | None]:
        """Spend the token ``match`` finds and open a session (or leave a ticket); None
        when no token was found."""
        userid, _disabled, generation, kinds, has_codes, _allowed = user
        due = bool(kinds)
        key, ticket = new_session_key(), new_token()
        params.update(
            userid=userid, generation=generation, ticket_due=due, key=key,
            stored=stored_form(key), ticket=digest(ticket), lifetime=TICKET_LIFETIME,
            kept=TICKETS_PER_USER,
        )  # fmt: skip
        try:
            row = yield from self._logged(self._sql(OPEN_BY_EMAIL, match=match, **LOGS), params)
        except pgerrors.ForeignKeyViolation:  # the user was deleted meanwhile
            return LoginOutcome(REJECTED, "", False, None, 0.0)
        assert row is not None  # the statement always returns one row
        alive, done, admin = row
        if alive is None:
            return None
        if not alive:
            return LoginOutcome(EXPIRED, "", False, None, 0.0)
        if not done:  # disabled, turned off, or changed meanwhile
            return LoginOutcome(REJECTED, "", False, None, 0.0)
        if due:
            factors = factors_due(kinds, has_codes)
            return LoginOutcome(MFA_REQUIRED, "", False, userid, 0.0, ticket, factors)
        return LoginOutcome(OK, key, bool(admin), userid, 0.0)
