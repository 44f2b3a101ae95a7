"""The account pages: server-rendered pages under ``/account`` where every user signs
in (with their second factor), adds or removes an authenticator app, makes new
recovery codes, changes their password, and sees and ends their sessions.

They follow the console's rules (see :mod:`pgusers.web._pages`: CSRF, same origin,
no script) with the user's own session: changing a second factor or the recovery
codes needs a proof of who they are made in the last ten minutes (signing in, or
the confirmation page, which re-authenticates this very session); changing the
password needs the current one. Changes run as ``user:<userid>`` in the audit trail.
"""

from typing import Any, Final

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from pgusers._aio import AsyncUserSpace
from pgusers._door import acting_as
from pgusers._errors import BadCallError, ProviderUnavailableError
from pgusers._results import (
    DISABLED,
    EXPIRED,
    LAST_METHOD,
    MFA_REQUIRED,
    NOT_FOUND,
    OK,
    REJECTED,
    THROTTLED,
    ExternalLogin,
    LoginOutcome,
)
from pgusers.integrations._common import (
    RECENT_AUTH,
    STATE_SECONDS,
    callback_params,
    external_refusal,
    proved_recently,
    refusal,
    user_agent,
)
from pgusers.web import _enrolling as enrolling
from pgusers.web import _pages as pages
from pgusers.web._pages import (
    HERE,
    Area,
    Redirect,
    RefusedError,
    Visitor,
    cookie,
    is_totp_code,
    sentence,
)
from pgusers.web._service import client_address, service_of

SESSION_COOKIE: Final = "pgusers_account"
CSRF_COOKIE: Final = "pgusers_account_csrf"
STATE_COOKIE: Final = "pgusers_account_external"
"""Holds a sign-in's state through the other site: SameSite=Lax, so that the browser
sends it with the provider's redirect back (a cross-site navigation)."""

DONE: Final = {
    "enrolled": "Your authenticator app is set up: signing in now asks for its code.",
    "passkey-added": "Your passkey is added: sign in with it, with no password.",
    "factor-removed": "That second factor was removed.",
    "factor-gone": "That second factor was already gone.",
    "password-changed": "Your password was changed.",
    "session-ended": "That session ended.",
    "others-ended": "Your other sessions ended.",
    "confirmed": "Thank you. You can make the change now.",
    "linked": "That account is linked: you can sign in with it now.",
    "unlinked": "That account is no longer linked.",
    "unlink-refused": "That is your last way to sign in: add a password or a passkey first.",
    "verification-sent": "A link that confirms your address is on its way to it.",
}

ACCOUNT: Final = Area("/account", SESSION_COOKIE, CSRF_COOKIE, "/account", DONE)

router = APIRouter(prefix="/account", include_in_schema=False)


Person = Visitor
"""The user an account page is for."""


def mount(app: FastAPI) -> None:
    app.mount("/account/static", StaticFiles(directory=HERE / "static"), name="account-static")
    app.include_router(router)


def page(request: Request, template: str, context: dict[str, Any], status: int = 200) -> Response:
    return pages.page(request, ACCOUNT, template, context, status)


async def space_of(request: Request) -> AsyncUserSpace:
    return await service_of(request).space()


async def person_of(request: Request) -> Person:
    """The user whose account session this is; otherwise to the sign-in page."""
    key = cookie(request, SESSION_COOKIE)
    if key:
        info = await (await space_of(request)).check_session(key)
        if info.status == OK and info.userid is not None and info.username is not None:
            return Person(
                info.userid,
                info.username,
                key,
                f"user:{info.userid}",
                client_address(request),
                info.authenticated_at,
            )
    raise Redirect("/account/login")


async def writer_of(request: Request, *, recent: bool = False) -> tuple[Person, dict[str, str]]:
    """The user and the form of a change: CSRF checked; with ``recent``, a proof of
    who they are made in the last ten minutes (else to the confirmation page)."""
    person = await person_of(request)
    form = await pages.form_of(request, ACCOUNT)
    if recent and not proved_recently(person.authenticated_at, RECENT_AUTH):
        raise Redirect("/account/confirm")
    return person, form


def signed_in_response(request: Request, key: str, going_to: str = "/account") -> Response:
    response = RedirectResponse(ACCOUNT.path(going_to), 303)
    pages.set_cookie(request, ACCOUNT, response, SESSION_COOKIE, key)
    return response


async def opened(request: Request, outcome: LoginOutcome) -> Response:
    """The answer to a sign-in that ended: the session cookie, or the form again."""
    refused = refusal(outcome)
    if refused is not None:
        return page(request, "login.html", {"error": sentence(refused.message)}, refused.status)
    return signed_in_response(request, outcome.key)


# -- signing in and out --------------------------------------------------------------------


async def second_step(
    request: Request, ticket: str, factors: tuple[str, ...], **more: object
) -> Response:
    """The page of a sign-in's second step: a code, or the user's passkey."""
    context: dict[str, object] = {"ticket": ticket, **more}
    if "passkey" in factors:
        begun = await (await space_of(request)).begin_passkey_login(ticket=ticket)
        context["passkey"] = begun if begun.status == OK else None
    status = 401 if "error" in more else 200
    return page(request, "login_code.html", context, status)


@router.get("/login")
async def login_page(request: Request) -> Response:
    return await login_form(request)


async def login_form(request: Request, error: str | None = None, status: int = 200) -> Response:
    """The sign-in page: a password, a passkey, or another site's account."""
    space = await space_of(request)
    mail = await space.mail_settings() is not None
    context: dict[str, object] = {
        "passkey": await pages.passkey_challenge(request),
        "providers": await providers_of(request),
        "mail": mail,
        "by_email": mail and (await space.settings()).login_by_email,
    }
    if error is not None:
        context["error"] = error
    return page(request, "login.html", context, status)


async def providers_of(request: Request) -> list[str]:
    """The names of the sites one may sign in through (none without a secret key)."""
    try:
        return [p.name for p in await (await space_of(request)).identity_providers()]
    except BadCallError:
        return []


@router.post("/login/passkey")
async def passkey_login(request: Request) -> Response:
    """Sign in with a passkey and no password."""
    form = await pages.form_of(request, ACCOUNT)
    try:
        outcome = await (await space_of(request)).finish_passkey_login(
            form.get("challenge_id", ""),
            form.get("credential", ""),
            source=client_address(request),
            user_agent=user_agent(request.headers.get("user-agent")),
        )
    except BadCallError:
        outcome = LoginOutcome(REJECTED, "", False, None, 0.0)
    if outcome.status in (OK, THROTTLED, DISABLED):
        return await opened(request, outcome)
    error = (
        "This sign-in has expired: try again."
        if outcome.status in (NOT_FOUND, EXPIRED)
        else "That passkey was not accepted."
    )
    context = {"error": error, "passkey": await pages.passkey_challenge(request)}
    return page(request, "login.html", context, 401)


@router.post("/login")
async def login(request: Request) -> Response:
    form = await pages.form_of(request, ACCOUNT)
    outcome = await (await space_of(request)).login(
        form.get("username", ""),
        form.get("password", ""),
        source=client_address(request),
        user_agent=user_agent(request.headers.get("user-agent")),
    )
    if outcome.status == MFA_REQUIRED:
        return await second_step(request, outcome.ticket or "", outcome.factors)
    return await opened(request, outcome)


@router.post("/login/code")
async def login_code(request: Request) -> Response:
    """The second step: a code of the authenticator app, or a recovery code."""
    form = await pages.form_of(request, ACCOUNT)
    ticket, passkey = form.get("ticket", ""), form.get("credential")
    outcome = await pages.answer_second_step(request, form)
    if outcome.status in (NOT_FOUND, EXPIRED):
        error = "This sign-in has expired: sign in again."
        context = {"error": error, "passkey": await pages.passkey_challenge(request)}
        return page(request, "login.html", context, 401)
    if outcome.status == REJECTED:
        error = "That was not accepted: a wrong or used code, or another passkey."
        return await second_step(request, ticket, ("passkey",) if passkey else (), error=error)
    return await opened(request, outcome)


@router.post("/logout")
async def logout(request: Request) -> Response:
    person, _ = await writer_of(request)
    with acting_as(person.actor, source=person.source):
        await (await space_of(request)).logout(person.key)
    response = RedirectResponse("/account/login", 303)
    pages.delete_cookie(request, ACCOUNT, response, SESSION_COOKIE)
    return response


@router.get("/confirm")
async def confirm_page(request: Request) -> Response:
    person = await person_of(request)
    factors = await (await space_of(request)).factors(person.userid)
    context = {"person": person, "has_factor": any(f.confirmed for f in factors.factors)}
    return page(request, "account_confirm.html", context)


@router.post("/confirm")
async def confirm(request: Request) -> Response:
    """Prove again who you are, with the password or a code: this session counts as
    recently authenticated for the next ten minutes."""
    person, form = await writer_of(request)
    password, code = form.get("password"), form.get("code", "").strip()
    totp = is_totp_code(code)
    space = await space_of(request)
    try:
        with acting_as(person.actor, source=person.source):
            status = await space.reauthenticate(
                person.key,
                password=password if password else None,
                totp=code if code and not password and totp else None,
                recovery_code=code if code and not password and not totp else None,
            )
    except BadCallError:
        status = REJECTED
    if status == OK:
        return pages.back_to(ACCOUNT, "/account", "confirmed")
    error = (
        "Too many failed attempts: try again later."
        if status == THROTTLED
        else "That is not right, or the code was used already."
    )
    factors = await space.factors(person.userid)
    context = {
        "person": person,
        "has_factor": any(f.confirmed for f in factors.factors),
        "error": error,
    }
    return page(request, "account_confirm.html", context, 429 if status == THROTTLED else 401)


# -- another site's account -----------------------------------------------------------------


def callback_address(request: Request) -> str:
    """Where providers send the browser back: register it with each provider."""
    return f"{request.url.scheme}://{request.url.netloc}/account/external/callback"


def state_cookie_path(request: Request) -> str:
    """Where the state cookie is sent: the callback only (``/`` over HTTPS, as the
    ``__Host-`` prefix requires)."""
    return "/" if request.url.scheme == "https" else "/account/external"


def to_provider(request: Request, begun: ExternalLogin) -> Response:
    """Off to the provider, with the sign-in's state kept in a cookie of its own. A
    page that goes on by itself rather than a redirect: the pages' policy lets a form
    lead to this site only (form-action 'self'), redirects included."""
    response = page(request, "onward.html", {"going_to": begun.authorization_url})
    response.set_cookie(
        pages.cookie_name(request, STATE_COOKIE),
        begun.state,
        max_age=STATE_SECONDS,
        path=state_cookie_path(request),
        httponly=True,
        samesite="lax",
        secure=pages.secure(request),
    )
    return response


@router.post("/external/{provider}")
async def external_login(request: Request, provider: str) -> Response:
    """Sign in through another site: off to it."""
    await pages.form_of(request, ACCOUNT)
    try:
        begun = await (await space_of(request)).begin_external_login(
            provider, callback_address(request), source=client_address(request)
        )
    except (BadCallError, ProviderUnavailableError):
        return await login_form(request, f"Signing in through {provider} is not possible now.", 400)
    return to_provider(request, begun)


@router.get("/external/callback")
async def external_callback(request: Request) -> Response:
    """Back from the other site: signed in (or linked), a second step, or why not."""
    state = pages.cookie(request, STATE_COOKIE) or ""
    space = await space_of(request)
    try:
        outcome = await space.finish_external_login(
            state,
            callback_params(request.query_params),
            source=client_address(request),
            user_agent=user_agent(request.headers.get("user-agent")),
        )
    except (BadCallError, ProviderUnavailableError):
        outcome = LoginOutcome(REJECTED, "", False, None, 0.0)
    if outcome.status == MFA_REQUIRED:
        response = await second_step(request, outcome.ticket or "", outcome.factors)
    elif outcome.status == OK and not outcome.key:
        response = onward(request, "/account?done=linked")
    elif outcome.status == OK:
        response = onward(request, "/account")
        pages.set_cookie(request, ACCOUNT, response, SESSION_COOKIE, outcome.key)
    else:
        refused = external_refusal(outcome)
        assert refused is not None
        response = await login_form(request, sentence(refused.message), refused.status)
    response.delete_cookie(
        pages.cookie_name(request, STATE_COOKIE), path=state_cookie_path(request)
    )
    return response


def onward(request: Request, going_to: str) -> Response:
    """A page that goes on to ``going_to`` by itself: a redirect would keep the browser
    in the provider's cross-site navigation, where the session's SameSite=Strict
    cookie is not sent."""
    return page(request, "onward.html", {"going_to": going_to})


@router.post("/identities/{provider}/link")
async def link_identity(request: Request, provider: str) -> Response:
    person, _ = await writer_of(request, recent=True)
    try:
        begun = await (await space_of(request)).begin_external_login(
            provider, callback_address(request), link_to_key=person.key, source=person.source
        )
    except (BadCallError, ProviderUnavailableError):
        raise RefusedError(400, f"Linking an account at {provider} is not possible now.") from None
    return to_provider(request, begun)


@router.post("/identities/{provider}/remove")
async def unlink_identity(request: Request, provider: str) -> Response:
    person, form = await writer_of(request, recent=True)
    if form.get("confirmed") != "yes":
        context = {
            "person": person,
            "question": f"Unlink your account at {provider}? You will not be able to "
            "sign in with it any more.",
            "button": "Unlink",
            "action": f"/account/identities/{provider}/remove",
            "fields": {},
            "cancel": "/account",
        }
        return page(request, "sure.html", context)
    try:
        with acting_as(person.actor, source=person.source):
            status = await (await space_of(request)).unlink_identity(person.key, provider)
    except BadCallError:
        status = NOT_FOUND
    if status == REJECTED:
        raise Redirect("/account/confirm")
    done = "unlink-refused" if status == LAST_METHOD else "unlinked"
    return pages.back_to(ACCOUNT, "/account", done)


# -- the security page -----------------------------------------------------------------------


@router.get("")
@router.get("/")
async def security(request: Request) -> Response:
    return await security_page(request, await person_of(request))


async def security_page(
    request: Request, person: Person, extra: dict[str, object] | None = None, status: int = 200
) -> Response:
    """The security page; for an administrator the login policy holds to a second
    factor they do not have, the page that adds one instead."""
    space = await space_of(request)
    if await space.needs_enrollment(person.userid):
        return page(request, "enroll.html", {"person": person, "required": True})
    async with space.sessions(person.userid, key=person.key) as rows:
        sessions = [session async for session in rows]
    context = {
        "person": person,
        "factors": await space.factors(person.userid),
        "sessions": sessions,
        "providers": await providers_of(request),
        "identities": {i.provider: i for i in await space.identities(person.userid)},
        "unverified": await unverified_address(space, person.userid),
        **(extra or {}),
    }
    return page(request, "account.html", context, status)


async def unverified_address(space: AsyncUserSpace, userid: int) -> str | None:
    """The user's address while it is unverified and mail could verify it."""
    if await space.mail_settings() is None:
        return None
    found = await space.find_user(userid=userid)
    return None if found is None or found["email_verified"] else found["email"]


@router.post("/totp")
async def begin_totp(request: Request) -> Response:
    person, _ = await writer_of(request, recent=True)
    space = await space_of(request)
    context = {"person": person, "required": await space.needs_enrollment(person.userid)}
    return await enrolling.begin(request, ACCOUNT, space, person.userid, context)


@router.post("/totp/confirm")
async def confirm_totp(request: Request) -> Response:
    person, form = await writer_of(request)
    space = await space_of(request)
    return await enrolling.confirm(
        request,
        ACCOUNT,
        space,
        form,
        who=(person.userid, person.actor, person.source),
        context={"person": person},
        going_to="/account",
    )


@router.post("/passkeys")
async def begin_passkey(request: Request) -> Response:
    """The page that registers a passkey (after a recent proof)."""
    person, form = await writer_of(request, recent=True)
    space = await space_of(request)
    label = form.get("label", "").strip() or None
    try:
        begun = await space.begin_passkey_registration(person.key, label=label)
    except BadCallError as refused:
        raise RefusedError(400, sentence(str(refused).rstrip("."))) from None
    if begun.status == REJECTED:
        raise Redirect("/account/confirm")
    context = {"person": person, "passkey": begun}
    return page(request, "passkey_add.html", context)


@router.post("/passkeys/finish")
async def finish_passkey(request: Request) -> Response:
    person, form = await writer_of(request)
    space = await space_of(request)
    try:
        with acting_as(person.actor, source=person.source):
            await space.finish_passkey_registration(
                person.key, form.get("challenge_id", ""), form.get("credential", "")
            )
    except BadCallError as refused:
        raise RefusedError(400, sentence(str(refused).rstrip("."))) from None
    return pages.back_to(ACCOUNT, "/account", "passkey-added")


@router.post("/recovery-codes")
async def new_recovery_codes(request: Request) -> Response:
    person, _ = await writer_of(request, recent=True)
    with acting_as(person.actor, source=person.source):
        codes = await (await space_of(request)).new_recovery_codes(person.userid)
    return page(
        request, "recovery_codes.html", {"person": person, "codes": codes, "next": "/account"}
    )


@router.post("/factors/{factor_id}/remove")
async def remove_factor(request: Request, factor_id: str) -> Response:
    person, form = await writer_of(request, recent=True)
    if form.get("confirmed") != "yes":
        context = {
            "person": person,
            "question": "Remove this second factor? If it is your last one, signing in "
            "needs your password only, and your recovery codes stop working.",
            "button": "Remove",
            "action": f"/account/factors/{factor_id}/remove",
            "fields": {},
            "cancel": "/account",
        }
        return page(request, "sure.html", context)
    space = await space_of(request)
    try:
        with acting_as(person.actor, source=person.source):
            status = await space.remove_factor(person.userid, factor_id)
    except BadCallError:
        status = NOT_FOUND
    return pages.back_to(ACCOUNT, "/account", "factor-removed" if status == OK else "factor-gone")


@router.post("/password")
async def change_password(request: Request) -> Response:
    """A new password, given the current one (which counts as a proof, throttled like
    a login); optionally ending every other session."""
    person, form = await writer_of(request)
    current, new = form.get("current_password", ""), form.get("new_password", "")
    space = await space_of(request)
    error = None
    try:
        with acting_as(person.actor, source=person.source):
            proved = await space.reauthenticate(person.key, password=current)
            if proved == OK:
                await space.change_password(person.userid, new)
                if form.get("end_others") == "on":
                    await space.end_other_sessions(person.key)
    except BadCallError as refused:
        proved, error = REJECTED, sentence(str(refused).rstrip("."))
    if proved == OK and error is None:
        return pages.back_to(ACCOUNT, "/account", "password-changed")
    if error is None:
        error = (
            "Too many failed attempts: try again later."
            if proved == THROTTLED
            else "Your current password is not right."
        )
    status = 429 if proved == THROTTLED else 400
    return await security_page(request, person, {"password_error": error}, status)


@router.post("/sessions/{session_id}/end")
async def end_session(request: Request, session_id: str) -> Response:
    person, _ = await writer_of(request)
    space = await space_of(request)
    mine = {session.session_id async for session in space.sessions(person.userid)}
    ended = 0
    if session_id in mine:
        with acting_as(person.actor, source=person.source):
            ended = await space.end_session(session_id)
    if not ended:
        raise RefusedError(404, "You have no such session.")
    return pages.back_to(ACCOUNT, "/account", "session-ended")


@router.post("/sessions/end-others")
async def end_other_sessions(request: Request) -> Response:
    person, _ = await writer_of(request)
    with acting_as(person.actor, source=person.source):
        await (await space_of(request)).end_other_sessions(person.key)
    return pages.back_to(ACCOUNT, "/account", "others-ended")


async def refused(request: Request, error: RefusedError) -> Response:
    """The error page of the account pages."""
    try:
        person: Person | None = await person_of(request)
    except (Redirect, RefusedError):
        person = None
    return page(request, "message.html", {"error": error.message, "person": person}, error.status)
