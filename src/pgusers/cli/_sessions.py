"""The commands about sessions and keys: login, check, listsessions, killsessions,
sessions, endsession, keys hash."""

import sys
from typing import Final

import click

from pgusers._door import Codec
from pgusers._results import OK
from pgusers._userspace import UserSpace
from pgusers.cli._group import (
    EXIT_NEGATIVE,
    Group,
    NegativeAnswerError,
    confirm_or_refuse,
    main,
    with_userspace,
)
from pgusers.cli._input import (
    DASH_ARGUMENT,
    find,
    json_option,
    password_stdin_option,
    read_password,
    session_owner,
    user_selector,
)
from pgusers.cli._output import Progress, print_json, print_table, shown_key, timestamp


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
