"""The JSON API's endpoints of mail and webhooks: asking for a reset or a sign-in by
email (the answer is the same whether or not the address has an account), signing in
with the link's token or the code, and the administrators' webhooks and outbox."""

from typing import Any, Literal

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field

from pgusers._aio import AsyncUserSpace
from pgusers._door import acting_as
from pgusers._results import MFA_REQUIRED, OK, LoginOutcome, OutboxEntry, Webhook
from pgusers.integrations._common import user_agent
from pgusers.web._api import (
    ERRORS,
    Admin,
    Body,
    Done,
    LoggedIn,
    Space,
    User,
    found,
    logged_in,
    model_of,
    second_factor_due,
)
from pgusers.web._errors import ApiError
from pgusers.web._service import client_address

router = APIRouter(prefix="/v1", responses=ERRORS)


class EmailBody(Body):
    email: str


class EmailCodeBody(Body):
    email: str
    code: str


class LinkBody(Body):
    token: str


class WebhookBody(Body):
    url: str
    kinds: list[str] = Field(description="kinds of event, or ['*'] for all")
    description: str | None = None


WebhookAnswer = model_of(Webhook)


class WebhookAdded(BaseModel):
    webhook_id: str
    secret: str = Field(description="the signing secret (whsec_...): shown only here")


class Webhooks(BaseModel):
    webhooks: list[WebhookAnswer]  # type: ignore[valid-type]


class RotateBody(Body):
    grace: float = Field(86400.0, description="seconds the old secret keeps signing")


OutboxEntryAnswer = model_of(OutboxEntry)


class OutboxAnswer(BaseModel):
    messages: list[OutboxEntryAnswer]  # type: ignore[valid-type]
    pending: int
    dead: int
    oldest_pending_seconds: float


def signed_in(outcome: LoginOutcome, space: AsyncUserSpace) -> dict[str, Any]:
    if outcome.status == MFA_REQUIRED:
        return second_factor_due(outcome, space)
    return logged_in(outcome, space)


# -- anyone ------------------------------------------------------------------------------


@router.post("/password/forgot", status_code=202, tags=["users"], response_model=Done)
async def forgot_password(body: EmailBody, request: Request, space: Space) -> dict[str, str]:
    """Mail a password-reset link to ``email`` if an account has that address. The
    answer is the same either way. 400 when mail is not set up on the service."""
    with acting_as("self-service", source=client_address(request)):
        await space.request_password_reset(body.email, source=client_address(request))
    return {"status": "ok"}


@router.post("/login/email", status_code=202, tags=["sessions"], response_model=Done)
async def request_login_link(body: EmailBody, request: Request, space: Space) -> dict[str, str]:
    """Mail a sign-in link and a 6-digit code to ``email`` if an account has that
    address (the answer is the same either way). 400 when sign-in by email is off."""
    with acting_as("self-service", source=client_address(request)):
        await space.request_login_link(body.email, source=client_address(request))
    return {"status": "ok"}


@router.post("/login/email/code", tags=["sessions"], response_model=LoggedIn)
async def login_with_code(body: EmailCodeBody, request: Request, space: Space) -> dict[str, Any]:
    """Sign in with the code mailed to ``email``: a key, ``mfa_required``, 401 for a
    wrong or used code (it counts as a failed login), 429 when throttled."""
    outcome = await space.login_with_code(
        body.email,
        body.code,
        source=client_address(request),
        user_agent=user_agent(request.headers.get("user-agent")),
    )
    return signed_in(outcome, space)


@router.post("/login/email/link", tags=["sessions"], response_model=LoggedIn)
async def login_with_link(body: LinkBody, request: Request, space: Space) -> dict[str, Any]:
    """Sign in with the token of a mailed sign-in link: a key, ``mfa_required``, or 401
    for a token that is unknown, used or expired."""
    outcome = await space.login_with_link(
        body.token,
        source=client_address(request),
        user_agent=user_agent(request.headers.get("user-agent")),
    )
    if outcome.status not in {OK, MFA_REQUIRED}:
        raise ApiError(401, "invalid_token", "this link is unknown, used or expired")
    return signed_in(outcome, space)


# -- signed-in users ---------------------------------------------------------------------


@router.post("/email/verification", status_code=202, tags=["users"], response_model=Done)
async def request_verification(who: User, space: Space) -> dict[str, str]:
    """Mail the signed-in user a link that verifies their address (404 when it is
    verified already)."""
    assert who.userid is not None  # a session's caller has a user
    with acting_as(who.actor, source=who.source):
        found(await space.request_email_verification(who.userid), "unverified address")
    return {"status": "ok"}


# -- administrators ----------------------------------------------------------------------


@router.get("/admin/webhooks", tags=["admin"], response_model=Webhooks)
async def list_webhooks(who: Admin, space: Space) -> dict[str, Any]:
    return {"webhooks": [hook._asdict() for hook in await space.webhooks()]}


@router.post("/admin/webhooks", status_code=201, tags=["admin"], response_model=WebhookAdded)
async def add_webhook(body: WebhookBody, who: Admin, space: Space) -> dict[str, str]:
    """Call ``url`` with every event of ``kinds``, signed by the Standard Webhooks
    scheme; the signing secret is in this answer only."""
    with acting_as(who.actor, source=who.source):
        webhook_id, secret = await space.add_webhook(
            body.url, body.kinds, description=body.description
        )
    return {"webhook_id": webhook_id, "secret": secret}


@router.delete("/admin/webhooks/{webhook_id}", tags=["admin"], response_model=Done)
async def remove_webhook(webhook_id: str, who: Admin, space: Space) -> dict[str, str]:
    with acting_as(who.actor, source=who.source):
        return found(await space.remove_webhook(webhook_id), "webhook")


@router.post("/admin/webhooks/{webhook_id}/rotate", tags=["admin"], response_model=WebhookAdded)
async def rotate_webhook(
    webhook_id: str, body: RotateBody, who: Admin, space: Space
) -> dict[str, str]:
    """A new signing secret; the old one keeps signing beside it for ``grace`` s."""
    with acting_as(who.actor, source=who.source):
        secret = await space.rotate_webhook_secret(webhook_id, grace=body.grace)
    if secret is None:
        raise ApiError(404, "not_found", "no such webhook")
    return {"webhook_id": webhook_id, "secret": secret}


@router.get("/admin/outbox", tags=["admin"], response_model=OutboxAnswer)
async def list_outbox(
    who: Admin,
    space: Space,
    state: Literal["pending", "sent", "dead"] | None = None,
    limit: int = Query(50, ge=1, le=1000),
) -> dict[str, Any]:
    """The newest messages (of one state, or all) and how many wait."""
    entries = await space.outbox(state=state, limit=limit)
    pending, dead, oldest = await space.outbox_backlog()
    return {
        "messages": [entry._asdict() for entry in entries],
        "pending": pending,
        "dead": dead,
        "oldest_pending_seconds": oldest,
    }


@router.post("/admin/outbox/{message_id}/retry", tags=["admin"], response_model=Done)
async def retry_message(message_id: str, who: Admin, space: Space) -> dict[str, str]:
    """Send a dead message again."""
    with acting_as(who.actor, source=who.source):
        return found(await space.retry_message(message_id), "dead message")
