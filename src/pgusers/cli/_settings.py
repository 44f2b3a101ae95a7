"""The commands that read and change the userspace's settings: ttl, maxage,
maxsessions, retention, throttle."""

import datetime as dt

import click

from pgusers._errors import BadCallError
from pgusers._settings import setting
from pgusers._userspace import UserSpace
from pgusers.cli._group import Group, main, with_userspace
from pgusers.cli._input import find, json_option, read_setting, user_selector
from pgusers.cli._output import print_json, print_table, timestamp


@main.command()
@click.argument("seconds", required=False)
@with_userspace
def ttl(usp: UserSpace, seconds: str | None) -> None:
    """Show the session time to live, or set it to SECONDS."""
    if seconds is not None:
        usp.set_session_TTL(read_setting("session_ttl", seconds))
    click.echo(f"session TTL: {usp.ttl:g} s ({dt.timedelta(seconds=usp.ttl)})")


@main.command(short_help="Set when sessions end after login (SECONDS or none).")
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


@main.command(name="maxsessions", short_help="Set the sessions one user may have (COUNT or none).")
@click.argument("count", required=False)
@with_userspace
def max_sessions(usp: UserSpace, count: str | None) -> None:
    """Set how many sessions one user may have (COUNT, or "none")."""
    value = read_setting("sessions_per_user", count)
    usp.set_sessions_per_user(value)
    if value is None:
        click.echo(setting("sessions_per_user").without_value)
    else:
        click.echo(f"a user may have at most {value} sessions at once")


@main.command(short_help="Keep events DAYS days (default 90), or none: forever.")
@click.argument("days", required=False)
@with_userspace
def retention(usp: UserSpace, days: str | None) -> None:
    """Keep events DAYS days (default 90), or forever with "none"."""
    value = read_setting("event_retention", days)
    usp.set_event_retention(value)
    click.echo("events are kept forever" if value is None else f"events are kept {value:g} days")


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
