"""The commands of roles and organizations: role define/delete/grant/revoke/list,
org create/delete/add/remove/list."""

import click

from pgusers._results import OK
from pgusers._userspace import UserSpace
from pgusers.cli._group import NegativeAnswerError, confirm_or_refuse, main, with_userspace
from pgusers.cli._input import find, json_option, user_selector
from pgusers.cli._output import print_json, print_table, timestamp


def org_of(text: str | None) -> int | str | None:
    """An organization as typed: its id (digits) or its slug."""
    if text is None:
        return None
    return int(text) if text.isdigit() else text


@main.group()
def role() -> None:
    """Roles and the permissions they grant; who holds them."""


@role.command(name="define", short_help="Define a role, or change what it grants.")
@click.argument("name")
@click.argument("permissions", nargs=-1)
@click.option("--description", help="What the role is for.")
@with_userspace
def define(
    usp: UserSpace, name: str, permissions: tuple[str, ...], description: str | None
) -> None:
    """Define role NAME granting PERMISSIONS (names your application chooses, such as
    invoice:write), or change what it grants: its holders' sessions answer the new
    permissions at once."""
    usp.define_role(name, permissions, description=description)
    click.echo(f"role {name!r} grants {', '.join(sorted(set(permissions))) or 'nothing'}")


@role.command(name="delete")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.argument("name")
@with_userspace
def delete(usp: UserSpace, name: str, yes: bool) -> None:
    """Delete role NAME and every grant of it."""
    confirm_or_refuse(f"Delete the role {name!r} and every grant of it?", yes)
    if usp.delete_role(name) != OK:
        raise NegativeAnswerError(f"no role {name!r}")
    click.echo(f"deleted the role {name!r}")


@role.command(name="grant")
@click.option("--org", help="Only in this organization (its id or slug).")
@user_selector
@click.argument("user")
@click.argument("name")
@with_userspace
def grant(usp: UserSpace, user: str, by: str | None, name: str, org: str | None) -> None:
    """Give USER the role NAME, everywhere or in one organization."""
    found = find(usp, user, by)
    if usp.grant_role(found["userid"], name, org=org_of(org)) != OK:
        raise NegativeAnswerError(
            f"no role {name!r}" + (f" or organization {org!r}" if org else "")
        )
    where = f" in {org}" if org else ""
    click.echo(f"{found['username']!r} holds the role {name!r}{where}")


@role.command(name="revoke")
@click.option("--org", help="The organization it was granted in (its id or slug).")
@user_selector
@click.argument("user")
@click.argument("name")
@with_userspace
def revoke(usp: UserSpace, user: str, by: str | None, name: str, org: str | None) -> None:
    """Take the role NAME back from USER."""
    found = find(usp, user, by)
    if usp.revoke_role(found["userid"], name, org=org_of(org)) != OK:
        raise NegativeAnswerError(f"{found['username']!r} does not hold the role {name!r}")
    click.echo(f"{found['username']!r} no longer holds the role {name!r}")


@role.command(name="list")
@json_option
@click.option("--user", "user", help="The roles of this user instead.")
@with_userspace
def list_roles(usp: UserSpace, as_json: bool, user: str | None) -> None:
    """List the roles and what they grant, or the roles one user holds."""
    if user is not None:
        found = find(usp, user)
        grants = usp.user_roles(found["userid"])
        if as_json:
            print_json([g._asdict() for g in grants])
            return
        held = [(g.role, g.org_slug or "everywhere") for g in grants]
        print_table(("role", "where"), held, empty=f"{found['username']!r} holds no role")
        return
    roles = usp.roles()
    if as_json:
        print_json([r._asdict() for r in roles])
        return
    rows = [(r.name, " ".join(r.permissions), r.description or "") for r in roles]
    print_table(("role", "permissions", "description"), rows, empty="no roles")


@main.group()
def org() -> None:
    """Organizations and their members."""


@org.command(name="create")
@click.option("--slug", help="Its name in URLs and commands (made from NAME if not given).")
@click.argument("name")
@with_userspace
def create(usp: UserSpace, name: str, slug: str | None) -> None:
    """Create organization NAME."""
    org_id = usp.create_org(name, slug=slug)
    click.echo(f"created organization {name!r} with id {org_id}")


@org.command(name="delete", short_help="Delete an organization and its memberships.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.argument("org_name", metavar="ORG")
@with_userspace
def delete_org(usp: UserSpace, org_name: str, yes: bool) -> None:
    """Delete ORG (its id or slug), its memberships and the roles held there."""
    confirm_or_refuse(f"Delete the organization {org_name!r} and its memberships?", yes)
    if usp.delete_org(org_of(org_name) or org_name) != OK:
        raise NegativeAnswerError(f"no organization {org_name!r}")
    click.echo(f"deleted the organization {org_name!r}")


@org.command(name="add")
@user_selector
@click.argument("org_name", metavar="ORG")
@click.argument("user")
@click.argument("name", metavar="ROLE")
@with_userspace
def add(usp: UserSpace, org_name: str, user: str, by: str | None, name: str) -> None:
    """Make USER a member of ORG with ROLE there."""
    found = find(usp, user, by)
    if usp.add_member(org_of(org_name) or org_name, found["userid"], name) != OK:
        raise NegativeAnswerError(f"no organization {org_name!r} or role {name!r}")
    click.echo(f"{found['username']!r} is a member of {org_name} as {name!r}")


@org.command(name="remove")
@user_selector
@click.argument("org_name", metavar="ORG")
@click.argument("user")
@with_userspace
def remove(usp: UserSpace, org_name: str, user: str, by: str | None) -> None:
    """Remove USER from ORG, with the roles they hold there."""
    found = find(usp, user, by)
    if usp.remove_member(org_of(org_name) or org_name, found["userid"]) != OK:
        raise NegativeAnswerError(f"{found['username']!r} is not a member of {org_name!r}")
    click.echo(f"{found['username']!r} is no longer a member of {org_name}")


@org.command(name="list")
@json_option
@click.argument("org_name", metavar="ORG")
@with_userspace
def members(usp: UserSpace, org_name: str, as_json: bool) -> None:
    """List the members of ORG and the roles they hold there."""
    found = list(usp.org_members(org_of(org_name) or org_name))
    if as_json:
        print_json([m._asdict() for m in found])
        return
    rows = [(m.userid, m.username, " ".join(m.roles), timestamp(m.joined_at)) for m in found]
    print_table(("userid", "username", "roles", "joined"), rows, empty="no members")
