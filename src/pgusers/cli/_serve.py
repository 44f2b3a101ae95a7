"""``pgusers serve`` (the HTTP service and console) and ``pgusers apikey`` (the keys
servers use to call it)."""

import contextvars
import gc
import logging
import re
from functools import partial

import click

from pgusers import _door as door
from pgusers._aio import AsyncUserSpace
from pgusers._door import Core
from pgusers._results import NOT_FOUND
from pgusers._userspace import UserSpace
from pgusers.cli._database import Database, options_from_environment
from pgusers.cli._group import NegativeAnswerError, with_userspace
from pgusers.cli._input import DASH_ARGUMENT, json_option
from pgusers.cli._output import print_json, print_table, timestamp

SECRET_QUERY = re.compile(r"([?&]token=)[^&#\s]*")


class WithoutSecrets(logging.Filter):
    """Blank the one-time tokens (the setup link's) out of uvicorn's access log lines."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                SECRET_QUERY.sub(r"\1[hidden]", arg) if isinstance(arg, str) else arg
                for arg in record.args
            )
        return True


@click.group()
def apikey() -> None:
    """Create, list and revoke the HTTP service's API keys.

    A key of scope 'check' may only call POST /v1/check; one of scope 'admin'
    may call every administrator endpoint. Keys are stored as SHA-256 digests:
    a key is shown once, when it is made.
    """


@apikey.command(name="create")
@click.option(
    "--scope",
    type=click.Choice(["check", "admin"]),
    default="check",
    show_default=True,
    help="What the key may do.",
)
@json_option
@click.argument("name")
@with_userspace
def apikey_create(usp: UserSpace, name: str, scope: str, as_json: bool) -> None:
    """Make an API key and print it, once.

    NAME is a label for people."""
    key_id, key = door.run(usp, Core.create_api_key, name, scope)
    if as_json:
        print_json({"key_id": key_id, "key": key, "scope": scope, "name": name})
    else:
        click.echo(f"key id {key_id} (scope {scope}); the key, shown only now:")
        click.echo(key)


@apikey.command(name="list")
@json_option
@with_userspace
def apikey_list(usp: UserSpace, as_json: bool) -> None:
    """List API keys (never the keys themselves)."""
    keys = list(door.stream(usp, Core.api_keys))
    if as_json:
        print_json([key._asdict() for key in keys])
        return
    print_table(
        ["KEY ID", "NAME", "SCOPE", "CREATED", "BY", "REVOKED"],
        [
            (
                k.key_id,
                k.name,
                k.scope,
                timestamp(k.created_at),
                k.created_by or "",
                "" if k.revoked_at is None else timestamp(k.revoked_at),
            )
            for k in keys
        ],
        empty="no API keys",
    )


@apikey.command(name="revoke", context_settings=DASH_ARGUMENT)
@click.argument("key_id")
@with_userspace
def apikey_revoke(usp: UserSpace, key_id: str) -> None:
    """Revoke the API key KEY_ID: it stops working at once."""
    if door.run(usp, Core.revoke_api_key, key_id) == NOT_FOUND:
        raise NegativeAnswerError(f"no live API key {key_id!r}")
    click.echo(f"revoked {key_id}")


@click.command(short_help="Serve the JSON API, the admin console and the account pages.")
@click.option("--host", "bind", default="127.0.0.1", show_default=True, help="Listen here.")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535))
@click.option("--dsn", help="libpq connection string (else the command line's database).")
@click.option("--registration", is_flag=True, help="Let anyone sign up (POST /v1/register).")
@click.option("--no-console", is_flag=True, help="Leave the admin console out.")
@click.option("--no-account-pages", is_flag=True, help="Leave the users' own pages (/account) out.")
@click.option(
    "--access-log/--no-access-log", default=True, show_default=True, help="A line per request."
)
@click.option(
    "--max-body",
    default=64 * 1024,
    show_default=True,
    type=click.IntRange(4096),
    help="The most bytes a request body may take (413 past it).",
)
@click.option(
    "--forwarded-allow-ips",
    metavar="ADDRESSES",
    help="Trust X-Forwarded-For and X-Forwarded-Proto from these proxies (comma-separated"
    " addresses or networks; '*' for any). By default no forwarded header is trusted:"
    " the client's own address is the source of logins and events.",
)
@click.option(
    "--deliver/--no-deliver",
    default=None,
    help="Send the outbox's mail and webhook calls while serving (the default when the"
    " delivery extra is installed); --no-deliver when 'pgusers deliver' runs apart.",
)
@click.option(
    "--metrics",
    "with_metrics",
    is_flag=True,
    help="Serve Prometheus metrics at /metrics (needs the metrics extra). Anyone who"
    " reaches the service reads them: prefer --metrics-port behind a public address.",
)
@click.option(
    "--metrics-port",
    type=click.IntRange(1, 65535),
    help="Serve the metrics on this port of --host instead, apart from the API.",
)
@click.pass_obj
def serve(
    database: Database,
    *,
    bind: str,
    port: int,
    dsn: str | None,
    registration: bool,
    no_console: bool,
    no_account_pages: bool,
    access_log: bool,
    max_body: int,
    forwarded_allow_ips: str | None,
    deliver: bool | None,
    with_metrics: bool,
    metrics_port: int | None,
) -> None:
    """Serve the JSON API, the admin console and the account pages over HTTP.

    The API is under /v1 (its documentation at /v1/docs), the console under /console,
    and the pages where users sign in and manage their own security under /account.

    While the userspace has no administrator, a one-time link to create the
    first one is printed (it works once, for 15 minutes).
    """
    try:
        import uvicorn  # noqa: PLC0415 - an optional part: pgusers[web]

        from pgusers.web import create_app  # noqa: PLC0415
    except ImportError:
        raise click.UsageError(
            'pgusers serve needs the web extra: pip install "pgusers[web]"'
        ) from None
    if deliver is not False:
        try:
            import pgusers.delivery  # noqa: F401, PLC0415 - only whether it can be
        except ImportError:
            if deliver:
                raise click.UsageError(
                    'delivering mail needs the delivery extra: pip install "pgusers[delivery]"'
                ) from None
            deliver = False
    metrics = None
    if with_metrics or metrics_port is not None:
        try:
            from prometheus_client import CollectorRegistry  # noqa: PLC0415

            from pgusers.metrics import Metrics  # noqa: PLC0415
        except ImportError:
            raise click.UsageError(
                'metrics need the metrics extra: pip install "pgusers[metrics]"'
            ) from None
        metrics = Metrics(CollectorRegistry())
    if dsn is not None:
        database.dsn = dsn
    connection = database.connection()
    usp = database.open()
    first_admin = not door.run(usp, Core.accounts, None, 0, 1, {"admin": True})
    database.close()
    app = create_app(
        partial(
            AsyncUserSpace.connect,
            schema=database.schema,
            **options_from_environment(),
            **connection,
        ),
        registration=registration,
        console=not no_console,
        account_pages=not no_account_pages,
        setup_link=first_admin and not no_console,
        max_body=max_body,
        deliver=deliver is not False,
        metrics=metrics,
        metrics_route=metrics_port is None,
    )
    shown = f"[{bind}]" if ":" in bind else bind
    base = f"http://{shown}:{port}"
    served = [f"{base}/v1 (API)"]
    served += [] if no_console else [f"{base}/console (console)"]
    served += [] if no_account_pages else [f"{base}/account (users' pages)"]
    if metrics is not None and metrics_port is None:
        served.append(f"{base}/metrics (metrics)")
    elif metrics is not None and metrics_port is not None:
        from prometheus_client import start_http_server  # noqa: PLC0415

        start_http_server(metrics_port, addr=bind, registry=metrics.registry)
        served.append(f"http://{shown}:{metrics_port}/metrics (metrics)")
    click.echo(f"pgusers: serving {', '.join(served)}", err=True)
    if app.state.setup_token:
        click.echo(
            "pgusers: no administrator yet; create the first one (this link works once, "
            f"for 15 minutes): {base}/console/setup?token={app.state.setup_token}",
            err=True,
        )
    # Everything made so far (the framework, the application) lives as long as the
    # process: kept out of the collector's sweeps, it no longer lengthens the pauses
    # that set the slowest requests' latency (p99 under load: ~40 ms before, ~15 ms).
    gc.collect()
    gc.freeze()
    logging.getLogger("uvicorn.access").addFilter(WithoutSecrets())
    # The command runs as the operator (``cli:<name>``), but the requests it serves do
    # not: each names its own actor (an admin, a key's maker) or none (a login). The
    # server therefore runs in a context of its own, without the operator's.
    contextvars.Context().run(
        uvicorn.run,
        app,
        host=bind,
        port=port,
        log_level="info",
        access_log=access_log,
        server_header=False,
        proxy_headers=forwarded_allow_ips is not None,
        forwarded_allow_ips=forwarded_allow_ips or "",
    )
