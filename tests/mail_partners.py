"""The outbox's partners, on localhost: an SMTP server (aiosmtpd) that keeps what it
receives, and a webhook receiver (uvicorn) that verifies each call's signature with
the Standard Webhooks library and answers as the test tells it."""

import asyncio
import contextlib
import email
import email.policy
import json
import re
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from standardwebhooks import Webhook, WebhookVerificationError


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class MailCatcher:
    """An SMTP server on localhost keeping every message it accepts. ``refuse`` names
    recipients it refuses (550); ``delay`` makes it wait before each answer to DATA."""

    port: int = field(default_factory=free_port)
    received: list[EmailMessage] = field(default_factory=list)
    refuse: set[str] = field(default_factory=set)
    delay: float = 0.0
    tls: ssl.SSLContext | None = None
    """With it: STARTTLS required before anything (or, with ``implicit``, TLS from the
    first byte), and AUTH only over TLS."""
    implicit: bool = False
    accounts: dict[str, str] = field(default_factory=dict)
    """Who may sign in (username: password); none: no AUTH asked."""
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _controller: Controller | None = None

    async def handle_RCPT(  # noqa: N802 - aiosmtpd's hook name
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: Any
    ) -> str:
        if address in self.refuse:
            return "550 no such mailbox"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(  # noqa: N802 - aiosmtpd's hook name
        self, server: SMTP, session: Session, envelope: Envelope
    ) -> str:
        if self.delay:
            await asyncio.sleep(self.delay)
        raw = envelope.original_content or envelope.content
        assert isinstance(raw, bytes)
        parsed = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        with self._lock:
            self.received.append(parsed)
        return "250 accepted"

    def start(self) -> "MailCatcher":
        options: dict[str, Any] = {}
        if self.accounts:
            options.update(authenticator=self._authenticate, auth_required=True)
        if self.tls is not None and self.implicit:
            # aiosmtpd sees no STARTTLS here, so it is told that the link is TLS already
            # (and, to keep from warning of AUTH without TLS, not to insist on AUTH: the
            # client signs in all the same).
            options.update(ssl_context=self.tls, auth_require_tls=False, auth_required=False)
        elif self.tls is not None:
            options.update(tls_context=self.tls, require_starttls=True)
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port, **options)
        self._controller.start()
        return self

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        known = (
            isinstance(data, LoginPassword)
            and self.accounts.get(data.login.decode()) == data.password.decode()
        )
        return AuthResult(success=known, handled=False)  # a refusal answers 535

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()

    def wait_for(self, count: int, seconds: float = 30.0) -> list[EmailMessage]:
        deadline = time.monotonic() + seconds
        while len(self.received) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(self.received)} messages arrived, not {count}")
            time.sleep(0.02)
        return list(self.received)

    def to(self, address: str) -> list[EmailMessage]:
        return [m for m in self.received if m["To"] == address]


def parts(message: EmailMessage) -> tuple[str, str]:
    """The text and the HTML part of a message (both must be there)."""
    text = message.get_body(preferencelist=("plain",))
    html = message.get_body(preferencelist=("html",))
    assert text is not None and html is not None
    return text.get_content(), html.get_content()


def link_in(message: EmailMessage) -> str:
    found = re.search(r"https://\S+\?token=[A-Za-z0-9_-]+", parts(message)[0])
    assert found is not None
    return found.group()


def token_in(message: EmailMessage) -> str:
    return link_in(message).rpartition("?token=")[2]


def code_in(message: EmailMessage) -> str:
    found = re.search(r"\b(\d{6})\b", str(message["Subject"]))
    assert found is not None
    return found.group(1)


@dataclass
class Call:
    """A call the receiver got: the verified payload, its headers, and whether its
    signature held."""

    headers: dict[str, str]
    body: bytes
    verified: bool
    payload: Any


@dataclass
class HookReceiver:
    """A webhook receiver on localhost (a Starlette application served by uvicorn)
    that verifies each call with the Standard Webhooks library and ``secret``;
    ``answer(call_number)`` gives the status it answers, after ``delay`` seconds."""

    secret: str = ""
    calls: list[Call] = field(default_factory=list)
    answer: Callable[[int], int] = lambda _: 204
    delay: float = 0.0
    port: int = 0
    _serving: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    def start(self) -> "HookReceiver":
        from starlette.applications import Starlette
        from starlette.requests import Request
        from starlette.responses import Response
        from starlette.routing import Route

        from .support import served

        async def receive(request: Request) -> Response:
            body = await request.body()
            headers = dict(request.headers)
            try:
                payload = Webhook(self.secret).verify(body, headers)
                verified = True
            except WebhookVerificationError:
                payload, verified = json.loads(body), False
            self.calls.append(Call(headers, body, verified, payload))
            if self.delay:
                await asyncio.sleep(self.delay)
            return Response(status_code=self.answer(len(self.calls)))

        app = Starlette(routes=[Route("/hooks", receive, methods=["POST"])])
        base = self._serving.enter_context(served(app))
        self.port = int(base.rpartition(":")[2])
        return self

    def stop(self) -> None:
        self._serving.close()

    def wait_for(self, count: int, seconds: float = 30.0) -> list[Call]:
        deadline = time.monotonic() + seconds
        while len(self.calls) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(self.calls)} calls arrived, not {count}")
            time.sleep(0.02)
        return list(self.calls)


def running(partner: Any) -> Iterator[Any]:
    """A fixture's body: the partner started, then stopped."""
    partner.start()
    try:
        yield partner
    finally:
        partner.stop()


if __name__ == "__main__":
    # A partner in a process of its own (for the benchmark): "mail" or "hooks SECRET";
    # prints its port, then serves until its standard input closes.
    import sys

    sys.path.insert(0, ".")  # run as python -m tests.mail_partners from the checkout
    kind = sys.argv[1]
    partner: MailCatcher | HookReceiver = (
        MailCatcher() if kind == "mail" else HookReceiver(secret=sys.argv[2])
    )
    partner.start()
    print(partner.port, flush=True)
    sys.stdin.read()
    partner.stop()


def certificate(directory: Any) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A self-signed certificate for 127.0.0.1 and localhost, made now: the server's
    TLS context and a client's that trusts it (and only it)."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "cert.pem", directory / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(cert_file, key_file)
    client = ssl.create_default_context(cafile=str(cert_file))
    return server, client
