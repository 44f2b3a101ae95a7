"""Roles and organizations through the JSON API: administrators manage roles, grants
and organizations; a member whose roles there grant org:manage manages its members;
a session says its roles and permissions."""

from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient

import pgusers

from .support import web_app


@pytest.fixture
def client(space: pgusers.UserSpace, dsn: str, schema: str) -> Iterator[TestClient]:
    with TestClient(web_app(dsn, schema)) as client:
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
