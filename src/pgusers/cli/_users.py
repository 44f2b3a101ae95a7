"""The commands about users: adduser, modify, cpasswd, setadmin, disable, enable,
reset-token, delete, list, info."""

from typing import Any

import click

from pgusers._door import Codec, fold
from pgusers._results import OK
from pgusers._userspace import UserSpace
from pgusers.cli._group import NegativeAnswerError, main, with_userspace
from pgusers.cli._input import (
    extra_data_option,
    find,
    json_option,
    json_value,
    password_stdin_option,
    read_password,
    user_selector,
)
from pgusers.cli._output import escaped, print_json, print_table


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


@main.command(name="reset-token", short_help="Print a password-reset token for USER.")
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
