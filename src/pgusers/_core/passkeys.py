"""Passkeys (WebAuthn): registering one from a signed-in session, signing in with one
and no password, and the relying party they are bound to.

A challenge is stored until it is answered once (its row is deleted by the statement
that reads it, so of two racing answers one finds it) or five minutes pass. A
passwordless login costs two statements beside the signature check: one takes the
challenge and finds the credential, its user and the throttle; the other opens the
session (moving the credential's signature count on, guarded against a race) or
records the failure. A count that goes backwards means a copied authenticator: the
credential is flagged and refused until an administrator clears the flag. Failures
count in the login throttle, per the credential's user and per source.
"""

import secrets
import time
from typing import Any, Final

from pgusers._core import checks, identities, recording, relying_party
from pgusers._core.base import LOGS, Part
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
    OPENED_ANSWER,
    RECENT_PROOF,
    RECORD_FAILURE,
    SESSION_CAP,
    SOURCE_SUBJECT,
    SUBJECT_PREFIXES,
    THROTTLE_WAIT,
    THROTTLED_UNTIL,
    counted,
    new_session,
)
from pgusers._core.relying_party import CHALLENGE_LIFETIME
from pgusers._core.retries import retry_safe
from pgusers._core.steps import Execute, Offload, Operation
from pgusers._errors import BadCallError
from pgusers._results import (
    DISABLED,
    EXPIRED,
    NOT_FOUND,
    OK,
    REJECTED,
    REJECTED_LOGIN,
    THROTTLED,
    LoginOutcome,
    PasskeyChallenge,
    Status,
)

MAX_FACTORS: Final = 10
CHALLENGES_PER_SOURCE: Final = 20
"""Unanswered login challenges one source may hold: a newer one replaces the oldest."""
MAX_LABEL: Final = 64

SET_WEBAUTHN: Final = """
    WITH changed AS (
        UPDATE {schema}.settings SET
            webauthn_rp_id = %(rp_id)s, webauthn_rp_name = %(rp_name)s,
            webauthn_origins = %(origins)s
        RETURNING 1
    ), happened AS (
        SELECT 'settings.changed' AS kind, NULL::bigint AS userid, NULL::text AS session_id,
               jsonb_build_object('webauthn_rp_id', %(rp_id)s::text,
                                  'webauthn_origins', %(origins)s::text[]) AS detail
        FROM changed
    ), {log}
    SELECT {logged}
"""

PARTY: Final = "st.webauthn_rp_id, st.webauthn_rp_name, st.webauthn_origins"
"""The relying party's columns of ``{schema}.settings st``."""

PRUNE: Final = """pruned AS (  -- expired challenges go a few at a time
        DELETE FROM {schema}.passkey_challenges WHERE challenge_id IN (
            SELECT challenge_id FROM {schema}.passkey_challenges
            WHERE expires_at < to_timestamp(%(now)s) LIMIT 100)
    )"""

# The live session of the key and whether its proof is recent; the user's handle
# (made on first use); a challenge bound to the session, replacing the user's earlier
# one; the ids of the user's passkeys, for the browser to exclude.
BEGIN_REGISTRATION: Final = (
    """
    WITH live AS (
        SELECT s.userid, s.session_id, u.username,
               coalesce(s.authenticated_at, s.created_at)
                   > to_timestamp(%(now)s) - make_interval(secs => %(recent)s) AS recent,
               (SELECT count(*) FROM {schema}.factors f
                WHERE f.userid = u.userid AND f.confirmed_at IS NOT NULL) < %(most)s AS room
        FROM {schema}.sessions s
        JOIN {schema}.users u ON u.userid = s.userid
        CROSS JOIN {settings} t
        WHERE {live}
    ), ready AS (
        SELECT l.* FROM live l CROSS JOIN {schema}.settings st
        WHERE l.recent AND l.room AND st.webauthn_rp_id IS NOT NULL
    ), handle AS (
        UPDATE {schema}.users u SET passkey_handle = coalesce(u.passkey_handle, %(handle)s)
        FROM ready r WHERE u.userid = r.userid
        RETURNING u.passkey_handle
    ), replaced AS (
        DELETE FROM {schema}.passkey_challenges c USING ready r
        WHERE c.userid = r.userid AND c.purpose = 'register'
    ), {prune}, made AS (
        INSERT INTO {schema}.passkey_challenges (
            challenge_id, challenge, purpose, userid, session_id, label, expires_at)
        SELECT %(challenge_id)s, %(challenge)s, 'register', userid, session_id, %(label)s,
               to_timestamp(%(now)s) + make_interval(secs => %(lifetime)s)
        FROM ready
        RETURNING 1
    )
    SELECT l.username, l.recent, l.room, (SELECT passkey_handle FROM handle),
           ARRAY(SELECT f.credential_id FROM {schema}.factors f
                 WHERE f.userid = l.userid AND f.kind = 'passkey'),
           {party}
    FROM live l CROSS JOIN {schema}.settings st
""".replace("{live}", LIVE_SESSION)
    .replace("{prune}", PRUNE)
    .replace("{party}", PARTY)
)

# The challenge is taken (deleted) whether or not the answer is good; the session
# finishing must be the one that began.
TAKE_REGISTRATION: Final = """
    WITH taken AS (
        DELETE FROM {schema}.passkey_challenges
        WHERE challenge_id = %(challenge_id)s AND purpose = 'register'
        RETURNING *
    )
    SELECT k.challenge, k.expires_at > to_timestamp(%(now)s), k.userid, k.label,
           EXISTS (SELECT 1 FROM {schema}.sessions s
                   JOIN {schema}.users u ON u.userid = s.userid
                   CROSS JOIN {settings} t
                   WHERE {live} AND s.session_id = k.session_id),
           {party}
    FROM taken k CROSS JOIN {schema}.settings st
""".replace("{live}", LIVE_SESSION).replace("{party}", PARTY)

ADD_PASSKEY: Final = """
    WITH made AS (
        INSERT INTO {schema}.factors (
            factor_id, userid, kind, label, created_at, confirmed_at, credential_id,
            public_key, sign_count, transports)
        SELECT %(factor_id)s, u.userid, 'passkey', %(label)s, to_timestamp(%(now)s),
               to_timestamp(%(now)s), %(credential_id)s, %(public_key)s, %(sign_count)s,
               %(transports)s
        FROM {schema}.users u WHERE u.userid = %(userid)s
        ON CONFLICT (credential_id) DO NOTHING
        RETURNING userid, factor_id, kind, label
    ), happened AS (
        SELECT 'mfa.enrolled' AS kind, userid, NULL::text AS session_id,
               jsonb_strip_nulls(jsonb_build_object(
                   'factor_id', factor_id, 'kind', kind, 'label', label)) AS detail
        FROM made
    ), {log}
    SELECT EXISTS (SELECT 1 FROM made), {logged}
"""

# A login challenge, bound to the user of the name given (if any) and to its source:
# a source holds at most CHALLENGES_PER_SOURCE unanswered ones.
BEGIN_LOGIN: Final = """
    WITH crowded AS (
        DELETE FROM {schema}.passkey_challenges WHERE challenge_id IN (
            SELECT challenge_id FROM {schema}.passkey_challenges
            WHERE source IS NOT DISTINCT FROM %(source)s AND purpose = 'login'
            ORDER BY expires_at DESC OFFSET %(per_source)s - 1)
    ), {prune}, made AS (
        INSERT INTO {schema}.passkey_challenges (
            challenge_id, challenge, purpose, userid, source, expires_at)
        SELECT %(challenge_id)s, %(challenge)s, 'login',
               (SELECT userid FROM {schema}.users WHERE username_key = %(name_key)s),
               %(source)s, to_timestamp(%(now)s) + make_interval(secs => %(lifetime)s)
        FROM {schema}.settings st WHERE st.webauthn_rp_id IS NOT NULL
        RETURNING 1
    )
    SELECT {party} FROM {schema}.settings st
""".replace("{prune}", PRUNE).replace("{party}", PARTY)

# The second step of a login: a challenge bound to its ticket, listing the passkeys
# of the ticket's user (the password was right, so naming them reveals nothing).
BEGIN_SECOND_STEP: Final = """
    WITH ticket AS (
        SELECT k.userid, k.digest FROM {schema}.login_tickets k
        WHERE k.digest = %(ticket)s AND k.expires_at > to_timestamp(%(now)s)
    ), replaced AS (
        DELETE FROM {schema}.passkey_challenges c USING ticket k
        WHERE c.ticket = k.digest
    ), {prune}, made AS (
        INSERT INTO {schema}.passkey_challenges (
            challenge_id, challenge, purpose, userid, ticket, expires_at)
        SELECT %(challenge_id)s, %(challenge)s, 'second_factor', k.userid, k.digest,
               to_timestamp(%(now)s) + make_interval(secs => %(lifetime)s)
        FROM ticket k CROSS JOIN {schema}.settings st WHERE st.webauthn_rp_id IS NOT NULL
        RETURNING 1
    )
    SELECT ARRAY(SELECT f.credential_id FROM {schema}.factors f
                 WHERE f.userid = k.userid AND f.kind = 'passkey'
                   AND f.confirmed_at IS NOT NULL AND f.cloned_at IS NULL
                 ORDER BY f.created_at),
           {party}
    FROM ticket k CROSS JOIN {schema}.settings st
""".replace("{prune}", PRUNE).replace("{party}", PARTY)

# The first statement of a passwordless login: the challenge taken, the credential
# the answer names, its user, and how long that user's name and this source must wait.
TAKE_LOGIN: Final = """
    WITH taken AS (
        DELETE FROM {schema}.passkey_challenges
        WHERE challenge_id = %(challenge_id)s AND purpose = 'login'
        RETURNING challenge, userid, expires_at
    ), found AS (
        SELECT f.factor_id, f.userid, f.public_key, f.sign_count, f.cloned_at IS NOT NULL
                   AS cloned,
               u.username_key, u.disabled
        FROM {schema}.factors f JOIN {schema}.users u ON u.userid = f.userid
        WHERE f.credential_id = %(credential_id)s AND f.kind = 'passkey'
          AND f.confirmed_at IS NOT NULL
    )
    SELECT k.challenge, k.expires_at > to_timestamp(%(now)s), k.userid,
           cred.factor_id, cred.userid, cred.public_key, cred.sign_count, cred.cloned,
           cred.username_key, cred.disabled, {wait}, {party}
    FROM {settings} t CROSS JOIN {schema}.settings st
    LEFT JOIN taken k ON true
    LEFT JOIN found cred ON true
""".replace(
    "{wait}",
    THROTTLE_WAIT.replace("%(name_key)s", "cred.username_key"),
).replace("{party}", PARTY)

# The second statement of a good answer: the count moves on (only from the value
# read, and never for a flagged credential: of two racing answers, one opens a
# session), and the session opens with "passkey" as its proof.
OPEN_WITH_PASSKEY: Final = (
    counted("""
    WITH counted_on AS (
        UPDATE {schema}.factors
        SET sign_count = %(sign_count)s, last_used_at = to_timestamp(%(now)s)
        WHERE factor_id = %(factor_id)s AND sign_count = %(old_count)s AND cloned_at IS NULL
        RETURNING userid
    ), opened AS (
        {new_session}
        FROM counted_on c
        JOIN {schema}.users u ON u.userid = c.userid
        CROSS JOIN {settings} t
        WHERE NOT u.disabled
        RETURNING userid, session_id
    ), {cap}, {cleared}, happened AS (
        SELECT 'login.succeeded' AS kind, userid, session_id,
               jsonb_strip_nulls(jsonb_build_object(
                   'user_agent', %(user_agent)s::text, 'method', 'passkey')) AS detail
        FROM opened
        UNION ALL
        {capped_event}
    ), {log}
    {opened_answer}
""")
    .replace(
        "{new_session}", new_session("u.userid", "u.generation + t.generation", "ARRAY['passkey']")
    )
    .replace("{cap}", SESSION_CAP)
    .replace("{cleared}", CLEARED_ON_SUCCESS)
    .replace("{opened_answer}", OPENED_ANSWER)
    .replace("{capped_event}", CAPPED_EVENT)
)

FLAG_CLONED: Final = """flagged AS (  -- a copied authenticator: refused until cleared
        UPDATE {schema}.factors SET cloned_at = to_timestamp(%(now)s)
        WHERE factor_id = %(factor_id)s AND cloned_at IS NULL
    ), """
"""RECORD_FAILURE's extra step when a signature count went backwards (its event is
then ``passkey.cloned``)."""

CLEAR_FLAG: Final = """
    WITH cleared AS (
        UPDATE {schema}.factors SET cloned_at = NULL, sign_count = 0
        WHERE factor_id = %(factor_id)s AND userid = %(userid)s AND kind = 'passkey'
          AND cloned_at IS NOT NULL
        RETURNING userid, factor_id
    ), happened AS (
        SELECT 'passkey.flag_cleared' AS kind, userid, NULL::text AS session_id,
               jsonb_build_object('factor_id', factor_id) AS detail
        FROM cleared
    ), {log}
    SELECT factor_id, {logged} FROM cleared
"""

RENAME_FACTOR: Final = """
    WITH renamed AS (
        UPDATE {schema}.factors SET label = %(label)s
        WHERE factor_id = %(factor_id)s AND userid = %(userid)s
        RETURNING userid, factor_id
    ), happened AS (
        SELECT 'mfa.renamed' AS kind, userid, NULL::text AS session_id,
               jsonb_build_object('factor_id', factor_id, 'label', %(label)s::text) AS detail
        FROM renamed
    ), {log}
    SELECT factor_id, {logged} FROM renamed
"""


class PasskeysPart(Part):
    """The operations on passkeys and the relying party."""

    @retry_safe
    def set_webauthn(self, rp_id: object, rp_name: object, origins: object) -> Operation[None]:
        rp = relying_party.checked_party(rp_id, rp_name, origins)
        params = {
            "rp_id": rp.rp_id,
            "rp_name": rp.name,
            "origins": list(rp.origins),
            **recording.parameters(time.time()),
        }
        return self._change(self._sql(SET_WEBAUTHN, **LOGS), params)

    # -- registering ---------------------------------------------------------------------

    def begin_passkey_registration(self, key: object, label: object) -> Operation[PasskeyChallenge]:
        text = checks.session_key(key)
        relying_party.library()  # the extra is there, before anything is written
        challenge_id, challenge = relying_party.new_challenge()
        params = {
            "key": text,
            "stored": stored_form(text),
            "legacy": looks_like_legacy_key(text),
            "label": None if label is None else checks.label(label, "label", MAX_LABEL),
            "challenge_id": challenge_id,
            "challenge": challenge,
            "handle": secrets.token_bytes(32),
            "recent": RECENT_PROOF,
            "most": MAX_FACTORS,
            "lifetime": CHALLENGE_LIFETIME,
            "now": time.time(),
        }
        return self._begin_registration(params)

    def _begin_registration(self, params: dict[str, Any]) -> Operation[PasskeyChallenge]:
        row = yield Execute(self._sql(BEGIN_REGISTRATION), params)
        if row is None:
            return PasskeyChallenge(NOT_FOUND, "", "")
        username, recent, room, handle, excluded, *stored = row
        rp = relying_party.party(*stored)
        if not room:
            raise BadCallError(f"a user has at most {MAX_FACTORS} second factors")
        if not recent:
            return PasskeyChallenge(REJECTED, "", "")
        options = relying_party.registration_options(
            rp, params["challenge"], bytes(handle), username, [bytes(c) for c in excluded]
        )
        return PasskeyChallenge(OK, params["challenge_id"], options)

    def finish_passkey_registration(
        self, key: object, challenge_id: object, credential: object
    ) -> Operation[str]:
        text = checks.session_key(key)
        answer = relying_party.credential_json(credential)
        params = {
            "key": text,
            "stored": stored_form(text),
            "legacy": looks_like_legacy_key(text),
            "challenge_id": checks.text(challenge_id, "challenge_id", 64),
            "factor_id": secrets.token_urlsafe(12),
            **recording.parameters(time.time()),
        }
        return self._finish_registration(params, answer)

    def _finish_registration(
        self, params: dict[str, Any], answer: dict[str, Any]
    ) -> Operation[str]:
        row = yield Execute(self._sql(TAKE_REGISTRATION), params)
        if row is None:
            raise BadCallError("this registration was finished already or never begun: begin again")
        challenge, live, userid, label, same_session, *stored = row
        if not live:
            raise BadCallError("this registration has expired: begin again")
        if not same_session:
            raise BadCallError("this registration was begun by another session, or it ended")
        rp = relying_party.party(*stored)
        made = yield Offload(relying_party.verify_registration, (rp, bytes(challenge), answer))
        if isinstance(made, str):
            raise BadCallError(f"the passkey could not be verified: {made}")
        params.update(
            userid=userid,
            label=label,
            credential_id=made.credential_id,
            public_key=made.public_key,
            sign_count=made.sign_count,
            transports=made.transports,
        )
        added = yield from self._logged(self._sql(ADD_PASSKEY, **LOGS), params)
        assert added is not None  # the statement always returns one row
        if not added[0]:
            raise BadCallError("this passkey is registered already")
        return str(params["factor_id"])

    # -- signing in ----------------------------------------------------------------------

    def begin_passkey_login(
        self, username: object, ticket: object, source: object
    ) -> Operation[PasskeyChallenge]:
        relying_party.library()
        challenge_id, challenge = relying_party.new_challenge()
        params: dict[str, Any] = {
            "challenge_id": challenge_id,
            "challenge": challenge,
            "lifetime": CHALLENGE_LIFETIME,
            "now": time.time(),
        }
        if ticket is not None:
            if username is not None:
                raise BadCallError("give a username or a ticket, not both")
            text = checks.session_key(ticket)
            params["ticket"] = digest(text)
            return self._begin_second_step(params, looks_like_session_key(text))
        params.update(
            name_key=None if username is None else identities.username_key(username),
            source=checks.source(source),
            per_source=CHALLENGES_PER_SOURCE,
        )
        return self._begin_login(params)

    def _begin_login(self, params: dict[str, Any]) -> Operation[PasskeyChallenge]:
        row = yield Execute(self._sql(BEGIN_LOGIN), params)
        assert row is not None  # the settings have one row
        rp = relying_party.party(*row)
        options = relying_party.authentication_options(rp, params["challenge"], [])
        return PasskeyChallenge(OK, params["challenge_id"], options)

    def _begin_second_step(
        self, params: dict[str, Any], well_formed: bool
    ) -> Operation[PasskeyChallenge]:
        if not well_formed:
            return PasskeyChallenge(NOT_FOUND, "", "")
        row = yield Execute(self._sql(BEGIN_SECOND_STEP), params)
        if row is None:
            return PasskeyChallenge(NOT_FOUND, "", "")
        allowed, *stored = row
        rp = relying_party.party(*stored)
        options = relying_party.authentication_options(
            rp, params["challenge"], [bytes(c) for c in allowed]
        )
        return PasskeyChallenge(OK, params["challenge_id"], options)

    def finish_passkey_login(
        self,
        challenge_id: object,
        credential: object,
        source: object,
        user_agent: object,
        extra_data: object = None,
    ) -> Operation[LoginOutcome]:
        answer = relying_party.credential_json(credential)
        checked_source = checks.source(source)
        params: dict[str, Any] = {
            "challenge_id": checks.text(challenge_id, "challenge_id", 64),
            "credential_id": relying_party.credential_id(answer),
            "name_key": None,
            "userid": None,
            "source": checked_source,
            "source_subject": checked_source and SOURCE_SUBJECT + checked_source,
            "user_agent": None
            if user_agent is None
            else checks.label(user_agent, "user_agent", 512),
            "extra_data": self.codec.dumps(extra_data),
            **SUBJECT_PREFIXES,
            **recording.parameters(time.time(), checked_source),
        }
        return self._finish_login(params, answer)

    def _finish_login(
        self, params: dict[str, Any], answer: dict[str, Any]
    ) -> Operation[LoginOutcome]:
        row = yield Execute(self._sql(TAKE_LOGIN, until=THROTTLED_UNTIL), params)
        assert row is not None  # the settings have one row
        challenge, live, bound, factor_id, owner, public_key, count, cloned, name_key = row[:9]
        disabled, wait, *stored = row[9:]
        params.update(userid=owner, name_key=name_key, factor_id=factor_id)
        if challenge is None:
            return (yield from self._refuse(params, NOT_FOUND, "challenge unknown or used"))
        if not live:
            return (yield from self._refuse(params, EXPIRED, "challenge expired"))
        if factor_id is None:
            return (yield from self._refuse(params, REJECTED, "unknown credential"))
        if wait > 0:
            return LoginOutcome(THROTTLED, "", False, None, wait)
        if bound is not None and bound != owner:
            return (yield from self._refuse(params, REJECTED, "credential of another user"))
        if cloned:
            return (yield from self._refuse(params, REJECTED, "credential flagged as cloned"))
        rp = relying_party.party(*stored)
        checked = yield Offload(
            relying_party.verify_assertion, (rp, bytes(challenge), answer, bytes(public_key))
        )
        if isinstance(checked, str):
            return (yield from self._refuse(params, REJECTED, checked))
        if relying_party.went_backwards(count, checked):
            return (yield from self._refuse(params, REJECTED, "signature count went back", True))
        if disabled:
            return LoginOutcome(DISABLED, "", False, None, 0.0)
        key = new_session_key()
        params.update(key=key, stored=stored_form(key), sign_count=checked, old_count=count)
        done = yield from self._logged(self._sql(OPEN_WITH_PASSKEY, **LOGS), params)
        assert done is not None  # the statement always returns one row
        opened, admin = done
        if not opened:  # answered meanwhile by a racing call, flagged, or disabled
            return REJECTED_LOGIN
        return LoginOutcome(OK, key, bool(admin), owner, 0.0)

    def _refuse(
        self, params: dict[str, Any], status: Status, reason: str, cloned: bool = False
    ) -> Operation[LoginOutcome]:
        """Record a refused passkey answer: a failure in the throttle (the user's name
        when the credential is known, and the source) and its event; a credential whose
        count went back is flagged."""
        failure = {
            "failure_kind": "passkey.cloned" if cloned else "login.failed",
            "failure_reason": f"passkey: {reason}",
        }
        also = FLAG_CLONED if cloned else ""
        query = self._sql(RECORD_FAILURE, restart=COUNT_RESTARTS, also=also, **LOGS)
        yield from self._logged(query, {**params, **failure})
        return LoginOutcome(status, "", False, None, 0.0)

    # -- the flag, labels ----------------------------------------------------------------

    def clear_passkey_flag(self, userid: object, factor_id: object) -> Operation[Status]:
        params = {
            "userid": checks.userid(userid),
            "factor_id": checks.text(factor_id, "factor_id", 64),
            **recording.parameters(time.time()),
        }
        return self._status_of(self._sql(CLEAR_FLAG, **LOGS), params)

    def rename_factor(self, userid: object, factor_id: object, label: object) -> Operation[Status]:
        params = {
            "userid": checks.userid(userid),
            "factor_id": checks.text(factor_id, "factor_id", 64),
            "label": None if label is None else checks.label(label, "label", MAX_LABEL),
            **recording.parameters(time.time()),
        }
        return self._status_of(self._sql(RENAME_FACTOR, **LOGS), params)
