"""The account pages of mail: "forgot your password", the reset and verification
links, and signing in by a link or a code sent by mail.

A link in a mail only opens a page: the token is used by the form that page posts
(a button), so that a mail scanner following links spends nothing. Asking for mail
says the same whether or not an account has the address.
"""

from typing import Any, Final

from fastapi import FastAPI, Request
from fastapi.responses import Response

from pgusers._door import acting_as
from pgusers._errors import BadCallError
from pgusers._results import MFA_REQUIRED, OK, THROTTLED
from pgusers.integrations._common import refusal, user_agent
from pgusers.web import _account
from pgusers.web import _pages as pages
from pgusers.web._account import (
    ACCOUNT,
    opened,
    page,
    router,
    second_step,
    space_of,
    writer_of,
)
from pgusers.web._pages import sentence
from pgusers.web._service import client_address

EMAIL_FIELD: Final = {"label": "Email", "name": "email", "type": "email", "autocomplete": "email"}
ON_ITS_WAY: Final = (
    "If an account has that address, a message is on its way to it. It can take a "
    "minute; look in the spam folder too."
)
SIGN_IN: Final = [("/account/login", "Back to signing in")]


def mount(app: FastAPI) -> None:
    """Serve the account pages, these among them."""
    _account.mount(app)


def form(request: Request, title: str, status: int = 200, **context: Any) -> Response:
    defaults: dict[str, Any] = {"hidden": {}, "fields": [], "links": [], "action": None}
    return page(request, "email_form.html", {"title": title, **defaults, **context}, status)


# -- a forgotten password ------------------------------------------------------------


def forgot_form(request: Request, status: int = 200, **more: Any) -> Response:
    return form(
        request, "Forgot your password?", status, action="/account/forgot",
        fields=[EMAIL_FIELD], button="Send me a link", links=SIGN_IN,
        intro="Give the address of your account: a link to choose a new password goes to it.",
        **more,
    )  # fmt: skip


@router.get("/forgot")
async def forgot_page(request: Request) -> Response:
    return forgot_form(request)


@router.post("/forgot")
async def forgot(request: Request) -> Response:
    fields = await pages.form_of(request, ACCOUNT)
    space = await space_of(request)
    try:
        with acting_as("self-service", source=client_address(request)):
            await space.request_password_reset(
                fields.get("email", ""), source=client_address(request)
            )
    except BadCallError as refused:
        return forgot_form(request, 400, error=sentence(str(refused)))
    return form(request, "Check your mail", notice=ON_ITS_WAY, links=SIGN_IN)


PASSWORD_FIELD: Final = {
    "label": "New password",
    "name": "password",
    "type": "password",
    "autocomplete": "new-password",
}


def reset_form(request: Request, token: str, status: int = 200, **more: Any) -> Response:
    return form(
        request, "Choose a new password", status, action="/account/reset",
        hidden={"token": token}, fields=[PASSWORD_FIELD], button="Set my password", **more,
    )  # fmt: skip


@router.get("/reset")
async def reset_page(request: Request) -> Response:
    return reset_form(request, request.query_params.get("token", ""))


@router.post("/reset")
async def reset(request: Request) -> Response:
    fields = await pages.form_of(request, ACCOUNT)
    space = await space_of(request)
    try:
        with acting_as("token", source=client_address(request)):
            status = await space.reset_password(fields.get("token", ""), fields.get("password", ""))
    except BadCallError as refused:
        return reset_form(request, fields.get("token", ""), 400, error=sentence(str(refused)))
    if status != OK:
        return form(
            request, "This link does not work", 400, links=[("/account/forgot", "Ask again")],
            error="The link is unknown, used or expired.",
        )  # fmt: skip
    return form(request, "Your password was changed", notice="Sign in with it now.", links=SIGN_IN)


# -- verifying an address ------------------------------------------------------------------


@router.get("/verify")
async def verify_page(request: Request) -> Response:
    token = request.query_params.get("token", "")
    return form(
        request, "Confirm your address", action="/account/verify", hidden={"token": token},
        button="Confirm my address",
    )  # fmt: skip


@router.post("/verification")
async def ask_for_verification(request: Request) -> Response:
    """Mail the signed-in user a link that confirms their address."""
    person, _ = await writer_of(request)
    with acting_as(person.actor, source=person.source):
        await (await space_of(request)).request_email_verification(person.userid)
    return pages.back_to(ACCOUNT, "/account", "verification-sent")


@router.post("/verify")
async def verify(request: Request) -> Response:
    fields = await pages.form_of(request, ACCOUNT)
    space = await space_of(request)
    with acting_as("token", source=client_address(request)):
        status = await space.verify_email(fields.get("token", ""))
    if status != OK:
        return form(
            request, "This link does not work", 400, error="The link is unknown, used or expired."
        )
    return form(request, "Your address is confirmed", notice="Thank you.", links=SIGN_IN)


# -- signing in by email -------------------------------------------------------------------


CODE_FIELD: Final = {
    "label": "Code",
    "name": "code",
    "type": "text",
    "autocomplete": "one-time-code",
}


def ask_form(request: Request, status: int = 200, **more: Any) -> Response:
    return form(
        request, "Sign in by email", status, action="/account/login/email",
        fields=[EMAIL_FIELD], button="Send me a code", links=SIGN_IN,
        intro="Give the address of your account: a sign-in link and a code go to it.", **more,
    )  # fmt: skip


@router.get("/login/email")
async def login_email_page(request: Request) -> Response:
    return ask_form(request)


@router.post("/login/email")
async def login_email(request: Request) -> Response:
    fields = await pages.form_of(request, ACCOUNT)
    address = fields.get("email", "")
    space = await space_of(request)
    try:
        with acting_as("self-service", source=client_address(request)):
            await space.request_login_link(address, source=client_address(request))
    except BadCallError as refused:
        return ask_form(request, 400, error=sentence(str(refused)))
    return code_form(request, address, notice=ON_ITS_WAY)


def code_form(request: Request, address: str, status: int = 200, **more: Any) -> Response:
    return form(
        request, "Enter your code", status, action="/account/login/email/code",
        hidden={"email": address}, fields=[CODE_FIELD], button="Sign in", links=SIGN_IN,
        intro="Type the 6-digit code from the message, or follow its link.", **more,
    )  # fmt: skip


@router.post("/login/email/code")
async def login_email_code(request: Request) -> Response:
    fields = await pages.form_of(request, ACCOUNT)
    address = fields.get("email", "")
    try:
        outcome = await (await space_of(request)).login_with_code(
            address,
            fields.get("code", ""),
            source=client_address(request),
            user_agent=user_agent(request.headers.get("user-agent")),
        )
    except BadCallError as refused:
        return code_form(request, address, 400, error=sentence(str(refused)))
    if outcome.status == MFA_REQUIRED:
        return await second_step(request, outcome.ticket or "", outcome.factors)
    if outcome.status == OK:
        return await opened(request, outcome)
    answer = refusal(outcome)
    if outcome.status == THROTTLED and answer is not None:
        return code_form(request, address, 429, error=sentence(answer.message))
    return code_form(request, address, 401, error="That code is wrong, used or expired.")


@router.get("/login/link")
async def login_link_page(request: Request) -> Response:
    token = request.query_params.get("token", "")
    return form(
        request, "Sign in", action="/account/login/link", hidden={"token": token},
        button="Sign in", intro="You followed a sign-in link: press the button to sign in.",
    )  # fmt: skip


@router.post("/login/link")
async def login_link(request: Request) -> Response:
    fields = await pages.form_of(request, ACCOUNT)
    outcome = await (await space_of(request)).login_with_link(
        fields.get("token", ""),
        source=client_address(request),
        user_agent=user_agent(request.headers.get("user-agent")),
    )
    if outcome.status == MFA_REQUIRED:
        return await second_step(request, outcome.ticket or "", outcome.factors)
    if outcome.status != OK:
        return form(
            request, "This link does not work", 401, links=[("/account/login/email", "Ask again")],
            error="The link is unknown, used or expired.",
        )  # fmt: skip
    return await opened(request, outcome)
