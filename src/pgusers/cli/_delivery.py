"""The commands of the outbox: mail set/show/remove/login-by-email, webhook
add/list/remove/rotate, outbox list/retry/attempts, and deliver."""

import asyncio
import contextlib
import os
import signal
from pathlib import Path

import click

from pgusers._aio import AsyncUserSpace
from pgusers._results import OK
from pgusers._userspace import UserSpace
from pgusers.cli._database import Database, options_from_environment
from pgusers.cli._group import NegativeAnswerError, confirm_or_refuse, main, with_userspace
from pgusers.cli._input import DASH_ARGUMENT, json_option
from pgusers.cli._output import print_json, print_table, timestamp


@main.group(short_help="How mail is sent, and sign-in by email.")
def mail() -> None:
    """How mail is sent: the SMTP server, the sender, the links' base URL."""


@mail.command(name="set", short_help="Send mail through an SMTP server.")
@click.argument("host")
@click.option("--port", type=int, default=587, show_default=True, help="The SMTP port.")
@click.option(
    "--security",
    type=click.Choice(["starttls", "tls", "none"]),
    default="starttls",
    show_default=True,
    help="How the connection is secured.",
)
@click.option("--sender", required=True, help="From: an address, or 'Name <address>'.")
@click.option("--base-url", required=True, help="What links in mail start with (https://...).")
@click.option("--username", help="The SMTP account.")
@click.option(
    "--password-env",
    metavar="NAME",
    help="The environment variable that holds the SMTP password (never on the command line).",
)
@click.option("--app-name", default="pgusers", show_default=True, help="Named in every mail.")
@click.option(
    "--per-recipient",
    type=int,
    default=5,
    show_default=True,
    help="Messages an hour to one address, at most.",
)
@click.option(
    "--new-device/--no-new-device",
    default=False,
    show_default=True,
    help="Tell users of each sign-in from a browser or program new to their account.",
)
@with_userspace
def mail_set(
    usp: UserSpace,
    host: str,
    port: int,
    security: str,
    sender: str,
    base_url: str,
    username: str | None,
    password_env: str | None,
    app_name: str,
    per_recipient: int,
    new_device: bool,
) -> None:
    """Send mail through the SMTP server at HOST. The password, if any, is read from
    the environment variable named by --password-env and sealed under
    PGUSERS_SECRET_KEY."""
    password = None
    if password_env is not None:
        password = os.environ.get(password_env)
        if not password:
            raise click.UsageError(f"the environment variable {password_env} is empty or unset")
    usp.set_mail(
        host, sender=sender, base_url=base_url, port=port, security=security, username=username,
        password=password, app_name=app_name, per_recipient=per_recipient, new_device=new_device,
    )  # fmt: skip
    click.echo(f"mail goes through {host}:{port} ({security}) from {sender}")


@mail.command(name="show")
@json_option
@with_userspace
def mail_show(usp: UserSpace, as_json: bool) -> None:
    """Show how mail is sent (never the password)."""
    settings = usp.mail_settings()
    by_email = usp.settings().login_by_email
    if as_json:
        print_json({"mail": None if settings is None else settings._asdict(),
                    "login_by_email": by_email})  # fmt: skip
        return
    if settings is None:
        click.echo("mail is not set up (pgusers mail set)")
        return
    for name, value in settings._asdict().items():
        shown = timestamp(value) if name == "updated_at" else value
        click.echo(f"{name.replace('_', ' ')}: {shown}")
    click.echo(f"sign-in by email: {'on' if by_email else 'off'}")


@mail.command(name="remove")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@with_userspace
def mail_remove(usp: UserSpace, yes: bool) -> None:
    """Stop sending mail (queued messages stay, and wait)."""
    confirm_or_refuse("Stop sending mail?", yes)
    if usp.remove_mail() != OK:
        raise NegativeAnswerError("mail was not set up")
    click.echo("mail is no longer sent")


@mail.command(name="login-by-email")
@click.argument("state", type=click.Choice(["on", "off"]))
@with_userspace
def login_by_email(usp: UserSpace, state: str) -> None:
    """Let users sign in by a link or code sent to their address, or not."""
    usp.set_login_by_email(state == "on")
    click.echo(f"sign-in by email is {state}")


@main.group(short_help="URLs called with events, signed.")
def webhook() -> None:
    """Webhooks: URLs called with events, signed by the Standard Webhooks scheme."""


@webhook.command(name="add")
@click.argument("url")
@click.argument("kinds", nargs=-1, required=True)
@click.option("--description", help="What it is for.")
@with_userspace
def webhook_add(usp: UserSpace, url: str, kinds: tuple[str, ...], description: str | None) -> None:
    """Call URL with every event of KINDS ('*' for all, quoted); print its id and its
    signing secret, which is shown only this once."""
    webhook_id, secret = usp.add_webhook(url, list(kinds), description=description)
    click.echo(f"webhook {webhook_id} calls {url}")
    click.echo(f"signing secret (shown once): {secret}")


@webhook.command(name="list")
@json_option
@with_userspace
def webhook_list(usp: UserSpace, as_json: bool) -> None:
    """List the webhooks (never their secrets)."""
    hooks = usp.webhooks()
    if as_json:
        print_json([hook._asdict() for hook in hooks])
        return
    rows = [
        (h.webhook_id, h.url, " ".join(h.kinds), h.description or "", timestamp(h.created_at))
        for h in hooks
    ]
    print_table(("webhook", "url", "kinds", "description", "created"), rows, empty="no webhooks")


@webhook.command(name="remove", context_settings=DASH_ARGUMENT)
@click.argument("webhook_id")
@with_userspace
def webhook_remove(usp: UserSpace, webhook_id: str) -> None:
    """Stop calling the webhook WEBHOOK_ID."""
    if usp.remove_webhook(webhook_id) != OK:
        raise NegativeAnswerError(f"no webhook {webhook_id!r}")
    click.echo(f"webhook {webhook_id} removed")


@webhook.command(name="rotate", context_settings=DASH_ARGUMENT)
@click.argument("webhook_id")
@click.option(
    "--grace",
    type=float,
    default=86400.0,
    show_default=True,
    help="Seconds the old secret keeps signing beside the new one.",
)
@with_userspace
def webhook_rotate(usp: UserSpace, webhook_id: str, grace: float) -> None:
    """Give WEBHOOK_ID a new signing secret; print it (shown only this once)."""
    secret = usp.rotate_webhook_secret(webhook_id, grace=grace)
    if secret is None:
        raise NegativeAnswerError(f"no webhook {webhook_id!r}")
    click.echo(f"new signing secret (shown once): {secret}")


@main.group()
def outbox() -> None:
    """The messages waiting to go, sent, and dead."""


@outbox.command(name="list")
@click.option("--state", type=click.Choice(["pending", "sent", "dead"]), help="Only these.")
@click.option("--limit", type=int, default=50, show_default=True)
@json_option
@with_userspace
def outbox_list(usp: UserSpace, state: str | None, limit: int, as_json: bool) -> None:
    """List the newest messages, and how many wait."""
    entries = usp.outbox(state=state, limit=limit)
    pending, dead, oldest = usp.outbox_backlog()
    if as_json:
        print_json({"messages": [e._asdict() for e in entries], "pending": pending,
                    "dead": dead, "oldest_pending_seconds": oldest})  # fmt: skip
        return
    rows = [
        (
            e.message_id,
            e.channel,
            e.purpose,
            e.recipient,
            e.state,
            e.attempts,
            timestamp(e.created_at),
            e.last_error or "",
        )
        for e in entries
    ]
    print_table(
        ("message", "channel", "purpose", "to", "state", "tries", "created", "last error"),
        rows,
        empty="no messages",
    )
    click.echo(f"pending: {pending}, dead: {dead}, oldest pending: {oldest:.0f} s")


@outbox.command(name="retry", context_settings=DASH_ARGUMENT)
@click.argument("message_ids", nargs=-1)
@click.option("--all-dead", is_flag=True, help="Every dead message.")
@with_userspace
def outbox_retry(usp: UserSpace, message_ids: tuple[str, ...], all_dead: bool) -> None:
    """Send dead messages again (MESSAGE_IDS, or --all-dead)."""
    chosen = list(message_ids)
    if all_dead:
        chosen += [e.message_id for e in usp.outbox(state="dead", limit=1000)]
    if not chosen:
        raise click.UsageError("name the messages, or give --all-dead")
    missing = [m for m in chosen if usp.retry_message(m) != OK]
    click.echo(f"{len(chosen) - len(missing)} messages will be sent again")
    if missing:
        raise NegativeAnswerError(f"no dead message {', '.join(missing)}")


@outbox.command(name="attempts")
@click.argument("count", type=int)
@with_userspace
def outbox_attempts(usp: UserSpace, count: int) -> None:
    """Try each message COUNT times before it is dead."""
    usp.set_delivery_attempts(count)
    click.echo(f"a message is tried {count} times before it is dead")


@main.command(short_help="Deliver the outbox: mail and webhook calls.")
@click.option("--once", is_flag=True, help="One batch, then stop.")
@click.option("--batch", type=int, default=20, show_default=True, help="Messages taken at a time.")
@click.option("--poll", type=float, default=5.0, show_default=True, help="Seconds between looks.")
@click.option(
    "--lease", type=float, default=60.0, show_default=True, help="Seconds a message is held."
)
@click.option("--smtp-timeout", type=float, default=10.0, show_default=True)
@click.option(
    "--no-listen",
    is_flag=True,
    help="Poll only: for a connection through PgBouncer in transaction mode.",
)
@click.option(
    "--templates",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="A directory of templates that replace the shipped ones.",
)
def deliver(
    once: bool,
    batch: int,
    poll: float,
    lease: float,
    smtp_timeout: float,
    no_listen: bool,
    templates: Path | None,
) -> None:
    """Send what the outbox holds, as it comes: mail through the SMTP server of
    'pgusers mail set', and calls to the webhooks. Any number may run at once; each
    message goes through one at a time. Stops on Ctrl-C or SIGTERM."""
    try:
        from pgusers.delivery import Worker  # noqa: PLC0415 - an extra's code
    except ImportError as missing:
        raise click.UsageError(str(missing)) from None
    database = click.get_current_context().find_object(Database)
    assert database is not None  # main() puts it in the context
    connection = database.connection()

    async def work() -> None:
        space = await AsyncUserSpace.connect(
            schema=database.schema, **options_from_environment(), **connection
        )
        worker = Worker(space, batch=batch, lease=lease, poll=poll, smtp_timeout=smtp_timeout,
                        templates=templates, listen=not no_listen)  # fmt: skip
        try:
            if once:
                outcome = await worker.run_once()
                await worker.close()
                click.echo(
                    f"taken {outcome.taken}, sent {outcome.sent}, to retry {outcome.failed}, "
                    f"dead {outcome.dead}"
                )
                return
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for signum in (signal.SIGINT, signal.SIGTERM):
                with contextlib.suppress(NotImplementedError):
                    loop.add_signal_handler(signum, stop.set)
            click.echo(f"delivering as {worker.name}; Ctrl-C stops", err=True)
            await worker.run(stop)
        finally:
            await space.close()

    asyncio.run(work())
