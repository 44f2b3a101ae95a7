"""The ``pgusers`` group, and how a command's failure becomes a message and an exit code."""

import getpass
import os
import sys
from collections.abc import Callable
from functools import wraps
from typing import Any, NoReturn, TypeVar

import click

from pgusers._door import acting_as
from pgusers._errors import BadCallError, PgUsersError
from pgusers._version import __version__
from pgusers.cli._database import Database
from pgusers.cli._output import escaped

F = TypeVar("F", bound=Callable[..., Any])

EXIT_NEGATIVE = 1
EXIT_USAGE = 2
EXIT_UNAVAILABLE = 3


class NegativeAnswerError(PgUsersError):
    """A command's answer is "no": not found, rejected or expired (exit code 1)."""


def fail(message: str, code: int) -> NoReturn:
    """Print a one-line error and leave with ``code``."""
    click.echo(f"pgusers: {escaped(message)}", err=True)
    sys.exit(code)


class Group(click.Group):
    """Turns pgusers' exceptions into one-line messages and exit codes."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except NegativeAnswerError as answer:
            fail(str(answer), EXIT_NEGATIVE)
        except BadCallError as error:
            fail(str(error), EXIT_USAGE)
        except PgUsersError as error:  # unreachable, refused, or data that cannot be read
            fail(str(error), EXIT_UNAVAILABLE)


def with_userspace(command: F) -> F:
    """Pass the opened userspace to ``command`` as its first argument."""

    @wraps(command)
    def run(*args: Any, **kwargs: Any) -> Any:
        database = click.get_current_context().find_object(Database)
        assert database is not None  # main() puts it in the context
        return command(database.open(), *args, **kwargs)

    return run  # type: ignore[return-value]


def operator() -> str:
    """Who runs the command, as the audit trail records it: ``cli:`` and the
    operating-system user."""
    try:
        name = getpass.getuser()
    except (KeyError, OSError):  # no login name and no passwd entry (some containers)
        name = f"uid {os.getuid()}"
    return f"cli:{name}"


def confirm_or_refuse(question: str, yes: bool) -> None:
    """Go on when ``--yes`` was given or the operator says yes on a terminal."""
    if yes:
        return
    if not sys.stdin.isatty():
        raise BadCallError("no terminal to confirm on; give --yes to go ahead")
    if not click.confirm(question):
        raise NegativeAnswerError("nothing was changed")


@click.group(cls=Group)
@click.option("--dsn", envvar="PGUSERS_DSN", help="libpq connection string or URI [PGUSERS_DSN].")
@click.option("--host", help="Server host (libpq's PGHOST).")
@click.option("--port", type=int, help="Server port (PGPORT).")
@click.option("--user", "db_user", help="Database role (PGUSER).")
@click.option("--dbname", help="Database name (PGDATABASE).")
@click.option("--schema", default="pgusers", show_default=True, help="Schema of the tables.")
@click.option(
    "-v", "--verbose", is_flag=True, help="Say which embedded PostgreSQL each command uses."
)
@click.version_option(version=__version__, prog_name="pgusers")
@click.pass_context
def main(
    ctx: click.Context,
    dsn: str | None,
    host: str | None,
    port: int | None,
    db_user: str | None,
    dbname: str | None,
    schema: str,
    verbose: bool,
) -> None:
    """Manage pgusers users and sessions.

    Without --dsn, PGUSERS_DSN, connection options or PG* variables, an
    embedded PostgreSQL in your data directory is used (started if needed).
    USER is a userid, a username or an email; when it could be more than one
    user, the command refuses it, and --id, --name or --email says which.
    """
    params = {"host": host, "port": port, "user": db_user, "dbname": dbname}
    database = Database(
        dsn, {k: v for k, v in params.items() if v is not None}, schema, verbose=verbose
    )
    ctx.obj = database
    ctx.call_on_close(database.close)
    ctx.with_resource(acting_as(operator()))
