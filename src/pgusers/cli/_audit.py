"""``pgusers events``: the audit trail."""

import itertools
import json

import click

from pgusers._door import KINDS
from pgusers._userspace import UserSpace
from pgusers.cli._group import main, with_userspace
from pgusers.cli._input import find, json_option, moment, user_selector
from pgusers.cli._output import print_json, print_table, timestamp


@main.command(short_help="Show the audit trail, newest first.")
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
