"""Mail: a message of the outbox made into MIME (a text and an HTML part, from Jinja2
templates) and sent through the configured SMTP server with aiosmtplib."""

import email.utils
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any, Final

import aiosmtplib
import jinja2

from pgusers._results import MailSettings, OutboxMessage

LINK_PATHS: Final = {
    "reset_password": "/account/reset",
    "verify_email": "/account/verify",
    "change_email": "/account/verify",
    "login_link": "/account/login/link",
}
"""Where each token's link leads, after the base URL: the pages of ``pgusers serve``.
An application with pages of its own overrides the templates (they get ``token``)."""

SUBJECT: Final = "Subject:"


class PermanentError(Exception):
    """A failure that no retry can mend (the server refused the address)."""


@dataclass(frozen=True, slots=True)
class Mailer:
    """Sends the outbox's mail: the settings, the SMTP password opened, the templates."""

    settings: MailSettings
    password: str | None
    templates: jinja2.Environment
    timeout: float
    tls: ssl.SSLContext | None = None

    def compose(self, message: OutboxMessage) -> EmailMessage:
        """The MIME message for ``message``: its subject is the text template's first
        line (``Subject: ...``), then a text and an HTML part."""
        context = self.context(message)
        text = self.templates.get_template(f"{message.purpose}.txt").render(context)
        html = self.templates.get_template(f"{message.purpose}.html").render(context)
        first, _, body = text.partition("\n")
        if not first.startswith(SUBJECT):
            raise ValueError(f"the template {message.purpose}.txt must begin with 'Subject:'")
        mail = EmailMessage()
        mail["Subject"] = first.removeprefix(SUBJECT).strip()
        mail["From"] = self.settings.sender
        mail["To"] = message.recipient
        mail["Date"] = email.utils.formatdate(localtime=False)
        # The outbox's id, the same on every attempt, lets a receiver drop a repeat.
        domain = email.utils.parseaddr(self.settings.sender)[1].rpartition("@")[2]
        mail["Message-ID"] = f"<{message.message_id}@{domain}>"
        mail.set_content(body.lstrip("\n"))
        mail.add_alternative(html, subtype="html")
        return mail

    def context(self, message: OutboxMessage) -> dict[str, Any]:
        """What every template gets."""
        payload = message.payload or {}
        link = None
        if message.token is not None:
            link = f"{self.settings.base_url}{LINK_PATHS[message.purpose]}?token={message.token}"
        minutes = None
        if message.expires_at is not None:
            minutes = max(1, round((message.expires_at - message.created_at) / 60))
        return {
            "app_name": self.settings.app_name,
            "base_url": self.settings.base_url,
            "purpose": message.purpose,
            "username": payload.get("username"),
            "email": message.recipient,
            "link": link,
            "token": message.token,
            "code": message.code,
            "expires_in_minutes": minutes,
            "detail": payload.get("detail") or {},
        }

    def client(self) -> aiosmtplib.SMTP:
        """An SMTP client for the configured server (not yet connected)."""
        security = self.settings.security
        return aiosmtplib.SMTP(
            hostname=self.settings.host,
            port=self.settings.port,
            use_tls=security == "tls",
            start_tls=security == "starttls",
            timeout=self.timeout,
            tls_context=self.tls,
        )

    async def connect(self, client: aiosmtplib.SMTP) -> None:
        await client.connect()
        if self.settings.username is not None and self.password is not None:
            await client.login(self.settings.username, self.password)

    async def send(self, client: aiosmtplib.SMTP, message: OutboxMessage) -> None:
        """Send ``message`` through ``client`` (connected first if it is not); raise
        :class:`PermanentError` when the server refuses it for good, another exception
        when a later try may succeed."""
        mail = self.compose(message)
        if not client.is_connected:
            await self.connect(client)
        try:
            await client.send_message(mail)
        except aiosmtplib.SMTPException as error:
            client.close()  # whatever state it is in, the next message starts afresh
            raise _classified(error) from None


def _classified(error: aiosmtplib.SMTPException) -> Exception:
    """A refusal of this message for good as :class:`PermanentError`: its recipient
    refused with a 5xx, or its content refused with a 5xx (but 554, which some
    servers give for a passing condition). Anything else (a refused sign-in or
    sender, a timeout, a lost connection) may be mended, by the operator or by
    time: the message is tried again."""
    if isinstance(error, aiosmtplib.SMTPRecipientsRefused):
        codes = [reply.code for reply in error.recipients]
        if codes and all(code >= 500 for code in codes):
            return PermanentError(f"{codes[0]} the server refused the address")
    elif isinstance(error, aiosmtplib.SMTPDataError) and 500 <= error.code != 554:
        return PermanentError(f"{error.code} {error.message}")
    return error


def templates(override: str | Path | None = None) -> jinja2.Environment:
    """The templates: those in ``override`` first, then the shipped ones. HTML parts
    are escaped; text parts are not."""
    loaders: list[jinja2.BaseLoader] = []
    if override is not None:
        loaders.append(jinja2.FileSystemLoader(str(override)))
    loaders.append(jinja2.PackageLoader("pgusers.delivery", "templates"))
    return jinja2.Environment(
        loader=jinja2.ChoiceLoader(loaders),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html",), default=False),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )
