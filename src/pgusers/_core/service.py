"""What the HTTP service and the console need beyond the facades: API keys and
pages of accounts.
"""

import time
from typing import Any, Final

from pgusers._core import checks, identities, recording
from pgusers._core.base import LOGS, Part, Query
from pgusers._core.keys import digest, looks_like_api_key, new_api_key
from pgusers._core.logins import SUBJECT_PREFIXES, THROTTLED_UNTIL, failures_of_name
from pgusers._core.retries import retry_safe
from pgusers._core.sql import conjunction
from pgusers._core.steps import Execute, Fetch, Operation
from pgusers._errors import BadCallError
from pgusers._results import Account, ApiKey, Status

API_KEY_EVENT: Final = """happened AS (
        SELECT %(kind)s::text AS kind, NULL::bigint AS userid, NULL::text AS session_id,
               jsonb_build_object('key_id', key_id, 'name', name, 'scope', scope) AS detail
        FROM changed
    )"""
"""The event of an API key made or revoked (``kind``), from the CTE ``changed``."""

CREATE_API_KEY: Final = """
    WITH changed AS (
        INSERT INTO {schema}.api_keys (
            key_id, digest, name, scope, created_at, created_by, maker_userid
        )
        VALUES (%(key_id)s, %(digest)s, %(name)s, %(scope)s, to_timestamp(%(now)s), %(actor)s,
                %(maker)s)
        RETURNING key_id, name, scope
    ), {happened}, {log}
    SELECT key_id, {logged} FROM changed
"""

REVOKE_API_KEY: Final = """
    WITH changed AS (
        UPDATE {schema}.api_keys SET revoked_at = to_timestamp(%(now)s)
        WHERE key_id = %(key_id)s AND revoked_at IS NULL
        RETURNING key_id, name, scope
    ), {happened}, {log}
    SELECT key_id, {logged} FROM changed
"""

API_KEYS: Final = """
    SELECT key_id, name, scope, extract(epoch FROM created_at)::float8 AS created_at,
           created_by, extract(epoch FROM revoked_at)::float8 AS revoked_at
    FROM {schema}.api_keys ORDER BY created_at, key_id
"""

# A key works while its maker exists, is enabled, and (for scope admin) is an
# administrator: it never has more rights than the user who made it has now.
API_KEY_SCOPE: Final = """
    SELECT k.key_id, k.scope, k.maker_userid
    FROM {schema}.api_keys k LEFT JOIN {schema}.users u ON u.userid = k.maker_userid
    WHERE k.digest = %s AND k.revoked_at IS NULL
      AND (k.maker_userid IS NULL OR (NOT u.disabled AND (u.admin OR k.scope = 'check')))
"""

# One page of users for an administrator, in userid order after a given userid
# (keyset paging), with the filters in {where}. "Throttled" means the user's login
# name is blocked now, by the same rule as LOGIN_LOOKUP's.
USER_THROTTLED: Final = """EXISTS (
    SELECT 1 FROM {schema}.login_failures f CROSS JOIN {settings} t
    WHERE {of_user} AND {until} > to_timestamp(%(now)s))""".replace(
    "{until}", THROTTLED_UNTIL
).replace("{of_user}", failures_of_name("u.username_key"))

ADMIN_USERS: Final = """
    SELECT u.userid, u.username, u.email, u.admin, u.disabled, u.email_verified,
           extract(epoch FROM u.created_at)::float8 AS created_at, {throttled} AS throttled,
           u.extra_data,
           EXISTS (SELECT 1 FROM {schema}.factors f
                   WHERE f.userid = u.userid AND f.confirmed_at IS NOT NULL) AS second_factor
    FROM {schema}.users u
    WHERE u.userid > %(after)s AND {where}
    ORDER BY u.userid LIMIT %(limit)s
""".replace("{throttled}", USER_THROTTLED)

ADMIN_USERS_BY: Final = {
    "userid": "u.userid = %(userid)s",
    "pattern": "(u.username_key LIKE %(pattern)s OR u.email_key LIKE %(pattern)s)",
    "admin": "u.admin = %(admin)s",
    "disabled": "u.disabled = %(disabled)s",
    "verified": "u.email_verified = %(verified)s",
    "throttled": USER_THROTTLED + " = %(throttled)s",
    "admins_without_factor": """(u.admin AND NOT EXISTS (
        SELECT 1 FROM {schema}.factors f
        WHERE f.userid = u.userid AND f.confirmed_at IS NOT NULL)) = %(admins_without_factor)s""",
}

API_KEY_SCOPES: Final = ("admin", "check")

MAX_API_KEY_NAME: Final = 100

MAX_PAGE: Final = 1000

ACCOUNT_FILTERS: Final = ("admin", "disabled", "verified", "throttled", "admins_without_factor")


class ServicePart(Part):
    """The operations on service."""

    def create_api_key(
        self, name: object, scope: object, maker: object = None
    ) -> Operation[tuple[str, str]]:
        """A new API key: (its id, the key). ``maker`` is the userid whose current
        rights it acts with (None: the operator's, for a key made on the command line)."""
        label = checks.text(name, "name", MAX_API_KEY_NAME)
        if not isinstance(scope, str) or scope not in API_KEY_SCOPES:
            raise BadCallError(f"scope must be {' or '.join(map(repr, API_KEY_SCOPES))}")
        key_id, secret = new_api_key()
        params = {
            "key_id": key_id,
            "digest": digest(secret),
            "name": label,
            "scope": scope,
            "maker": None if maker is None else checks.userid(maker),
            "kind": "apikey.created",
            **recording.parameters(time.time()),
        }
        return self._made_api_key(params, secret)

    def _made_api_key(self, params: dict[str, Any], secret: str) -> Operation[tuple[str, str]]:
        query = self._sql(CREATE_API_KEY, happened=API_KEY_EVENT, **LOGS)
        yield from self._logged(query, params)
        return params["key_id"], secret

    @retry_safe
    def revoke_api_key(self, key_id: object) -> Operation[Status]:
        params = {
            "key_id": checks.text(key_id, "key_id", 16),
            "kind": "apikey.revoked",
            **recording.parameters(time.time()),
        }
        query = self._sql(REVOKE_API_KEY, happened=API_KEY_EVENT, **LOGS)
        return self._status_of(query, params)

    @retry_safe
    def api_keys(self) -> Query[ApiKey]:
        return Query(self._sql(API_KEYS), {}, ApiKey._make)

    @retry_safe
    def api_key_scope(self, key: object) -> Operation[tuple[str, str, int | None] | None]:
        """The id, scope and maker of a live API key whose maker still has its rights,
        or None (a malformed one without a statement)."""
        text = checks.session_key(key)
        if not looks_like_api_key(text):
            return None
        row = yield Execute(self._sql(API_KEY_SCOPE), (digest(text),))
        return None if row is None else (row[0], row[1], row[2])

    @retry_safe
    def accounts(
        self, search: object, after: object, limit: object, filters: object
    ) -> Operation[list[Account]]:
        """A page of users in userid order after ``after``; ``search`` matches part of
        a username or email (folded like the lookups); ``filters`` maps a name of
        ACCOUNT_FILTERS to the value it must have."""
        params: dict[str, Any] = {
            "after": checks.userid(after, allow_all=True),
            "limit": checks.count(limit, "limit", 1, MAX_PAGE),
            "now": time.time(),
            **SUBJECT_PREFIXES,
        }
        if search is not None:
            folded = identities.fold(checks.text(search, "search", 256))
            escaped = folded.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            params["pattern"] = f"%{escaped}%"
        if not isinstance(filters, dict) or not set(filters) <= set(ACCOUNT_FILTERS):
            raise BadCallError(f"filters must be a dict with keys among {ACCOUNT_FILTERS}")
        params.update({name: checks.flag(value, name) for name, value in filters.items()})
        return self._accounts(params)

    @retry_safe
    def account(self, userid: object) -> Operation[list[Account]]:
        params = {
            "userid": checks.userid(userid),
            "after": 0,
            "limit": 1,
            "now": time.time(),
            **SUBJECT_PREFIXES,
        }
        return self._accounts(params)

    def _accounts(self, params: dict[str, Any]) -> Operation[list[Account]]:
        names = [name for name in ADMIN_USERS_BY if name in params]
        where = conjunction([ADMIN_USERS_BY[name] for name in names])
        rows = yield Execute(self._sql(ADMIN_USERS, where=where), params, Fetch.ALL)
        # extra_data is decoded like everywhere else
        return [Account._make((*row[:-2], self._decode(row[-2]), row[-1])) for row in rows]
