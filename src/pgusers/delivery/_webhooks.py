"""Webhook calls: an event's JSON posted to the webhook's URL, signed by the Standard
Webhooks scheme (``webhook-id``, ``webhook-timestamp``, ``webhook-signature``) with
the ``standardwebhooks`` library, through httpx2."""

import json
import time
from datetime import UTC, datetime
from typing import Final

import httpx2
from standardwebhooks import Webhook

from pgusers._results import OutboxMessage
from pgusers.delivery._mail import PermanentError

GONE: Final = 410
"""The one answer that says never to call again: the receiver removed the endpoint."""


def signed(message: OutboxMessage, body: str, now: float) -> dict[str, str]:
    """The headers of a call: its id (the outbox's, the same on every attempt, for the
    receiver to drop a repeat), its time, and a signature by each secret in force."""
    moment = datetime.fromtimestamp(int(now), UTC)
    signatures = [
        Webhook(secret).sign(message.message_id, moment, body) for secret in message.secrets
    ]
    return {
        "content-type": "application/json",
        "webhook-id": message.message_id,
        "webhook-timestamp": str(int(now)),
        "webhook-signature": " ".join(signatures),
    }


async def call(client: httpx2.AsyncClient, message: OutboxMessage) -> None:
    """Post ``message``; raise :class:`PermanentError` when the receiver says it is gone,
    another exception when a later try may succeed."""
    assert message.url is not None  # the outbox gives every webhook call its URL
    body = json.dumps(message.payload, separators=(",", ":"), sort_keys=True)
    reply = await client.post(message.url, content=body, headers=signed(message, body, time.time()))
    if reply.status_code == GONE:
        raise PermanentError(f"{reply.status_code} the receiver is gone")
    if not 200 <= reply.status_code < 300:
        raise RuntimeError(f"the receiver answered {reply.status_code}")
