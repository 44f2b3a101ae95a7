"""Roles, permissions and organizations on both APIs: defining and granting roles,
check_session answering them in its one statement, organizations and their members,
the last owner, and the events every change writes."""

from typing import Any

import pytest

import pgusers
from pgusers import NOT_FOUND, OK, BadCallError


@pytest.fixture
def ada(usp: Any) -> int:
    return int(usp.create_user("ada", "ada-pw", "ada@example.com"))


@pytest.fixture
def bob(usp: Any) -> int:
    return int(usp.create_user("bob", "bob-pw", "bob@example.com"))


def test_a_role_grants_its_permissions(usp: Any, ada: int) -> None:
    usp.define_role("billing", ["invoice:read", "invoice:write"], description="Bills")
    usp.define_role("viewer", ["invoice:read", "report:read"])
    assert usp.grant_role(ada, "billing") == OK
    assert usp.grant_role(ada, "viewer") == OK
    assert usp.grant_role(ada, "viewer") == OK  # held already: nothing changes
    key = usp.login("ada", "ada-pw").key
    info = usp.check_session(key)
    assert info.roles == ("billing", "viewer")
    assert info.permissions == ("invoice:read", "invoice:write", "report:read")
    assert usp.has_permission(ada, "invoice:write")
    assert not usp.has_permission(ada, "admin:everything")
    assert usp.check_key(key) == info.checked()  # check_key is as it was
    roles = {role.name: role for role in usp.roles()}
    assert roles["billing"].permissions == ("invoice:read", "invoice:write")
    assert roles["billing"].description == "Bills"
    assert [g.role for g in usp.user_roles(ada)] == ["billing", "viewer"]
    assert [u.username for u in usp.users_with_role("viewer")] == ["ada"]


def test_a_change_is_seen_at_once(usp: Any, ada: int) -> None:
    usp.define_role("billing", ["invoice:read"])
    usp.grant_role(ada, "billing")
    key = usp.login("ada", "ada-pw").key
    assert usp.check_session(key).permissions == ("invoice:read",)
    usp.define_role("billing", ["invoice:read", "invoice:write"])
    assert usp.check_session(key).permissions == ("invoice:read", "invoice:write")
    assert usp.revoke_role(ada, "billing") == OK
    assert usp.revoke_role(ada, "billing") == NOT_FOUND
    assert usp.check_session(key).roles == ()
    usp.grant_role(ada, "billing")
    assert usp.delete_role("billing") == OK
    assert usp.check_session(key).permissions == ()
    assert usp.delete_role("billing") == NOT_FOUND


def test_unknown_users_and_roles_are_not_found(usp: Any, ada: int) -> None:
    usp.define_role("viewer", ["report:read"])
    assert usp.grant_role(10**6, "viewer") == NOT_FOUND
    assert usp.grant_role(ada, "nobody") == NOT_FOUND
    assert usp.grant_role(ada, "viewer", org="no-such-org") == NOT_FOUND


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda u: u.define_role("bad name", []), "letters, digits"),
        (lambda u: u.define_role("r", ["ok", "line\nbreak"]), "permission"),
        (lambda u: u.define_role("r", "invoice:read"), "a list of names"),
        (lambda u: u.define_role("r", ["p"] * 0 + [f"p{i}" for i in range(201)]), "at most 200"),
        (lambda u: u.define_role("x" * 65, []), "64"),
        (lambda u: u.grant_role(1, "r", org=True), "org must be"),
        (lambda u: u.create_org("Acme", slug="Not A Slug"), "slug must be"),
    ],
)
def test_bad_names_are_refused_and_change_nothing(usp: Any, call: Any, message: str) -> None:
    with pytest.raises(BadCallError, match=message):
        call(usp)
    assert usp.roles() == []


def test_a_role_in_an_organization_holds_there_only(usp: Any, ada: int) -> None:
    usp.define_role("owner", ["org:manage"])
    usp.define_role("editor", ["doc:write"])
    usp.define_role("reader", ["doc:read"])
    acme = usp.create_org("Acme Inc.")
    globex = usp.create_org("Globex", slug="globex")
    assert [o.slug for o in usp.orgs(ada)] == []
    assert usp.add_member(acme, ada, "editor") == OK
    assert usp.add_member("globex", ada, "reader") == OK
    usp.grant_role(ada, "reader")  # everywhere
    key = usp.login("ada", "ada-pw").key
    assert usp.check_session(key).permissions == ("doc:read",)
    assert usp.check_session(key, org=acme).permissions == ("doc:read", "doc:write")
    assert usp.check_session(key, org="acme-inc").roles == ("editor", "reader")
    assert usp.has_permission(ada, "doc:write", org=acme)
    assert not usp.has_permission(ada, "doc:write")
    assert not usp.has_permission(ada, "doc:write", org=globex)
    assert [o.slug for o in usp.orgs(ada)] == ["acme-inc", "globex"]
    members = list(usp.org_members(acme))
    assert [(m.username, m.roles) for m in members] == [("ada", ("editor",))]
    with pytest.raises(BadCallError, match="add_member first"):
        usp.grant_role(usp.create_user("eve", "pw", "eve@example.com"), "editor", org=acme)
    assert usp.remove_member(acme, ada) == OK
    assert usp.check_session(key, org=acme).permissions == ("doc:read",)
    assert usp.delete_org(globex) == OK
    assert [o.slug for o in usp.orgs(ada)] == []
    assert usp.delete_org(globex) == NOT_FOUND


def test_the_last_owner_stays(usp: Any, ada: int, bob: int) -> None:
    usp.define_role("owner", ["org:manage"])
    acme = usp.create_org("Acme")
    usp.add_member(acme, ada, "owner")
    with pytest.raises(BadCallError, match="last owner"):
        usp.remove_member(acme, ada)
    with pytest.raises(BadCallError, match="last owner"):
        usp.revoke_role(ada, "owner", org=acme)
    usp.add_member(acme, bob, "owner")
    assert usp.revoke_role(ada, "owner", org=acme) == OK
    assert usp.remove_member(acme, ada) == OK
    with pytest.raises(BadCallError, match="last owner"):
        usp.remove_member(acme, bob)
    assert [m.userid for m in usp.org_members(acme)] == [bob]


def test_a_slug_is_made_from_the_name_and_is_unique(usp: Any) -> None:
    assert usp.create_org("  Ünïcode & Co.  ") > 0
    with pytest.raises(BadCallError, match="already"):
        usp.create_org("Other", slug="n-code-co")
    with pytest.raises(BadCallError, match="already"):
        usp.create_org("Acme")  # "acme"
        usp.create_org("ACME!")


def test_every_change_writes_its_event(usp: Any, ada: int, bob: int) -> None:
    usp.define_role("owner", ["org:manage"])
    acme = usp.create_org("Acme")
    usp.add_member(acme, ada, "owner")
    usp.add_member(acme, bob, "owner")
    usp.remove_member(acme, bob)
    usp.define_role("viewer", ["x"])
    usp.grant_role(ada, "viewer")
    usp.revoke_role(ada, "viewer")
    usp.delete_role("viewer")
    usp.delete_org(acme)
    kinds = {e.kind for e in usp.events()}
    expected = {
        "role.defined",
        "role.deleted",
        "role.granted",
        "role.revoked",
        "org.created",
        "org.deleted",
        "org.member_added",
        "org.member_removed",
    }
    assert expected <= kinds, expected - kinds


def test_the_admin_flag_is_not_a_role(usp: Any, ada: int) -> None:
    usp.define_role("admin", ["everything"])
    usp.grant_role(ada, "admin")
    assert not usp.is_admin(ada)
    usp.set_admin(ada, True)
    assert usp.check_session(usp.login("ada", "ada-pw").key).admin is True
    assert [g.role for g in usp.user_roles(ada)] == ["admin"]


def test_check_session_is_one_statement_with_roles(usp: Any, ada: int) -> None:
    assert isinstance(usp.check_session("x" * 43), pgusers.SessionInfo)


# -- invitations ------------------------------------------------------------------------


def verified(usp: Any, userid: int) -> None:
    assert usp.verify_email(usp.issue_token(userid, "verify_email")) == OK


def test_an_invitation_is_accepted_by_its_verified_address(usp: Any, ada: int, bob: int) -> None:
    usp.define_role("editor", ["doc:write"])
    acme = usp.create_org("Acme")
    token = usp.issue_token(ada, "invite", org=acme, role="editor", email="BOB@example.com")
    bob_key = usp.login("bob", "bob-pw").key
    assert usp.accept_invite(token, bob_key) == pgusers.REJECTED  # not verified yet
    eve = usp.create_user("eve", "eve-pw", "eve@example.com")
    verified(usp, eve)
    assert usp.accept_invite(token, usp.login("eve", "eve-pw").key) == pgusers.REJECTED
    verified(usp, bob)
    assert usp.accept_invite(token, bob_key) == OK
    assert usp.check_session(bob_key, org=acme).permissions == ("doc:write",)
    assert usp.accept_invite(token, bob_key) == NOT_FOUND  # used
    assert [m.username for m in usp.org_members(acme)] == ["bob"]


def test_an_invitation_to_anyone_and_its_expiry(usp: Any, ada: int, bob: int, clock: Any) -> None:
    usp.define_role("reader", ["doc:read"])
    usp.create_org("Acme", slug="acme")
    open_link = usp.issue_token(ada, "invite", org="acme", role="reader", anyone=True)
    assert usp.accept_invite(open_link, usp.login("bob", "bob-pw").key) == OK
    late = usp.issue_token(ada, "invite", org="acme", role="reader", anyone=True, ttl=60)
    clock.advance(61)
    assert usp.accept_invite(late, usp.login("ada", "ada-pw").key) == pgusers.EXPIRED
    assert usp.accept_invite(late, "x" * 43) == pgusers.EXPIRED


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"role": "reader", "anyone": True}, "needs org="),
        ({"org": "acme", "anyone": True}, "needs role="),
        ({"org": "acme", "role": "reader"}, "email=.*or anyone=True"),
        ({"org": "nowhere", "role": "reader", "anyone": True}, "no such user"),
    ],
)
def test_a_bad_invitation_is_refused(
    usp: Any, ada: int, arguments: dict[str, Any], message: str
) -> None:
    usp.define_role("reader", ["doc:read"])
    usp.create_org("Acme", slug="acme")
    with pytest.raises(BadCallError, match=message):
        usp.issue_token(ada, "invite", **arguments)
    with pytest.raises(BadCallError, match="invite"):
        usp.issue_token(ada, "reset_password", org="acme")


def test_the_command_line_manages_roles_and_organizations(dsn: str, schema: str) -> None:
    import json

    from click.testing import CliRunner

    from pgusers.cli import main

    from .support import FAST_HASHER

    with pgusers.UserSpace(conninfo=dsn, schema=schema, hasher=FAST_HASHER) as usp:
        ada = usp.create_user("ada", "ada-pw", "ada@example.com")
    runner = CliRunner()

    def run(*args: str) -> Any:
        return runner.invoke(main, ["--dsn", dsn, "--schema", schema, *args])

    assert run("role", "define", "billing", "invoice:write", "invoice:read").exit_code == 0
    assert run("role", "define", "bad name", "x").exit_code == 2
    assert run("role", "grant", "ada", "billing").exit_code == 0
    assert run("role", "grant", "ada", "nobody").exit_code == 1
    listed = json.loads(run("role", "list", "--json").stdout)
    assert listed[0]["permissions"] == ["invoice:read", "invoice:write"]
    held = run("role", "list", "--user", "ada").stdout
    assert "billing" in held and "everywhere" in held
    assert run("org", "create", "Acme Inc.").exit_code == 0
    assert run("role", "define", "owner", "org:manage").exit_code == 0
    assert run("org", "add", "acme-inc", "ada", "owner").exit_code == 0
    members = json.loads(run("org", "list", "acme-inc", "--json").stdout)
    assert [(m["username"], m["roles"]) for m in members] == [("ada", ["owner"])]
    last = run("org", "remove", "acme-inc", "ada")
    assert last.exit_code == 2 and "last owner" in last.stderr
    assert run("role", "revoke", "ada", "billing").exit_code == 0
    assert run("role", "revoke", "ada", "billing").exit_code == 1
    assert run("role", "delete", "billing", "--yes").exit_code == 0
    with pgusers.UserSpace(conninfo=dsn, schema=schema, hasher=FAST_HASHER) as usp:
        assert [g.role for g in usp.user_roles(ada)] == ["owner"]


def test_racing_grants_to_one_user_are_all_answered(dsn: str, schema: str) -> None:
    """The sums check_session reads are made again under a lock on the user's row: of
    eight grants racing for one user, none is lost."""
    import threading

    from .support import FAST_HASHER

    with pgusers.UserSpace(conninfo=dsn, schema=schema, hasher=FAST_HASHER, pool_max=8) as usp:
        ada = usp.create_user("ada", "ada-pw", "ada@example.com")
        for n in range(8):
            usp.define_role(f"r{n}", [f"p{n}"])
        barrier = threading.Barrier(8)
        answers: list[object] = []

        def grant(n: int) -> None:
            barrier.wait()
            try:
                answers.append(usp.grant_role(ada, f"r{n}"))
            except pgusers.PgUsersError as error:  # a deadlock would be one
                answers.append(error)

        threads = [threading.Thread(target=grant, args=(n,)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert answers == [OK] * 8
        info = usp.check_session(usp.login("ada", "ada-pw").key)
        assert info.roles == tuple(f"r{n}" for n in range(8))
        assert info.permissions == tuple(f"p{n}" for n in range(8))


def test_names_come_in_one_order_whatever_the_database_s_collation(usp: Any, ada: int) -> None:
    usp.define_role("Zeta", ["b:x", "B:y", "a_z", "A-z", "a.b"])
    usp.define_role("alpha", ["a_z"])
    usp.grant_role(ada, "Zeta")
    usp.grant_role(ada, "alpha")
    info = usp.check_session(usp.login("ada", "ada-pw").key)
    assert info.roles == ("Zeta", "alpha") == tuple(sorted(info.roles))
    assert info.permissions == tuple(sorted({"b:x", "B:y", "a_z", "A-z", "a.b"}))


@pytest.mark.parametrize(("token", "key"), [("", "\x00"), ("t" * 43, "\x00"), ("\x00", "k" * 43)])
def test_what_cannot_be_a_token_or_a_key_is_answered_without_the_database(
    usp: Any, token: str, key: str
) -> None:
    try:
        status = usp.accept_invite(token, key)
    except BadCallError:
        return
    assert status in (NOT_FOUND, pgusers.REJECTED)
