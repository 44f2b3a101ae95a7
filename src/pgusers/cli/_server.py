"""The embedded PostgreSQL (``pgusers server``) and ``pgusers demo``."""

import sys

import click

from pgusers.cli import _embedded as embedded
from pgusers.cli._database import Database
from pgusers.cli._group import EXIT_NEGATIVE, Group, main


@main.group(cls=Group)
def server() -> None:
    """Manage the embedded PostgreSQL."""


@server.command()
def status() -> None:
    """Say whether the embedded server is running.

    The exit code is 0 when it runs, 1 when it is stopped."""
    found = embedded.status()
    click.echo(f"embedded PostgreSQL: {found or 'stopped'}, data in {embedded.data_dir()}")
    if found is None:
        sys.exit(EXIT_NEGATIVE)


@server.command()
def start() -> None:
    """Start the embedded server.

    It keeps running until "pgusers server stop"."""
    embedded.start()
    click.echo(f"embedded PostgreSQL: {embedded.status()}, data in {embedded.data_dir()}")


@server.command()
def dsn() -> None:
    """Print the embedded server's connection string.

    The server is started if needed; the string names its database, for
    applications: export PGUSERS_DSN="$(pgusers server dsn)"."""
    click.echo(embedded.start().conninfo(embedded.DATABASE))


@server.command()
def stop() -> None:
    """Stop the embedded server."""
    click.echo("stopped" if embedded.stop() else "not running")


@main.command(short_help="Walk through a user's life in a throw-away database.")
@click.pass_obj
def demo(database: Database) -> None:
    """Walk through a user's whole life in a throw-away database."""
    from pgusers.cli._demo import run  # noqa: PLC0415 - only this command needs it

    run(database)
