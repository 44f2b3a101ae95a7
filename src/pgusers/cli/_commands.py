"""The commands of ``pgusers``, and how their answers and failures are printed."""

import datetime as dt
import getpass
import itertools
import json
import os
import re
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from functools import wraps
from typing import Any, Final, NoReturn, TypeVar

import click

from pgusers._door import KINDS, RESOLUTIONS, SESSION_MODES, Codec, acting_as, fold
from pgusers._errors import BadCallError, LegacyImportError, PgUsersError
from pgusers._results import OK, FoundUser, ImportReport
from pgusers._settings import SETTINGS, describe, read
from pgusers._userspace import UserSpace
from pgusers._version import __version__
from pgusers.cli import _embedded as embedded
from pgusers.cli._database import Database

F = TypeVar("F", bound=Callable[..., Any])

EXIT_NEGATIVE = 1
EXIT_USAGE = 2
EXIT_UNAVAILABLE = 3

SHOWN_KEY_CHARS = 6

DASH_ARGUMENT: Final = {"ignore_unknown_options": True}
"""For commands whose argument is a key or an id: random URL-safe text may begin with
"-", and taken for an unknown option it would be refused."""


class NegativeAnswerError(PgUsersError):
    """A command's answer is "no": not found, rejected or expired (exit code 1)."""


def escaped(text: str) -> str:
    """Return ``text`` with every character a terminal would act on, or not show
    (controls, format and bidirectional characters, unassigned code points), written
    as an escape such as ``\\x1b``, so stored data cannot drive the terminal."""
    return "".join(
        ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in text
    )


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


def json_option(command: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON.")(command)


def password_stdin_option(command: F) -> F:
    return click.option(
        "--password-stdin",
        is_flag=True,
        help="Read the password from the first line of standard input.",
    )(command)


def read_password(from_stdin: bool, prompt: str = "Password", *, confirm: bool = True) -> str:
    """Read a password from standard input, or ask on a terminal (twice to set one)."""
    if from_stdin:
        line = sys.stdin.readline().rstrip("\r\n")
        if not line:
            raise BadCallError("no password on standard input")
        return line
    if not sys.stdin.isatty():
        raise BadCallError("no terminal to ask for the password on; use --password-stdin")
    return str(click.prompt(prompt, hide_input=True, confirmation_prompt=confirm))


USERID_TEXT = re.compile(r"[0-9]{1,19}")
"""What a userid looks like on the command line: ASCII digits only (not a superscript
or Arabic-Indic digit), and few enough to be a 64-bit number."""

SELECTORS = {"id": "userid", "name": "username", "email": "email"}
SELECTOR_HELP = {
    "id": "USER is a userid.",
    "name": "USER is a username.",
    "email": "USER is an email address.",
}


def user_selector(command: F) -> F:
    """Add ``--id``, ``--name`` and ``--email``, which say what USER is."""
    for flag in reversed(SELECTORS):
        command = click.option(
            f"--{flag}",
            "by",
            flag_value=flag,
            help=SELECTOR_HELP[flag],
        )(command)
    return command


def _candidates(usp: UserSpace, user: str, by: str | None) -> dict[int, tuple[str, FoundUser]]:
    """Return the users ``user`` names, by userid, each with the field it matched."""
    found: dict[int, tuple[str, FoundUser]] = {}
    for flag, field_name in SELECTORS.items():
        if by not in (None, flag):
            continue
        if flag == "id":
            if not USERID_TEXT.fullmatch(user):
                if by == flag:
                    raise BadCallError(f"{user!r} is not a userid")
                continue
            lookup: dict[str, Any] = {"userid": int(user)}
        elif flag == "email" and by is None and "@" not in user:
            continue
        else:
            lookup = {field_name: user}
        try:
            match = usp.find_user(**lookup)
        except BadCallError:
            if by == flag:
                raise
            continue  # not a valid value of that field, so no user has it
        if match is not None:
            found.setdefault(match["userid"], (field_name, match))
    return found


def find(usp: UserSpace, user: str, by: str | None = None) -> FoundUser:
    """Find the user that ``user`` names: by the field ``by`` (``id``, ``name`` or
    ``email``), or by any of them when it names one user only."""
    found = _candidates(usp, user, by)
    if not found:
        raise NegativeAnswerError(f"no user {user!r}")
    if len(found) > 1:
        names = "; ".join(
            f"userid {userid} (username {match['username']!r}) by its {field_name}"
            for userid, (field_name, match) in sorted(found.items())
        )
        raise BadCallError(
            f"{user!r} names more than one user: {names}; say which with --id, --name or --email"
        )
    return next(iter(found.values()))[1]


def print_json(value: object) -> None:
    text = json.dumps(value, indent=2, ensure_ascii=False)
    # JSON escapes C0 controls itself; DEL, C1 controls and format characters it
    # leaves as they are, and a terminal would act on them.
    click.echo(
        "".join(ch if ch.isprintable() or ch == "\n" else json.dumps(ch)[1:-1] for ch in text)
    )


def print_table(headers: Sequence[str], rows: Iterable[Sequence[object]], *, empty: str) -> None:
    """Print rows under headers in aligned columns; ``empty`` ("no users") when there
    are none."""
    text_rows = [[escaped(str(cell)) for cell in row] for row in rows]
    if not text_rows:
        click.echo(empty)
        return
    widths = [
        max(len(cell) for cell in column) for column in zip(headers, *text_rows, strict=False)
    ]
    for row in [list(headers), *text_rows]:
        click.echo(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )


class Progress:
    """How far long work has come, on standard error: one line rewritten in place on
    a terminal, a line every so often otherwise (a log keeps them all)."""

    EVERY: Final = 50_000
    """Without a terminal, a line at each multiple of this, and the last count."""

    def __init__(self, label: str, unit: str) -> None:
        self.label = label
        self.unit = unit
        self.count = 0
        self.shown = -1
        self.finished = False
        self.terminal = sys.stderr.isatty()

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *_: object) -> None:
        self.finish()

    def line(self) -> str:
        return f"{self.label}: {self.count:,} {self.unit}".rstrip()

    def update(self, count: int) -> None:
        self.count = count
        if self.terminal:
            click.echo(f"\r{self.line()}", nl=False, err=True)
            self.shown = count
        elif count // self.EVERY != self.shown // self.EVERY:
            click.echo(self.line(), err=True)
            self.shown = count

    def finish(self) -> None:
        """End the display: the terminal's line is left as it stands, with the last
        count; elsewhere the last count is written if it was not."""
        if self.finished:
            return
        self.finished = True
        if self.terminal and self.shown >= 0:
            click.echo(err=True)
        elif not self.terminal and self.shown != self.count:
            click.echo(self.line(), err=True)
        self.shown = self.count


def timestamp(seconds: float) -> str:
    return dt.datetime.fromtimestamp(seconds, dt.UTC).isoformat(timespec="seconds")


def shown_key(key: str, show: bool) -> str:
    return key if show else key[:SHOWN_KEY_CHARS] + "…"


def operator() -> str:
    """Who runs the command, as the audit trail records it: ``cli:`` and the
    operating-system user."""
    try:
        name = getpass.getuser()
    except (KeyError, OSError):  # no login name and no passwd entry (some containers)
        name = f"uid {os.getuid()}"
    return f"cli:{name}"


SINCE_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
SINCE_AGO = re.compile(r"([0-9]{1,9})([smhdw])")


def moment(text: str, option: str) -> float:
    """Read a time given on the command line: an ISO 8601 date or time (UTC unless it
    says otherwise), or a duration ago such as ``30m``, ``12h`` or ``7d``."""
    ago = SINCE_AGO.fullmatch(text)
    if ago:
        return time.time() - int(ago[1]) * SINCE_UNITS[ago[2]]
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        raise BadCallError(
            f"{option} {text!r} is neither an ISO 8601 time (2026-11-30, "
            "2026-11-30T08:00) nor a duration ago (30m, 12h, 7d, 2w)"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return when.timestamp()


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


def json_value(text: str | None, option: str) -> Any:
    """The value of an option that takes JSON (None when it was not given)."""
    if text is None:
        return None
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        raise BadCallError(f'{option} takes JSON, such as \'{{"plan": "pro"}}\'') from None


extra_data_option = click.option(
    "--extra-data", metavar="JSON", help='The user\'s extra_data, as JSON: \'{"plan": "pro"}\'.'
)


@main.command()
@click.option("--admin", is_flag=True, help="Make the user an administrator.")
@extra_data_option
@password_stdin_option
@click.argument("email")
@click.argument("username", required=False)
@with_userspace
def adduser(
    usp: UserSpace,
    email: str,
    username: str | None,
    admin: bool,
    extra_data: str | None,
    password_stdin: bool,
) -> None:
    """Create a user (the username defaults to the email)."""
    name = username or email
    data = json_value(extra_data, "--extra-data")
    userid = usp.create_user(
        name, read_password(password_stdin), email, admin=admin, extra_data=data
    )
    click.echo(f"created user {name!r} with userid {userid}{' (admin)' if admin else ''}")


@main.command()
@click.option("--new-username", metavar="NAME", help="A new username.")
@click.option("--new-email", metavar="ADDRESS", help="A new email address.")
@extra_data_option
@user_selector
@click.argument("user")
@with_userspace
def modify(
    usp: UserSpace,
    user: str,
    by: str | None,
    new_username: str | None,
    new_email: str | None,
    extra_data: str | None,
) -> None:
    """Change a user's username, email or extra_data.

    Options left out leave their field as it is. A new email address is not
    verified until the user confirms it."""
    if new_username is None and new_email is None and extra_data is None:
        raise click.UsageError("say what to change: --new-username, --new-email or --extra-data")
    data = json_value(extra_data, "--extra-data")
    found = find(usp, user, by)
    if usp.modify_user(found["userid"], new_username, new_email, data) != OK:
        raise NegativeAnswerError(f"no user {user!r}")
    changed = usp.find_user(userid=found["userid"]) or found
    click.echo(f"changed user {changed['username']!r} (userid {found['userid']})")


@main.command()
@password_stdin_option
@click.option("--end-sessions", is_flag=True, help="Also end the user's sessions.")
@user_selector
@click.argument("user")
@with_userspace
def cpasswd(
    usp: UserSpace, user: str, by: str | None, password_stdin: bool, end_sessions: bool
) -> None:
    """Set a new password."""
    found = find(usp, user, by)
    password = read_password(password_stdin, "New password")
    if usp.change_password(found["userid"], password, end_sessions=end_sessions) != OK:
        raise NegativeAnswerError(f"no user {user!r}")
    click.echo(f"password of {found['username']!r} changed")


@main.command()
@click.option("--remove", is_flag=True, help="Revoke admin rights instead.")
@user_selector
@click.argument("user")
@with_userspace
def setadmin(usp: UserSpace, user: str, by: str | None, remove: bool) -> None:
    """Grant or revoke admin rights."""
    found = find(usp, user, by)
    usp.set_admin(found["userid"], not remove)
    click.echo(f"{found['username']!r} is {'no longer' if remove else 'now'} an administrator")


@main.command()
@user_selector
@click.argument("user")
@with_userspace
def disable(usp: UserSpace, user: str, by: str | None) -> None:
    """Disable a user: its sessions end and it cannot log in."""
    found = find(usp, user, by)
    usp.disable_user(found["userid"])
    click.echo(f"{found['username']!r} is disabled; its sessions ended")


@main.command()
@user_selector
@click.argument("user")
@with_userspace
def enable(usp: UserSpace, user: str, by: str | None) -> None:
    """Enable a disabled user again."""
    found = find(usp, user, by)
    usp.disable_user(found["userid"], disabled=False)
    click.echo(f"{found['username']!r} is enabled")


@main.command(name="reset-token")
@click.option("--ttl", type=float, help="Seconds the token lives [default: 3600].")
@json_option
@user_selector
@click.argument("user")
@with_userspace
def reset_token(
    usp: UserSpace, user: str, by: str | None, ttl: float | None, as_json: bool
) -> None:
    """Print a password-reset token for USER, to pass on to them."""
    found = find(usp, user, by)
    token = usp.issue_token(found["userid"], "reset_password", ttl=ttl)
    if as_json:
        print_json({"token": token, "userid": found["userid"], "username": found["username"]})
    else:
        click.echo(token)


@main.command()
@user_selector
@click.argument("user")
@with_userspace
def delete(usp: UserSpace, user: str, by: str | None) -> None:
    """Delete a user and its sessions."""
    found = find(usp, user, by)
    if usp.delete_user(userid=found["userid"]) != OK:
        raise NegativeAnswerError(f"no user {user!r}")
    click.echo(f"deleted user {found['username']!r} (userid {found['userid']}) and its sessions")


@main.command(name="list")
@json_option
@with_userspace
def list_users(usp: UserSpace, as_json: bool) -> None:
    """List all users."""
    users = usp.all_users()
    if as_json:
        fields = ("userid", "username", "email", "admin")
        print_json([dict(zip(fields, row, strict=True)) for row in users])
        return
    rows = ((uid, name, email, "yes" if admin else "") for uid, name, email, admin in users)
    print_table(("userid", "username", "email", "admin"), rows, empty="no users")


@main.command()
@json_option
@user_selector
@click.argument("user")
@with_userspace
def info(usp: UserSpace, user: str, by: str | None, as_json: bool) -> None:
    """Show one user, its extra_data and its login throttling.

    Throttling is shown for the user's name from some sources, or from all."""
    found = find(usp, user, by)
    name_key = fold(found["username"])
    with usp.login_failures() as failures:
        # the name's own wait, and the longest of any source's for it
        waits = [
            row.retry_after
            for row in failures
            if (row.kind, row.subject) == ("name", name_key)
            or (row.kind == "pair" and row.subject.startswith(f"{name_key} from "))
        ]
    wait = max(waits, default=0.0)
    if as_json:
        data = Codec().encode(found["extra_data"])
        print_json({**found, "extra_data": data, "throttled_for": wait})
        return
    shown: dict[str, Any] = {
        name: ("yes" if value else "no") if isinstance(value, bool) else value
        for name, value in found.items()
    }
    shown["extra_data"] = repr(found["extra_data"])
    shown["throttled_for"] = f"{wait:.0f} s" if wait else "no"
    for name, value in shown.items():
        click.echo(f"{name + ':':16} {escaped(str(value))}")


def session_owner(usp: UserSpace, user: str | None, by: str | None, every: bool) -> int:
    if every == (user is not None):
        raise BadCallError("name a USER or give --all")
    return 0 if user is None else int(find(usp, user, by)["userid"])


@main.command()
@click.option("--all", "every", is_flag=True, help="Every user's sessions.")
@click.option("--expired", is_flag=True, help="Only expired sessions.")
@click.option("--show-keys", is_flag=True, help="Print whole keys (masked by default).")
@json_option
@user_selector
@click.argument("user", required=False)
@with_userspace
def listsessions(
    usp: UserSpace,
    user: str | None,
    by: str | None,
    every: bool,
    expired: bool,
    show_keys: bool,
    as_json: bool,
) -> None:
    """List sessions of USER, or of everyone with --all."""
    sessions = [
        (name, shown_key(key, show_keys), expiration)
        for name, key, expiration in usp.list_sessions(session_owner(usp, user, by, every), expired)
    ]
    if as_json:
        fields = ("username", "key", "expiration")
        print_json([dict(zip(fields, row, strict=True)) for row in sessions])
        return
    print_table(
        ("username", "key", "expires (UTC)"),
        ((n, k, timestamp(e)) for n, k, e in sessions),
        empty="no sessions",
    )


@main.command()
@click.option("--all", "every", is_flag=True, help="Every user's sessions.")
@click.option("--expired", is_flag=True, help="Only expired sessions.")
@user_selector
@click.argument("user", required=False)
@with_userspace
def killsessions(
    usp: UserSpace, user: str | None, by: str | None, every: bool, expired: bool
) -> None:
    """End sessions of USER, or of everyone with --all."""
    ended = usp.kill_sessions(session_owner(usp, user, by, every), expired)
    click.echo(f"ended {ended} session{'' if ended == 1 else 's'}")


@main.command()
@password_stdin_option
@json_option
@user_selector
@click.argument("user")
@with_userspace
def login(usp: UserSpace, user: str, by: str | None, password_stdin: bool, as_json: bool) -> None:
    """Check a password and print a new session key."""
    password = read_password(password_stdin, confirm=False)
    try:
        username = find(usp, user, by)["username"]
    except NegativeAnswerError:
        raise NegativeAnswerError("login rejected") from None
    key, admin, userid = usp.validate_user(username, password)
    if not key:
        raise NegativeAnswerError("login rejected")
    if as_json:
        print_json({"key": key, "userid": userid, "admin": admin})
    else:
        click.echo(key)


MAX_KEY_LINE: Final = 4096
"""The most characters ``check -`` reads: a key is under a hundred."""


@main.command(context_settings=DASH_ARGUMENT)
@json_option
@click.argument("key")
@with_userspace
def check(usp: UserSpace, key: str, as_json: bool) -> None:
    """Check a session key (and slide its expiry).

    KEY "-" reads the key from standard input, so that a live key need not stand in
    the command line, where other users of the machine and the shell's history see
    it: pgusers check - < keyfile.
    """
    if key == "-":
        key = sys.stdin.readline(MAX_KEY_LINE).strip()
    rc, username, userid, extra_data = usp.check_key(key)
    if as_json:
        print_json(
            {
                "status": rc.name,
                "username": username,
                "userid": userid,
                "extra_data": Codec().encode(extra_data),
            }
        )
    else:
        click.echo(f"OK: {username!r} (userid {userid})" if rc == OK else rc.name)
    if rc != OK:
        sys.exit(EXIT_NEGATIVE)


@main.command()
@click.argument("seconds", required=False)
@with_userspace
def ttl(usp: UserSpace, seconds: str | None) -> None:
    """Show the session time to live, or set it to SECONDS."""
    if seconds is not None:
        usp.set_session_TTL(read_setting("session_ttl", seconds))
    click.echo(f"session TTL: {usp.ttl:g} s ({dt.timedelta(seconds=usp.ttl)})")


def read_setting(name: str, text: str | None) -> Any:
    """A setting's value from the command line: a number, or "none" where the setting
    may have no value (no limit)."""
    if text is None:
        raise click.UsageError(f'give a number of {SETTINGS[name].unit}, or "none"')
    return read(name, text)


@main.command()
@click.argument("seconds", required=False)
@with_userspace
def maxage(usp: UserSpace, seconds: str | None) -> None:
    """Set how long after login sessions end (SECONDS, or "none")."""
    value = read_setting("session_max_age", seconds)
    usp.set_session_max_age(value)
    if value is None:
        click.echo("sessions have no maximum age")
    else:
        click.echo(f"sessions end {value:g} s ({dt.timedelta(seconds=value)}) after their login")


@main.command(name="maxsessions")
@click.argument("count", required=False)
@with_userspace
def max_sessions(usp: UserSpace, count: str | None) -> None:
    """Set how many sessions one user may have (COUNT, or "none")."""
    value = read_setting("sessions_per_user", count)
    usp.set_sessions_per_user(value)
    if value is None:
        click.echo(describe("sessions_per_user", None))
    else:
        click.echo(f"a user may have at most {value} sessions at once")


@main.command()
@click.option("--all", "every", is_flag=True, help="Every user's sessions.")
@click.option("--expired", is_flag=True, help="Only expired sessions.")
@json_option
@user_selector
@click.argument("user", required=False)
@with_userspace
def sessions(
    usp: UserSpace, user: str | None, by: str | None, every: bool, expired: bool, as_json: bool
) -> None:
    """List sessions by id, never by key.

    The sessions of USER, or of everyone with --all."""
    rows = list(usp.sessions(session_owner(usp, user, by, every), expired=expired))
    if as_json:
        print_json([{k: v for k, v in row._asdict().items() if k != "current"} for row in rows])
        return
    print_table(
        ("session id", "username", "created (UTC)", "last seen", "expires", "source", "agent"),
        (
            (
                row.session_id,
                row.username,
                timestamp(row.created_at),
                timestamp(row.last_seen_at),
                timestamp(row.expires_at),
                row.source or "",
                row.user_agent or "",
            )
            for row in rows
        ),
        empty="no sessions",
    )


@main.command(context_settings=DASH_ARGUMENT)
@click.argument("session_id")
@with_userspace
def endsession(usp: UserSpace, session_id: str) -> None:
    """End one session by its id (see "pgusers sessions")."""
    if not usp.end_session(session_id):
        raise NegativeAnswerError(f"no session {session_id!r}")
    click.echo(f"ended session {session_id}")


@main.command()
@click.option(
    "--kind",
    "kinds",
    multiple=True,
    type=click.Choice(sorted(KINDS)),
    help="Only events of this kind (repeat for more).",
)
@click.option("--since", help="From this time: 2026-11-30, 2026-11-30T08:00, or 30m/12h/7d ago.")
@click.option("--until", help="Before this time (same forms as --since).")
@click.option("--limit", type=click.IntRange(min=1), help="At most this many, newest first.")
@json_option
@user_selector
@click.argument("user", required=False)
@with_userspace
def events(
    usp: UserSpace,
    user: str | None,
    by: str | None,
    kinds: tuple[str, ...],
    since: str | None,
    until: str | None,
    limit: int | None,
    as_json: bool,
) -> None:
    """Show the audit trail, newest first: everyone's, or USER's."""
    userid = None if user is None else int(find(usp, user, by)["userid"])
    with usp.events(
        userid=userid,
        kinds=list(kinds) or None,
        since=None if since is None else moment(since, "--since"),
        until=None if until is None else moment(until, "--until"),
    ) as stream:
        rows = list(itertools.islice(stream, limit))
    if as_json:
        print_json([row._asdict() for row in rows])
        return
    print_table(
        ("id", "at (UTC)", "kind", "userid", "actor", "source", "session id", "detail"),
        (
            (
                row.id,
                timestamp(row.at),
                row.kind,
                "" if row.userid is None else row.userid,
                row.actor or "",
                row.source or "",
                row.session_id or "",
                json.dumps(row.detail, ensure_ascii=False, sort_keys=True),
            )
            for row in rows
        ),
        empty="no events",
    )


@main.command()
@click.argument("days", required=False)
@with_userspace
def retention(usp: UserSpace, days: str | None) -> None:
    """Keep events DAYS days (default 90), or forever with "none"."""
    value = read_setting("event_retention", days)
    usp.set_event_retention(value)
    click.echo("events are kept forever" if value is None else f"events are kept {value:g} days")


@main.group(cls=Group)
def keys() -> None:
    """How session keys are stored."""


@keys.command(name="hash")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@with_userspace
def keys_hash(usp: UserSpace, yes: bool) -> None:
    """Keep only SHA-256 digests of session keys from now on (one-way).

    Stored keys are converted in place while applications keep running; sessions
    stay valid. Afterwards "listsessions" shows session ids instead of keys.
    """
    if usp.settings().key_storage == "hashed":
        click.echo("session keys are already kept hashed; nothing to do")
        return
    confirm_or_refuse("Keep only digests of session keys from now on? This cannot be undone", yes)
    with Progress("converted", "keys") as progress:
        converted = usp.set_session_key_storage("hashed", progress=progress.update)
    click.echo(f"session keys are kept hashed; converted {converted:,} stored keys")


@main.command(name="import-legacy")
@click.option(
    "--from-schema",
    default="public",
    show_default=True,
    help="Schema of pgusers 0.9's users and sessions tables, in the same database.",
)
@click.option("--dry-run", is_flag=True, help="Do everything, then roll back; print the report.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option(
    "--sessions",
    type=click.Choice(SESSION_MODES),
    default="keep",
    show_default=True,
    help="Keep live sessions (users stay logged in) or end them all.",
)
@click.option(
    "--on-conflict",
    "resolutions",
    multiple=True,
    type=click.Choice(list(RESOLUTIONS)),
    help="Allow a resolution for users that break pgusers' rules (repeat for more).",
)
@json_option
@with_userspace
def import_legacy(
    usp: UserSpace,
    from_schema: str,
    dry_run: bool,
    yes: bool,
    sessions: str,
    resolutions: tuple[str, ...],
    as_json: bool,
) -> None:
    """Import the users and sessions of a pgusers 0.9 database.

    Runs in one transaction: everything is imported, or nothing. Users keep their
    userid and log in with their old passwords; live sessions keep working until
    their old expiry. Users that break pgusers' rules are listed and the import
    refused, unless --on-conflict allows a resolution:

    \b
    suffix-usernames    duplicate or look-alike names get "-USERID" appended
    placeholder-emails  missing, malformed or duplicate emails become
                        user-USERID@legacy.invalid (unverified)
    unusable-passwords  users without a valid hash get no usable password
    skip-users          users with any problem left are not imported
    """
    if not dry_run:
        confirm_or_refuse(f"Import the pgusers 0.9 tables of schema {from_schema!r}?", yes)

    stages: dict[str, Progress] = {}

    def report_progress(stage: str, count: int) -> None:
        if as_json:
            return
        if stage not in stages:
            for earlier in stages.values():
                earlier.finish()
            stages[stage] = Progress(stage, "")
        stages[stage].update(count)

    try:
        try:
            report = usp.import_legacy(
                from_schema,
                dry_run=dry_run,
                sessions=sessions,
                on_conflict=list(resolutions),
                progress=report_progress,
            )
        finally:
            for stage in stages.values():
                stage.finish()
    except LegacyImportError as refused:
        found: ImportReport = refused.report  # type: ignore[assignment]
        if as_json:
            print_json(found._asdict())
        else:
            print_table(
                ("userid", "username", "problem"),
                ((u, "" if n is None else n, p) for u, n, p in found.problems),
                empty="no problems found",
            )
        raise
    if as_json:
        print_json(report._asdict())
        return
    skipped = ", ".join(f"{n} {why}" for why, n in report.sessions_skipped.items()) or "none"
    lines = [
        f"{'would import' if dry_run else 'imported'} {report.users:,} users and "
        f"{report.sessions:,} sessions from schema {from_schema!r} "
        f"in {report.seconds:.1f} s{' (dry run: nothing was written)' if dry_run else ''}",
        f"users skipped: {report.users_skipped:,}; sessions skipped: {skipped}",
    ]
    for userid, problems, done in report.resolutions:
        lines.append(f"userid {userid}: {problems} -> {done}")
    if report.opaque_extra_data or report.opaque_session_data:
        lines.append(
            "extra_data kept as opaque pickles (readable only with serializer='pickle'): "
            f"users {', '.join(map(str, report.opaque_extra_data)) or 'none'}; "
            f"{report.opaque_session_data} sessions"
        )
    for line in lines:
        click.echo(escaped(line))


@main.group(cls=Group)
def throttle() -> None:
    """Login throttling: lift it for a user or a source."""


@throttle.command(name="list")
@json_option
@with_userspace
def throttle_list(usp: UserSpace, as_json: bool) -> None:
    """List login names and sources with failures in the last day."""
    rows = list(usp.login_failures())
    if as_json:
        print_json([row._asdict() for row in rows])
        return
    print_table(
        ("kind", "name or source", "failures", "last failure (UTC)", "throttled for"),
        (
            (r.kind, r.subject, r.failures, timestamp(r.last_failure), f"{r.retry_after:.0f} s")
            for r in rows
        ),
        empty="no failed logins in the last day",
    )


@throttle.command(name="clear")
@click.option("--source", help="The source (for example an IP address) to clear.")
@user_selector
@click.argument("user", required=False)
@with_userspace
def throttle_clear(usp: UserSpace, user: str | None, by: str | None, source: str | None) -> None:
    """Forget the failed logins of USER's name, of --source, or both."""
    name = None if user is None else str(find(usp, user, by)["username"])
    if name is None and source is None:
        raise BadCallError("name a USER or give --source")
    cleared = usp.clear_login_failures(username=name, source=source)
    click.echo(f"cleared {cleared} failure count{'' if cleared == 1 else 's'}")


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


@main.command()
@click.pass_obj
def demo(database: Database) -> None:
    """Walk through a user's whole life in a throw-away database."""
    from pgusers.cli._demo import run  # noqa: PLC0415 - only this command needs it

    run(database)
