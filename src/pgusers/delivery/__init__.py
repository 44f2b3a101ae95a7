"""Delivering the outbox: a worker that takes due messages from the userspace's outbox,
sends mail through the configured SMTP server and calls webhooks, and reports each
result, so that a failure is tried again later and, its attempts spent, kept as a dead
letter. ``pgusers deliver`` and ``pgusers serve`` run one; an application may run its
own::

    from pgusers.delivery import Worker

    worker = Worker(space)        # an AsyncUserSpace opened with its secret_key
    await worker.run(stop_event)  # until stop_event is set

Any number of workers may run, in any processes and machines: a message is taken by
one at a time. Each is woken by the statement that writes a message (``LISTEN``),
and looks again every ``poll`` seconds in any case, so it keeps working where
notifications cannot reach it (behind PgBouncer). Needs the ``delivery`` extra:
``pip install "pgusers[delivery]"``.
"""

import asyncio
import contextlib
import logging
import os
import socket
import ssl
from collections.abc import Awaitable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, NamedTuple

import psycopg

from pgusers import _door
from pgusers._aio import AsyncUserSpace
from pgusers._door import Core
from pgusers._results import OutboxMessage

try:
    import httpx2
    import jinja2

    from pgusers.delivery import _mail, _webhooks
except ImportError as missing:  # pragma: no cover - the extra is not installed
    raise ImportError(
        f"delivering the outbox needs the delivery extra: pip install 'pgusers[delivery]' "
        f"({missing})"
    ) from None

if TYPE_CHECKING:
    from pgusers.metrics import Metrics

__all__ = ["Outcome", "Worker"]

logger = logging.getLogger("pgusers.delivery")

CONCURRENCY: Final = 8
"""Messages of one batch in flight at once."""


class Outcome(NamedTuple):
    """What one pass of a worker did: messages taken, sent, failed (to be tried
    again) and dead (their attempts spent, or refused for good)."""

    taken: int
    sent: int
    failed: int
    dead: int


@dataclass
class Worker:
    """Delivers the outbox of ``space`` (see the module's description).

    ``batch`` messages are taken at a time and held for ``lease`` seconds (a worker
    that dies lets them fall due again); ``poll`` is how often it looks without being
    woken; ``smtp_timeout`` and ``webhook_timeout`` bound each send; ``templates`` is
    a directory whose templates replace the shipped ones of the same name;
    ``tls_context`` is used for SMTP (default: the system's certificates);
    ``metrics`` (a :class:`pgusers.metrics.Metrics`) counts each delivery;
    ``listen=False`` leaves out the ``LISTEN`` connection, to poll only (where
    notifications cannot reach the worker, such as through PgBouncer in
    transaction mode, where they would be lost with the server connection).
    """

    space: AsyncUserSpace
    name: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}")
    batch: int = 20
    lease: float = 60.0
    poll: float = 5.0
    smtp_timeout: float = 10.0
    webhook_timeout: float = 10.0
    templates: str | Path | None = None
    tls_context: ssl.SSLContext | None = None
    metrics: "Metrics | None" = None
    listen: bool = True
    _client: httpx2.AsyncClient | None = field(default=None, init=False, repr=False)
    _templates: "jinja2.Environment | None" = field(default=None, init=False, repr=False)

    async def run_once(self) -> Outcome:
        """Take one batch of due messages, deliver them, and report each: the mail one
        after another over one SMTP connection, the webhook calls side by side."""
        messages = await self.space.take_messages(self.name, limit=self.batch, lease=self.lease)
        if not messages:
            return Outcome(0, 0, 0, 0)
        mail = [m for m in messages if m.channel == "mail"]
        calls = [m for m in messages if m.channel != "mail"]
        gate = asyncio.Semaphore(CONCURRENCY)
        results = await asyncio.gather(self._send_mail(mail), *(self._call(m, gate) for m in calls))
        states = [*results[0], *results[1:]]
        return Outcome(
            len(messages), states.count("sent"), states.count("pending"), states.count("dead")
        )

    async def _send_mail(self, messages: list[OutboxMessage]) -> list[str]:
        if not messages:
            return []
        mailer = await self._mailer()
        if mailer is None:
            return [await self._failed(m, "mail is not set up", permanent=False) for m in messages]
        client = mailer.client()
        states = []
        try:
            for message in messages:
                states.append(await self._deliver(message, mailer.send(client, message)))
        finally:
            if client.is_connected:
                with contextlib.suppress(Exception):
                    await client.quit()
        return states

    async def _call(self, message: OutboxMessage, gate: asyncio.Semaphore) -> str:
        async with gate:
            return await self._deliver(message, _webhooks.call(self._http(), message))

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Deliver until ``stop`` is set: a batch whenever woken, or every ``poll``
        seconds."""
        stop = stop or asyncio.Event()
        conninfo, channel = _door.outbox_wakeups(self.space)
        listening: psycopg.AsyncConnection[Any] | None = None
        try:
            while not stop.is_set():
                if self.listen and (listening is None or listening.closed):
                    listening = await _listen(conninfo, channel)
                try:
                    outcome = await self.run_once()
                except Exception:
                    logger.exception("delivery: a pass failed; trying again in %s s", self.poll)
                    outcome = Outcome(0, 0, 0, 0)
                if outcome.taken >= self.batch:
                    continue  # more may be due
                await _wait(listening, stop, self.poll)
        finally:
            if listening is not None:
                await listening.close()
            await self.close()

    async def close(self) -> None:
        """Close the worker's HTTP client."""
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def _mailer(self) -> "_mail.Mailer | None":
        """How this batch's mail goes (the settings are read again for each batch, so
        that a change reaches running workers), with the templates loaded once."""
        found = await _door.arun(self.space, Core.mail_delivery)
        if found is None:
            return None
        if self._templates is None:
            self._templates = _mail.templates(self.templates)
        settings, password = found
        return _mail.Mailer(
            settings, password, self._templates, self.smtp_timeout, self.tls_context
        )

    async def _deliver(self, message: OutboxMessage, sending: Awaitable[None]) -> str:
        """Await ``sending`` (the delivery of ``message``) and report how it went."""
        try:
            await sending
        except _mail.PermanentError as error:
            return await self._failed(message, str(error), permanent=True)
        except Exception as error:
            return await self._failed(message, _describe(error), permanent=False)
        await self.space.message_sent(message.message_id)
        logger.info("delivery: sent %s %s", message.message_id, message.purpose)
        if self.metrics is not None:
            self.metrics.delivered(message.channel, "sent")
        return "sent"

    async def _failed(self, message: OutboxMessage, error: str, *, permanent: bool) -> str:
        state = await self.space.message_failed(message.message_id, error, permanent=permanent)
        log = logger.warning if state == "dead" else logger.info
        log("delivery: %s %s failed (%s): %s", message.message_id, message.purpose, state, error)
        if self.metrics is not None:
            self.metrics.delivered(message.channel, "retry" if state == "pending" else "dead")
        return state or "dead"

    def _http(self) -> httpx2.AsyncClient:
        if self._client is None:
            self._client = httpx2.AsyncClient(timeout=self.webhook_timeout, follow_redirects=False)
        return self._client


def _describe(error: BaseException) -> str:
    text = str(error) or type(error).__name__
    return f"{type(error).__name__}: {text}"[:500]


async def _listen(conninfo: str, channel: str) -> psycopg.AsyncConnection[Any] | None:
    """A connection LISTENing on the outbox's channel, or None (then the worker only
    polls) when none can be opened."""
    try:
        conn = await psycopg.AsyncConnection.connect(conninfo, autocommit=True)
        await conn.execute(psycopg.sql.SQL("LISTEN {}").format(psycopg.sql.Identifier(channel)))
    except psycopg.Error as error:
        logger.warning("delivery: cannot LISTEN (%s); polling only", error)
        return None
    return conn


async def _wait(
    conn: psycopg.AsyncConnection[Any] | None, stop: asyncio.Event, poll: float
) -> None:
    """Until a message is written (a notification), ``poll`` seconds pass, or ``stop``."""
    stopped = asyncio.ensure_future(stop.wait())
    waits: list[asyncio.Future[Any]] = [stopped]
    if conn is not None:
        waits.append(asyncio.ensure_future(_next_notification(conn, poll)))
    try:
        await asyncio.wait(waits, timeout=poll, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiting in waits:
            waiting.cancel()
            with contextlib.suppress(BaseException):
                await waiting


async def _next_notification(conn: psycopg.AsyncConnection[Any], poll: float) -> None:
    try:
        async for _ in conn.notifies(timeout=poll, stop_after=1):
            return
    except psycopg.Error:
        await conn.close()  # opened again on the next pass
