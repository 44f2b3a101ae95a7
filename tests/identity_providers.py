"""Identity providers the tests sign in through, each a real HTTP server on the loopback
interface (``support.served``): an OpenID Connect provider whose ID tokens a test can
bend (a wrong issuer, another audience, no signature, a key of the attacker's), and a
small GitHub (authorize, token, ``/user``, ``/user/emails``). The happy path also runs
against a provider that is none of ours: the oidc-provider-mock package.

Both sign a person in at once: the authorization request redirects straight back with
a code, as a provider does for someone already signed in there.
"""

import base64
import hashlib
import json
import secrets
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import httpx
from joserfc import jwt
from joserfc.jwk import ECKey, RSAKey
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

CLIENT_ID = "pgusers-tests"
CLIENT_SECRET = "s3cret-of-the-client"


def s256(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


@dataclass
class Grant:
    """What an authorization code was issued for."""

    client_id: str
    redirect_uri: str
    challenge: str | None
    nonce: str | None
    person: dict[str, Any]


@dataclass
class ScriptedProvider:
    """An OpenID Connect provider whose next ID token a test may bend.

    ``person`` is who signs in (the claims of the ID token beyond the protocol's);
    ``bend_claims`` changes or removes (None) claims of the next token; ``bend_header``
    adds to its header; ``sign_with`` signs it with another key; ``unsigned`` sends it
    with ``"alg": "none"``."""

    base: str = ""
    person: dict[str, Any] = field(default_factory=dict)
    bend_claims: dict[str, Any] = field(default_factory=dict)
    bend_header: dict[str, Any] = field(default_factory=dict)
    sign_with: RSAKey | ECKey | None = None
    unsigned: bool = False
    key: RSAKey = field(
        default_factory=lambda: RSAKey.generate_key(2048, parameters={"kid": "main"})
    )
    codes: dict[str, Grant] = field(default_factory=dict)
    refresh_tokens: set[str] = field(default_factory=set)
    tokens_issued: int = 0
    token_lifetime: int = 3600
    client_auth: str = "client_secret_basic"
    """How its token endpoint takes the client's secret (and the only way it announces)."""
    tenant: str | None = None
    """As Microsoft's multi-tenant endpoint: the discovery document names the issuer
    with a ``{tenantid}`` placeholder, and each token's ``iss`` names its ``tid``."""

    @property
    def issuer(self) -> str:
        return self.base if self.tenant is None else f"{self.base}/{{tenantid}}/v2.0"

    @property
    def discovery_url(self) -> str:
        return f"{self.base}/.well-known/openid-configuration"

    def app(self) -> Starlette:
        async def discovery(request: Request) -> Response:
            return JSONResponse(
                {
                    "issuer": self.issuer,
                    "authorization_endpoint": f"{self.base}/authorize",
                    "token_endpoint": f"{self.base}/token",
                    "jwks_uri": f"{self.base}/jwks",
                    "response_types_supported": ["code"],
                    "subject_types_supported": ["public"],
                    "id_token_signing_alg_values_supported": ["RS256"],
                    "token_endpoint_auth_methods_supported": [self.client_auth],
                }
            )

        async def jwks(request: Request) -> Response:
            return JSONResponse({"keys": [self.key.as_dict(private=False)]})

        async def authorize(request: Request) -> Response:
            query = request.query_params
            code = secrets.token_urlsafe(16)
            self.codes[code] = Grant(
                query["client_id"],
                query["redirect_uri"],
                query.get("code_challenge"),
                query.get("nonce"),
                dict(self.person),
            )
            back = {"code": code, "state": query["state"]}
            return RedirectResponse(f"{query['redirect_uri']}?{urlencode(back)}", 302)

        async def token(request: Request) -> Response:
            form = dict(await request.form())
            if self.client_auth == "client_secret_post":
                client_id, secret = str(form.get("client_id")), str(form.get("client_secret"))
            else:
                basic = request.headers.get("authorization", "").removeprefix("Basic ")
                client_id, _, secret = base64.b64decode(basic).decode().partition(":")
            if (client_id, secret) != (CLIENT_ID, CLIENT_SECRET):
                return JSONResponse({"error": "invalid_client"}, 401)
            if form.get("grant_type") == "refresh_token":
                if form.get("refresh_token") not in self.refresh_tokens:
                    return JSONResponse({"error": "invalid_grant"}, 400)
                self.tokens_issued += 1
                access = f"access-{self.tokens_issued}"
                return JSONResponse(
                    {"access_token": access, "token_type": "Bearer", "expires_in": 3600}
                )
            grant = self.codes.pop(str(form.get("code")), None)
            if grant is None or grant.redirect_uri != form.get("redirect_uri"):
                return JSONResponse({"error": "invalid_grant"}, 400)
            if grant.challenge != s256(str(form.get("code_verifier", ""))):
                return JSONResponse({"error": "invalid_grant", "error_description": "PKCE"}, 400)
            self.tokens_issued += 1
            refresh = secrets.token_urlsafe(16)
            self.refresh_tokens.add(refresh)
            return JSONResponse(
                {
                    "access_token": f"access-{self.tokens_issued}",
                    "token_type": "Bearer",
                    "expires_in": self.token_lifetime,
                    "refresh_token": refresh,
                    "id_token": self.id_token(grant),
                }
            )

        return Starlette(
            routes=[
                Route("/.well-known/openid-configuration", discovery),
                Route("/jwks", jwks),
                Route("/authorize", authorize),
                Route("/token", token, methods=["POST"]),
            ]
        )

    def id_token(self, grant: Grant) -> str:
        now = int(time.time())
        tenant = {} if self.tenant is None else {"tid": self.tenant}
        claims: dict[str, Any] = {
            "iss": self.issuer.replace("{tenantid}", self.tenant or ""),
            **tenant,
            "aud": grant.client_id,
            "iat": now,
            "exp": now + 300,
            **({"nonce": grant.nonce} if grant.nonce else {}),
            **grant.person,
        }
        for name, value in self.bend_claims.items():
            if value is None:
                claims.pop(name, None)
            else:
                claims[name] = value
        if self.unsigned:
            head = base64.urlsafe_b64encode(b'{"alg":"none","typ":"JWT"}').rstrip(b"=")
            body = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=")
            return f"{head.decode()}.{body.decode()}."
        key = self.sign_with or self.key
        header = {"alg": "RS256", "kid": key.kid or "main", **self.bend_header}
        return jwt.encode(header, claims, key)


@dataclass
class FakeGitHub:
    """GitHub's OAuth endpoints and the two API calls pgusers makes, for one person."""

    base: str = ""
    user: dict[str, Any] = field(default_factory=dict)
    emails: list[dict[str, Any]] = field(default_factory=list)
    codes: dict[str, tuple[str, str | None]] = field(default_factory=dict)
    tokens: set[str] = field(default_factory=set)

    def app(self) -> Starlette:
        async def authorize(request: Request) -> Response:
            query = request.query_params
            code = secrets.token_urlsafe(16)
            self.codes[code] = (query["redirect_uri"], query.get("code_challenge"))
            back = {"code": code, "state": query["state"]}
            return RedirectResponse(f"{query['redirect_uri']}?{urlencode(back)}", 302)

        async def token(request: Request) -> Response:
            form = dict(await request.form())
            if (form.get("client_id"), form.get("client_secret")) != (CLIENT_ID, CLIENT_SECRET):
                return JSONResponse({"error": "incorrect_client_credentials"})
            found = self.codes.pop(str(form.get("code")), None)
            if found is None or found[0] != form.get("redirect_uri"):
                return JSONResponse({"error": "bad_verification_code"})
            if found[1] != s256(str(form.get("code_verifier", ""))):
                return JSONResponse({"error": "bad_verification_code"})
            access = "gho_" + secrets.token_urlsafe(20)
            self.tokens.add(access)
            return JSONResponse({"access_token": access, "token_type": "bearer", "scope": ""})

        def authorized(request: Request) -> bool:
            return request.headers.get("authorization", "").removeprefix("Bearer ") in self.tokens

        async def user(request: Request) -> Response:
            if not authorized(request):
                return JSONResponse({"message": "Bad credentials"}, 401)
            return JSONResponse(self.user)

        async def emails(request: Request) -> Response:
            if not authorized(request):
                return JSONResponse({"message": "Bad credentials"}, 401)
            return JSONResponse(self.emails)

        return Starlette(
            routes=[
                Route("/login/oauth/authorize", authorize),
                Route("/login/oauth/access_token", token, methods=["POST"]),
                Route("/api/v3/user", user),
                Route("/api/v3/user/emails", emails),
            ]
        )


def add_provider(usp: Any, provider: ScriptedProvider, name: str = "acme", **options: Any) -> Any:
    """Let ``usp``'s users sign in through the scripted ``provider`` as ``name``."""
    return usp.add_identity_provider(
        name,
        kind="oidc",
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        discovery_url=provider.discovery_url,
        **options,
    )


@contextmanager
def scripted(person: dict[str, Any]) -> Iterator[ScriptedProvider]:
    """A scripted provider on the loopback interface, with ``person`` signing in."""
    from .support import served

    provider = ScriptedProvider(person=person)
    with served(provider.app()) as base:
        provider.base = base
        yield provider


def follow(authorization_url: str, *, form: dict[str, str] | None = None) -> str:
    """Go where the browser would be sent, and return the callback URL the provider
    redirects back to (for oidc-provider-mock, submitting its sign-in form)."""
    with httpx.Client(follow_redirects=False, timeout=10) as client:
        if form is None:
            reply = client.get(authorization_url)
        else:
            reply = client.post(authorization_url, data=form)
    assert reply.status_code in (302, 303), reply.text[:500]
    return reply.headers["location"]


def with_param(url: str, name: str, value: str) -> str:
    """``url`` with one query parameter replaced."""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    query[name] = value
    return parts._replace(query=urlencode(query)).geturl()


Bend = Callable[[ScriptedProvider], None]
