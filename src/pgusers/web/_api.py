"""The JSON API, version 1: ``/v1/...``.

Callers authenticate with ``Authorization: Bearer <token>``: a session key (the user
acts on their own sessions; an administrator may also use the admin endpoints) or an
API key made with ``pgusers apikey create`` (scope ``admin``: everything but a
user's own sessions; scope ``check``: ``POST /v1/check`` only).
"""

import json
import math
import typing
from dataclasses import dataclass
from typing import Annotated, Any, Final, Literal

from fastapi import APIRouter, Depends, Query, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field, create_model

from pgusers._aio import AsyncUserSpace
from pgusers._door import acting_as, looks_like_api_key
from pgusers._errors import BadCallError
from pgusers._results import (
    EXPIRED,
    LAST_METHOD,
    MFA_REQUIRED,
    NOT_FOUND,
    OK,
    REJECTED,
    THROTTLED,
    Account,
    ApiKey,
    Event,
    Factor,
    Identity,
    IdentityProvider,
    LoginOutcome,
    Member,
    Org,
    PasskeyChallenge,
    Role,
    RoleGrant,
    Session,
    Settings,
    Status,
)
from pgusers._settings import SETTINGS, plan
from pgusers.integrations._common import (
    RECENT_AUTH,
    external_refusal,
    proved_recently,
    refusal,
    user_agent,
)
from pgusers.web import _check
from pgusers.web._check import STATUS_NAMES
from pgusers.web._errors import ApiError
from pgusers.web._service import Service, client_address, first, is_console_session, service_of

MAX_PAGE: Final = 1000


# -- who is calling -------------------------------------------------------------------


@dataclass(frozen=True)
class Caller:
    """Who made a request: a user by their session key, or an API key."""

    actor: str
    source: str | None
    scope: Literal["user", "admin", "check"]
    userid: int | None = None
    username: str | None = None
    key: str | None = None
    maker: int | None = None
    """Whose rights an API key made by this caller acts with: the user, or the maker
    of the caller's own API key (None: an operator's key)."""


async def userspace(request: Request) -> AsyncUserSpace:
    return await service_of(request).space()


Space = Annotated[AsyncUserSpace, Depends(userspace)]


def bearer_token(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(
            401,
            "unauthorized",
            "send a session key or an API key as 'Authorization: Bearer <token>'",
            {"WWW-Authenticate": "Bearer"},
        )
    return token.strip()


BEARER: Final = HTTPBearer(
    auto_error=False,
    description="A session key (a user's own endpoints; an administrator's also the admin "
    "ones) or an API key (scope admin: the admin endpoints; scope check: POST /v1/check).",
)
"""The bearer scheme, declared for the OpenAPI document (the token is read by
:func:`bearer_token`, which answers with the service's own error envelope)."""

Bearer = Annotated[HTTPAuthorizationCredentials | None, Security(BEARER)]


async def caller(request: Request, _: Bearer = None) -> Caller:
    """Whoever the bearer token names; 401 when it names no one."""
    token = bearer_token(request)
    source = client_address(request)
    service = service_of(request)
    if looks_like_api_key(token):
        found = await service.api_key(token)
        if found is None:
            raise ApiError(401, "unauthorized", "the API key is revoked or unknown")
        key_id, granted, maker = found
        of_key: Literal["admin", "check"] = "admin" if granted == "admin" else "check"
        return Caller(f"apikey:{key_id}", source, of_key, maker=maker)
    space = await service.space()
    checked = await space.check_key(token)
    if checked.status != OK or checked.userid is None:
        raise ApiError(401, "unauthorized", "this session key is unknown or has expired")
    if is_console_session(checked.extra_data):
        raise ApiError(401, "unauthorized", "a console session is for the console only")
    scope: Literal["user", "admin"] = "admin" if await space.is_admin(checked.userid) else "user"
    return Caller(
        f"user:{checked.userid}",
        source,
        scope,
        checked.userid,
        checked.username,
        token,
        maker=checked.userid,
    )


async def session_caller(who: Annotated[Caller, Depends(caller)]) -> Caller:
    """A user, by their session key (an API key has no sessions of its own)."""
    if who.key is None:
        raise ApiError(403, "forbidden", "this endpoint takes a session key, not an API key")
    return who


async def admin_caller(request: Request, who: Annotated[Caller, Depends(caller)]) -> Caller:
    """An administrator: an admin API key, or the session of an administrator who has
    the second factor the login policy may ask of them (``admins_need_mfa``)."""
    if who.scope != "admin":
        raise ApiError(403, "forbidden", "this endpoint is for administrators")
    if who.userid is not None and who.key is not None:
        space = await service_of(request).space()
        if await space.needs_enrollment(who.userid):
            raise ApiError(
                403,
                "mfa_enrollment_required",
                "add a second factor first (POST /v1/factors/totp): the login policy "
                "asks one of every administrator",
            )
    return who


User = Annotated[Caller, Depends(session_caller)]
Admin = Annotated[Caller, Depends(admin_caller)]


# -- bodies ------------------------------------------------------------------------------


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LoginBody(Body):
    username: str
    password: str
    extra_data: Any = None


class CheckBody(Body):
    key: str


class RegisterBody(Body):
    username: str
    password: str
    email: str


class ResetBody(Body):
    token: str
    password: str


class TokenBody(Body):
    token: str


class NewUserBody(Body):
    username: str
    password: str
    email: str
    admin: bool = False
    extra_data: Any = None


class ChangeUserBody(Body):
    username: str | None = None
    email: str | None = None
    extra_data: Any = None
    password: str | None = None
    end_sessions: bool = Field(True, description="with password: end the user's sessions")


class FlagBody(Body):
    value: bool


class IssueBody(Body):
    purpose: Literal["reset_password", "verify_email", "change_email"]
    email: str | None = None
    ttl: float | None = None
    mail: bool = Field(
        True, description="mail it to the user when mail is set up (false: answer the token)"
    )


class CompleteBody(Body):
    ticket: str
    totp: str | None = Field(None, description="a code of the authenticator app")
    recovery_code: str | None = None
    passkey: dict[str, Any] | None = Field(
        None,
        description="the browser's PublicKeyCredential (toJSON()) for the challenge of "
        "POST /v1/login/passkey",
    )


class TicketBody(Body):
    ticket: str


class PasskeyLoginBody(Body):
    username: str | None = Field(
        None, description="leave out for a discoverable passkey (no name typed)"
    )


class PasskeyAnswerBody(Body):
    challenge_id: str
    credential: dict[str, Any] = Field(
        description="the browser's PublicKeyCredential, as its toJSON() gives it"
    )


class ExternalBeginBody(Body):
    redirect_uri: str = Field(
        description="where the provider sends the browser back (registered with it)"
    )


class ExternalFinishBody(Body):
    state: str = Field(description="the state the begin call gave, kept by the client")
    callback: str | dict[str, str] = Field(
        description="the URL the browser came back to, or its query parameters"
    )


class ExternalBegun(BaseModel):
    authorization_url: str = Field(description="send the browser here")
    state: str = Field(description="keep it (in the browser) for the finish call")


class ProviderBody(Body):
    kind: Literal["oidc", "github", "google", "microsoft"]
    client_id: str
    client_secret: str
    discovery_url: str | None = None
    scopes: list[str] | None = None
    link_by_verified_email: bool = False
    trusted_for_mfa: bool = False
    allow_signup: bool = True
    keep_claims: list[str] | None = None
    keep_tokens: bool = False


class ProviderName(BaseModel):
    name: str
    kind: str


class ProviderNames(BaseModel):
    providers: list[ProviderName]


class PasskeyChallengeAnswer(BaseModel):
    challenge_id: str
    options: dict[str, Any] = Field(
        description="for PublicKeyCredential.parseCreationOptionsFromJSON (registering) "
        "or parseRequestOptionsFromJSON (signing in)"
    )


class FactorMade(BaseModel):
    factor_id: str


class ProofBody(Body):
    password: str | None = None
    totp: str | None = None
    recovery_code: str | None = None


class LabelBody(Body):
    label: str | None = None


class CodeBody(Body):
    code: str


class PasswordBody(Body):
    current_password: str
    new_password: str
    end_other_sessions: bool = Field(False, description="sign out this user's other sessions")


class ApiKeyBody(Body):
    name: str
    scope: Literal["admin", "check"] = "check"


class SettingsBody(Body):
    session_ttl: float | None = None
    session_max_age: float | None = Field(None, description="null removes the maximum age")
    key_storage: Literal["hashed"] | None = None
    event_retention: float | None = Field(None, description="days; null keeps events forever")
    sessions_per_user: int | None = Field(None, description="null removes the limit")
    free_failures: int | None = None
    max_backoff: float | None = None
    source_limit: int | None = None
    source_window: float | None = None
    source_block: float | None = None
    admins_need_mfa: bool | None = Field(
        None, description="administrators must have a second factor before anything else"
    )
    webauthn_rp_id: str | None = Field(
        None, description="passkeys' relying party: give it with its name and origins"
    )
    webauthn_rp_name: str | None = None
    webauthn_origins: list[str] | None = None


# -- helpers -----------------------------------------------------------------------------


def found(status: Status, what: str = "user") -> dict[str, str]:
    if status == NOT_FOUND:
        raise ApiError(404, "not_found", f"no such {what}")
    return {"status": STATUS_NAMES[status]}


class ErrorDetail(BaseModel):
    code: str = Field(description="stable, for programs: login_failed, throttled, ...")
    message: str = Field(description="for people")


class ErrorEnvelope(BaseModel):
    """Every answer other than a success."""

    error: ErrorDetail


ERRORS: Final[dict[int | str, dict[str, Any]]] = {
    status: {"model": ErrorEnvelope, "description": description}
    for status, description in (
        (400, "A value pgusers refuses, or a body that is not JSON"),
        (401, "No credentials, unknown ones, or a refused login"),
        (403, "Credentials without the right to this"),
        (413, "A body over the limit"),
        (422, "A body or query of the wrong shape"),
    )
}


def model_of(row: type[tuple[Any, ...]]) -> type[BaseModel]:
    """A pydantic model with the fields of one of pgusers' result tuples, so the
    OpenAPI document describes the rows the answers hold."""
    hints = typing.get_type_hints(row)
    defaults: dict[str, Any] = getattr(row, "_field_defaults", {})
    fields: dict[str, Any] = {
        name: (hints[name], defaults.get(name, ...))
        for name in row._fields  # type: ignore[attr-defined]
    }
    return create_model(row.__name__ + "Answer", __doc__=row.__doc__, **fields)


SessionAnswer = model_of(Session)
AccountAnswer = model_of(Account)
EventAnswer = model_of(Event)
ApiKeyAnswer = model_of(ApiKey)
SettingsAnswer = model_of(Settings)
FactorAnswer = model_of(Factor)
RoleAnswer = model_of(Role)
RoleGrantAnswer = model_of(RoleGrant)
OrgAnswer = model_of(Org)
MemberAnswer = model_of(Member)
IdentityAnswer = model_of(Identity)
ProviderAnswer = model_of(IdentityProvider)


class Providers(BaseModel):
    providers: list[ProviderAnswer]  # type: ignore[valid-type]


class Identities(BaseModel):
    identities: list[IdentityAnswer]  # type: ignore[valid-type]


class RoleBody(Body):
    permissions: list[str] = Field(description="names the application chooses")
    description: str | None = None


class GrantBody(Body):
    role: str
    org: int | str | None = Field(None, description="only in this organization (id or slug)")


class OrgBody(Body):
    name: str
    slug: str | None = None


class MemberBody(Body):
    role: str


class Roles(BaseModel):
    roles: list[RoleAnswer]  # type: ignore[valid-type]


class Grants(BaseModel):
    roles: list[RoleGrantAnswer]  # type: ignore[valid-type]


class Orgs(BaseModel):
    orgs: list[OrgAnswer]  # type: ignore[valid-type]


class Members(BaseModel):
    members: list[MemberAnswer]  # type: ignore[valid-type]


class OrgMade(BaseModel):
    org_id: int


class LoggedIn(BaseModel):
    status: Literal["ok", "mfa_required", "linked"] = Field(
        "ok",
        description="mfa_required: the password was right and a second factor is due; "
        "send one answer with the ticket to POST /v1/login/complete. linked: a sign-in "
        "through another site linked it to the signed-in user (no new key)",
    )
    key: str | None = Field(
        description="the new session key: send it as 'Authorization: Bearer' (null "
        "while a second factor is due)"
    )
    userid: int
    admin: bool
    ttl: float = Field(description="seconds the session lives without being used")
    ticket: str | None = Field(None, description="with mfa_required: valid 5 minutes")
    factors: list[str] = Field([], description="with mfa_required: what the user can answer with")


class Factorlist(BaseModel):
    factors: list[FactorAnswer]  # type: ignore[valid-type]
    recovery_codes: int = Field(description="recovery codes left")


class EnrollmentAnswer(BaseModel):
    factor_id: str
    secret: str = Field(description="shown only here: for typing into an authenticator app")
    uri: str = Field(description="the otpauth:// URI the QR code holds")
    qr_svg: str = Field(description="the QR code, an SVG image")


class RecoveryCodes(BaseModel):
    codes: list[str] = Field(description="shown only here: each usable once")


class Registered(BaseModel):
    userid: int


class Done(BaseModel):
    status: Literal["ok"]


class Ended(BaseModel):
    ended: int = Field(description="how many sessions ended")


class Whoami(BaseModel):
    userid: int | None
    username: str | None
    admin: bool
    auth_methods: list[str] = Field(
        [], description="how this session's user proved who they are: password, totp, ..."
    )
    authenticated_at: float | None = Field(None, description="when they last did (Unix time)")
    roles: list[str] = Field([], description="the roles held everywhere")
    permissions: list[str] = Field([], description="the permissions they grant")


class Sessions(BaseModel):
    sessions: list[SessionAnswer]  # type: ignore[valid-type]


class UsersPage(BaseModel):
    users: list[AccountAnswer]  # type: ignore[valid-type]
    next_after: int | None = Field(description="pass as after for the next page; null: last")


class Issued(BaseModel):
    token: str | None = Field(
        description="shown only here: send it to the user (null when the service mailed it)"
    )
    purpose: str
    mailed: bool = Field(False, description="the service mailed it to the user")


class Events(BaseModel):
    events: list[EventAnswer]  # type: ignore[valid-type]


class ApiKeys(BaseModel):
    api_keys: list[ApiKeyAnswer]  # type: ignore[valid-type]


class ApiKeyMade(BaseModel):
    key_id: str
    key: str = Field(description="shown only here")
    scope: Literal["admin", "check"]


router = APIRouter(prefix="/v1", responses=ERRORS)


# -- anyone ------------------------------------------------------------------------------


@router.post("/login", tags=["sessions"], response_model=LoggedIn)
async def login(body: LoginBody, request: Request, space: Space) -> dict[str, Any]:
    """Log in: a new session key, or 401 (wrong name or password), 403 (disabled
    account), 429 (throttled, with Retry-After). ``extra_data``, the new session's
    data, may take at most the service's ``max_session_data`` bytes as JSON."""
    limit = service_of(request).max_session_data
    if body.extra_data is not None and len(json.dumps(body.extra_data).encode()) > limit:
        raise ApiError(413, "too_large", f"extra_data takes more than {limit} bytes as JSON")
    outcome = await space.login(
        body.username,
        body.password,
        source=client_address(request),
        user_agent=user_agent(request.headers.get("user-agent")),
        extra_data=body.extra_data,
    )
    if outcome.status == MFA_REQUIRED:
        return second_factor_due(outcome, space)
    return logged_in(outcome, space)


def second_factor_due(outcome: LoginOutcome, space: AsyncUserSpace) -> dict[str, Any]:
    """The answer to a first step that left a ticket for a second factor."""
    return {
        "status": "mfa_required",
        "key": None,
        "userid": outcome.userid,
        "admin": False,
        "ttl": space.ttl,
        "ticket": outcome.ticket,
        "factors": list(outcome.factors),
    }


def logged_in(outcome: LoginOutcome, space: AsyncUserSpace) -> dict[str, Any]:
    """The answer to a login that opened a session, or the refusal of one that did not."""
    refused = refusal(outcome)
    if refused is not None:
        raise ApiError(refused.status, refused.code, refused.message, refused.headers())
    return {"key": outcome.key, "userid": outcome.userid, "admin": outcome.admin, "ttl": space.ttl}


@router.post("/login/complete", tags=["sessions"], response_model=LoggedIn)
async def complete_login(body: CompleteBody, request: Request, space: Space) -> dict[str, Any]:
    """Finish a login that answered ``mfa_required``, with one answer: ``totp`` (a code
    of the authenticator app), ``recovery_code``, or ``passkey`` (the answer to the
    challenge of ``POST /v1/login/passkey``). 401 ``mfa_failed`` for a wrong or
    used answer (it counts as a failed login), 401 ``invalid_ticket`` for a ticket
    that is unknown, used or expired, 429 when throttled."""
    outcome = await space.complete_login(
        body.ticket,
        totp=body.totp,
        recovery_code=body.recovery_code,
        passkey=body.passkey,
        source=client_address(request),
        user_agent=user_agent(request.headers.get("user-agent")),
    )
    if outcome.status in (NOT_FOUND, EXPIRED):
        raise ApiError(401, "invalid_ticket", "this ticket is unknown, used or expired")
    if outcome.status == REJECTED:
        raise ApiError(401, "mfa_failed", "wrong or used code, or the account changed")
    return logged_in(outcome, space)


def challenge_answer(begun: PasskeyChallenge) -> dict[str, Any]:
    return {"challenge_id": begun.challenge_id, "options": json.loads(begun.options)}


@router.post("/login/passkey", tags=["passkeys"], response_model=PasskeyChallengeAnswer)
async def second_step_challenge(body: TicketBody, space: Space) -> dict[str, Any]:
    """The challenge for answering a login's ``mfa_required`` with a passkey (the
    user's passkeys listed); send the answer to ``POST /v1/login/complete`` as
    ``passkey``. 401 ``invalid_ticket``."""
    begun = await space.begin_passkey_login(ticket=body.ticket)
    if begun.status != OK:
        raise ApiError(401, "invalid_ticket", "this ticket is unknown, used or expired")
    return challenge_answer(begun)


@router.post("/passkeys/login/begin", tags=["passkeys"], response_model=PasskeyChallengeAnswer)
async def begin_passkey_login(
    body: PasskeyLoginBody, request: Request, space: Space
) -> dict[str, Any]:
    """Begin signing in with a passkey, without a password: the options for
    ``navigator.credentials.get``, valid five minutes."""
    begun = await space.begin_passkey_login(body.username, source=client_address(request))
    return challenge_answer(begun)


@router.post("/passkeys/login/finish", tags=["passkeys"], response_model=LoggedIn)
async def finish_passkey_login(
    body: PasskeyAnswerBody, request: Request, space: Space
) -> dict[str, Any]:
    """Finish signing in with a passkey: a session key, or 401 ``passkey_failed`` (the
    answer does not verify, or names an unknown, removed or flagged passkey; it counts
    as a failed login), 401 ``invalid_challenge`` (used, unknown or expired), 403, 429."""
    outcome = await space.finish_passkey_login(
        body.challenge_id,
        body.credential,
        source=client_address(request),
        user_agent=user_agent(request.headers.get("user-agent")),
    )
    if outcome.status in (NOT_FOUND, EXPIRED):
        raise ApiError(401, "invalid_challenge", "this challenge is unknown, used or expired")
    if outcome.status == REJECTED:
        raise ApiError(401, "passkey_failed", "this passkey's answer was refused")
    return logged_in(outcome, space)


@router.get("/providers", tags=["identities"], response_model=ProviderNames)
async def providers(space: Space) -> dict[str, Any]:
    """The sites one may sign in through: each one's name and kind (for the buttons)."""
    return {
        "providers": [{"name": p.name, "kind": p.kind} for p in await space.identity_providers()]
    }


@router.post("/external/{provider}/begin", tags=["identities"], response_model=ExternalBegun)
async def begin_external_login(
    provider: str, body: ExternalBeginBody, request: Request, space: Space
) -> dict[str, Any]:
    """Begin signing in through ``provider``: send the browser to
    ``authorization_url`` and keep ``state`` for ``POST /v1/external/finish``. 503
    ``provider_unavailable`` when the provider's discovery document does not answer."""
    begun = await space.begin_external_login(
        provider, body.redirect_uri, source=client_address(request)
    )
    return begun._asdict()


@router.post("/external/finish", tags=["identities"], response_model=LoggedIn)
async def finish_external_login(
    body: ExternalFinishBody, request: Request, space: Space
) -> dict[str, Any]:
    """Finish signing in through another site with the kept ``state`` and the callback:
    a session key, ``mfa_required`` (a ticket for ``POST /v1/login/complete``),
    ``linked`` (a link begun from ``POST /v1/identities/{provider}``), or 409
    ``link_required`` (sign in another way, then link), 401
    ``external_login_failed`` (anything wrong: the event says what) or ``expired``,
    403 for a disabled account."""
    outcome = await space.finish_external_login(
        body.state,
        body.callback,
        source=client_address(request),
        user_agent=user_agent(request.headers.get("user-agent")),
    )
    return signed_in_elsewhere(outcome, space)


def signed_in_elsewhere(outcome: LoginOutcome, space: AsyncUserSpace) -> dict[str, Any]:
    """The answer to a sign-in through another site."""
    if outcome.status == OK and not outcome.key:
        return {
            "status": "linked",
            "key": None,
            "userid": outcome.userid,
            "admin": outcome.admin,
            "ttl": space.ttl,
        }
    if outcome.status == MFA_REQUIRED:
        return second_factor_due(outcome, space)
    refused = external_refusal(outcome)
    if refused is not None:
        raise ApiError(refused.status, refused.code, refused.message, refused.headers())
    return logged_in(outcome, space)


@router.post("/register", status_code=201, tags=["users"], response_model=Registered)
async def register(body: RegisterBody, request: Request, space: Space) -> dict[str, Any]:
    """Create an account (only when the service was started with registration on)."""
    service = service_of(request)
    if not service.registration:
        raise ApiError(403, "registration_closed", "registration is not open on this service")
    wait = service.registrations.wait(client_address(request))
    if wait > 0:
        seconds = str(max(1, math.ceil(wait)))
        raise ApiError(
            429,
            "throttled",
            f"too many registrations from here: try again in {seconds} s",
            {"Retry-After": seconds},
        )
    with acting_as("self-registration", source=client_address(request)):
        userid = await space.create_user(body.username, body.password, body.email)
    return {"userid": userid}


@router.post("/password/reset", tags=["users"], response_model=Done)
async def reset_password(body: ResetBody, request: Request, space: Space) -> dict[str, str]:
    """Set a new password with a reset token (which an administrator issued)."""
    with acting_as("token", source=client_address(request)):
        status = await space.reset_password(body.token, body.password)
    if status != OK:
        raise ApiError(400, "invalid_token", "this token is unknown, used or expired")
    return {"status": "ok"}


@router.post("/email/verify", tags=["users"], response_model=Done)
async def verify_email(body: TokenBody, request: Request, space: Space) -> dict[str, str]:
    """Mark an email address verified with a verification token."""
    with acting_as("token", source=client_address(request)):
        status = await space.verify_email(body.token)
    if status != OK:
        raise ApiError(400, "invalid_token", "this token is unknown, used or expired")
    return {"status": "ok"}


# -- servers: the per-request check -------------------------------------------------------


class CheckAnswer(BaseModel):
    status: Literal["ok", "not_found", "expired"]
    userid: int | None
    username: str | None
    extra_data: Any


CHECK_BODY: Final = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": CheckBody.model_json_schema()}},
    }
}


@router.post("/check", tags=["sessions"], response_model=CheckAnswer, openapi_extra=CHECK_BODY)
async def check(request: Request, _: Bearer = None) -> dict[str, Any]:
    """Check a session key: ``status`` is ok, not_found or expired (takes an API key).

    The per-request call of every server behind this service: the service answers
    it before its routing (see ``_check``), with the same function as here."""
    body = await request.body()
    return await _check.answer(service_of(request), request.headers.get("authorization", ""), body)


# -- a user's own sessions ----------------------------------------------------------------


@router.get("/session", tags=["sessions"], response_model=Whoami)
async def this_session(who: User, space: Space) -> dict[str, Any]:
    """Who this session key belongs to, and how and when they last proved it."""
    assert who.key is not None
    info = await space.check_session(who.key)
    return {
        "userid": who.userid,
        "username": who.username,
        "admin": who.scope == "admin",
        "auth_methods": list(info.auth_methods),
        "authenticated_at": info.authenticated_at,
        "roles": list(info.roles),
        "permissions": list(info.permissions),
    }


@router.post("/password", tags=["sessions"], response_model=Done)
async def change_password(body: PasswordBody, who: User, space: Space) -> dict[str, str]:
    """Change this user's password, given the current one (a wrong one counts as a
    failed login: 401 ``wrong_password``, 429 when throttled); 400 when the password
    policy refuses the new one. ``end_other_sessions`` signs out everywhere else."""
    assert who.key is not None and who.userid is not None
    with acting_as(who.actor, source=who.source):
        proved = await space.reauthenticate(who.key, password=body.current_password)
        if proved == THROTTLED:
            raise ApiError(429, "throttled", "too many failed attempts: try again later")
        if proved != OK:
            raise ApiError(401, "wrong_password", "the current password is not right")
        await space.change_password(who.userid, body.new_password)
        if body.end_other_sessions:
            await space.end_other_sessions(who.key)
    return {"status": "ok"}


@router.post("/logout", tags=["sessions"], response_model=Ended)
async def logout(who: User, space: Space) -> dict[str, int]:
    """End this session."""
    assert who.key is not None
    with acting_as(who.actor, source=who.source):
        ended = await space.logout(who.key)
    if not ended:
        raise ApiError(401, "unauthorized", "this session has just ended")
    return {"ended": ended}


@router.post("/logout/others", tags=["sessions"], response_model=Ended)
async def logout_others(who: User, space: Space) -> dict[str, int]:
    """End every other session of this user ("log out everywhere else")."""
    assert who.key is not None
    with acting_as(who.actor, source=who.source):
        return {"ended": await space.end_other_sessions(who.key)}


@router.get("/sessions", tags=["sessions"], response_model=Sessions)
async def my_sessions(who: User, space: Space) -> dict[str, Any]:
    """This user's sessions; ``current`` marks this one."""
    assert who.userid is not None
    rows = space.sessions(who.userid, key=who.key)
    return {"sessions": [session._asdict() async for session in rows]}


@router.delete("/sessions/{session_id}", tags=["sessions"], response_model=Ended)
async def end_my_session(session_id: str, who: User, space: Space) -> dict[str, int]:
    """End one of this user's sessions."""
    assert who.userid is not None
    mine = {session.session_id async for session in space.sessions(who.userid)}
    if session_id not in mine:
        raise ApiError(404, "not_found", "no such session of yours")
    with acting_as(who.actor, source=who.source):
        return {"ended": await space.end_session(session_id)}


# -- a user's own second factors ------------------------------------------------------------


async def recently_proved(who: Caller, space: AsyncUserSpace) -> None:
    """Refuse, with 403 ``reauthentication_required``, a session whose user last proved
    who they are more than RECENT_AUTH seconds ago."""
    assert who.key is not None
    info = await space.check_session(who.key)
    if not proved_recently(info.authenticated_at, RECENT_AUTH):
        raise ApiError(
            403,
            "reauthentication_required",
            "prove who you are again first (POST /v1/reauthenticate)",
        )


@router.post("/reauthenticate", tags=["factors"], response_model=Done)
async def reauthenticate(body: ProofBody, who: User, space: Space) -> dict[str, str]:
    """Prove again who this session's user is, with one of ``password``, ``totp`` and
    ``recovery_code``: for the next ten minutes the session may change the user's
    second factors. 401 ``reauthentication_failed`` (it counts as a failed login),
    429 when throttled."""
    assert who.key is not None
    with acting_as(who.actor, source=who.source):
        status = await space.reauthenticate(
            who.key, password=body.password, totp=body.totp, recovery_code=body.recovery_code
        )
    if status == THROTTLED:
        raise ApiError(429, "throttled", "too many failed attempts: try again later")
    if status != OK:
        raise ApiError(401, "reauthentication_failed", "that proof is wrong or was used")
    return {"status": "ok"}


@router.get("/factors", tags=["factors"], response_model=Factorlist)
async def my_factors(who: User, space: Space) -> dict[str, Any]:
    """This user's second factors, and how many recovery codes remain."""
    assert who.userid is not None
    listed = await space.factors(who.userid)
    return {
        "factors": [f._asdict() for f in listed.factors],
        "recovery_codes": listed.recovery_codes,
    }


@router.post("/factors/totp", status_code=201, tags=["factors"], response_model=EnrollmentAnswer)
async def begin_totp(body: LabelBody, who: User, space: Space) -> dict[str, str]:
    """Start adding an authenticator app (after a recent proof): its secret, URI and
    QR code; confirm it within 15 minutes with a code it shows."""
    assert who.userid is not None
    await recently_proved(who, space)
    enrollment = await space.begin_totp(who.userid, label=body.label)
    return enrollment._asdict()


@router.post(
    "/passkeys/register/begin",
    status_code=201,
    tags=["passkeys"],
    response_model=PasskeyChallengeAnswer,
)
async def begin_passkey_registration(body: LabelBody, who: User, space: Space) -> dict[str, Any]:
    """Begin registering a passkey (after a proof of the last ten minutes): the
    options for ``navigator.credentials.create``, valid five minutes. 403
    ``reauthentication_required``."""
    assert who.key is not None
    begun = await space.begin_passkey_registration(who.key, label=body.label)
    if begun.status == REJECTED:
        raise ApiError(
            403,
            "reauthentication_required",
            "prove who you are again first (POST /v1/reauthenticate)",
        )
    if begun.status != OK:
        raise ApiError(401, "unauthorized", "this session has just ended")
    return challenge_answer(begun)


@router.post(
    "/passkeys/register/finish", status_code=201, tags=["passkeys"], response_model=FactorMade
)
async def finish_passkey_registration(
    body: PasskeyAnswerBody, who: User, space: Space
) -> dict[str, str]:
    """Finish registering a passkey with the browser's answer, from the session that
    began it: the new factor's id. 400 when the answer is refused, the challenge is
    used or expired, or the authenticator is registered already."""
    assert who.key is not None
    with acting_as(who.actor, source=who.source):
        made = await space.finish_passkey_registration(who.key, body.challenge_id, body.credential)
    return {"factor_id": made}


@router.put("/factors/{factor_id}/label", tags=["factors"], response_model=Done)
async def rename_factor(factor_id: str, body: LabelBody, who: User, space: Space) -> dict[str, str]:
    """Give one of this user's factors a new label (null: none)."""
    assert who.userid is not None
    with acting_as(who.actor, source=who.source):
        return found(await space.rename_factor(who.userid, factor_id, body.label), "factor")


@router.post("/factors/{factor_id}/confirm", tags=["factors"], response_model=Done)
async def confirm_totp(factor_id: str, body: CodeBody, who: User, space: Space) -> dict[str, str]:
    """Confirm an authenticator app with a code it shows: from then on, logins ask
    for a code. 400 ``wrong_code``; 404 when there is no such factor to confirm."""
    assert who.userid is not None
    with acting_as(who.actor, source=who.source):
        status = await space.confirm_totp(who.userid, factor_id, body.code)
    if status == REJECTED:
        raise ApiError(400, "wrong_code", "that code is not the app's current one")
    return found(status, "factor to confirm")


@router.delete("/factors/{factor_id}", tags=["factors"], response_model=Done)
async def remove_factor(factor_id: str, who: User, space: Space) -> dict[str, str]:
    """Remove one of this user's factors (after a recent proof)."""
    assert who.userid is not None
    await recently_proved(who, space)
    with acting_as(who.actor, source=who.source):
        return found(await space.remove_factor(who.userid, factor_id), "factor")


@router.post("/recovery-codes", status_code=201, tags=["factors"], response_model=RecoveryCodes)
async def new_recovery_codes(who: User, space: Space) -> dict[str, list[str]]:
    """Ten new recovery codes, replacing any earlier ones (after a recent proof)."""
    assert who.userid is not None
    await recently_proved(who, space)
    with acting_as(who.actor, source=who.source):
        return {"codes": await space.new_recovery_codes(who.userid)}


@router.get("/identities", tags=["identities"], response_model=Identities)
async def my_identities(who: User, space: Space) -> dict[str, Any]:
    """This user's accounts at other sites."""
    assert who.userid is not None
    return {"identities": [i._asdict() for i in await space.identities(who.userid)]}


@router.post("/identities/{provider}", tags=["identities"], response_model=ExternalBegun)
async def link_identity(
    provider: str, body: ExternalBeginBody, who: User, space: Space
) -> dict[str, Any]:
    """Begin linking this user's account at ``provider`` (after a proof of the last
    ten minutes): as ``POST /v1/external/{provider}/begin``, finished by ``POST
    /v1/external/finish``, which answers ``linked``."""
    assert who.key is not None
    await recently_proved(who, space)
    begun = await space.begin_external_login(
        provider, body.redirect_uri, link_to_key=who.key, source=who.source
    )
    return begun._asdict()


@router.delete("/identities/{provider}", tags=["identities"], response_model=Done)
async def unlink_identity(provider: str, who: User, space: Space) -> dict[str, str]:
    """Unlink this user's account at ``provider`` (after a proof of the last ten
    minutes). 409 ``last_method`` when it is their last way to sign in."""
    assert who.key is not None
    with acting_as(who.actor, source=who.source):
        status = await space.unlink_identity(who.key, provider)
    if status == REJECTED:
        raise ApiError(
            403,
            "reauthentication_required",
            "prove who you are again first (POST /v1/reauthenticate)",
        )
    return kept_a_way_in(status, "linked account")


def kept_a_way_in(status: Status, what: str) -> dict[str, str]:
    """``found``, and 409 ``last_method`` for a removal that was refused because it
    would leave the user no way to sign in."""
    if status == LAST_METHOD:
        raise ApiError(
            409, "last_method", "this is the user's last way to sign in: add another first"
        )
    return found(status, what)


# -- administrators -----------------------------------------------------------------------


@router.get("/admin/users", tags=["admin"], response_model=UsersPage)
async def list_users(
    *,
    request: Request,
    who: Admin,
    search: Annotated[str | None, Query(description="part of a username or email")] = None,
    after: Annotated[int, Query(ge=0, description="the last userid of the previous page")] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
    admin: bool | None = None,
    disabled: bool | None = None,
    verified: bool | None = None,
    throttled: bool | None = None,
) -> dict[str, Any]:
    """Users in userid order, a page at a time: pass the page's ``next_after`` as
    ``after`` for the next one (null on the last page)."""
    filters = {
        name: value
        for name, value in (
            ("admin", admin),
            ("disabled", disabled),
            ("verified", verified),
            ("throttled", throttled),
        )
        if value is not None
    }
    service = service_of(request)
    page = await service.accounts(search, after, limit, filters)
    return {
        "users": [await account_answer(service, account) for account in page],
        "next_after": page[-1].userid if len(page) == limit else None,
    }


async def account_answer(service: Service, account: Account) -> dict[str, Any]:
    """A user as the admin endpoints answer it, their data by the codec's rules."""
    return {**account._asdict(), "extra_data": await service.data_as_json(account.extra_data)}


async def account_of(request: Request, userid: int) -> dict[str, Any]:
    service = service_of(request)
    account = await service.account(userid)
    if account is None:
        raise ApiError(404, "not_found", "no such user")
    return await account_answer(service, account)


@router.get("/admin/users/{userid}", tags=["admin"], response_model=AccountAnswer)
async def get_user(userid: int, request: Request, who: Admin) -> dict[str, Any]:
    return await account_of(request, userid)


@router.post("/admin/users", status_code=201, tags=["admin"], response_model=AccountAnswer)
async def create_user(
    body: NewUserBody, request: Request, who: Admin, space: Space
) -> dict[str, Any]:
    with acting_as(who.actor, source=who.source):
        userid = await space.create_user(
            body.username, body.password, body.email, body.admin, body.extra_data
        )
    return await account_of(request, userid)


@router.patch("/admin/users/{userid}", tags=["admin"], response_model=AccountAnswer)
async def change_user(
    userid: int, body: ChangeUserBody, request: Request, who: Admin, space: Space
) -> dict[str, Any]:
    """Change a user's username, email, extra_data (omit what stays) or password."""
    with acting_as(who.actor, source=who.source):
        if body.username is not None or body.email is not None or body.extra_data is not None:
            found(await space.modify_user(userid, body.username, body.email, body.extra_data))
        if body.password is not None:
            found(
                await space.change_password(userid, body.password, end_sessions=body.end_sessions)
            )
    return await account_of(request, userid)


@router.put("/admin/users/{userid}/disabled", tags=["admin"], response_model=Done)
async def disable_user(userid: int, body: FlagBody, who: Admin, space: Space) -> dict[str, str]:
    """Disable (true: their sessions end) or enable (false) a user."""
    with acting_as(who.actor, source=who.source):
        return found(await space.disable_user(userid, body.value))


@router.put("/admin/users/{userid}/admin", tags=["admin"], response_model=Done)
async def set_admin(userid: int, body: FlagBody, who: Admin, space: Space) -> dict[str, str]:
    with acting_as(who.actor, source=who.source):
        return found(await space.set_admin(userid, body.value))


@router.post("/admin/users/{userid}/tokens", status_code=201, tags=["admin"], response_model=Issued)
async def issue_token(
    userid: int, body: IssueBody, request: Request, who: Admin, space: Space
) -> dict[str, Any]:
    """A one-time token for a password reset, an email verification or an email change:
    mailed to the user when mail is set up (the answer holds no token), otherwise (or
    with ``mail: false``) in the answer, for the caller to send."""
    account = await account_of(request, userid)
    with acting_as(who.actor, source=who.source):
        if body.mail and body.ttl is None and await space.mail_settings() is not None:
            if body.purpose == "reset_password":
                await space.request_password_reset(account["email"], source=who.source)
            elif body.purpose == "verify_email":
                found(await space.request_email_verification(userid), "unverified address")
            else:
                if body.email is None:
                    raise ApiError(400, "bad_request", "change_email needs the new email")
                found(await space.request_email_change(userid, body.email))
            return {"token": None, "purpose": body.purpose, "mailed": True}
        token = await space.issue_token(userid, body.purpose, ttl=body.ttl, email=body.email)
    return {"token": token, "purpose": body.purpose, "mailed": False}


@router.post(
    "/admin/users/{userid}/factors/{factor_id}/clear-flag", tags=["admin"], response_model=Done
)
async def clear_passkey_flag(
    userid: int, factor_id: str, who: Admin, space: Space
) -> dict[str, str]:
    """Let a passkey flagged as cloned sign in again. 404 for no flagged passkey."""
    with acting_as(who.actor, source=who.source):
        return found(await space.clear_passkey_flag(userid, factor_id), "flagged passkey")


@router.delete("/admin/users/{userid}", tags=["admin"], response_model=Done)
async def delete_user(userid: int, who: Admin, space: Space) -> dict[str, str]:
    with acting_as(who.actor, source=who.source):
        return found(await space.delete_user(userid=userid))


@router.get("/admin/users/{userid}/sessions", tags=["admin"], response_model=Sessions)
async def user_sessions(
    userid: int, who: Admin, space: Space, expired: bool = False
) -> dict[str, Any]:
    rows = space.sessions(userid, expired=expired)
    return {"sessions": [session._asdict() async for session in rows]}


@router.delete("/admin/users/{userid}/sessions", tags=["admin"], response_model=Ended)
async def end_user_sessions(userid: int, who: Admin, space: Space) -> dict[str, int]:
    with acting_as(who.actor, source=who.source):
        return {"ended": await space.kill_sessions(userid)}


@router.delete("/admin/sessions/{session_id}", tags=["admin"], response_model=Ended)
async def end_session(session_id: str, who: Admin, space: Space) -> dict[str, int]:
    with acting_as(who.actor, source=who.source):
        ended = await space.end_session(session_id)
    if not ended:
        raise ApiError(404, "not_found", "no such session")
    return {"ended": ended}


@router.get("/admin/events", tags=["admin"], response_model=Events)
async def events(
    *,
    who: Admin,
    space: Space,
    userid: int | None = None,
    kind: Annotated[list[str] | None, Query()] = None,
    since: float | None = None,
    until: float | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
) -> dict[str, Any]:
    """The audit trail, newest first: pass the last event's ``at`` as ``until`` for
    older ones."""
    rows = space.events(userid=userid, kinds=kind, since=since, until=until)
    return {"events": [event._asdict() for event in await first(rows, limit)]}


@router.get("/admin/api-keys", tags=["admin"], response_model=ApiKeys)
async def list_api_keys(request: Request, who: Admin) -> dict[str, Any]:
    """The service's API keys (never the keys themselves), revoked ones included."""
    return {"api_keys": [key._asdict() async for key in service_of(request).api_keys()]}


@router.post("/admin/api-keys", status_code=201, tags=["admin"], response_model=ApiKeyMade)
async def create_api_key(body: ApiKeyBody, request: Request, who: Admin) -> dict[str, str]:
    """Make an API key; the answer is the only place the key is ever shown."""
    with acting_as(who.actor, source=who.source):
        key_id, key = await service_of(request).create_api_key(body.name, body.scope, who.maker)
    return {"key_id": key_id, "key": key, "scope": body.scope}


@router.delete("/admin/api-keys/{key_id}", tags=["admin"], response_model=Done)
async def revoke_api_key(key_id: str, request: Request, who: Admin) -> dict[str, str]:
    """Revoke an API key: it stops working at once here, and within the API key
    cache's seconds in other processes serving the same userspace."""
    with acting_as(who.actor, source=who.source):
        return found(await service_of(request).revoke_api_key(key_id), "live API key")


# -- roles and organizations ---------------------------------------------------------------


def org_named(org: str) -> int | str:
    """An organization in a path: its id (digits) or its slug."""
    return int(org) if org.isdigit() else org


@router.get("/admin/providers", tags=["identities"], response_model=Providers)
async def admin_providers(who: Admin, space: Space) -> dict[str, Any]:
    """The identity providers, with their settings (never their secrets)."""
    return {"providers": [p._asdict() for p in await space.identity_providers()]}


@router.put("/admin/providers/{name}", tags=["identities"], response_model=Done)
async def set_provider(name: str, body: ProviderBody, who: Admin, space: Space) -> dict[str, str]:
    """Let users sign in through provider ``name``, or replace its settings; its client
    secret is sealed under the service's secret key."""
    with acting_as(who.actor, source=who.source):
        status = await space.add_identity_provider(name, **body.model_dump())
    return found(status, "provider")


@router.delete("/admin/providers/{name}", tags=["identities"], response_model=Done)
async def remove_provider(name: str, who: Admin, space: Space) -> dict[str, str]:
    """Stop signing in through provider ``name``; its identities go with it (400 when
    a user signs in through it alone)."""
    with acting_as(who.actor, source=who.source):
        return found(await space.remove_identity_provider(name), "provider")


@router.get("/admin/users/{userid}/identities", tags=["identities"], response_model=Identities)
async def user_identities(userid: int, who: Admin, space: Space) -> dict[str, Any]:
    """A user's accounts at other sites."""
    return {"identities": [i._asdict() for i in await space.identities(userid)]}


@router.delete(
    "/admin/users/{userid}/identities/{provider}", tags=["identities"], response_model=Done
)
async def remove_user_identity(
    userid: int, provider: str, who: Admin, space: Space
) -> dict[str, str]:
    """Unlink a user's account at ``provider``. 409 ``last_method`` when it is their
    last way to sign in."""
    with acting_as(who.actor, source=who.source):
        return kept_a_way_in(await space.remove_identity(userid, provider), "linked account")


@router.get("/admin/roles", tags=["roles"], response_model=Roles)
async def list_roles(who: Admin, space: Space) -> dict[str, Any]:
    """Every role and what it grants."""
    return {"roles": [role._asdict() for role in await space.roles()]}


@router.put("/admin/roles/{name}", tags=["roles"], response_model=Done)
async def define_role(name: str, body: RoleBody, who: Admin, space: Space) -> dict[str, str]:
    """Define a role, or change what it grants (its holders' sessions answer the new
    permissions at once)."""
    with acting_as(who.actor, source=who.source):
        await space.define_role(name, body.permissions, description=body.description)
    return {"status": "ok"}


@router.delete("/admin/roles/{name}", tags=["roles"], response_model=Done)
async def delete_role(name: str, who: Admin, space: Space) -> dict[str, str]:
    """Delete a role and every grant of it."""
    with acting_as(who.actor, source=who.source):
        return found(await space.delete_role(name), "role")


@router.get("/admin/users/{userid}/roles", tags=["roles"], response_model=Grants)
async def roles_of(userid: int, who: Admin, space: Space) -> dict[str, Any]:
    """The roles a user holds, everywhere and by organization."""
    return {"roles": [grant._asdict() for grant in await space.user_roles(userid)]}


@router.post("/admin/users/{userid}/roles", tags=["roles"], response_model=Done)
async def grant_role(userid: int, body: GrantBody, who: Admin, space: Space) -> dict[str, str]:
    """Give a user a role, everywhere or in one organization they are a member of."""
    with acting_as(who.actor, source=who.source):
        status = await space.grant_role(userid, body.role, org=body.org)
    return found(status, "user, role or organization")


@router.delete("/admin/users/{userid}/roles/{role}", tags=["roles"], response_model=Done)
async def revoke_role(
    userid: int, role: str, who: Admin, space: Space, org: str | None = None
) -> dict[str, str]:
    """Take a role back (``?org=`` for one granted in an organization)."""
    with acting_as(who.actor, source=who.source):
        status = await space.revoke_role(userid, role, org=None if org is None else org_named(org))
    return found(status, "grant")


@router.post("/admin/orgs", status_code=201, tags=["roles"], response_model=OrgMade)
async def create_org(body: OrgBody, who: Admin, space: Space) -> dict[str, int]:
    """Create an organization."""
    with acting_as(who.actor, source=who.source):
        return {"org_id": await space.create_org(body.name, slug=body.slug)}


@router.delete("/admin/orgs/{org}", tags=["roles"], response_model=Done)
async def delete_org(org: str, who: Admin, space: Space) -> dict[str, str]:
    """Delete an organization, its memberships and the roles held there."""
    with acting_as(who.actor, source=who.source):
        return found(await space.delete_org(org_named(org)), "organization")


async def org_manager(org: str, who: User, space: Space) -> Caller:
    """A member allowed to manage organization ``org``: their roles there grant
    ``org:manage``. Administrators use the admin endpoints."""
    assert who.userid is not None
    if not await space.has_permission(who.userid, "org:manage", org=org_named(org)):
        raise ApiError(403, "forbidden", "this needs the permission 'org:manage' there")
    return who


OrgManager = Annotated[Caller, Depends(org_manager)]


@router.get("/orgs", tags=["roles"], response_model=Orgs)
async def my_orgs(who: User, space: Space) -> dict[str, Any]:
    """The organizations this user is a member of."""
    assert who.userid is not None
    return {"orgs": [org._asdict() for org in await space.orgs(who.userid)]}


@router.get("/orgs/{org}/members", tags=["roles"], response_model=Members)
async def members_of(org: str, who: OrgManager, space: Space) -> dict[str, Any]:
    """An organization's members and their roles there (for its managers)."""
    return {"members": [m._asdict() async for m in space.org_members(org_named(org))]}


@router.put("/orgs/{org}/members/{userid}", tags=["roles"], response_model=Done)
async def add_member(
    org: str, userid: int, body: MemberBody, who: OrgManager, space: Space
) -> dict[str, str]:
    """Add a member with a role there (for its managers)."""
    with acting_as(who.actor, source=who.source):
        return found(await space.add_member(org_named(org), userid, body.role), "user or role")


@router.delete("/orgs/{org}/members/{userid}", tags=["roles"], response_model=Done)
async def remove_member(org: str, userid: int, who: OrgManager, space: Space) -> dict[str, str]:
    """Remove a member (for its managers); its last owner stays."""
    with acting_as(who.actor, source=who.source):
        return found(await space.remove_member(org_named(org), userid), "member")


@router.get("/admin/settings", tags=["admin"], response_model=SettingsAnswer)
async def get_settings(request: Request, who: Admin) -> dict[str, Any]:
    return (await service_of(request).settings())._asdict()


@router.patch("/admin/settings", tags=["admin"], response_model=SettingsAnswer)
async def change_settings(
    body: SettingsBody, request: Request, who: Admin, space: Space
) -> dict[str, Any]:
    """Change the settings named in the body (each is its own change in the audit
    trail); ``null`` means no limit where a setting may have none; ``key_storage``
    can only become ``hashed``."""
    changes = {name: getattr(body, name) for name in body.model_fields_set if name in SETTINGS}
    with acting_as(who.actor, source=who.source):
        for call in plan(changes):
            await call(space)
        if body.admins_need_mfa is not None:
            await space.set_login_policy(admins_need_mfa=body.admins_need_mfa)
        party = (body.webauthn_rp_id, body.webauthn_rp_name, body.webauthn_origins)
        if any(value is not None for value in party):
            if body.webauthn_rp_id is None or body.webauthn_rp_name is None:
                raise BadCallError("give webauthn_rp_id, webauthn_rp_name and webauthn_origins")
            await space.set_webauthn(
                body.webauthn_rp_id, body.webauthn_rp_name, body.webauthn_origins or []
            )
        if body.key_storage is not None:
            await space.set_session_key_storage(body.key_storage)
    return (await service_of(request).settings())._asdict()
