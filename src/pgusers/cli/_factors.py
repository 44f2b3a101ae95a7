"""The commands of second factors: mfa list, mfa reset, mfa admins, passkey setup,
passkey clear-flag, rotate-secret-key."""

import click

from pgusers import _door as door
from pgusers._door import Core
from pgusers._results import OK
from pgusers._userspace import UserSpace
from pgusers.cli._group import NegativeAnswerError, confirm_or_refuse, main, with_userspace
from pgusers.cli._input import DASH_ARGUMENT, find, json_option, user_selector
from pgusers.cli._output import Progress, print_json, print_table, timestamp


@main.group()
def mfa() -> None:
    """A user's second factors: list them, or remove them all."""


@mfa.command(name="list")
@json_option
@user_selector
@click.argument("user")
@with_userspace
def list_factors(usp: UserSpace, user: str, by: str | None, as_json: bool) -> None:
    """List USER's second factors and how many recovery codes remain."""
    found = find(usp, user, by)
    factors, codes = usp.factors(found["userid"])
    if as_json:
        print_json({"factors": [f._asdict() for f in factors], "recovery_codes": codes})
        return
    rows = [
        (
            f.factor_id,
            f.kind,
            f.label or "",
            timestamp(f.created_at),
            "never" if f.last_used_at is None else timestamp(f.last_used_at),
            "FLAGGED as cloned" if f.cloned else ("yes" if f.confirmed else "not yet"),
        )
        for f in factors
    ]
    print_table(
        ("factor", "kind", "label", "created", "last used", "usable"),
        rows,
        empty=f"{found['username']!r} has no second factor",
    )
    click.echo(f"recovery codes left: {codes}")


@mfa.command()
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@user_selector
@click.argument("user")
@with_userspace
def reset(usp: UserSpace, user: str, by: str | None, yes: bool) -> None:
    """Remove all of USER's second factors and recovery codes.

    For a user who lost them: their next login needs the password only."""
    found = find(usp, user, by)
    confirm_or_refuse(
        f"Remove every second factor of {found['username']!r}? Their logins will need "
        "the password only.",
        yes,
    )
    removed = door.run(usp, Core.reset_factors, found["userid"])
    click.echo(
        f"removed {removed} second factors of {found['username']!r}, and their recovery codes"
    )


@mfa.command(name="admins")
@click.argument("required", required=False, type=click.Choice(["required", "optional"]))
@with_userspace
def admins(usp: UserSpace, required: str | None) -> None:
    """Show, or set, whether every administrator needs a second factor.

    With "required", an administrator without one is sent to add one before anything
    else in the console and the account pages, and the API refuses their session
    the admin endpoints."""
    if required is not None:
        usp.set_login_policy(admins_need_mfa=required == "required")
    state = "required" if usp.settings().admins_need_mfa else "optional"
    click.echo(f"a second factor is {state} for administrators")


@main.group()
def passkey() -> None:
    """Passkeys: their site, and flagged copies."""


@passkey.command(name="setup", short_help="Bind passkeys to a site's domain and pages.")
@click.argument("rp_id")
@click.argument("name")
@click.argument("origins", nargs=-1, required=True)
@with_userspace
def passkey_setup(usp: UserSpace, rp_id: str, name: str, origins: tuple[str, ...]) -> None:
    """Bind passkeys to RP_ID (the site's domain), shown to users as NAME, for pages
    served from ORIGINS (https://RP_ID or below it; http://localhost while
    developing, with RP_ID localhost).

    Passkeys registered under one RP_ID work for it only: changing it later leaves
    the registered ones unusable."""
    usp.set_webauthn(rp_id, name, origins)
    click.echo(f"passkeys are bound to {rp_id.lower()} for {', '.join(origins)}")


@passkey.command(
    name="clear-flag",
    short_help="Let a passkey flagged as cloned sign in.",
    context_settings=DASH_ARGUMENT,
)
@user_selector
@click.argument("user")
@click.argument("factor_id")
@with_userspace
def clear_flag(usp: UserSpace, user: str, by: str | None, factor_id: str) -> None:
    """Let USER's passkey FACTOR_ID sign in again after it was flagged as cloned (its
    signature count went back). Do it once the user is known to hold the only copy."""
    found = find(usp, user, by)
    if usp.clear_passkey_flag(found["userid"], factor_id) != OK:
        raise NegativeAnswerError(f"{found['username']!r} has no flagged passkey {factor_id!r}")
    click.echo(f"the passkey {factor_id} of {found['username']!r} signs in again")


@main.command(
    name="rotate-secret-key", short_help="Seal stored secrets under the current secret key."
)
@with_userspace
def rotate_secret_key(usp: UserSpace) -> None:
    """Seal every stored secret again under the first key of PGUSERS_SECRET_KEY.

    Give the new key first and the old ones after it, separated by spaces
    (PGUSERS_SECRET_KEY="NEW OLD"); once this is done the old keys can go."""
    with Progress("resealed", "secrets") as progress:
        count = door.run(usp, Core.reseal_secrets, progress.update)
    click.echo(f"resealed {count:,} secrets under the current key")
