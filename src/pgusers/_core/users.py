"""Users: creating, finding, changing and deleting them, and their admin and
disabled flags.
"""

import time
from typing import Any, Final

from psycopg import errors as pgerrors

from pgusers._core import checks, identities, recording
from pgusers._core.base import LOGS, Part, Query, duplicate
from pgusers._core.retries import retry_safe
from pgusers._core.sql import conjunction
from pgusers._core.steps import Execute, Offload, Operation
from pgusers._errors import BadCallError
from pgusers._results import FoundUser, Status, UserRow

CREATE_USER: Final = """
    WITH created AS (
        INSERT INTO {schema}.users (
            username, username_key, username_skeleton, email, email_key, password_hash, admin,
            extra_data
        )
        VALUES (%(username)s, %(username_key)s, %(skeleton)s, %(email)s, %(email_key)s,
                %(password_hash)s, %(admin)s, %(extra_data)s::jsonb)
        RETURNING userid, username, email, admin
    ), happened AS (
        SELECT 'user.created' AS kind, userid, NULL::text AS session_id,
               jsonb_build_object('username', username, 'email', email, 'admin', admin) AS detail
        FROM created
    ), {log}
    SELECT userid, {logged} FROM created
"""

FIND_USER: Final = """
    SELECT userid, username, email, admin, extra_data, email_verified, disabled
    FROM {schema}.users WHERE {where}
"""

USER_BY: Final = {
    "userid": "userid = %(userid)s",
    "username": "username_key = %(username_key)s",
    "email": "email_key = %(email_key)s",
}
"""WHERE fragments that select a user; joined with AND when several are given."""

# A new email address is not verified yet, and ends the user's one-time tokens.
MODIFY_USER: Final = """
    WITH changed AS (
        UPDATE {schema}.users u SET
            username = coalesce(%(username)s, u.username),
            username_key = coalesce(%(username_key)s, u.username_key),
            username_skeleton = coalesce(%(username_skeleton)s, u.username_skeleton),
            email = coalesce(%(email)s, u.email),
            email_key = coalesce(%(email_key)s, u.email_key),
            email_verified = u.email_verified
                AND u.email_key = coalesce(%(email_key)s, u.email_key),
            extra_data =
                CASE WHEN %(set_extra)s THEN %(extra_data)s::jsonb ELSE u.extra_data END
        FROM {schema}.users old
        WHERE u.userid = %(userid)s AND old.userid = u.userid
        RETURNING u.userid, old.email_key <> u.email_key AS new_email,
                  old.username AS old_username, old.email AS old_email
    ), tokens_ended AS (
        DELETE FROM {schema}.tokens k USING changed c WHERE k.userid = c.userid AND c.new_email
    ), happened AS (
        SELECT 'user.modified' AS kind, userid, NULL::text AS session_id,
               jsonb_strip_nulls(jsonb_build_object(
                   'username', %(username)s::text,
                   'old_username', CASE WHEN %(username)s::text IS NOT NULL THEN old_username END,
                   'email', %(email)s::text,
                   'old_email', CASE WHEN %(email)s::text IS NOT NULL THEN old_email END,
                   'extra_data', CASE WHEN %(set_extra)s THEN 'replaced' END)) AS detail
        FROM changed
    ), {log}
    SELECT userid, {logged} FROM changed
"""

DELETE_USER: Final = """
    WITH deleted AS (
        DELETE FROM {schema}.users WHERE {where} RETURNING userid, username
    ), happened AS (
        SELECT 'user.deleted' AS kind, userid, NULL::text AS session_id,
               jsonb_build_object('username', username) AS detail
        FROM deleted
    ), {log}
    SELECT userid, {logged} FROM deleted
"""

IS_ADMIN: Final = "SELECT admin FROM {schema}.users WHERE userid = %s"

SET_ADMIN: Final = """
    WITH changed AS (
        UPDATE {schema}.users SET admin = %(admin)s WHERE userid = %(userid)s RETURNING userid
    ), happened AS (
        SELECT 'admin.changed' AS kind, userid, NULL::text AS session_id,
               jsonb_build_object('admin', %(admin)s::boolean) AS detail
        FROM changed
    ), {log}
    SELECT userid, {logged} FROM changed
"""

# Disabling ends the user's sessions and moves its generation on, so a login being
# verified at this moment opens none either (see OPEN_SESSION).
DISABLE_USER: Final = """
    WITH changed AS (
        UPDATE {schema}.users SET
            disabled = %(disabled)s,
            generation = generation + CASE WHEN %(disabled)s THEN 1 ELSE 0 END
        WHERE userid = %(userid)s
        RETURNING userid
    ), ended AS (
        DELETE FROM {schema}.sessions s USING changed c
        WHERE s.userid = c.userid AND %(disabled)s
        RETURNING 1
    ), happened AS (
        SELECT CASE WHEN %(disabled)s THEN 'user.disabled' ELSE 'user.enabled' END AS kind,
               userid, NULL::text AS session_id,
               jsonb_build_object('sessions_ended', (SELECT count(*) FROM ended)) AS detail
        FROM changed
    ), {log}
    SELECT userid, {logged} FROM changed
"""

ALL_USERS: Final = """
    SELECT userid, username, email, admin FROM {schema}.users ORDER BY username_key
"""


class UsersPart(Part):
    """The operations on users."""

    def create_user(
        self, username: object, password: object, email: object, admin: object, extra_data: object
    ) -> Operation[int]:
        name = identities.username(username)
        secret = checks.password(password)
        address = identities.email(email)
        is_admin = checks.flag(admin, "admin")
        name_key = identities.fold(name)
        params = {
            "username": name,
            "username_key": name_key,
            "skeleton": identities.skeleton(name_key),
            "email": address[0],
            "email_key": address[1],
            "admin": is_admin,
            "extra_data": self.codec.dumps(extra_data),
            **recording.parameters(time.time()),
        }
        return self._create_user(secret, params)

    def _create_user(self, secret: str, params: dict[str, Any]) -> Operation[int]:
        yield from self._policy_allows(secret, "password", params)
        params["password_hash"] = yield Offload(self.passwords.hash, (secret,))
        try:
            row = yield from self._logged(self._sql(CREATE_USER, **LOGS), params)
        except pgerrors.UniqueViolation as error:
            raise duplicate(error) from None
        assert row is not None  # an INSERT that did not fail returned its row
        return int(row[0])

    @retry_safe
    def find_user(
        self, username: object, email: object, userid: object
    ) -> Operation[FoundUser | None]:
        where, params = self._user_selector(username=username, email=email, userid=userid)
        return self._find_user(where, params)

    def _find_user(self, where: str, params: dict[str, Any]) -> Operation[FoundUser | None]:
        row = yield Execute(self._sql(FIND_USER, where=where), params)
        if row is None:
            return None
        userid, username, email, admin, extra_data, email_verified, disabled = row
        return {  # built by name: the statement's columns are in FIND_USER
            "userid": userid,
            "username": username,
            "email": email,
            "admin": admin,
            "extra_data": self._decode(extra_data),
            "email_verified": email_verified,
            "disabled": disabled,
        }

    def _user_selector(self, **given: object) -> tuple[str, dict[str, Any]]:
        """Return the WHERE clause and parameters that pick the user ``given`` names."""
        params: dict[str, Any] = {}
        if given.get("userid") is not None:
            params["userid"] = checks.userid(given["userid"])
        if given.get("username") is not None:
            params["username_key"] = identities.username_key(given["username"])
        if given.get("email") is not None:
            params["email_key"] = identities.email(given["email"])[1]
        if not params:
            raise BadCallError(f"give at least one of {', '.join(given)}")
        fragments = [USER_BY[name] for name in given if given[name] is not None]
        return conjunction(fragments), params

    @retry_safe
    def modify_user(
        self, userid: object, username: object, email: object, extra_data: object
    ) -> Operation[Status]:
        uid = checks.userid(userid)
        name = None if username is None else identities.username(username)
        address, address_key = (None, None) if email is None else identities.email(email)
        name_key = name and identities.fold(name)
        params = {
            "userid": uid,
            "username": name,
            "username_key": name_key,
            "username_skeleton": name_key and identities.skeleton(name_key),
            "email": address,
            "email_key": address_key,
            "set_extra": extra_data is not None,
            "extra_data": self.codec.dumps(extra_data),
            **recording.parameters(time.time()),
        }
        return self._status_of(self._sql(MODIFY_USER, **LOGS), params)

    def delete_user(self, username: object, userid: object) -> Operation[Status]:
        where, params = self._user_selector(username=username, userid=userid)
        params.update(recording.parameters(time.time()))
        return self._status_of(self._sql(DELETE_USER, where=where, **LOGS), params)

    @retry_safe
    def is_admin(self, userid: object) -> Operation[bool]:
        uid = checks.userid(userid)
        return self._is_admin(uid)

    def _is_admin(self, uid: int) -> Operation[bool]:
        row = yield Execute(self._sql(IS_ADMIN), (uid,))
        return bool(row and row[0])

    @retry_safe
    def set_admin(self, userid: object, admin: object) -> Operation[Status]:
        params = {
            "admin": checks.flag(admin, "admin"),
            "userid": checks.userid(userid),
            **recording.parameters(time.time()),
        }
        return self._status_of(self._sql(SET_ADMIN, **LOGS), params)

    @retry_safe
    def disable_user(self, userid: object, disabled: object) -> Operation[Status]:
        params = {
            "userid": checks.userid(userid),
            "disabled": checks.flag(disabled, "disabled"),
            **recording.parameters(time.time()),
        }
        return self._status_of(self._sql(DISABLE_USER, **LOGS), params)

    @retry_safe
    def all_users(self) -> Query[UserRow]:
        return Query(self._sql(ALL_USERS), {}, UserRow._make)
