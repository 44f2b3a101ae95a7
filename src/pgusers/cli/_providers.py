"""The commands of signing in through other sites: provider add/list/remove, and a
user's linked identities (identity list/remove)."""

import click

from pgusers._errors import BadCallError
from pgusers._results import LAST_METHOD, OK
from pgusers._userspace import UserSpace
from pgusers.cli._group import NegativeAnswerError, confirm_or_refuse, main, with_userspace
from pgusers.cli._input import find, json_option, read_password, user_selector
from pgusers.cli._output import print_json, print_table, timestamp

KINDS = ["oidc", "github", "google", "microsoft"]


@main.group()
def provider() -> None:
    """Sites users sign in through (OpenID Connect, GitHub)."""


@provider.command(name="add", short_help="Let users sign in through a provider.")
@click.argument("name")
@click.option("--kind", type=click.Choice(KINDS), required=True, help="The provider's kind.")
@click.option("--client-id", required=True, help="The client id the provider gave.")
@click.option(
    "--client-secret-stdin",
    is_flag=True,
    help="Read the client secret from the first line of standard input.",
)
@click.option("--discovery-url", help="OpenID Connect: the discovery document's URL.")
@click.option("--scope", "scopes", multiple=True, help="A scope to ask for (repeatable).")
@click.option(
    "--link-by-verified-email",
    is_flag=True,
    help="Link to an account whose verified address the provider verified too.",
)
@click.option("--trusted-for-mfa", is_flag=True, help="Ask for no second factor after it.")
@click.option("--no-signup", is_flag=True, help="Make no new users for it.")
@click.option("--keep-claim", "keep_claims", multiple=True, help="A profile claim to keep.")
@click.option("--keep-tokens", is_flag=True, help="Keep its tokens (sealed), refreshed.")
@with_userspace
def add(
    usp: UserSpace,
    name: str,
    kind: str,
    client_id: str,
    client_secret_stdin: bool,
    discovery_url: str | None,
    scopes: tuple[str, ...],
    link_by_verified_email: bool,
    trusted_for_mfa: bool,
    no_signup: bool,
    keep_claims: tuple[str, ...],
    keep_tokens: bool,
) -> None:
    """Let users sign in through provider NAME (or replace its settings): --kind oidc
    with its --discovery-url, github, or the presets google and microsoft. The
    client secret is read from standard input or asked for, and stored sealed under
    PGUSERS_SECRET_KEY. See the linking rules in the security guide before giving
    --link-by-verified-email."""
    secret = read_password(
        client_secret_stdin,
        "Client secret",
        confirm=False,
        what="client secret",
        option="--client-secret-stdin",
    )
    usp.add_identity_provider(
        name,
        kind=kind,
        client_id=client_id,
        client_secret=secret,
        discovery_url=discovery_url,
        scopes=scopes or None,
        link_by_verified_email=link_by_verified_email,
        trusted_for_mfa=trusted_for_mfa,
        allow_signup=not no_signup,
        keep_claims=keep_claims,
        keep_tokens=keep_tokens,
    )
    click.echo(f"users may sign in through {name!r}")


@provider.command(name="list")
@json_option
@with_userspace
def list_providers(usp: UserSpace, as_json: bool) -> None:
    """List the providers users may sign in through (never their secrets)."""
    providers = usp.identity_providers()
    if as_json:
        print_json([p._asdict() for p in providers])
        return
    print_table(
        ("NAME", "KIND", "CLIENT ID", "LINK BY EMAIL", "TRUSTED FOR MFA", "SIGN-UP", "USERS"),
        (
            (
                p.name,
                p.kind,
                p.client_id,
                "yes" if p.link_by_verified_email else "no",
                "yes" if p.trusted_for_mfa else "no",
                "yes" if p.allow_signup else "no",
                p.identities,
            )
            for p in providers
        ),
        empty="no identity providers",
    )


@provider.command(name="remove")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.argument("name")
@with_userspace
def remove(usp: UserSpace, name: str, yes: bool) -> None:
    """Stop signing in through provider NAME: its users' links to it go too."""
    linked = next((p.identities for p in usp.identity_providers() if p.name == name), None)
    if linked is None:
        raise NegativeAnswerError(f"no identity provider {name!r}")
    confirm_or_refuse(f"Remove {name!r} and the {linked} accounts linked through it?", yes)
    if usp.remove_identity_provider(name) != OK:
        raise NegativeAnswerError(f"no identity provider {name!r}")
    click.echo(f"removed {name!r}")


@main.group()
def identity() -> None:
    """Users' linked accounts at other sites."""


@identity.command(name="list")
@user_selector
@click.argument("user")
@json_option
@with_userspace
def list_identities(usp: UserSpace, user: str, by: str | None, as_json: bool) -> None:
    """List USER's accounts at other sites."""
    found = find(usp, user, by)
    identities = usp.identities(found["userid"])
    if as_json:
        print_json([i._asdict() for i in identities])
        return
    print_table(
        ("PROVIDER", "SUBJECT", "EMAIL", "VERIFIED", "LINKED", "LAST USED"),
        (
            (
                i.provider,
                i.subject,
                i.email or "",
                "yes" if i.email_verified else "no",
                timestamp(i.linked_at),
                timestamp(i.last_used_at) if i.last_used_at else "never",
            )
            for i in identities
        ),
        empty=f"{found['username']!r} has no linked accounts",
    )


@identity.command(name="remove")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@user_selector
@click.argument("user")
@click.argument("name", metavar="PROVIDER")
@with_userspace
def remove_identity(usp: UserSpace, user: str, by: str | None, name: str, yes: bool) -> None:
    """Unlink USER's account at PROVIDER (refused when it is their last way in)."""
    found = find(usp, user, by)
    confirm_or_refuse(f"Unlink {found['username']!r} from {name!r}?", yes)
    status = usp.remove_identity(found["userid"], name)
    if status == LAST_METHOD:
        raise BadCallError(
            f"it is the last way {found['username']!r} can sign in: give them a password first"
        )
    if status != OK:
        raise NegativeAnswerError(f"{found['username']!r} has no account at {name!r}")
    click.echo(f"unlinked {found['username']!r} from {name!r}")
