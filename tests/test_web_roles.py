"""Roles and organizations through the JSON API: administrators manage roles, grants
and organizations; a member whose roles there grant org:manage manages its members;
a session says its roles and permissions."""

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from starlette.testclient import TestClient

import pgusers

from .support import web_app


@pytest.fixture
def client(space: pgusers.UserSpace, dsn: str, schema: str) -> Iterator[TestClient]:
    with TestClient(web_app(dsn, schema)) as client:
        yield client


def csrf(page: str) -> str:
    import re

    found = re.search(r'name="csrf" value="([0-9a-f]+)"', page)
    assert found is not None, page
    return found.group(1)


@contextmanager
def console(dsn: str, schema: str) -> Iterator[TestClient]:
    """The console, logged in as root (password "pw")."""
    app = web_app(dsn, schema)
    with TestClient(app, base_url="http://127.0.0.1", follow_redirects=False) as client:
        form = client.get("/console/login").text
        client.post(
            "/console/login", data={"csrf": csrf(form), "username": "root", "password": "pw"}
        )
        yield client


def bearer(space: pgusers.UserSpace, name: str) -> dict[str, str]:
    return {"authorization": f"Bearer {space.login(name, 'pw').key}"}


def test_an_administrator_manages_roles_and_organizations(
    client: TestClient, space: pgusers.UserSpace
) -> None:
    space.create_user("root", "pw", "root@example.com", admin=True)
    ada = space.create_user("ada", "pw", "ada@example.com")
    root = bearer(space, "root")
    defined = client.put(
        "/v1/admin/roles/billing", json={"permissions": ["invoice:write"]}, headers=root
    )
    assert defined.status_code == 200, defined.text
    listed = client.get("/v1/admin/roles", headers=root).json()["roles"]
    assert [(r["name"], r["permissions"]) for r in listed] == [("billing", ["invoice:write"])]
    assert (
        client.post(
            f"/v1/admin/users/{ada}/roles", json={"role": "billing"}, headers=root
        ).status_code
        == 200
    )
    session = client.get("/v1/session", headers=bearer(space, "ada")).json()
    assert (session["roles"], session["permissions"]) == (["billing"], ["invoice:write"])
    held = client.get(f"/v1/admin/users/{ada}/roles", headers=root).json()["roles"]
    assert held == [{"role": "billing", "org_id": None, "org_slug": None}]
    refused = client.put("/v1/admin/roles/bad name", json={"permissions": []}, headers=root)
    assert refused.status_code == 400
    user = bearer(space, "ada")
    assert client.get("/v1/admin/roles", headers=user).status_code == 403
    made = client.post("/v1/admin/orgs", json={"name": "Acme"}, headers=root)
    assert made.status_code == 201
    assert client.delete(f"/v1/admin/users/{ada}/roles/billing", headers=root).status_code == 200
    assert client.delete(f"/v1/admin/users/{ada}/roles/billing", headers=root).status_code == 404
    assert client.delete("/v1/admin/orgs/acme", headers=root).status_code == 200


def test_an_organization_s_managers_manage_its_members(
    client: TestClient, space: pgusers.UserSpace
) -> None:
    space.define_role("owner", ["org:manage"])
    space.define_role("member", ["doc:read"])
    ada = space.create_user("ada", "pw", "ada@example.com")
    bob = space.create_user("bob", "pw", "bob@example.com")
    acme = space.create_org("Acme", slug="acme")
    space.add_member(acme, ada, "owner")
    space.add_member(acme, bob, "member")
    owner, member = bearer(space, "ada"), bearer(space, "bob")
    assert client.get("/v1/orgs", headers=member).json()["orgs"][0]["slug"] == "acme"
    assert client.get("/v1/orgs/acme/members", headers=member).status_code == 403
    listed = client.get("/v1/orgs/acme/members", headers=owner).json()["members"]
    assert [(m["username"], m["roles"]) for m in listed] == [
        ("ada", ["owner"]),
        ("bob", ["member"]),
    ]
    eve = space.create_user("eve", "pw", "eve@example.com")
    added = client.put(f"/v1/orgs/{acme}/members/{eve}", json={"role": "member"}, headers=owner)
    assert added.status_code == 200
    last = client.delete(f"/v1/orgs/acme/members/{ada}", headers=owner)
    assert last.status_code == 400 and "last owner" in last.json()["error"]["message"]
    assert client.delete(f"/v1/orgs/acme/members/{bob}", headers=owner).status_code == 200
    assert [m.username for m in space.org_members(acme)] == ["ada", "eve"]


def test_the_role_endpoints_are_in_the_openapi_document(client: TestClient) -> None:
    paths = client.get("/v1/openapi.json").json()["paths"]
    for path in (
        "/v1/admin/roles/{name}",
        "/v1/admin/users/{userid}/roles",
        "/v1/orgs/{org}/members",
    ):
        assert path in paths


def test_the_console_defines_grants_and_revokes_roles(
    space: pgusers.UserSpace, dsn: str, schema: str
) -> None:
    space.create_user("root", "pw", "root@example.com", admin=True)
    ada = space.create_user("ada", "pw", "ada@example.com")
    acme = space.create_org("Acme", slug="acme")
    space.define_role("member", ["doc:read"])
    space.add_member(acme, ada, "member")

    with console(dsn, schema) as c:
        page = c.get("/console/roles").text
        defined = c.post(
            "/console/roles",
            data={
                "csrf": csrf(page),
                "name": "billing",
                "permissions": "invoice:read invoice:write",
            },
        )
        assert defined.status_code == 303
        assert space.roles()[0].permissions == ("invoice:read", "invoice:write")
        bad = c.post("/console/roles", data={"csrf": csrf(page), "name": "bad name"})
        assert bad.status_code == 400 and [r.name for r in space.roles()] == ["billing", "member"]
        user_page = c.get(f"/console/users/{ada}").text
        assert "<code>member</code>" in user_page and "acme" in user_page
        for data in ({"role": "billing", "org": ""}, {"role": "member", "org": "acme"}):
            c.post(f"/console/users/{ada}/roles/grant", data={"csrf": csrf(user_page), **data})
        assert [(g.role, g.org_slug) for g in space.user_roles(ada)] == [
            ("billing", None),
            ("member", "acme"),
        ]
        c.post(
            f"/console/users/{ada}/roles/revoke",
            data={"csrf": csrf(user_page), "role": "member", "org": str(acme)},
        )
        assert [g.role for g in space.user_roles(ada)] == ["billing"]
        asked = c.post("/console/roles/billing/delete", data={"csrf": csrf(page)})
        assert "Are you sure?" in asked.text and space.user_roles(ada)
        c.post("/console/roles/billing/delete", data={"csrf": csrf(page), "confirmed": "yes"})
        assert space.user_roles(ada) == []


def test_the_console_manages_organizations_and_members(
    space: pgusers.UserSpace, dsn: str, schema: str
) -> None:
    space.create_user("root", "pw", "root@example.com", admin=True)
    ada = space.create_user("ada", "pw", "ada@example.com")
    space.define_role("owner", ["org:manage"])

    with console(dsn, schema) as c:
        listed = c.get("/console/orgs").text
        made = c.post("/console/orgs", data={"csrf": csrf(listed), "name": "Acme Inc."})
        assert made.status_code == 303
        org_path = made.headers["location"].split("?")[0]
        page = c.get(org_path).text
        assert "acme-inc" in page
        c.post(
            f"{org_path}/members", data={"csrf": csrf(page), "userid": str(ada), "role": "owner"}
        )
        (org,) = space.orgs(ada)
        assert [m.roles for m in space.org_members(org.org_id)] == [("owner",)]
        last = c.post(f"{org_path}/members/{ada}/remove", data={"csrf": csrf(page)})
        assert last.status_code == 400 and "last owner" in last.text
        asked = c.post(f"{org_path}/delete", data={"csrf": csrf(page)})
        assert "Are you sure?" in asked.text and space.orgs(ada)
        c.post(f"{org_path}/delete", data={"csrf": csrf(page), "confirmed": "yes"})
        assert space.orgs(ada) == []
        assert c.get(org_path).status_code == 404
