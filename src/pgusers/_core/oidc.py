"""Signing in through another site: the protocol's parts that need no network, through
authlib and joserfc (the ``oidc`` extra). The presets, the authorization URL (with
PKCE and a nonce), a callback's parameters, the ID token's checks, and what is kept
of a profile. The statements live with the operations
(:mod:`pgusers._core.federation`); the HTTP with the drivers
(:mod:`pgusers._drivers.providers`); this module holds no state.

An ID token is accepted only when its signature verifies under a key of the
provider's published key set (never a key named in the token itself), by an
asymmetric algorithm the provider announces (never ``none``, never a shared-secret
one), and its issuer, audience, expiry and nonce are the ones this login expects.
"""

import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import parse_qsl, urlsplit

from pgusers._core import checks
from pgusers._errors import BadCallError

NEEDS_EXTRA: Final = (
    'signing in through other sites needs the oidc extra: pip install "pgusers[oidc]"'
)

FLOW_LIFETIME: Final = 600.0
"""Seconds between the start of a sign-in and its callback at most."""
FLOWS_PER_SOURCE: Final = 20
"""Sign-ins a source may have under way at once."""
LEEWAY: Final = 60
"""Seconds of clock difference allowed to the ID token's times."""
GITHUB: Final = "https://github.com"

ALGORITHMS: Final = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)
"""What an ID token may be signed with: public-key algorithms only."""

KINDS: Final = ("oidc", "github")
MAX_NAME: Final = 40
MAX_URL: Final = 2000
MAX_SCOPES: Final = 20
MAX_KEPT_CLAIMS: Final = 20
MAX_CLIENT_FIELD: Final = 1000
MAX_CALLBACK: Final = 8000
"""Characters of a callback (URL or parameters) at most."""
MAX_CLAIM: Final = 2000
"""Characters of a kept claim's value at most (longer ones are not kept)."""

_NAME: Final = re.compile(r"[a-z0-9][a-z0-9_-]*")
_SCOPE: Final = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]{1,100}")  # RFC 6749's scope-token
_CLAIM: Final = re.compile(r"[A-Za-z0-9_.:-]{1,64}")


@dataclass(frozen=True, slots=True)
class Preset:
    """What a well-known provider's name stands for."""

    kind: str
    discovery_url: str | None
    scopes: tuple[str, ...]


PRESETS: Final = {
    "google": Preset(
        "oidc",
        "https://accounts.google.com/.well-known/openid-configuration",
        ("openid", "email", "profile"),
    ),
    "microsoft": Preset(
        "oidc",
        "https://login.microsoftonline.com/common/v2.0/.well-known/openid-configuration",
        ("openid", "email", "profile"),
    ),
    "github": Preset("github", None, ("read:user", "user:email")),
}
OIDC_SCOPES: Final = ("openid", "email", "profile")


@dataclass(frozen=True, slots=True)
class Provider:
    """A provider as stored, its client secret opened."""

    name: str
    kind: str
    client_id: str
    client_secret: str
    discovery_url: str | None
    scopes: tuple[str, ...]
    keep_claims: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Endpoints:
    """Where a provider is asked what: from its discovery document, or GitHub's."""

    authorize: str
    token: str
    issuer: str | None = None
    jwks_uri: str | None = None
    algorithms: tuple[str, ...] = ()
    api: str | None = None
    client_auth: str = "client_secret_basic"
    """How the client authenticates at the token endpoint: HTTP Basic, the default of
    OpenID Connect, unless the provider takes only the secret in the form (GitHub)."""


@dataclass(frozen=True, slots=True)
class TokenRequest:
    """The exchange of an authorization code (with its PKCE verifier) for the
    provider's tokens; for a refresh, the code and redirect URI are empty and the
    verifier's place holds the refresh token."""

    token_url: str
    client_id: str
    client_secret: str
    auth_method: str
    code: str
    redirect_uri: str
    verifier: str


@dataclass(frozen=True, slots=True)
class Profile:
    """Who the provider says signed in: the subject, unique at that provider, the
    email and whether the provider verified it, a name to derive a username from,
    and the claims the application asked to keep."""

    subject: str
    email: str | None
    email_verified: bool
    username_hint: str | None
    kept: dict[str, Any]


class RefusedError(Exception):
    """Why a callback opens nothing: recorded as the event's reason."""


def libraries() -> tuple[Any, Any]:
    """authlib's OpenID Connect claims and joserfc's JWT (the ``oidc`` extra)."""
    try:
        import joserfc.jwt  # noqa: PLC0415 - an extra's library, loaded when used
        from authlib.oidc import core  # noqa: PLC0415
    except ImportError:  # pragma: no cover - the oidc extra is missing
        raise BadCallError(NEEDS_EXTRA) from None
    return core, joserfc


# -- what an administrator gives --------------------------------------------------


def provider_name(value: object) -> str:
    """A provider's name: lower-case letters, digits, ``-`` and ``_``; it appears in
    URLs and in a session's ``auth_methods``."""
    text = checks.text(value, "provider", MAX_NAME)
    if not _NAME.fullmatch(text):
        raise BadCallError(
            "a provider's name is lower-case letters, digits, '-' and '_', "
            f"starting with a letter or digit, at most {MAX_NAME} characters"
        )
    return text


def web_address(value: object, what: str) -> str:
    """An absolute https URL (or http on the machine itself, for development and
    tests), with no fragment and no credentials."""
    text = checks.text(value, what, MAX_URL)
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 - a port that is no number raises here
    except ValueError:
        raise BadCallError(f"{what} is not a URL") from None
    local = parts.hostname in {"localhost", "127.0.0.1", "::1"}
    if parts.scheme == "http" and not local:
        raise BadCallError(f"{what} must use https (http only on localhost)")
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise BadCallError(f"{what} must be an https URL")
    if parts.fragment or parts.username is not None or parts.password is not None:
        raise BadCallError(f"{what} may have no fragment and no user name")
    return text


def provider_kind(name: str, kind: object, discovery_url: object) -> tuple[str, str | None]:
    """The kind (``oidc`` or ``github``) and discovery URL a provider is stored with: a
    preset's name (``google``, ``microsoft``, ``github``) fills them in."""
    text = checks.text(kind, "kind", 20)
    preset = PRESETS.get(text)
    if preset is not None and preset.kind == "oidc":
        url = preset.discovery_url if discovery_url is None else discovery_url
        return "oidc", web_address(url, "discovery_url")
    if preset is not None or text == "github":  # GitHub itself, or a GitHub Enterprise server
        if discovery_url is None:
            return "github", None
        return "github", web_address(discovery_url, "discovery_url").rstrip("/")
    if text != "oidc":
        choices = ", ".join(sorted({*KINDS, *PRESETS}))
        raise BadCallError(f"kind must be one of {choices}")
    if discovery_url is None:
        raise BadCallError("an OpenID Connect provider needs its discovery_url")
    return "oidc", web_address(discovery_url, "discovery_url")


def default_scopes(kind: str, given: object) -> tuple[str, ...]:
    """The scopes asked for: as given, or the kind's own (``openid`` always for OIDC)."""
    if given is None:
        return PRESETS["github"].scopes if kind == "github" else OIDC_SCOPES
    items = checks.strings(given, "scopes", MAX_SCOPES)
    for item in items:
        if not _SCOPE.fullmatch(item):
            raise BadCallError(f"{item!r} is not a scope")
    scopes = tuple(dict.fromkeys(items))
    if kind == "oidc" and "openid" not in scopes:
        scopes = ("openid", *scopes)
    return scopes


def claim_names(given: object) -> tuple[str, ...]:
    """The names of profile claims the application asked to keep."""
    if given is None:
        return ()
    names = checks.strings(given, "keep_claims", MAX_KEPT_CLAIMS)
    for name in names:
        if not _CLAIM.fullmatch(name):
            raise BadCallError(f"{name!r} is not a claim's name")
    return tuple(dict.fromkeys(names))


def secret_row(name: str) -> str:
    """What provider ``name``'s client secret is sealed bound to."""
    return "provider:" + name


def client_field(value: object, what: str) -> str:
    text = checks.text(value, what, MAX_CLIENT_FIELD)
    if not text.isprintable():
        raise BadCallError(f"{what} must be printable text")
    return text


# -- a sign-in's start --------------------------------------------------------------


def new_secrets() -> tuple[str, str, str]:
    """A sign-in's state, PKCE verifier and nonce: 256 random bits each."""
    return secrets.token_urlsafe(32), secrets.token_urlsafe(48), secrets.token_urlsafe(32)


def github_endpoints(server: str | None) -> Endpoints:
    """GitHub's (or a GitHub Enterprise server's) OAuth endpoints and API."""
    base = server or GITHUB
    return Endpoints(
        authorize=f"{base}/login/oauth/authorize",
        token=f"{base}/login/oauth/access_token",
        api="https://api.github.com" if server is None else f"{base}/api/v3",
        client_auth="client_secret_post",
    )


def oidc_endpoints(document: Mapping[str, Any]) -> Endpoints:
    """A discovery document's endpoints, checked (https, or http on localhost)."""
    try:
        announced = document.get("id_token_signing_alg_values_supported") or ["RS256"]
        algorithms = tuple(a for a in announced if isinstance(a, str) and a in ALGORITHMS)
        methods = document.get("token_endpoint_auth_methods_supported") or []
        post_only = "client_secret_basic" not in methods and "client_secret_post" in methods
        return Endpoints(
            authorize=web_address(document["authorization_endpoint"], "authorization_endpoint"),
            token=web_address(document["token_endpoint"], "token_endpoint"),
            issuer=checks.text(document["issuer"], "issuer", MAX_URL),
            jwks_uri=web_address(document["jwks_uri"], "jwks_uri"),
            algorithms=algorithms,
            client_auth="client_secret_post" if post_only else "client_secret_basic",
        )
    except (KeyError, TypeError, AttributeError, BadCallError) as error:
        raise RefusedError(f"discovery document: {error}") from None


def authorization_url(
    provider: Provider, endpoints: Endpoints, *, redirect_uri: str, state: str, verifier: str,
    nonce: str,
) -> str:  # fmt: skip
    """Where the browser goes to sign in: the authorization request with the state, the
    PKCE challenge (S256) and, for OpenID Connect, the nonce."""
    libraries()  # the extra is there
    from authlib.oauth2.rfc6749.parameters import prepare_grant_uri  # noqa: PLC0415
    from authlib.oauth2.rfc7636 import create_s256_code_challenge  # noqa: PLC0415

    extra = {
        "code_challenge": create_s256_code_challenge(verifier),
        "code_challenge_method": "S256",
    }
    if provider.kind == "oidc":
        extra["nonce"] = nonce
    url: str = prepare_grant_uri(
        endpoints.authorize,
        client_id=provider.client_id,
        response_type="code",
        redirect_uri=redirect_uri,
        scope=" ".join(provider.scopes),
        state=state,
        **extra,
    )
    return url


# -- a sign-in's end ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Callback:
    """What the provider sent back to the redirect URI."""

    state: str | None
    code: str | None
    error: str | None
    address: str | None
    """The URL it came to, without its query (None when only the parameters were given)."""


def callback(given: object) -> Callback:
    """The callback's parameters, from the URL the browser came back to or from its
    query parameters as a mapping."""
    if isinstance(given, str):
        text = checks.text(given, "callback", MAX_CALLBACK)
        try:
            parts = urlsplit(text)
        except ValueError:
            raise BadCallError("the callback is not a URL") from None
        if not parts.scheme or not parts.netloc:
            raise BadCallError("the callback must be the whole URL the browser came back to")
        params = dict(parse_qsl(parts.query, keep_blank_values=True))
        address: str | None = f"{parts.scheme}://{parts.netloc}{parts.path}"
    elif isinstance(given, Mapping):
        if len(given) > 50:
            raise BadCallError("the callback has too many parameters")
        if not all(isinstance(n, str) and isinstance(v, str) for n, v in given.items()):
            raise BadCallError("the callback's parameters must be strings")
        if sum(len(n) + len(v) for n, v in given.items()) > MAX_CALLBACK:
            raise BadCallError(f"the callback is longer than {MAX_CALLBACK} characters")
        params = dict(given)
        address = None
    else:
        raise BadCallError("give the callback as its URL or its query parameters")

    def field(name: str) -> str | None:
        """One of the parameters the sign-in reads, checked; a blank one is none."""
        value = params.get(name)
        return checks.text(value, name, MAX_CALLBACK) if value else None

    return Callback(field("state"), field("code"), field("error"), address)


def same_address(redirect_uri: str, address: str) -> bool:
    """Whether a callback came to the redirect URI its sign-in began with."""
    begun = urlsplit(redirect_uri)
    return address == f"{begun.scheme}://{begun.netloc}{begun.path}"


def check_id_token(
    id_token: object,
    *,
    key_set: Mapping[str, Any],
    endpoints: Endpoints,
    client_id: str,
    nonce: str,
    access_token: str | None,
    now: float,
) -> dict[str, Any]:
    """The ID token's claims, once its signature, issuer, audience, times and nonce
    are what this sign-in expects; otherwise a :class:`RefusedError` that says what was
    wrong."""
    core, joserfc = libraries()
    from joserfc.jwk import KeySet  # noqa: PLC0415

    if not isinstance(id_token, str) or len(id_token) > 16_000:
        raise RefusedError("no ID token")
    algorithms = endpoints.algorithms or ("RS256",)
    try:
        keys = KeySet.import_key_set(dict(key_set))  # type: ignore[arg-type]
    except (joserfc.errors.JoseError, ValueError, TypeError, KeyError):
        raise RefusedError("the provider's key set cannot be read") from None
    try:
        token = joserfc.jwt.decode(id_token, keys, algorithms=algorithms)
    except joserfc.errors.InvalidKeyIdError:
        raise UnknownKeyError from None
    except (joserfc.errors.JoseError, ValueError, TypeError) as error:
        raise RefusedError(f"ID token: {_describe(error)}") from None
    issuer = endpoints.issuer or ""
    if "{tenantid}" in issuer:  # Microsoft's multi-tenant documents name a pattern
        tenant = token.claims.get("tid")
        if not isinstance(tenant, str) or not re.fullmatch(r"[0-9a-f-]{36}", tenant):
            raise RefusedError("ID token: no tenant")
        issuer = issuer.replace("{tenantid}", tenant)
    options = {
        "iss": {"essential": True, "value": issuer},
        "aud": {"essential": True, "value": client_id},
        "sub": {"essential": True},
    }
    params: dict[str, Any] = {"nonce": nonce, "client_id": client_id}
    if access_token is not None:
        params["access_token"] = access_token
    claims = core.CodeIDToken(token.claims, token.header, options, params)
    try:
        claims.validate(now=int(now), leeway=LEEWAY)
    except (joserfc.errors.JoseError, ValueError, TypeError) as error:
        raise RefusedError(f"ID token: {_describe(error)}") from None
    return dict(token.claims)


class UnknownKeyError(RefusedError):
    """The token names a key the key set does not hold: the set is fetched again once
    (the provider may have rotated its keys), then the token is refused."""

    def __init__(self) -> None:
        super().__init__("ID token: signed by a key the provider does not publish")


def _describe(error: Exception) -> str:
    text = str(error) or type(error).__name__
    return text.splitlines()[0][:200]


def profile_from_claims(claims: Mapping[str, Any], keep: tuple[str, ...]) -> Profile:
    """Who an OpenID Connect provider says signed in."""
    subject = claims.get("sub")
    if not isinstance(subject, str) or not 0 < len(subject) <= 255:
        raise RefusedError("ID token: no usable subject")
    email = claims.get("email")
    verified = claims.get("email_verified") is True or claims.get("email_verified") == "true"
    hint = next(
        (claims[name] for name in ("preferred_username", "nickname", "name")
         if isinstance(claims.get(name), str)),
        None,
    )  # fmt: skip
    return Profile(
        subject=subject,
        email=email if isinstance(email, str) and len(email) <= 320 else None,
        email_verified=bool(verified and isinstance(email, str)),
        username_hint=hint,
        kept=_kept(claims, keep),
    )


def profile_from_github(user: Mapping[str, Any], emails: object, keep: tuple[str, ...]) -> Profile:
    """Who GitHub says signed in: its numeric user id is the subject; the email is the
    primary address GitHub has verified, if any."""
    user_id = user.get("id")
    if isinstance(user_id, bool) or not isinstance(user_id, int):
        raise RefusedError("GitHub's user has no id")
    email, verified = None, False
    if isinstance(emails, list):
        for item in emails:
            if (
                isinstance(item, dict)
                and item.get("primary")
                and isinstance(item.get("email"), str)
            ):
                email, verified = item["email"], item.get("verified") is True
    login = user.get("login")
    return Profile(
        subject=str(user_id),
        email=email if email is not None and len(email) <= 320 else None,
        email_verified=verified,
        username_hint=login if isinstance(login, str) else None,
        kept=_kept(user, keep),
    )


def _kept(claims: Mapping[str, Any], keep: tuple[str, ...]) -> dict[str, Any]:
    kept: dict[str, Any] = {}
    for name in keep:
        value = claims.get(name)
        if isinstance(value, str | int | float | bool) and len(str(value)) <= MAX_CLAIM:
            kept[name] = value
    return kept


def username_candidates(profile: Profile, provider: str) -> list[str]:
    """Usernames to try for a new user, best first: the provider's name for them and
    the email's local part, each alone and then with a number, then the provider's
    name and random digits."""
    bases: list[str] = []
    for hint in (profile.username_hint, profile.email and profile.email.split("@", 1)[0]):
        if hint:
            cleaned = re.sub(r"\s+", " ", hint).strip()[:60]
            if cleaned and cleaned not in bases:
                bases.append(cleaned)
    tried = [f"{base}{suffix}" for base in bases for suffix in ("", "-2", "-3", "-4", "-5")]
    tried.extend(f"{provider}-{secrets.token_hex(4)}" for _ in range(3))
    return tried
