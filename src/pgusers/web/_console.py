"""The admin console: server-rendered pages under ``/console`` for administrators.

Every form carries a CSRF token (an HMAC of a random cookie under the application's
secret); every write needs a password entered in the last ten minutes (the console
session's own login, or a confirmation, which opens a fresh session); every write
runs as ``console:user:<userid>`` in the audit trail. The pages load no script.
"""

import json
import time
from typing import Any, Final
from urllib.parse import urlencode

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from pgusers import _door as door
from pgusers._aio import AsyncUserSpace
from pgusers._door import KINDS, Core, acting_as
from pgusers._errors import BadCallError
from pgusers._results import (
    EXPIRED,
    LAST_METHOD,
    MFA_REQUIRED,
    NOT_FOUND,
    OK,
    REJECTED,
    LoginOutcome,
)
from pgusers._settings import POLICY, plan, read
from pgusers.integrations._common import refusal, user_agent
from pgusers.web import _enrolling as enrolling
from pgusers.web import _pages as pages
from pgusers.web._pages import (
    HERE,
    Answer,
    Area,
    Redirect,
    RefusedError,
    TwoCookiesError,
    Visitor,
    cookie,
    sentence,
)
from pgusers.web._service import (
    CONSOLE_SESSION,
    client_address,
    current_session,
    first,
    service_of,
)

SESSION_COOKIE: Final = "pgusers_console"
CSRF_COOKIE: Final = "pgusers_console_csrf"
CONFIRM_WINDOW: Final = 600.0
"""Seconds after entering a password during which the console allows writes."""
PAGE: Final = 50
FILTERS: Final = {
    "admin": ("admin", True),
    "disabled": ("disabled", True),
    "unverified": ("verified", False),
    "throttled": ("throttled", True),
    "admins-without-factor": ("admins_without_factor", True),
}

DONE: Final = {
    "reset-mailed": "A password-reset link was mailed to the user.",
    "retried": "The message will be sent again.",
    "not-dead": "That message is not a dead letter (sent, or waiting already).",
    "disabled": "User disabled.",
    "enabled": "User enabled.",
    "admin": "Made an administrator.",
    "not-admin": "No longer an administrator.",
    "sessions-ended": "The user's sessions ended.",
    "factors-removed": "The user's second factors were removed.",
    "session-ended": "Session ended.",
    "session-gone": "That session had already ended.",
    "deleted": "User deleted.",
    "saved": "Saved.",
    "changed": "Changes saved.",
    "unchanged": "Nothing to change.",
    "key-revoked": "API key revoked.",
    "key-gone": "That API key was already revoked.",
    "enrolled": "Your authenticator app is set up.",
    "flag-cleared": "The passkey signs in again.",
    "identity-removed": "The linked account was removed.",
    "deleted-role": "Role deleted.",
    "role-granted": "Role granted.",
    "role-revoked": "Role revoked.",
    "member-added": "Member added.",
    "member-removed": "Member removed.",
    "org-deleted": "Organization deleted.",
}
"""What a console page says after a change, by the code a redirect carries."""

CONSOLE: Final = Area("/console", SESSION_COOKIE, CSRF_COOKIE, "/console/users", DONE)

router = APIRouter(prefix="/console", include_in_schema=False)


Admin = Visitor
"""The administrator a console request comes from."""


def mount(app: FastAPI) -> None:
    # The files first: the router ends with a page for every other console address.
    app.mount("/console/static", StaticFiles(directory=HERE / "static"), name="console-static")
    app.include_router(router)


async def refused(request: Request, error: RefusedError) -> Response:
    """The error page: its message once, and a way on for whoever is looking."""
    admin = None if isinstance(error, TwoCookiesError) else await signed_in(request)
    return page(request, "message.html", {"error": error.message, "admin": admin}, error.status)


async def not_found(request: Request) -> Response:
    """The page for a console address that names nothing."""
    return await refused(request, RefusedError(404, "There is no such page."))


# -- plumbing: the console's pages, forms and cookies, and who is asking ------------------


def page(
    request: Request, template: str, context: dict[str, Any], status: int = 200
) -> HTMLResponse:
    return pages.page(request, CONSOLE, template, context, status)


async def form_of(request: Request) -> dict[str, str]:
    return await pages.form_of(request, CONSOLE)


def set_cookie(request: Request, response: Response, name: str, value: str) -> None:
    pages.set_cookie(request, CONSOLE, response, name, value)


def delete_cookie(request: Request, response: Response, name: str) -> None:
    pages.delete_cookie(request, CONSOLE, response, name)


def safe_path(path: str) -> str:
    return CONSOLE.path(path)


def back_to(path: str, done: str) -> RedirectResponse:
    return pages.back_to(CONSOLE, path, done)


async def space_of(request: Request) -> AsyncUserSpace:
    return await service_of(request).space()


async def admin_of(request: Request, *, enrolling: bool = False) -> Admin:
    """The administrator whose console session this is; otherwise to the login page.
    When the login policy asks administrators for a second factor and this one has
    none, to the page that adds one (unless ``enrolling``: that page itself)."""
    key = cookie(request, SESSION_COOKIE)
    space = await space_of(request)
    checked = await space.check_key(key) if key else None
    if (
        checked
        and checked.status == OK
        and checked.userid
        and checked.username
        and await space.is_admin(checked.userid)
    ):
        if not enrolling and await space.needs_enrollment(checked.userid):
            raise Redirect("/console/enroll")
        actor = f"console:user:{checked.userid}"
        return Admin(checked.userid, checked.username, key or "", actor, client_address(request))
    raise Redirect("/console/login")


async def signed_in(request: Request) -> Admin | None:
    """The administrator of this request's console session, or None (for pages that
    show either way, such as an error page)."""
    try:
        return await admin_of(request)
    except (Redirect, RefusedError):
        return None


async def writer_of(request: Request, *, enrolling: bool = False) -> tuple[Admin, dict[str, str]]:
    """The administrator and the form of a write: CSRF checked, and a password entered
    within CONFIRM_WINDOW (else to the confirmation page, then back)."""
    admin = await admin_of(request, enrolling=enrolling)
    form = await form_of(request)
    session = await current_session(await space_of(request), admin.userid, admin.key)
    if session is None or time.time() - session.created_at > CONFIRM_WINDOW:
        back = form.get("back") or ("/console/enroll" if enrolling else "/console/users")
        raise Redirect("/console/confirm?" + urlencode({"next": safe_path(back)}))
    return admin, form


def ask_first(
    request: Request, admin: Admin, form: dict[str, str], question: str, button: str
) -> None:
    """Go on when the form says the change was confirmed; otherwise answer with a page
    asking ``question``, whose form posts the same fields again with the confirmation
    (the console's stand-in for a dialog, as it runs no script)."""
    if form.get("confirmed") == "yes":
        return
    fields = {name: value for name, value in form.items() if name not in ("csrf", "confirmed")}
    context = {
        "admin": admin,
        "question": question,
        "button": button,
        "action": safe_path(request.url.path),
        "fields": fields,
        "cancel": safe_path(form.get("back", "")),
    }
    raise Answer(page(request, "sure.html", context))


async def start_session(
    request: Request, username: str, password: str, going_to: str = ""
) -> Response:
    """Log in for the console; only administrators get a session cookie. With a second
    factor, the page that asks for a code (which goes on to ``going_to``)."""
    space = await space_of(request)
    outcome = await space.login(
        username,
        password,
        source=client_address(request),
        user_agent=user_agent(request.headers.get("user-agent")),
        extra_data=CONSOLE_SESSION,
    )
    if outcome.status == MFA_REQUIRED:
        return await second_step(request, outcome, going_to)
    return await opened(request, space, outcome)


async def second_step(
    request: Request, outcome: LoginOutcome, going_to: str, error: str | None = None
) -> Response:
    """The page of a login's second step: a code, or the administrator's passkey."""
    context: dict[str, Any] = {"ticket": outcome.ticket, "next": going_to, "error": error}
    if "passkey" in outcome.factors:
        begun = await (await space_of(request)).begin_passkey_login(ticket=outcome.ticket)
        context["passkey"] = begun if begun.status == OK else None
    return page(request, "login_code.html", context, 401 if error else 200)


async def opened(request: Request, space: AsyncUserSpace, outcome: LoginOutcome) -> Response:
    """The console's answer to a login that ended: its session cookie for an
    administrator, the form again for a wrong answer, a refusal for the rest."""
    refused = refusal(outcome)
    if refused is not None and refused.status == 401:  # the form again, with the reason
        return page(request, "login.html", {"error": sentence(refused.message)}, 401)
    if refused is not None:
        raise RefusedError(refused.status, sentence(refused.message))
    if not outcome.admin:
        await space.logout(outcome.key)
        raise RefusedError(403, "The console is for administrators only.")
    response = RedirectResponse("/console/users", 303)
    set_cookie(request, response, SESSION_COOKIE, outcome.key)
    return response


# -- logging in, the first administrator, confirming -----------------------------------


@router.get("", include_in_schema=False)
@router.get("/", include_in_schema=False)
async def home(request: Request) -> Response:
    return RedirectResponse("/console/users", 303)


@router.get("/login")
async def login_page(request: Request) -> Response:
    return page(request, "login.html", {"passkey": await pages.passkey_challenge(request)})


@router.post("/login/passkey")
async def passkey_login(request: Request) -> Response:
    """Log in with a passkey and no password (administrators only, as ever)."""
    form = await form_of(request)
    space = await space_of(request)
    try:
        outcome = await space.finish_passkey_login(
            form.get("challenge_id", ""),
            form.get("credential", ""),
            source=client_address(request),
            user_agent=user_agent(request.headers.get("user-agent")),
            extra_data=CONSOLE_SESSION,
        )
    except BadCallError:
        outcome = LoginOutcome(REJECTED, "", False, None, 0.0)
    if outcome.status in (NOT_FOUND, EXPIRED, REJECTED):
        error = "That passkey was not accepted, or this page had expired. Try again."
        context = {"error": error, "passkey": await pages.passkey_challenge(request)}
        return page(request, "login.html", context, 401)
    return await opened(request, space, outcome)


@router.post("/login")
async def login(request: Request) -> Response:
    form = await form_of(request)
    return await start_session(request, form.get("username", ""), form.get("password", ""))


@router.post("/login/code")
async def login_code(request: Request) -> Response:
    """A login's second step: a code of the authenticator app (six digits) or a
    recovery code, for the ticket the first step gave."""
    form = await form_of(request)
    ticket, passkey = form.get("ticket", ""), form.get("credential")
    going_to = safe_path(form.get("next", "")) if form.get("next") else ""
    space = await space_of(request)
    outcome = await pages.answer_second_step(request, form)
    if outcome.status in (NOT_FOUND, EXPIRED):
        error = "This sign-in has expired: log in again."
        context = {"error": error, "passkey": await pages.passkey_challenge(request)}
        return page(request, "login.html", context, 401)
    if outcome.status == REJECTED:
        error = "That was not accepted: a wrong or used code, or another passkey."
        asked = LoginOutcome(
            MFA_REQUIRED, "", False, None, 0.0, ticket, ("passkey",) if passkey else ()
        )
        return await second_step(request, asked, going_to, error)
    replaced = cookie(request, SESSION_COOKIE)
    response = await opened(request, space, outcome)
    if isinstance(response, RedirectResponse) and going_to:  # a confirmation's second step
        if replaced:
            await space.logout(replaced)
        response.headers["location"] = going_to
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    admin = await admin_of(request, enrolling=True)
    await form_of(request)
    space = await space_of(request)
    with acting_as(admin.actor, source=admin.source):
        await space.logout(admin.key)
    response = RedirectResponse("/console/login", 303)
    delete_cookie(request, response, SESSION_COOKIE)
    return response


async def usable_setup(request: Request, token: str) -> None:
    setup = service_of(request).setup
    if setup is None or not setup.accepts(token) or await service_of(request).has_admin():
        raise RefusedError(404, "This setup link has been used, has expired, or is not valid.")


@router.get("/setup")
async def setup_page(request: Request, token: str = "") -> Response:
    await usable_setup(request, token)
    return page(request, "setup.html", {"token": token})


@router.post("/setup")
async def setup(request: Request) -> Response:
    form = await form_of(request)
    await usable_setup(request, form.get("token", ""))
    setup = service_of(request).setup
    if setup is None or not setup.take(form.get("token", "")):
        raise RefusedError(404, "This setup link has been used, has expired, or is not valid.")
    space = await space_of(request)
    try:
        with acting_as("console:setup-link", source=client_address(request)):
            await space.create_user(
                form.get("username", ""), form.get("password", ""), form.get("email", ""), True
            )
    except BadCallError as error:
        setup.give_back()
        return page(request, "setup.html", {"token": form["token"], "error": str(error)}, 400)
    return await start_session(request, form["username"], form["password"])


@router.get("/confirm")
async def confirm_page(request: Request, next: str = "/console/users") -> Response:
    admin = await admin_of(request, enrolling=True)
    return page(request, "confirm.html", {"admin": admin, "next": safe_path(next)})


@router.post("/confirm")
async def confirm(request: Request) -> Response:
    """Enter the password again: a fresh console session replaces this one."""
    admin = await admin_of(request, enrolling=True)
    form = await form_of(request)
    going_to = safe_path(form.get("next", ""))  # before anything changes
    response = await start_session(request, admin.username, form.get("password", ""), going_to)
    if isinstance(response, RedirectResponse):
        await (await space_of(request)).logout(admin.key)
        response.headers["location"] = going_to
    return response


# -- an administrator's own second factor, when the login policy asks for one -------------


@router.get("/enroll")
async def enroll_page(request: Request) -> Response:
    admin = await admin_of(request, enrolling=True)
    context = {"admin": admin, "enrolling": True, "required": True}
    return page(request, "enroll.html", context)


@router.post("/totp")
async def begin_totp(request: Request) -> Response:
    admin, _ = await writer_of(request, enrolling=True)
    context = {"admin": admin, "enrolling": True, "required": True}
    return await enrolling.begin(request, CONSOLE, await space_of(request), admin.userid, context)


@router.post("/totp/confirm")
async def confirm_totp(request: Request) -> Response:
    admin, form = await writer_of(request, enrolling=True)
    context = {"admin": admin, "enrolling": True, "required": True}
    who = (admin.userid, admin.actor, admin.source)
    space = await space_of(request)
    return await enrolling.confirm(
        request, CONSOLE, space, form, who=who, context=context, going_to="/console/users"
    )


# -- users ---------------------------------------------------------------------------------


@router.get("/users")
async def users(request: Request, search: str = "", filter: str = "", after: int = 0) -> Response:
    admin = await admin_of(request)
    filters = dict([FILTERS[filter]]) if filter in FILTERS else {}
    try:
        accounts = await service_of(request).accounts(search or None, after, PAGE, filters)
    except BadCallError as error:
        raise RefusedError(400, str(error)) from None
    more = len(accounts) == PAGE
    query = {"search": search, "filter": filter, "after": accounts[-1].userid if more else 0}
    context = {
        "admin": admin,
        "accounts": accounts,
        "search": search,
        "filter": filter,
        "filters": list(FILTERS),
        "next": "/console/users?" + urlencode(query) if more else None,
    }
    return page(request, "users.html", context)


def json_field(form: dict[str, str], name: str) -> tuple[bool, Any]:
    """A form field holding JSON: (whether it was filled in, its value)."""
    text = form.get(name, "").strip()
    if not text:
        return False, None
    try:
        return True, json.loads(text)
    except (ValueError, RecursionError):
        raise BadCallError(
            f'{name.replace("_", " ")} must be JSON, such as {{"plan": "pro"}}'
        ) from None


@router.get("/users/new")
async def new_user_page(request: Request) -> Response:
    admin = await admin_of(request)
    return page(request, "new_user.html", {"admin": admin, "form": {}})


@router.post("/users/new")
async def new_user(request: Request) -> Response:
    admin, form = await writer_of(request)
    space = await space_of(request)
    try:
        _, extra_data = json_field(form, "extra_data")
        with acting_as(admin.actor, source=admin.source):
            userid = await space.create_user(
                form.get("username", ""),
                form.get("password", ""),
                form.get("email", ""),
                form.get("admin") == "on",
                extra_data=extra_data,
            )
    except BadCallError as error:
        context = {"admin": admin, "form": form, "error": str(error)}
        return page(request, "new_user.html", context, 400)
    return back_to(f"/console/users/{userid}", "saved")


@router.get("/users/{userid}")
async def user(request: Request, userid: int) -> Response:
    return await user_page(request, userid)


async def user_page(request: Request, userid: int, token: str | None = None) -> Response:
    """A user's page; with ``token``, the reset token this very request issued."""
    admin = await admin_of(request)
    account = await service_of(request).account(userid)
    if account is None:
        raise RefusedError(404, "There is no such user.")
    space = await space_of(request)
    async with space.sessions(userid) as rows:
        sessions = [session async for session in rows]
    events = await first(space.events(userid=userid), PAGE)
    context = {
        "admin": admin,
        "account": account,
        "factors": await space.factors(userid),
        "identities": await space.identities(userid),
        "grants": await space.user_roles(userid),
        "roles": await space.roles(),
        "extra_data": json.dumps(account.extra_data, indent=2, ensure_ascii=False, default=str),
        "sessions": sessions,
        "events": events,
        "token": token,
    }
    return page(request, "user.html", context)


@router.post("/users/{userid}/reset-token")
async def reset_token(request: Request, userid: int) -> Response:
    admin, _ = await writer_of(request)
    space = await space_of(request)
    account = await service_of(request).account(userid)
    if account is None:
        raise RefusedError(404, "There is no such user.")
    with acting_as(admin.actor, source=admin.source):
        if await space.mail_settings() is not None:
            await space.request_password_reset(account.email, source=admin.source)
            return back_to(f"/console/users/{userid}", "reset-mailed")
        token = await space.issue_token(userid, "reset_password")
    # Shown once, on this answer only: never in a URL, a log or the audit trail.
    return await user_page(request, userid, token)


@router.post("/users/{userid}/edit")
async def edit_user(request: Request, userid: int) -> Response:
    """Change what the form changed: username, email, extra data, the admin and
    disabled flags (each through the userspace, so its rules and events apply)."""
    admin, form = await writer_of(request)
    account = await service_of(request).account(userid)
    if account is None:
        raise RefusedError(404, "There is no such user.")
    space = await space_of(request)
    username = form.get("username", "").strip()
    email = form.get("email", "").strip()
    try:
        given, extra_data = json_field(form, "extra_data")
        changes = {
            "username": username if username and username != account.username else None,
            "email": email if email and email != account.email else None,
            "extra_data": extra_data if given and extra_data != account.extra_data else None,
        }
        flags = {
            "set_admin": form.get("admin") == "on",
            "disable_user": form.get("disabled") == "on",
        }
        flags = {
            method: value
            for method, value in flags.items()
            if value != (account.admin if method == "set_admin" else account.disabled)
        }
        if not any(value is not None for value in changes.values()) and not flags:
            return back_to(f"/console/users/{userid}", "unchanged")
        with acting_as(admin.actor, source=admin.source):
            if any(value is not None for value in changes.values()):
                await space.modify_user(userid, **changes)
            for method, value in flags.items():
                await getattr(space, method)(userid, value)
    except BadCallError as error:
        raise RefusedError(400, str(error)) from None
    return back_to(f"/console/users/{userid}", "changed")


@router.post("/users/{userid}/sessions/end")
async def end_all_sessions(request: Request, userid: int) -> Response:
    admin, form = await writer_of(request)
    ask_first(
        request,
        admin,
        form,
        "End every session of this user? They are logged out everywhere.",
        "End all sessions",
    )
    with acting_as(admin.actor, source=admin.source):
        await (await space_of(request)).kill_sessions(userid)
    return back_to(f"/console/users/{userid}", "sessions-ended")


@router.post("/users/{userid}/factors/reset")
async def reset_factors(request: Request, userid: int) -> Response:
    admin, form = await writer_of(request)
    ask_first(
        request,
        admin,
        form,
        "Remove every second factor of this user, and their recovery codes? Their next "
        "login needs the password only.",
        "Remove second factors",
    )
    try:
        with acting_as(admin.actor, source=admin.source):
            await door.arun(await space_of(request), Core.reset_factors, userid)
    except BadCallError as error:
        raise RefusedError(400, sentence(str(error))) from None
    return back_to(f"/console/users/{userid}", "factors-removed")


@router.post("/users/{userid}/identities/{provider}/remove")
async def remove_identity(request: Request, userid: int, provider: str) -> Response:
    admin, form = await writer_of(request)
    ask_first(
        request,
        admin,
        form,
        f"Unlink this user's account at {provider}? They can no longer sign in with it.",
        "Unlink",
    )
    try:
        with acting_as(admin.actor, source=admin.source):
            status = await (await space_of(request)).remove_identity(userid, provider)
    except BadCallError as error:
        raise RefusedError(400, sentence(str(error))) from None
    if status == LAST_METHOD:
        raise RefusedError(
            409, "That is the user's last way to sign in: give them a password first."
        )
    return back_to(f"/console/users/{userid}", "identity-removed" if status == OK else "unchanged")


@router.post("/users/{userid}/factors/{factor_id}/clear-flag")
async def clear_passkey_flag(request: Request, userid: int, factor_id: str) -> Response:
    admin, form = await writer_of(request)
    ask_first(
        request,
        admin,
        form,
        "Let this passkey sign in again? Its signature count went back, as a copied "
        "authenticator's does: clear the flag only once the user is known to hold the "
        "only copy.",
        "Clear the flag",
    )
    with acting_as(admin.actor, source=admin.source):
        status = await (await space_of(request)).clear_passkey_flag(userid, factor_id)
    return back_to(f"/console/users/{userid}", "flag-cleared" if status == OK else "unchanged")


@router.post("/sessions/{session_id}/end")
async def end_session(request: Request, session_id: str) -> Response:
    admin, form = await writer_of(request)
    with acting_as(admin.actor, source=admin.source):
        ended = await (await space_of(request)).end_session(session_id)
    return back_to(form.get("back", ""), "session-ended" if ended else "session-gone")


@router.post("/users/{userid}/delete")
async def delete_user(request: Request, userid: int) -> Response:
    admin, form = await writer_of(request)
    ask_first(
        request,
        admin,
        form,
        "Delete this user, with their sessions? This cannot be undone.",
        "Delete user",
    )
    with acting_as(admin.actor, source=admin.source):
        await (await space_of(request)).delete_user(userid=userid)
    return back_to("/console/users", "deleted")


FLAGS: Final = {
    # flag: (the userspace's method, the DONE code when set, the DONE code when cleared)
    "disabled": ("disable_user", "disabled", "enabled"),
    "admin": ("set_admin", "admin", "not-admin"),
}


@router.post("/users/{userid}/{flag}")
async def set_flag(request: Request, userid: int, flag: str) -> Response:
    """Set or clear a user's flag: disabled (which ends their sessions) or admin.
    Registered after the other /users/{userid}/... routes, which it would shadow."""
    if flag not in FLAGS:
        raise RefusedError(404, "There is no such page.")
    admin, form = await writer_of(request)
    method, said_set, said_cleared = FLAGS[flag]
    value = form.get("value") == "true"
    with acting_as(admin.actor, source=admin.source):
        await getattr(await space_of(request), method)(userid, value)
    return back_to(f"/console/users/{userid}", said_set if value else said_cleared)


# -- roles ---------------------------------------------------------------------------------


def org_typed(text: str) -> int | str | None:
    """An organization as a form field gives it: empty (everywhere), an id or a slug."""
    typed = text.strip()
    if not typed:
        return None
    return int(typed) if typed.isdigit() else typed


@router.get("/roles")
async def roles_page(request: Request) -> Response:
    admin = await admin_of(request)
    roles = await (await space_of(request)).roles()
    return page(request, "roles.html", {"admin": admin, "roles": roles})


@router.post("/roles")
async def define_role(request: Request) -> Response:
    admin, form = await writer_of(request)
    try:
        with acting_as(admin.actor, source=admin.source):
            await (await space_of(request)).define_role(
                form.get("name", "").strip(),
                form.get("permissions", "").split(),
                description=form.get("description", "").strip() or None,
            )
    except BadCallError as error:
        raise RefusedError(400, str(error)) from None
    return back_to("/console/roles", "saved")


@router.post("/roles/{name:path}/delete")
async def delete_role(request: Request, name: str) -> Response:
    admin, form = await writer_of(request)
    ask_first(
        request,
        admin,
        form,
        f"Delete the role {name}? Everyone who holds it loses it, and its permissions.",
        "Delete the role",
    )
    try:
        with acting_as(admin.actor, source=admin.source):
            status = await (await space_of(request)).delete_role(name)
    except BadCallError as error:
        raise RefusedError(400, str(error)) from None
    return back_to("/console/roles", "deleted-role" if status == OK else "unchanged")


@router.post("/users/{userid}/roles/{change}")
async def change_roles(request: Request, userid: int, change: str) -> Response:
    """Grant or revoke one of a user's roles, everywhere or in an organization."""
    if change not in ("grant", "revoke"):
        raise RefusedError(404, "There is no such page.")
    admin, form = await writer_of(request)
    space = await space_of(request)
    role, where = form.get("role", ""), org_typed(form.get("org", ""))
    try:
        with acting_as(admin.actor, source=admin.source):
            if change == "grant":
                status = await space.grant_role(userid, role, org=where)
            else:
                status = await space.revoke_role(userid, role, org=where)
    except BadCallError as error:
        raise RefusedError(400, str(error)) from None
    done = {"grant": "role-granted", "revoke": "role-revoked"}[change]
    return back_to(f"/console/users/{userid}", done if status == OK else "unchanged")


# -- organizations -----------------------------------------------------------------------


@router.get("/orgs")
async def orgs_page(request: Request, after: int = 0) -> Response:
    admin = await admin_of(request)
    space = await space_of(request)
    found = await door.arun(space, Core.org_page, after, PAGE)
    more = "/console/orgs?" + urlencode({"after": found[-1].org_id}) if len(found) == PAGE else None
    return page(request, "orgs.html", {"admin": admin, "orgs": found, "next": more})


@router.post("/orgs")
async def create_org(request: Request) -> Response:
    admin, form = await writer_of(request)
    try:
        with acting_as(admin.actor, source=admin.source):
            org_id = await (await space_of(request)).create_org(
                form.get("name", "").strip(), slug=form.get("slug", "").strip() or None
            )
    except BadCallError as error:
        raise RefusedError(400, str(error)) from None
    return back_to(f"/console/orgs/{org_id}", "saved")


@router.get("/orgs/{org_id}")
async def org_page(request: Request, org_id: int) -> Response:
    admin = await admin_of(request)
    space = await space_of(request)
    found = await door.arun(space, Core.org, org_id)
    if found is None:
        raise RefusedError(404, "There is no such organization.")
    members = await first(space.org_members(org_id), 1000)
    context = {"admin": admin, "org": found, "members": members, "roles": await space.roles()}
    return page(request, "org.html", context)


@router.post("/orgs/{org_id}/members")
async def add_member(request: Request, org_id: int) -> Response:
    admin, form = await writer_of(request)
    typed = form.get("userid", "").strip()
    if not typed.isdigit():
        raise RefusedError(400, "Give the new member's user ID.")
    try:
        with acting_as(admin.actor, source=admin.source):
            status = await (await space_of(request)).add_member(
                org_id, int(typed), form.get("role", "")
            )
    except BadCallError as error:
        raise RefusedError(400, str(error)) from None
    return back_to(f"/console/orgs/{org_id}", "member-added" if status == OK else "unchanged")


@router.post("/orgs/{org_id}/members/{userid}/remove")
async def remove_member(request: Request, org_id: int, userid: int) -> Response:
    admin, _ = await writer_of(request)
    try:
        with acting_as(admin.actor, source=admin.source):
            status = await (await space_of(request)).remove_member(org_id, userid)
    except BadCallError as error:
        raise RefusedError(400, str(error)) from None
    return back_to(f"/console/orgs/{org_id}", "member-removed" if status == OK else "unchanged")


@router.post("/orgs/{org_id}/delete")
async def delete_org(request: Request, org_id: int) -> Response:
    admin, form = await writer_of(request)
    ask_first(
        request,
        admin,
        form,
        "Delete this organization? Its memberships and the roles held there end.",
        "Delete organization",
    )
    with acting_as(admin.actor, source=admin.source):
        await (await space_of(request)).delete_org(org_id)
    return back_to("/console/orgs", "org-deleted")


# -- settings and the event log ------------------------------------------------------------


@router.get("/settings")
async def settings_page(request: Request) -> Response:
    admin = await admin_of(request)
    settings = await service_of(request).settings()
    return page(request, "settings.html", {"admin": admin, "settings": settings})


FORMS: Final = {
    "ttl": ("session_ttl",),
    "max_age": ("session_max_age",),
    "retention": ("event_retention",),
    "sessions_per_user": ("sessions_per_user",),
    "policy": POLICY,
}
"""The settings page's forms: which settings each one changes."""


@router.post("/settings")
async def change_settings(request: Request) -> Response:
    admin, form = await writer_of(request)
    space = await space_of(request)
    which = form.get("setting")
    if which == "key_storage":
        ask_first(
            request,
            admin,
            form,
            "Store session keys only as digests from now on? This is one-way: list_sessions "
            "then yields session ids instead of keys.",
            "Store keys hashed",
        )
    try:
        if which == "key_storage":
            with acting_as(admin.actor, source=admin.source):
                await space.set_session_key_storage("hashed")
            return back_to("/console/settings", "saved")
        names = FORMS.get(which or "")
        if names is None:
            raise RefusedError(400, "Unknown setting.")
        calls = plan({name: read(name, form.get(name, "")) for name in names})
        with acting_as(admin.actor, source=admin.source):
            for call in calls:
                await call(space)
    except BadCallError as error:
        raise RefusedError(400, str(error)) from None
    return back_to("/console/settings", "saved")


@router.get("/events")
async def event_log(
    request: Request, kind: str = "", userid: str = "", until: str = ""
) -> Response:
    admin = await admin_of(request)
    space = await space_of(request)
    try:
        stream = space.events(
            userid=int(userid) if userid else None,
            kinds=kind or None,
            until=float(until) if until else None,
        )
    except (BadCallError, ValueError) as error:
        raise RefusedError(400, str(error)) from None
    events = await first(stream, PAGE)
    older = None
    if len(events) == PAGE:
        query = {"kind": kind, "userid": userid, "until": events[-1].at}
        older = "/console/events?" + urlencode(query)
    context = {
        "admin": admin,
        "events": events,
        "kinds": sorted(KINDS),
        "kind": kind,
        "userid": userid,
        "older": older,
    }
    return page(request, "events.html", context)


# -- API keys ------------------------------------------------------------------------------


async def api_keys_page(
    request: Request, admin: Admin, made: tuple[str, str] | None = None, status: int = 200
) -> Response:
    keys = [key async for key in service_of(request).api_keys()]
    context = {"admin": admin, "keys": keys, "made": made, "scopes": API_KEY_SCOPES}
    return page(request, "api_keys.html", context, status)


API_KEY_SCOPES: Final = ("check", "admin")


@router.get("/api-keys")
async def api_keys(request: Request) -> Response:
    return await api_keys_page(request, await admin_of(request))


@router.post("/api-keys")
async def create_api_key(request: Request) -> Response:
    admin, form = await writer_of(request)
    try:
        with acting_as(admin.actor, source=admin.source):
            made = await service_of(request).create_api_key(
                form.get("name", ""), form.get("scope", ""), admin.userid
            )
    except BadCallError as error:
        raise RefusedError(400, str(error)) from None
    # The key itself is on this answer only: never in a URL, a log or the audit trail.
    return await api_keys_page(request, admin, made)


@router.post("/api-keys/{key_id}/revoke")
async def revoke_api_key(request: Request, key_id: str) -> Response:
    admin, form = await writer_of(request)
    ask_first(
        request,
        admin,
        form,
        "Revoke this API key? Whatever uses it is refused from now on.",
        "Revoke",
    )
    try:
        with acting_as(admin.actor, source=admin.source):
            status = await service_of(request).revoke_api_key(key_id)
    except BadCallError as error:
        raise RefusedError(400, str(error)) from None
    return back_to("/console/api-keys", "key-revoked" if status == OK else "key-gone")


@router.get("/outbox")
async def outbox(request: Request) -> Response:
    """The outbox: how much waits, how old the oldest is, and the messages (the dead
    letters first when asked), each dead one with a button to send it again."""
    admin = await admin_of(request)
    space = await service_of(request).space()
    state = request.query_params.get("state") or None
    if state not in {None, "pending", "sent", "dead"}:
        raise RefusedError(404, "There is no such page.")
    context = {
        "admin": admin,
        "state": state,
        "messages": await space.outbox(state=state, limit=100),
        "backlog": await space.outbox_backlog(),
        "mail": await space.mail_settings(),
        "webhooks": await space.webhooks(),
    }
    return page(request, "outbox.html", context)


@router.post("/outbox/{message_id}/retry")
async def retry_message(request: Request, message_id: str) -> Response:
    admin, _ = await writer_of(request)
    try:
        with acting_as(admin.actor, source=admin.source):
            status = await (await service_of(request).space()).retry_message(message_id)
    except BadCallError as error:
        raise RefusedError(400, str(error)) from None
    return back_to("/console/outbox?state=dead", "retried" if status == OK else "not-dead")


@router.get("/{anything:path}")
async def unknown_page(request: Request, anything: str) -> Response:
    """Any other console address: an HTML page saying so (registered last)."""
    raise RefusedError(404, "There is no such page.")
