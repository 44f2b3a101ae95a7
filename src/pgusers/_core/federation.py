"""Signing in through other sites: identity providers (OpenID Connect, GitHub), the
sign-in's start and callback, the identities linked to users, and the rules that
decide who a provider's account is here.

The linking rules, in one place (:meth:`FederationPart._signed_in_as`):

1. A known (provider, subject) signs in the user it is linked to.
2. An unknown one is linked to the user whose address it gives only when the
   provider is configured ``link_by_verified_email``, the provider says the address
   is verified, and the user here verified it too; the sign-in goes on as that user.
3. Otherwise, when the provider says its address is verified, no user here has that
   address, and the provider allows sign-up, a user is made: a username derived from
   the profile (made unique), the verified address, no password.
4. Anything else is ``LINK_REQUIRED``: the person signs in another way and links the
   provider from their account (``begin_external_login(..., link_to_key=key)``).

Second factors still apply to a sign-in through a provider unless it is
``trusted_for_mfa``; the session's ``auth_methods`` holds ``external:<provider>``.
"""

import hmac
import json
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final, Protocol

from psycopg import errors as pgerrors
from psycopg.types.json import Jsonb

from pgusers._core import checks, identities, oidc, recording
from pgusers._core.base import LOGS, RECORD_EVENT, Part, is_last_way
from pgusers._core.keys import (
    digest,
    looks_like_legacy_key,
    new_session_key,
    new_token,
    stored_form,
)
from pgusers._core.logins import (
    FACTORS_DUE,
    LIVE_SESSION,
    MAX_AGENT,
    PROVEN_EVENTS,
    PROVEN_STEPS,
    RECENT_PROOF,
    SESSION_CAP,
    TICKET_LIFETIME,
    TICKET_ROOM,
    TICKETS_PER_USER,
    factors_due,
    new_session,
)
from pgusers._core.oidc import Endpoints, Profile, Provider, RefusedError, TokenRequest
from pgusers._core.retries import retry_safe
from pgusers._core.steps import Execute, Fetch, Offload, Operation
from pgusers._errors import BadCallError, ProviderUnavailableError
from pgusers._results import (
    DISABLED,
    EXPIRED,
    LAST_METHOD,
    LINK_REQUIRED,
    MFA_REQUIRED,
    NOT_FOUND,
    OK,
    REJECTED,
    ExternalLogin,
    Identity,
    IdentityProvider,
    LoginOutcome,
    Status,
)


class ProviderAsking(Protocol):
    """The HTTP the operations ask for (see :mod:`pgusers._drivers.providers`)."""

    def document(self, url: str, fresh: bool = False) -> tuple[Any, str]: ...

    def exchange(self, request: TokenRequest) -> tuple[Any, str]: ...

    def refresh(self, request: TokenRequest) -> tuple[Any, str]: ...

    def github(self, api: str, access_token: str) -> tuple[Any, str]: ...


UNUSABLE_PASSWORD: Final = "!"  # noqa: S105 - a marker, not a password
"""How the password hash of a user without a password starts: no password verifies
it (it is not a hash at all), and a password set later replaces it."""

MAX_IDENTITIES_LISTED: Final = 100

# -- providers ----------------------------------------------------------------------

SET_PROVIDER: Final = """
    WITH set AS (
        INSERT INTO {schema}.identity_providers AS p (
            name, kind, client_id, client_secret, discovery_url, scopes,
            link_by_verified_email, trusted_for_mfa, allow_signup, keep_claims, keep_tokens,
            created_at)
        VALUES (%(name)s, %(kind)s, %(client_id)s, %(client_secret)s, %(discovery_url)s,
                %(scopes)s, %(link_by_verified_email)s, %(trusted_for_mfa)s,
                %(allow_signup)s, %(keep_claims)s, %(keep_tokens)s, to_timestamp(%(now)s))
        ON CONFLICT (name) DO UPDATE SET
            kind = excluded.kind, client_id = excluded.client_id,
            client_secret = excluded.client_secret, discovery_url = excluded.discovery_url,
            scopes = excluded.scopes, link_by_verified_email = excluded.link_by_verified_email,
            trusted_for_mfa = excluded.trusted_for_mfa, allow_signup = excluded.allow_signup,
            keep_claims = excluded.keep_claims, keep_tokens = excluded.keep_tokens
        RETURNING name, xmax = 0 AS added
    ), happened AS (
        SELECT CASE WHEN added THEN 'provider.added' ELSE 'provider.changed' END AS kind,
               NULL::bigint AS userid, NULL::text AS session_id,
               jsonb_build_object(
                   'provider', name, 'kind', %(kind)s::text,
                   'link_by_verified_email', %(link_by_verified_email)s::boolean,
                   'trusted_for_mfa', %(trusted_for_mfa)s::boolean,
                   'allow_signup', %(allow_signup)s::boolean) AS detail
        FROM set
    ), {log}
    SELECT added, {logged} FROM set
"""

LIST_PROVIDERS: Final = """
    SELECT p.name, p.kind, p.client_id, p.discovery_url, p.scopes, p.link_by_verified_email,
           p.trusted_for_mfa, p.allow_signup, p.keep_claims, p.keep_tokens,
           extract(epoch FROM p.created_at)::float8,
           (SELECT count(*) FROM {schema}.identities i WHERE i.provider = p.name)
    FROM {schema}.identity_providers p ORDER BY p.name
"""

# The provider's identities and sign-ins under way go with it (a user left without a
# way to sign in is refused: see KEEP_A_WAY_IN).
REMOVE_PROVIDER: Final = """
    WITH removed AS (
        DELETE FROM {schema}.identity_providers WHERE name = %(name)s
        RETURNING name
    ), happened AS (
        SELECT 'provider.removed' AS kind, NULL::bigint AS userid, NULL::text AS session_id,
               jsonb_build_object('provider', name, 'identities', (
                   SELECT count(*) FROM {schema}.identities i WHERE i.provider = name))
                   AS detail
        FROM removed
    ), {log}
    SELECT name, {logged} FROM removed
"""

# -- a sign-in's start --------------------------------------------------------------

ASKING: Final = """SELECT s.userid, s.session_id,
               coalesce(s.authenticated_at, s.created_at)
                   > to_timestamp(%(now)s) - make_interval(secs => %(recent)s) AS recent
        FROM {schema}.sessions s
        JOIN {schema}.users u ON u.userid = s.userid
        CROSS JOIN {settings} t
        WHERE {live}""".replace("{live}", LIVE_SESSION)
"""The live session of ``%(key)s``: its user, its id, and whether its user proved who
they are within ``%(recent)s`` seconds."""

# The provider, and when linking, the session asking: live, and whether its user
# proved who they are within RECENT_PROOF.
BEGIN_LOOKUP: Final = """
    SELECT p.kind, p.client_id, p.discovery_url, p.scopes,
           l.userid, l.session_id, l.recent
    FROM {schema}.identity_providers p
    LEFT JOIN ({asking} AND %(linking)s) l ON true
    WHERE p.name = %(provider)s
""".replace("{asking}", ASKING)

# Expired sign-ins go a few at a time; a source has at most FLOWS_PER_SOURCE under way.
BEGIN_FLOW: Final = """
    WITH pruned AS (
        DELETE FROM {schema}.external_logins WHERE state IN (
            SELECT state FROM {schema}.external_logins
            WHERE expires_at < to_timestamp(%(now)s) LIMIT 100)
    ), crowded AS (
        SELECT count(*) >= %(most)s AS crowded FROM {schema}.external_logins
        WHERE source = %(source)s AND expires_at > to_timestamp(%(now)s)
    ), made AS (
        INSERT INTO {schema}.external_logins (
            state, provider, redirect_uri, secrets, userid, session_id, source, expires_at)
        SELECT %(state)s, %(provider)s, %(redirect_uri)s, %(secrets)s, %(userid)s,
               %(session_id)s, %(source)s,
               to_timestamp(%(now)s) + make_interval(secs => %(lifetime)s)
        FROM crowded WHERE NOT crowded.crowded
        RETURNING 1
    )
    SELECT EXISTS (SELECT 1 FROM made)
"""

# -- a sign-in's end --------------------------------------------------------------------

# The sign-in is taken (deleted) whatever happens next: a state is used once.
TAKE_FLOW: Final = """
    WITH taken AS (
        DELETE FROM {schema}.external_logins WHERE state = %(state)s
        RETURNING *
    )
    SELECT k.provider, k.redirect_uri, k.secrets, k.userid, k.session_id,
           k.expires_at > to_timestamp(%(now)s), p.kind, p.client_id, p.client_secret,
           p.discovery_url, p.scopes, p.keep_claims, p.keep_tokens,
           p.link_by_verified_email, p.trusted_for_mfa, p.allow_signup
    FROM taken k JOIN {schema}.identity_providers p ON p.name = k.provider
"""

# Who the identity is here: the user linked to it, and the user with its address.
RESOLVE: Final = """
    SELECT c.how, u.userid, u.disabled, u.generation + t.generation, u.email_verified,
           {factors_due}
    FROM {settings} t CROSS JOIN (
        SELECT 'known' AS how, i.userid FROM {schema}.identities i
        WHERE i.provider = %(provider)s AND i.subject = %(subject)s
        UNION ALL
        SELECT 'email', v.userid FROM {schema}.users v WHERE v.email_key = %(email_key)s
    ) c
    JOIN {schema}.users u ON u.userid = c.userid
""".replace("{factors_due}", FACTORS_DUE)

IDENTITY_COLUMNS: Final = """provider, subject, userid, email, email_verified, claims, tokens,
            linked_at, last_used_at"""
IDENTITY_VALUES: Final = """%(provider)s, %(subject)s, {who}, %(email)s, %(email_verified)s,
               %(claims)s, %(tokens)s, to_timestamp(%(now)s), to_timestamp(%(now)s)"""


def _identity_values(who: str) -> str:
    return IDENTITY_VALUES.replace("{who}", who)


# The sign-in of a known identity, or of one linked by its verified address in this
# same statement (%(link)s): a session, or, when a second factor is due, a ticket for
# complete_login. Either only under the generations read (see OPEN_SESSION).
OPEN_EXTERNAL: Final = (
    """
    WITH linked AS (
        INSERT INTO {schema}.identities ({identity_columns})
        SELECT {identity_values} WHERE %(link)s
        ON CONFLICT DO NOTHING
        RETURNING userid
    ), used AS (
        UPDATE {schema}.identities
        SET email = %(email)s, email_verified = %(email_verified)s, claims = %(claims)s,
            tokens = coalesce(%(tokens)s, tokens), last_used_at = to_timestamp(%(now)s)
        WHERE provider = %(provider)s AND subject = %(subject)s AND userid = %(userid)s
          AND NOT %(link)s
        RETURNING userid
    ), proven AS (
        SELECT u.userid, u.username_key, u.password_hash, u.generation + t.generation AS gen
        FROM (SELECT userid FROM linked UNION ALL SELECT userid FROM used) p
        JOIN {schema}.users u ON u.userid = p.userid
        CROSS JOIN {settings} t
        WHERE NOT u.disabled AND u.generation + t.generation = %(generation)s
    ), {proven_steps}, {ticket_room}, {cap}, happened AS (
        SELECT 'identity.linked' AS kind, userid, NULL::text AS session_id,
               jsonb_build_object('provider', %(provider)s::text, 'how', 'verified email')
                   AS detail
        FROM linked
        UNION ALL
        {proven_events}
        UNION ALL
        SELECT 'login.failed', %(userid)s::bigint, NULL,
               jsonb_build_object('reason', 'changed meanwhile', 'method', %(method)s::text)
        WHERE NOT EXISTS (SELECT 1 FROM opened) AND NOT EXISTS (SELECT 1 FROM issued)
    ), {log}
    SELECT EXISTS (SELECT 1 FROM opened) OR EXISTS (SELECT 1 FROM issued),
           (SELECT u.admin FROM proven p JOIN {schema}.users u ON u.userid = p.userid),
           {logged}
""".replace("{identity_columns}", IDENTITY_COLUMNS)
    .replace("{identity_values}", _identity_values("%(userid)s"))
    .replace("{ticket_room}", TICKET_ROOM)
    .replace("{proven_steps}", PROVEN_STEPS)
    .replace("{proven_events}", PROVEN_EVENTS)
    .replace("{cap}", SESSION_CAP)
)

# A new user, made for a provider's verified address, with the identity linked and
# the first session opened, in one statement. A username or address taken meanwhile
# makes nothing (the caller tries the next username, or finds the address's user).
CREATE_EXTERNAL_USER: Final = (
    """
    WITH created AS (
        INSERT INTO {schema}.users (
            username, username_key, username_skeleton, email, email_key, email_verified,
            password_hash, admin)
        VALUES (%(username)s, %(username_key)s, %(skeleton)s, %(email)s, %(email_key)s, true,
                %(unusable)s, false)
        ON CONFLICT DO NOTHING
        RETURNING userid, username, email
    ), linked AS (
        INSERT INTO {schema}.identities ({identity_columns})
        SELECT {identity_values} FROM created c
        RETURNING userid
    ), opened AS (
        {new_session}
        FROM linked l CROSS JOIN {settings} t
        RETURNING userid, session_id
    ), happened AS (
        SELECT 'user.created' AS kind, userid, NULL::text AS session_id,
               jsonb_build_object('username', username, 'email', email, 'admin', false,
                                  'provider', %(provider)s::text) AS detail
        FROM created
        UNION ALL
        SELECT 'identity.linked', userid, NULL,
               jsonb_build_object('provider', %(provider)s::text, 'how', 'new user')
        FROM linked
        UNION ALL
        SELECT 'login.succeeded', userid, session_id,
               jsonb_strip_nulls(jsonb_build_object(
                   'user_agent', %(user_agent)s::text, 'method', %(method)s::text))
        FROM opened
    ), {log}
    SELECT (SELECT userid FROM created), {logged}
""".replace("{identity_columns}", IDENTITY_COLUMNS)
    .replace("{identity_values}", _identity_values("c.userid"))
    .replace("{new_session}", new_session("l.userid", "t.generation", "ARRAY[%(method)s::text]"))
)

# A signed-in user links the provider's account: only while the session that began
# is live, and only if the account is linked to no one else and the user has none at
# this provider yet (then the answer names who holds it).
LINK_IDENTITY: Final = """
    WITH asking AS (
        SELECT s.userid, u.admin FROM {schema}.sessions s
        JOIN {schema}.users u ON u.userid = s.userid
        CROSS JOIN {settings} t
        WHERE s.session_id = %(session_id)s AND s.userid = %(userid)s
          AND s.generation = u.generation + t.generation AND NOT u.disabled
          AND s.expires_at > to_timestamp(%(now)s)
          AND coalesce(s.created_at + make_interval(secs => t.session_max_age)
                       > to_timestamp(%(now)s), true)
          AND coalesce(s.ends_at > to_timestamp(%(now)s), true)
    ), linked AS (
        INSERT INTO {schema}.identities ({identity_columns})
        SELECT {identity_values} FROM asking a
        ON CONFLICT DO NOTHING
        RETURNING userid
    ), happened AS (
        SELECT 'identity.linked' AS kind, userid, %(session_id)s::text AS session_id,
               jsonb_build_object('provider', %(provider)s::text, 'how', 'signed in')
                   AS detail
        FROM linked
        UNION ALL
        SELECT 'login.failed', %(userid)s::bigint, %(session_id)s::text,
               jsonb_build_object('reason', CASE
                   WHEN NOT EXISTS (SELECT 1 FROM asking) THEN 'the session linking ended'
                   ELSE 'already linked' END, 'provider', %(provider)s::text)
        WHERE NOT EXISTS (SELECT 1 FROM linked)
    ), {log}
    SELECT EXISTS (SELECT 1 FROM linked), (SELECT admin FROM asking),
           (SELECT userid FROM {schema}.identities
            WHERE provider = %(provider)s AND subject = %(subject)s),
           {logged}
""".replace("{identity_columns}", IDENTITY_COLUMNS).replace(
    "{identity_values}", _identity_values("a.userid")
)

# -- identities ---------------------------------------------------------------------

LIST_IDENTITIES: Final = """
    SELECT provider, subject, email, email_verified, claims,
           extract(epoch FROM linked_at)::float8, extract(epoch FROM last_used_at)::float8
    FROM {schema}.identities WHERE userid = %(userid)s ORDER BY provider LIMIT %(most)s
"""

# A signed-in user unlinks one (within RECENT_PROOF of proving who they are); the
# last way to sign in stays (KEEP_A_WAY_IN refuses the statement).
UNLINK_IDENTITY: Final = """
    WITH live AS (
        {asking}
    ), removed AS (
        DELETE FROM {schema}.identities i USING live l
        WHERE i.userid = l.userid AND i.provider = %(provider)s AND l.recent
        RETURNING i.userid, i.provider, l.session_id
    ), happened AS (
        SELECT 'identity.unlinked' AS kind, userid, session_id,
               jsonb_build_object('provider', provider) AS detail
        FROM removed
    ), {log}
    SELECT (SELECT recent FROM live), EXISTS (SELECT 1 FROM removed), {logged}
""".replace("{asking}", ASKING)

KEPT_TOKENS: Final = """
    SELECT i.subject, i.tokens, p.kind, p.client_id, p.client_secret, p.discovery_url
    FROM {schema}.identities i JOIN {schema}.identity_providers p ON p.name = i.provider
    WHERE i.userid = %(userid)s AND i.provider = %(provider)s
"""

# Refreshed tokens replace the ones read, unless another call refreshed them first.
STORE_TOKENS: Final = """
    UPDATE {schema}.identities SET tokens = %(tokens)s
    WHERE userid = %(userid)s AND provider = %(provider)s AND tokens = %(old)s
"""

REMOVE_IDENTITY: Final = """
    WITH removed AS (
        DELETE FROM {schema}.identities
        WHERE userid = %(userid)s AND provider = %(provider)s
        RETURNING userid, provider
    ), happened AS (
        SELECT 'identity.unlinked' AS kind, userid, NULL::text AS session_id,
               jsonb_build_object('provider', provider, 'by', 'administrator') AS detail
        FROM removed
    ), {log}
    SELECT provider, {logged} FROM removed
"""


@dataclass(frozen=True, slots=True)
class Flow:
    """A sign-in under way, as its callback finds it."""

    provider: Provider
    redirect_uri: str
    verifier: str
    nonce: str
    userid: int | None
    session_id: str | None
    keep_tokens: bool
    link_by_verified_email: bool
    trusted_for_mfa: bool
    allow_signup: bool


@dataclass(frozen=True, slots=True)
class Arrival:
    """A callback's checked arguments, and what its statements share."""

    params: dict[str, Any]
    extra: str | None


class FederationPart(Part):
    """The operations on identity providers and the identities linked through them."""

    # -- providers ------------------------------------------------------------------

    def add_identity_provider(  # noqa: PLR0917 - the facades pass them in order
        self,
        name: object,
        kind: object,
        client_id: object,
        client_secret: object,
        discovery_url: object,
        scopes: object,
        link_by_verified_email: object,
        trusted_for_mfa: object,
        allow_signup: object,
        keep_claims: object,
        keep_tokens: object,
    ) -> Operation[Status]:
        checked = oidc.provider_name(name)
        stored_kind, url = oidc.provider_kind(checked, kind, discovery_url)
        secret = oidc.client_field(client_secret, "client_secret")
        box = self._sealing()
        oidc.libraries()  # the extra is there, before anything is written
        params = {
            "name": checked,
            "kind": stored_kind,
            "client_id": oidc.client_field(client_id, "client_id"),
            "client_secret": box.seal(secret.encode(), oidc.secret_row(checked)),
            "discovery_url": url,
            "scopes": list(oidc.default_scopes(stored_kind, scopes)),
            "link_by_verified_email": checks.flag(link_by_verified_email, "link_by_verified_email"),
            "trusted_for_mfa": checks.flag(trusted_for_mfa, "trusted_for_mfa"),
            "allow_signup": checks.flag(allow_signup, "allow_signup"),
            "keep_claims": list(oidc.claim_names(keep_claims)),
            "keep_tokens": checks.flag(keep_tokens, "keep_tokens"),
            **recording.parameters(time.time()),
        }
        return self._add_provider(params)

    def _add_provider(self, params: dict[str, Any]) -> Operation[Status]:
        if params["kind"] == "oidc":  # a discovery URL that does not answer is refused now
            document, why = yield Offload(
                self._asking().document, (params["discovery_url"], True), waits=True
            )
            if document is None:
                raise BadCallError(f"the discovery document could not be read: {why}")
            try:
                oidc.oidc_endpoints(document)
            except RefusedError as refusal:
                raise BadCallError(str(refusal)) from None
        yield from self._logged(self._sql(SET_PROVIDER, **LOGS), params)
        return OK

    @retry_safe
    def identity_providers(self) -> Operation[list[IdentityProvider]]:
        rows = yield Execute(self._sql(LIST_PROVIDERS), {}, Fetch.ALL)
        return [_provider_row(row) for row in rows]

    def remove_identity_provider(self, name: object) -> Operation[Status]:
        params = {"name": oidc.provider_name(name), **recording.parameters(time.time())}
        return self._remove_provider(params)

    def _remove_provider(self, params: dict[str, Any]) -> Operation[Status]:
        query = self._sql(REMOVE_PROVIDER, **LOGS)
        status = yield from self._status_keeping_a_way_in(query, params)
        if status == LAST_METHOD:
            raise BadCallError(
                "some users sign in only through this provider: give them another way "
                "(a password, a passkey) or delete them first"
            )
        return status

    # -- a sign-in's start ----------------------------------------------------------

    def begin_external_login(
        self, provider: object, redirect_uri: object, link_to_key: object, source: object
    ) -> Operation[ExternalLogin]:
        name = oidc.provider_name(provider)
        uri = oidc.web_address(redirect_uri, "redirect_uri")
        key = None if link_to_key is None else checks.session_key(link_to_key)
        box = self._sealing()
        oidc.libraries()
        state, verifier, nonce = oidc.new_secrets()
        params = {
            "provider": name,
            "redirect_uri": uri,
            "linking": key is not None,
            "key": key or "",
            "stored": stored_form(key or ""),
            "legacy": looks_like_legacy_key(key or ""),
            "recent": RECENT_PROOF,
            "state": digest(state),
            "secrets": box.seal(
                json.dumps({"verifier": verifier, "nonce": nonce}).encode(), "flow:" + state
            ),
            "source": checks.source(source),
            "most": oidc.FLOWS_PER_SOURCE,
            "lifetime": oidc.FLOW_LIFETIME,
            "now": time.time(),
        }
        return self._begin(params, state, verifier, nonce)

    def _begin(
        self, params: dict[str, Any], state: str, verifier: str, nonce: str
    ) -> Operation[ExternalLogin]:
        row = yield Execute(self._sql(BEGIN_LOOKUP), params)
        if row is None:
            raise BadCallError(f"no identity provider {params['provider']!r}")
        kind, client_id, url, scopes, userid, session_id, recent = row
        if params["linking"] and userid is None:
            raise BadCallError("link_to_key names no live session")
        if params["linking"] and not recent:
            raise BadCallError(
                "linking an account needs a session that proved who its user is in the "
                "last ten minutes: reauthenticate first"
            )
        provider = Provider(params["provider"], kind, client_id, "", url, tuple(scopes), ())
        try:
            endpoints = yield from self._endpoints(provider)
        except RefusedError as refusal:
            raise ProviderUnavailableError(str(refusal)) from None
        made = yield Execute(
            self._sql(BEGIN_FLOW), params | {"userid": userid, "session_id": session_id}
        )
        if not (made and made[0]):
            raise BadCallError(
                "too many sign-ins under way from this source: try again in a few minutes"
            )
        address = oidc.authorization_url(
            provider,
            endpoints,
            redirect_uri=params["redirect_uri"],
            state=state,
            verifier=verifier,
            nonce=nonce,
        )
        return ExternalLogin(address, state)

    def _endpoints(self, provider: Provider) -> Operation[Endpoints]:
        if provider.kind == "github":
            return oidc.github_endpoints(provider.discovery_url)
        document, why = yield Offload(
            self._asking().document, (provider.discovery_url,), waits=True
        )
        if document is None:
            raise RefusedError(f"the discovery document could not be read: {why}")
        return oidc.oidc_endpoints(document)

    def _asking(self) -> ProviderAsking:
        if self.providers is None:  # pragma: no cover - every userspace is given one
            raise BadCallError(oidc.NEEDS_EXTRA)
        asking: ProviderAsking = self.providers
        return asking

    # -- a sign-in's end ------------------------------------------------------------

    def finish_external_login(
        self, state: object, callback: object, source: object, user_agent: object,
        extra_data: object,
    ) -> Operation[LoginOutcome]:  # fmt: skip
        kept = checks.text(state, "state", 200)
        arrived = oidc.callback(callback)
        box = self._sealing()
        checked_source = checks.source(source)
        params = {
            "state": digest(kept),
            "source": checked_source,
            "user_agent": (
                None if user_agent is None else checks.label(user_agent, "user_agent", MAX_AGENT)
            ),
            "provider": None,
            **recording.parameters(time.time(), checked_source),
        }
        return self._finish(Arrival(params, self.codec.dumps(extra_data)), kept, arrived, box)

    def _finish(
        self, arrival: Arrival, state: str, arrived: oidc.Callback, box: Any
    ) -> Operation[LoginOutcome]:
        params = arrival.params
        row = yield Execute(self._sql(TAKE_FLOW), params)
        if row is None:
            return (yield from self._turn_away(params, "state unknown or used"))
        (name, redirect_uri, sealed, userid, session_id, fresh, kind, client_id, secret,
         url, scopes, keep_claims, keep_tokens, link_by_email, trusted, signup) = row  # fmt: skip
        params["provider"] = name
        if not fresh:
            yield from self._turn_away(params, "state expired")
            return LoginOutcome(EXPIRED, "", False, None, 0.0)
        if arrived.state is None or not _same(arrived.state, state):
            return (yield from self._turn_away(params, "state mismatch"))
        if arrived.address is not None and not oidc.same_address(redirect_uri, arrived.address):
            return (yield from self._turn_away(params, "redirect URI differs"))
        if arrived.error is not None or arrived.code is None:
            return (yield from self._turn_away(params, f"provider: {arrived.error or 'no code'}"))
        opened = json.loads(box.open(sealed, "flow:" + state))
        flow = Flow(
            _provider(box, name, kind, client_id, secret, url, scopes, keep_claims),
            redirect_uri, opened["verifier"], opened["nonce"], userid, session_id,
            keep_tokens, link_by_email, trusted, signup,
        )  # fmt: skip
        try:
            profile, tokens = yield from self._vouched(flow, arrived.code, params["now"])
        except RefusedError as refusal:
            return (yield from self._turn_away(params, str(refusal)))
        params.update(
            subject=profile.subject,
            email=profile.email,
            email_verified=profile.email_verified,
            claims=Jsonb(profile.kept),
            tokens=(
                box.seal(json.dumps(tokens).encode(), f"tokens:{name}:{profile.subject}")
                if keep_tokens
                else None
            ),
            method=f"external:{name}",
            extra_data=arrival.extra,
        )
        if flow.userid is not None:
            return (yield from self._link(params, flow))
        return (yield from self._signed_in_as(params, flow, profile))

    def _vouched(
        self, flow: Flow, code: str, now: float
    ) -> Operation[tuple[Profile, dict[str, Any]]]:
        """Who the provider says signed in, once the code is exchanged and, for OpenID
        Connect, the ID token checked; raises :class:`RefusedError`."""
        provider = flow.provider
        endpoints = yield from self._endpoints(provider)
        request = TokenRequest(
            endpoints.token, provider.client_id, provider.client_secret, endpoints.client_auth,
            code, flow.redirect_uri, flow.verifier,
        )  # fmt: skip
        tokens, why = yield Offload(self._asking().exchange, (request,), waits=True)
        if tokens is None:
            raise RefusedError(why)
        access = tokens.get("access_token")
        if provider.kind == "github":
            assert endpoints.api is not None
            answer, why = yield Offload(self._asking().github, (endpoints.api, access), waits=True)
            if answer is None:
                raise RefusedError(why)
            profile = oidc.profile_from_github(
                answer["user"], answer["emails"], provider.keep_claims
            )
            return profile, tokens
        assert endpoints.jwks_uri is not None
        for fresh in (False, True):  # a key not in the set: the provider may have rotated
            key_set, why = yield Offload(
                self._asking().document, (endpoints.jwks_uri, fresh), waits=True
            )
            if key_set is None:
                raise RefusedError(f"the provider's keys could not be read: {why}")
            try:
                claims = oidc.check_id_token(
                    tokens.get("id_token"),
                    key_set=key_set,
                    endpoints=endpoints,
                    client_id=provider.client_id,
                    nonce=flow.nonce,
                    access_token=access if isinstance(access, str) else None,
                    now=now,
                )
                break
            except oidc.UnknownKeyError:
                if fresh:
                    raise
        return oidc.profile_from_claims(claims, provider.keep_claims), tokens

    def _signed_in_as(
        self, params: dict[str, Any], flow: Flow, profile: Profile
    ) -> Operation[LoginOutcome]:
        """The linking rules (see the module's description)."""
        email_key = None
        if profile.email is not None:
            try:
                email_key = identities.email(profile.email)[1]
            except BadCallError:
                email_key = None
        for _ in range(3):  # a user made or linked meanwhile is found on the next pass
            rows = yield Execute(self._sql(RESOLVE), params | {"email_key": email_key}, Fetch.ALL)
            found = {how: rest for how, *rest in rows}
            if "known" in found:
                return (yield from self._open(params, flow, found["known"], link=False))
            if not profile.email_verified or email_key is None:
                return (yield from self._turn_away(params, "no verified email", LINK_REQUIRED))
            if "email" in found:
                if flow.link_by_verified_email and found["email"][3]:
                    return (yield from self._open(params, flow, found["email"], link=True))
                reason = "an account has this email"
                return (yield from self._turn_away(params, reason, LINK_REQUIRED))
            if not flow.allow_signup:
                return (yield from self._turn_away(params, "sign-up closed", LINK_REQUIRED))
            outcome = yield from self._create(params, profile, email_key)
            if outcome is not None:
                return outcome
        return (yield from self._turn_away(params, "changed meanwhile"))

    def _open(
        self, params: dict[str, Any], flow: Flow, user: list[Any], *, link: bool
    ) -> Operation[LoginOutcome]:
        userid, disabled, generation, _, kinds, has_codes = user
        params = params | {"userid": userid}
        if disabled:
            return (yield from self._turn_away(params, "disabled", DISABLED))
        due = bool(kinds) and not flow.trusted_for_mfa
        key, ticket = new_session_key(), new_token()
        params.update(
            link=link, generation=generation, ticket_due=due, key=key, stored=stored_form(key),
            ticket=digest(ticket), lifetime=TICKET_LIFETIME, kept=TICKETS_PER_USER,
        )  # fmt: skip
        try:
            row = yield from self._logged(self._sql(OPEN_EXTERNAL, **LOGS), params)
        except pgerrors.ForeignKeyViolation:  # the user was deleted meanwhile
            return (yield from self._turn_away(params, "changed meanwhile"))
        assert row is not None  # the statement always returns one row
        done, admin = row
        if not done:
            return LoginOutcome(REJECTED, "", False, None, 0.0)
        if due:
            factors = factors_due(kinds, has_codes)
            return LoginOutcome(MFA_REQUIRED, "", False, userid, 0.0, ticket, factors)
        return LoginOutcome(OK, key, bool(admin), userid, 0.0)

    def _create(
        self, params: dict[str, Any], profile: Profile, email_key: str
    ) -> Operation[LoginOutcome | None]:
        """A new user for the identity, under the first free username; None when the
        address was taken meanwhile."""
        key = new_session_key()
        for candidate in oidc.username_candidates(profile, params["provider"]):
            try:
                name = identities.username(candidate)
            except BadCallError:
                continue
            name_key = identities.fold(name)
            attempt = params | {
                "username": name,
                "username_key": name_key,
                "skeleton": identities.skeleton(name_key),
                "email_key": email_key,
                "unusable": UNUSABLE_PASSWORD + new_token(),
                "key": key,
                "stored": stored_form(key),
            }
            try:
                row = yield from self._logged(self._sql(CREATE_EXTERNAL_USER, **LOGS), attempt)
            except pgerrors.UniqueViolation:  # the identity was linked meanwhile
                return None
            assert row is not None  # the statement always returns one row
            if row[0] is not None:
                return LoginOutcome(OK, key, False, int(row[0]), 0.0)
            taken = yield Execute(
                self._sql("SELECT 1 FROM {schema}.users WHERE email_key = %(email_key)s"),
                attempt,
            )
            if taken is not None:
                return None
        return (yield from self._turn_away(params, "no free username"))

    def _link(self, params: dict[str, Any], flow: Flow) -> Operation[LoginOutcome]:
        params = params | {"userid": flow.userid, "session_id": flow.session_id}
        row = yield from self._logged(self._sql(LINK_IDENTITY, **LOGS), params)
        assert row is not None  # the statement always returns one row
        linked, admin, holder = row
        if linked or holder == flow.userid:
            return LoginOutcome(OK, "", bool(admin), flow.userid, 0.0)
        return LoginOutcome(REJECTED, "", False, None, 0.0)

    def _turn_away(
        self, params: dict[str, Any], reason: str, status: Status = REJECTED
    ) -> Operation[LoginOutcome]:
        """Record why a callback opened nothing; answer ``status``."""
        refused = {
            "kind": "login.failed",
            "userid": params.get("userid"),
            "detail": Jsonb({"reason": reason[:300], "provider": params.get("provider")}),
        }
        yield from self._logged(self._sql(RECORD_EVENT, **LOGS), params | refused)
        return LoginOutcome(status, "", False, None, 0.0)

    # -- identities -----------------------------------------------------------------

    @retry_safe
    def identities(self, userid: object) -> Operation[list[Identity]]:
        params = {"userid": checks.userid(userid), "most": MAX_IDENTITIES_LISTED}
        rows = yield Execute(self._sql(LIST_IDENTITIES), params, Fetch.ALL)
        return [Identity(*row) for row in rows]

    def unlink_identity(self, key: object, provider: object) -> Operation[Status]:
        text = checks.session_key(key)
        params = {
            "key": text,
            "stored": stored_form(text),
            "legacy": looks_like_legacy_key(text),
            "provider": oidc.provider_name(provider),
            "recent": RECENT_PROOF,
            **recording.parameters(time.time()),
        }
        return self._unlink(params)

    def _unlink(self, params: dict[str, Any]) -> Operation[Status]:
        try:
            row = yield from self._logged(self._sql(UNLINK_IDENTITY, **LOGS), params)
        except pgerrors.RaiseException as error:
            if not is_last_way(error):
                raise
            return LAST_METHOD
        assert row is not None  # the statement always returns one row
        recent, removed = row
        if recent is False:
            return REJECTED
        return OK if removed else NOT_FOUND

    def provider_tokens(self, userid: object, provider: object) -> Operation[dict[str, Any] | None]:
        params = {"userid": checks.userid(userid), "provider": oidc.provider_name(provider)}
        return self._provider_tokens(params, self._sealing())

    def _provider_tokens(
        self, params: dict[str, Any], box: Any
    ) -> Operation[dict[str, Any] | None]:
        row = yield Execute(self._sql(KEPT_TOKENS), params)
        if row is None or row[1] is None:
            return None
        subject, sealed, kind, client_id, secret, url = row
        bound = f"tokens:{params['provider']}:{subject}"
        tokens: dict[str, Any] = json.loads(box.open(sealed, bound))
        expires_at = tokens.get("expires_at")
        fresh_enough = not isinstance(expires_at, int | float) or expires_at > time.time() + 30
        if fresh_enough or not tokens.get("refresh_token"):
            return tokens
        name = params["provider"]
        provider = _provider(box, name, kind, client_id, secret, url)
        try:
            endpoints = yield from self._endpoints(provider)
        except RefusedError as refusal:
            raise ProviderUnavailableError(str(refusal)) from None
        request = TokenRequest(
            endpoints.token, client_id, provider.client_secret, endpoints.client_auth, "", "",
            tokens["refresh_token"],
        )  # fmt: skip
        renewed, why = yield Offload(self._asking().refresh, (request,), waits=True)
        if renewed is None:
            raise ProviderUnavailableError(f"the tokens could not be refreshed: {why}")
        renewed.setdefault("refresh_token", tokens["refresh_token"])
        stored = box.seal(json.dumps(renewed).encode(), bound)
        yield Execute(
            self._sql(STORE_TOKENS), params | {"tokens": stored, "old": sealed}, Fetch.ROWCOUNT
        )
        return dict(renewed)

    def remove_identity(self, userid: object, provider: object) -> Operation[Status]:
        params = {
            "userid": checks.userid(userid),
            "provider": oidc.provider_name(provider),
            **recording.parameters(time.time()),
        }
        return self._remove_identity(params)

    def _remove_identity(self, params: dict[str, Any]) -> Operation[Status]:
        query = self._sql(REMOVE_IDENTITY, **LOGS)
        return (yield from self._status_keeping_a_way_in(query, params))


def _provider(  # noqa: PLR0917 - a stored row's columns, in order
    box: Any,
    name: str,
    kind: str,
    client_id: str,
    sealed_secret: str,
    url: str | None,
    scopes: Iterable[str] = (),
    keep_claims: Iterable[str] = (),
) -> Provider:
    """A provider as stored, its client secret opened."""
    secret = box.open(sealed_secret, oidc.secret_row(name)).decode()
    return Provider(name, kind, client_id, secret, url, tuple(scopes), tuple(keep_claims))


def _provider_row(row: tuple[Any, ...]) -> IdentityProvider:
    name, kind, client_id, url, scopes, link, trusted, signup, claims, *rest = row
    return IdentityProvider(
        name, kind, client_id, url, tuple(scopes), link, trusted, signup, tuple(claims), *rest
    )


def _same(given: str, kept: str) -> bool:
    return hmac.compare_digest(given.encode(), kept.encode())
