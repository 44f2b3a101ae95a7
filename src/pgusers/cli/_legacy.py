"""``pgusers import-legacy``: a pgusers 0.9 database, imported."""

import click

from pgusers._door import RESOLUTIONS, SESSION_MODES
from pgusers._errors import LegacyImportError
from pgusers._userspace import UserSpace
from pgusers.cli._group import confirm_or_refuse, main, with_userspace
from pgusers.cli._input import json_option
from pgusers.cli._output import Progress, escaped, print_json, print_table


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
        found = refused.report
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
