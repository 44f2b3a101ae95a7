"""Roles, permissions and organizations.

A role is a name and the permissions it grants: plain strings the application
chooses (``"invoice:write"``). A user holds a role everywhere, or in one
organization they are a member of. ``check_session`` answers a user's roles and
permissions in the statement that checks the session (see
:mod:`pgusers._core.sessions`); every change here writes its event in its own
statement, and the events of changes that alter those answers make processes with
a session cache forget what they kept. The admin flag is not a role: no role grants
it.
"""

import re
import time
from collections.abc import Iterable
from typing import Any, Final

from psycopg import errors as pgerrors

from pgusers._core import checks, identities, keys, recording
from pgusers._core.base import LOGS, Part, Query
from pgusers._core.logins import LIVE_SESSION
from pgusers._core.retries import retry_safe
from pgusers._core.steps import Execute, Fetch, Operation
from pgusers._errors import BadCallError
from pgusers._results import (
    EXPIRED,
    NOT_FOUND,
    OK,
    REJECTED,
    Member,
    Org,
    Role,
    RoleGrant,
    Status,
    UserRow,
)

NAME_SHAPE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:/*-]{0,63}")
"""A role's or a permission's name: letters, digits and ``_ . : / * -``, 64 at most,
so that names read alike in logs, URLs and the space-separated answers."""
MAX_PERMISSIONS: Final = 200
MAX_DESCRIPTION: Final = 500
SLUG_SHAPE: Final = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
OWNER: Final = "owner"
"""The role whose last holder in an organization can neither leave it nor lose it."""

ORG_OF: Final = (
    "(SELECT o.org_id FROM {schema}.orgs o WHERE o.org_id = %(org_id)s OR o.slug = %(org_slug)s)"
)
"""The organization named by id or by slug (NULL for none)."""

DEFINE_ROLE: Final = """
    WITH defined AS (
        INSERT INTO {schema}.roles AS r (name, permissions, permission_text, description,
                                         created_at)
        VALUES (%(name)s, %(permissions)s, %(permission_text)s, %(description)s,
                to_timestamp(%(now)s))
        ON CONFLICT (name) DO UPDATE SET
            permissions = excluded.permissions,
            permission_text = excluded.permission_text,
            description = excluded.description
        RETURNING name
    ), happened AS (
        SELECT 'role.defined' AS kind, NULL::bigint AS userid, NULL::text AS session_id,
               jsonb_build_object('role', name, 'permissions', %(permissions)s::text[]) AS detail
        FROM defined
    ), {log}
    SELECT {logged}
"""

DELETE_ROLE: Final = """
    WITH deleted AS (
        DELETE FROM {schema}.roles WHERE name = %(name)s RETURNING name
    ), happened AS (
        SELECT 'role.deleted' AS kind, NULL::bigint AS userid, NULL::text AS session_id,
               jsonb_build_object('role', name) AS detail
        FROM deleted
    ), {log}
    SELECT name, {logged} FROM deleted
"""

LIST_ROLES: Final = """
    SELECT name, permissions, description, extract(epoch FROM created_at)::float8
    FROM {schema}.roles ORDER BY name
"""

# A grant in an organization needs the user to be a member of it (its foreign key);
# granting what is held already changes nothing and is OK.
GRANT_ROLE: Final = """
    WITH target AS (
        SELECT u.userid, r.name AS role, {org} AS org_id
        FROM {schema}.users u CROSS JOIN {schema}.roles r
        WHERE u.userid = %(userid)s AND r.name = %(role)s
          AND (%(org_given)s = false OR {org} IS NOT NULL)
    ), granted AS (
        INSERT INTO {schema}.grants (userid, role, org_id, granted_at)
        SELECT userid, role, org_id, to_timestamp(%(now)s) FROM target
        ON CONFLICT DO NOTHING
        RETURNING userid, role, org_id
    ), happened AS (
        SELECT 'role.granted' AS kind, userid, NULL::text AS session_id,
               jsonb_strip_nulls(jsonb_build_object('role', role, 'org_id', org_id)) AS detail
        FROM granted
    ), {log}
    SELECT (SELECT count(*) FROM target), {logged}
"""

# The last owner of an organization keeps the role there (and stays a member).
LAST_OWNER: Final = """(
        %(role)s = 'owner' AND %(org_given)s AND NOT EXISTS (
            SELECT 1 FROM {schema}.grants o
            WHERE o.org_id = g.org_id AND o.role = 'owner' AND o.userid <> g.userid))"""

REVOKE_ROLE: Final = """
    WITH revoked AS (
        DELETE FROM {schema}.grants g
        WHERE g.userid = %(userid)s AND g.role = %(role)s
          AND g.org_id IS NOT DISTINCT FROM (CASE WHEN %(org_given)s THEN {org} END)
          AND NOT {last_owner}
        RETURNING userid, role, org_id
    ), kept AS (
        SELECT 1 FROM {schema}.grants g
        WHERE g.userid = %(userid)s AND g.role = %(role)s
          AND g.org_id IS NOT DISTINCT FROM (CASE WHEN %(org_given)s THEN {org} END)
          AND {last_owner}
    ), happened AS (
        SELECT 'role.revoked' AS kind, userid, NULL::text AS session_id,
               jsonb_strip_nulls(jsonb_build_object('role', role, 'org_id', org_id)) AS detail
        FROM revoked
    ), {log}
    SELECT (SELECT count(*) FROM revoked), EXISTS (SELECT 1 FROM kept), {logged}
"""

USER_ROLES: Final = """
    SELECT g.role, g.org_id, o.slug
    FROM {schema}.grants g LEFT JOIN {schema}.orgs o ON o.org_id = g.org_id
    WHERE g.userid = %(userid)s
    ORDER BY g.org_id NULLS FIRST, g.role
"""

USERS_WITH_ROLE: Final = """
    SELECT u.userid, u.username, u.email, u.admin
    FROM {schema}.grants g JOIN {schema}.users u ON u.userid = g.userid
    WHERE g.role = %(role)s
      AND g.org_id IS NOT DISTINCT FROM (CASE WHEN %(org_given)s THEN {org} END)
    ORDER BY u.userid
"""

# Held everywhere, or in the organization asked about.
HAS_PERMISSION: Final = """
    SELECT EXISTS (
        SELECT 1 FROM {schema}.grants g JOIN {schema}.roles r ON r.name = g.role
        WHERE g.userid = %(userid)s AND %(permission)s = ANY (r.permissions)
          AND (g.org_id IS NULL OR (%(org_given)s AND g.org_id = {org})))
"""

CREATE_ORG: Final = """
    WITH created AS (
        INSERT INTO {schema}.orgs (slug, name, created_at)
        VALUES (%(slug)s, %(name)s, to_timestamp(%(now)s))
        RETURNING org_id, slug, name
    ), happened AS (
        SELECT 'org.created' AS kind, NULL::bigint AS userid, NULL::text AS session_id,
               jsonb_build_object('org_id', org_id, 'slug', slug, 'name', name) AS detail
        FROM created
    ), {log}
    SELECT org_id, {logged} FROM created
"""

DELETE_ORG: Final = """
    WITH deleted AS (
        DELETE FROM {schema}.orgs WHERE org_id = {org} RETURNING org_id, slug
    ), happened AS (
        SELECT 'org.deleted' AS kind, NULL::bigint AS userid, NULL::text AS session_id,
               jsonb_build_object('org_id', org_id, 'slug', slug) AS detail
        FROM deleted
    ), {log}
    SELECT org_id, {logged} FROM deleted
"""

ALL_ORGS: Final = """
    SELECT o.org_id, o.slug, o.name, extract(epoch FROM o.created_at)::float8
    FROM {schema}.orgs o WHERE o.org_id > %(after)s
    ORDER BY o.org_id LIMIT %(limit)s
"""

ORG_BY: Final = """
    SELECT o.org_id, o.slug, o.name, extract(epoch FROM o.created_at)::float8
    FROM {schema}.orgs o WHERE o.org_id = {org}
"""

ORGS_OF: Final = """
    SELECT o.org_id, o.slug, o.name, extract(epoch FROM o.created_at)::float8
    FROM {schema}.members m JOIN {schema}.orgs o ON o.org_id = m.org_id
    WHERE m.userid = %(userid)s
    ORDER BY o.org_id
"""

ORG_MEMBERS: Final = """
    SELECT m.userid, u.username,
           ARRAY(SELECT g.role FROM {schema}.grants g
                 WHERE g.org_id = m.org_id AND g.userid = m.userid ORDER BY g.role),
           extract(epoch FROM m.joined_at)::float8
    FROM {schema}.members m JOIN {schema}.users u ON u.userid = m.userid
    WHERE m.org_id = {org}
    ORDER BY m.userid
"""

# Joining with a role: the membership and the grant in one statement.
ADD_MEMBER: Final = """
    WITH target AS (
        SELECT {org} AS org_id, u.userid, r.name AS role
        FROM {schema}.users u CROSS JOIN {schema}.roles r
        WHERE u.userid = %(userid)s AND r.name = %(role)s AND {org} IS NOT NULL
    ), joined AS (
        INSERT INTO {schema}.members (org_id, userid, joined_at)
        SELECT org_id, userid, to_timestamp(%(now)s) FROM target
        ON CONFLICT DO NOTHING
        RETURNING org_id, userid
    ), granted AS (
        INSERT INTO {schema}.grants (userid, role, org_id, granted_at)
        SELECT userid, role, org_id, to_timestamp(%(now)s) FROM target
        ON CONFLICT DO NOTHING
        RETURNING userid, role, org_id
    ), happened AS (
        SELECT 'org.member_added' AS kind, userid, NULL::text AS session_id,
               jsonb_build_object('org_id', org_id) AS detail
        FROM joined
        UNION ALL
        SELECT 'role.granted', userid, NULL, jsonb_build_object('role', role, 'org_id', org_id)
        FROM granted
    ), {log}
    SELECT (SELECT count(*) FROM target), {logged}
"""

# Leaving ends the member's grants there (their foreign key), unless they are its
# last owner.
REMOVE_MEMBER: Final = """
    WITH last AS (
        SELECT 1 FROM {schema}.grants g
        WHERE g.org_id = {org} AND g.userid = %(userid)s AND g.role = 'owner'
          AND NOT EXISTS (SELECT 1 FROM {schema}.grants o
                          WHERE o.org_id = g.org_id AND o.role = 'owner'
                            AND o.userid <> g.userid)
    ), removed AS (
        DELETE FROM {schema}.members m
        WHERE m.org_id = {org} AND m.userid = %(userid)s AND NOT EXISTS (SELECT 1 FROM last)
        RETURNING org_id, userid
    ), happened AS (
        SELECT 'org.member_removed' AS kind, userid, NULL::text AS session_id,
               jsonb_build_object('org_id', org_id) AS detail
        FROM removed
    ), {log}
    SELECT (SELECT count(*) FROM removed), EXISTS (SELECT 1 FROM last), {logged}
"""


INVITE_LIFETIME: Final = 7 * 86400.0
"""How long an invitation lives unless told otherwise."""
INVITES_PER_USER: Final = 1000
"""Live invitations one user may have made: more are refused until some are used."""

ISSUE_INVITE: Final = """
    WITH target AS (
        SELECT u.userid, {org} AS org_id, r.name AS role
        FROM {schema}.users u CROSS JOIN {schema}.roles r
        WHERE u.userid = %(userid)s AND r.name = %(role)s AND {org} IS NOT NULL
    ), room AS (
        SELECT count(*) < %(most)s AS room FROM {schema}.tokens k
        WHERE k.userid = %(userid)s AND k.purpose = 'invite'
          AND k.expires_at > to_timestamp(%(now)s)
    ), issued AS (
        INSERT INTO {schema}.tokens (digest, userid, purpose, email, email_key, expires_at,
                                     org_id, role, open_to_anyone)
        SELECT %(digest)s, t.userid, 'invite', %(email)s, %(email_key)s,
               to_timestamp(%(now)s) + make_interval(secs => %(ttl)s), t.org_id, t.role,
               %(anyone)s
        FROM target t, room WHERE room.room
        RETURNING userid, email, org_id, role, expires_at
    ), happened AS (
        SELECT 'token.issued' AS kind, userid, NULL::text AS session_id,
               jsonb_strip_nulls(jsonb_build_object(
                   'purpose', 'invite', 'email', email, 'org_id', org_id, 'role', role,
                   'expires_at', extract(epoch FROM expires_at)::float8)) AS detail
        FROM issued
    ), {log}
    SELECT EXISTS (SELECT 1 FROM target), (SELECT room FROM room),
           EXISTS (SELECT 1 FROM issued), {logged}
"""

# Accepting: the invitation is taken (deleted) by the live session's user when it is
# open to anyone or names their verified address; they join with its role, in the
# same statement.
ACCEPT_INVITE: Final = """
    WITH who AS (
        SELECT s.userid, u.email_key, u.email_verified
        FROM {schema}.sessions s
        JOIN {schema}.users u ON u.userid = s.userid
        CROSS JOIN {settings} t
        WHERE {live}
    ), invite AS (
        SELECT k.digest, k.org_id, k.role, k.email_key, k.open_to_anyone,
               k.expires_at > to_timestamp(%(now)s) AS live
        FROM {schema}.tokens k
        WHERE k.digest = %(digest)s AND k.purpose = 'invite'
    ), usable AS (
        SELECT i.*, w.userid AS accepter FROM invite i, who w
        WHERE i.live AND (i.open_to_anyone OR (w.email_verified AND w.email_key = i.email_key))
    ), used AS (
        DELETE FROM {schema}.tokens k USING usable u
        WHERE k.digest = u.digest
        RETURNING u.org_id, u.role, u.accepter
    ), joined AS (
        INSERT INTO {schema}.members (org_id, userid, joined_at)
        SELECT org_id, accepter, to_timestamp(%(now)s) FROM used
        ON CONFLICT DO NOTHING
        RETURNING org_id, userid
    ), granted AS (
        INSERT INTO {schema}.grants (userid, role, org_id, granted_at)
        SELECT accepter, role, org_id, to_timestamp(%(now)s) FROM used
        ON CONFLICT DO NOTHING
        RETURNING userid, role, org_id
    ), happened AS (
        SELECT 'token.used' AS kind, accepter AS userid, NULL::text AS session_id,
               jsonb_build_object('purpose', 'invite', 'org_id', org_id) AS detail
        FROM used
        UNION ALL
        SELECT 'org.member_added', userid, NULL, jsonb_build_object('org_id', org_id)
        FROM joined
        UNION ALL
        SELECT 'role.granted', userid, NULL, jsonb_build_object('role', role, 'org_id', org_id)
        FROM granted
    ), {log}
    SELECT EXISTS (SELECT 1 FROM who), EXISTS (SELECT 1 FROM invite),
           (SELECT live FROM invite), EXISTS (SELECT 1 FROM used), {logged}
"""


def name(value: object, what: str) -> str:
    """A role's or a permission's name, checked."""
    text = checks.text(value, what, 64)
    if not NAME_SHAPE.fullmatch(text):
        raise BadCallError(
            f"{what} {text!r} must be letters, digits and _ . : / * - (starting with a letter "
            "or digit), 64 at most"
        )
    return text


def permission_names(permissions: object) -> list[str]:
    if isinstance(permissions, str) or not isinstance(permissions, Iterable):
        raise BadCallError("permissions must be a list of names, such as ['invoice:write']")
    listed: list[str] = []
    for permission in permissions:
        if len(listed) >= MAX_PERMISSIONS:
            raise BadCallError(f"a role grants at most {MAX_PERMISSIONS} permissions")
        listed.append(name(permission, "permission"))
    return sorted(set(listed))


def _answered(status: Status) -> Operation[Status]:
    """An answer known without asking the database."""
    return status
    yield  # a generator: an operation that sends no statement


def _grant_params(userid: object, role: object, org: object) -> dict[str, Any]:
    """The parameters of a grant or a revocation, checked."""
    return {
        "userid": checks.userid(userid),
        "role": name(role, "role"),
        **checks.org(org),
        **recording.parameters(time.time()),
    }


def slug_of(value: object, org_name: str) -> str:
    """An organization's slug: the one given, checked, or one made from its name."""
    if value is None:
        made = re.sub(r"[^a-z0-9]+", "-", org_name.lower()).strip("-")[:63].strip("-")
        return made or "org"
    text = checks.text(value, "slug", 63)
    if not SLUG_SHAPE.fullmatch(text):
        raise BadCallError("slug must be lower-case letters, digits and hyphens, 63 at most")
    return text


class RolesPart(Part):
    """The operations on roles, grants and organizations."""

    def _sql_org(self, template: str, **fragments: str) -> str:
        return self._sql(template.replace("{org}", ORG_OF), **fragments)

    # -- roles -------------------------------------------------------------------------

    @retry_safe
    def define_role(
        self, role: object, permissions: object, description: object
    ) -> Operation[None]:
        listed = permission_names(permissions)
        params = {
            "name": name(role, "role"),
            "permissions": listed,
            "permission_text": " ".join(listed),
            "description": None
            if description is None
            else checks.label(description, "description", MAX_DESCRIPTION),
            **recording.parameters(time.time()),
        }
        return self._change(self._sql(DEFINE_ROLE, **LOGS), params)

    def delete_role(self, role: object) -> Operation[Status]:
        params = {"name": name(role, "role"), **recording.parameters(time.time())}
        return self._status_of(self._sql(DELETE_ROLE, **LOGS), params)

    @retry_safe
    def roles(self) -> Operation[list[Role]]:
        rows = yield Execute(self._sql(LIST_ROLES), {}, Fetch.ALL)
        return [Role(n, tuple(p), d, at) for n, p, d, at in rows]

    @retry_safe
    def grant_role(self, userid: object, role: object, org: object) -> Operation[Status]:
        return self._grant(_grant_params(userid, role, org))

    def _grant(self, params: dict[str, Any]) -> Operation[Status]:
        try:
            row = yield from self._logged(self._sql_org(GRANT_ROLE, **LOGS), params)
        except pgerrors.ForeignKeyViolation:  # in an organization the user is not in
            raise BadCallError(
                "a role in an organization is for its members: add_member first"
            ) from None
        assert row is not None  # the statement always returns one row
        return OK if row[0] else NOT_FOUND

    def revoke_role(self, userid: object, role: object, org: object) -> Operation[Status]:
        return self._revoke(_grant_params(userid, role, org))

    def _revoke(self, params: dict[str, Any]) -> Operation[Status]:
        query = self._sql_org(REVOKE_ROLE, last_owner=LAST_OWNER, **LOGS)
        row = yield from self._logged(query, params)
        assert row is not None  # the statement always returns one row
        revoked, last_owner = row
        if last_owner:
            raise BadCallError("an organization's last owner keeps the role: make another first")
        return OK if revoked else NOT_FOUND

    @retry_safe
    def user_roles(self, userid: object) -> Operation[list[RoleGrant]]:
        rows = yield Execute(self._sql(USER_ROLES), {"userid": checks.userid(userid)}, Fetch.ALL)
        return [RoleGrant._make(row) for row in rows]

    @retry_safe
    def users_with_role(self, role: object, org: object) -> Query[UserRow]:
        params = {"role": name(role, "role"), **checks.org(org)}
        return Query(self._sql_org(USERS_WITH_ROLE), params, UserRow._make)

    @retry_safe
    def has_permission(self, userid: object, permission: object, org: object) -> Operation[bool]:
        params = {
            "userid": checks.userid(userid),
            "permission": name(permission, "permission"),
            **checks.org(org),
        }
        row = yield Execute(self._sql_org(HAS_PERMISSION), params)
        return bool(row and row[0])

    # -- invitations -------------------------------------------------------------------

    def issue_invite(  # noqa: PLR0917 - the facades pass them in order
        self,
        userid: object,
        org: object,
        role: object,
        email: object,
        anyone: object,
        ttl: object,
    ) -> Operation[str]:
        scope = checks.org(org)
        if not scope["org_given"]:
            raise BadCallError("an invitation needs org= (an organization's id or slug)")
        if role is None:
            raise BadCallError("an invitation needs role= (the role it gives there)")
        open_to_anyone = checks.flag(anyone, "anyone")
        if email is None and not open_to_anyone:
            raise BadCallError(
                "an invitation needs email= (accepted by that verified address), or anyone=True"
            )
        address, address_key = (None, None) if email is None else identities.email(email)
        token = keys.new_token()
        params = {
            "userid": checks.userid(userid),
            "role": name(role, "role"),
            **scope,
            "email": address,
            "email_key": address_key,
            "anyone": open_to_anyone,
            "digest": keys.digest(token),
            "ttl": INVITE_LIFETIME if ttl is None else checks.ttl(ttl),
            "most": INVITES_PER_USER,
            **recording.parameters(time.time()),
        }
        return self._issue_invite(token, params)

    def _issue_invite(self, token: str, params: dict[str, Any]) -> Operation[str]:
        row = yield from self._logged(self._sql_org(ISSUE_INVITE, **LOGS), params)
        assert row is not None  # the statement always returns one row
        found, room, issued = row[:3]
        if not found:
            raise BadCallError("no such user, organization or role")
        if not room or not issued:
            raise BadCallError(
                f"a user may have {INVITES_PER_USER} live invitations at most: let some be used"
            )
        return token

    def accept_invite(self, token: object, key: object) -> Operation[Status]:
        token_text, key_text = checks.session_key(token), checks.session_key(key)
        if not keys.looks_like_session_key(token_text):
            return _answered(NOT_FOUND)  # no statement for what cannot be a token
        if not (keys.looks_like_session_key(key_text) or keys.looks_like_legacy_key(key_text)):
            return _answered(REJECTED)
        params = {
            "digest": keys.digest(token_text),
            "key": key_text,
            "stored": keys.stored_form(key_text),
            "legacy": keys.looks_like_legacy_key(key_text),
            **recording.parameters(time.time()),
        }
        return self._accept(params)

    def _accept(self, params: dict[str, Any]) -> Operation[Status]:
        query = self._sql(ACCEPT_INVITE.replace("{live}", LIVE_SESSION), **LOGS)
        row = yield from self._logged(query, params)
        assert row is not None  # the statement always returns one row
        signed_in, exists, live, used = row[:4]
        if not exists:
            return NOT_FOUND
        if not live:
            return EXPIRED
        if not signed_in or not used:
            return REJECTED
        return OK

    # -- organizations ---------------------------------------------------------------------

    def create_org(self, org_name: object, slug: object) -> Operation[int]:
        title = checks.label(org_name, "name", 200)
        params = {"name": title, "slug": slug_of(slug, title), **recording.parameters(time.time())}
        return self._create_org(params)

    def _create_org(self, params: dict[str, Any]) -> Operation[int]:
        try:
            row = yield from self._logged(self._sql(CREATE_ORG, **LOGS), params)
        except pgerrors.UniqueViolation:
            raise BadCallError(f"an organization's slug is {params['slug']!r} already") from None
        assert row is not None
        return int(row[0])

    def delete_org(self, org: object) -> Operation[Status]:
        params = {**checks.org(org), **recording.parameters(time.time())}
        if not params["org_given"]:
            raise BadCallError("delete_org needs an organization's id or slug")
        return self._status_of(self._sql_org(DELETE_ORG, **LOGS), params)

    @retry_safe
    def org_page(self, after: object, limit: object) -> Operation[list[Org]]:
        """A page of every organization in id order after ``after`` (the console's)."""
        params = {
            "after": checks.userid(after, allow_all=True),
            "limit": checks.count(limit, "limit", 1, 1000),
        }
        rows = yield Execute(self._sql(ALL_ORGS), params, Fetch.ALL)
        return [Org._make(row) for row in rows]

    @retry_safe
    def org(self, org: object) -> Operation[Org | None]:
        """One organization, by id or slug (the console's)."""
        row = yield Execute(self._sql_org(ORG_BY), checks.org(org))
        return None if row is None else Org._make(row)

    @retry_safe
    def orgs(self, userid: object) -> Operation[list[Org]]:
        rows = yield Execute(self._sql(ORGS_OF), {"userid": checks.userid(userid)}, Fetch.ALL)
        return [Org._make(row) for row in rows]

    @retry_safe
    def org_members(self, org: object) -> Query[Member]:
        params = checks.org(org)
        if not params["org_given"]:
            raise BadCallError("org_members needs an organization's id or slug")
        return Query(
            self._sql_org(ORG_MEMBERS),
            params,
            lambda row: Member(row[0], row[1], tuple(row[2]), row[3]),
        )

    @retry_safe
    def add_member(self, org: object, userid: object, role: object) -> Operation[Status]:
        params = {
            **checks.org(org),
            "userid": checks.userid(userid),
            "role": name(role, "role"),
            **recording.parameters(time.time()),
        }
        if not params["org_given"]:
            raise BadCallError("add_member needs an organization's id or slug")
        return self._added(params)

    def _added(self, params: dict[str, Any]) -> Operation[Status]:
        row = yield from self._logged(self._sql_org(ADD_MEMBER, **LOGS), params)
        assert row is not None
        return OK if row[0] else NOT_FOUND

    def remove_member(self, org: object, userid: object) -> Operation[Status]:
        params = {
            **checks.org(org),
            "userid": checks.userid(userid),
            **recording.parameters(time.time()),
        }
        if not params["org_given"]:
            raise BadCallError("remove_member needs an organization's id or slug")
        return self._removed(params)

    def _removed(self, params: dict[str, Any]) -> Operation[Status]:
        row = yield from self._logged(self._sql_org(REMOVE_MEMBER, **LOGS), params)
        assert row is not None
        removed, last_owner = row
        if last_owner:
            raise BadCallError("an organization's last owner cannot leave it: make another first")
        return OK if removed else NOT_FOUND
