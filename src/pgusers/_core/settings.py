"""The userspace's settings: one row, read whole, changed one value at a time,
each change recorded.
"""

import time
from typing import Any, Final

from pgusers._core import checks, recording
from pgusers._core.base import LOGS, Part
from pgusers._core.retries import retry_safe
from pgusers._core.steps import Execute, Operation
from pgusers._errors import BadCallError
from pgusers._results import Settings

GET_TTL: Final = "SELECT session_ttl FROM {schema}.settings"

SET_SETTING: Final = """
    WITH changed AS (
        UPDATE {schema}.settings SET {column} = %(value)s RETURNING 1
    ), happened AS (
        SELECT 'settings.changed' AS kind, NULL::bigint AS userid, NULL::text AS session_id,
               jsonb_build_object(%(name)s::text, %(value)s::{type}) AS detail
        FROM changed
    ), {log}
    SELECT {logged}
"""
"""Set one setting ({column}, a name from SETTING_COLUMNS, of SQL type {type}), with
its event."""

SETTING_COLUMNS: Final = {
    "session_ttl": ("session_ttl", "float8"),
    "session_max_age": ("session_max_age", "float8"),
    "event_retention": ("event_retention", "float8"),
    "sessions_per_user": ("sessions_per_user", "float8"),
    "login_by_email": ("login_by_email", "boolean"),
    "delivery_attempts": ("delivery_attempts", "integer"),
}

READ_SETTINGS: Final = """
    SELECT session_ttl, session_max_age, key_storage, event_retention, free_failures,
           max_backoff, source_limit, source_window, source_block, sessions_per_user,
           password_min_length, password_max_length, breached_check, admins_need_mfa,
           webauthn_rp_id, webauthn_rp_name, webauthn_origins, login_by_email,
           delivery_attempts
    FROM {schema}.settings
"""

SET_PASSWORD_POLICY: Final = """
    WITH changed AS (
        UPDATE {schema}.settings SET
            password_min_length = %(min_length)s,
            password_max_length = %(max_length)s,
            breached_check = %(breached)s
        RETURNING 1
    ), happened AS (
        SELECT 'settings.changed' AS kind, NULL::bigint AS userid, NULL::text AS session_id,
               jsonb_build_object(
                   'password_min_length', %(min_length)s::integer,
                   'password_max_length', %(max_length)s::integer,
                   'breached_check', %(breached)s::text) AS detail
        FROM changed
    ), {log}
    SELECT {logged}
"""

BREACHED_CHECKS: Final = ("off", "best_effort", "required")

MAX_RETENTION_DAYS: Final = 100 * 365.0


class SettingsPart(Part):
    """The operations on settings."""

    @retry_safe
    def settings(self) -> Operation[Settings]:
        row = yield Execute(self._sql(READ_SETTINGS), ())
        return Settings._make(row)

    def load_ttl(self) -> Operation[float]:
        row = yield Execute(self._sql(GET_TTL))
        self.ttl = float(row[0])
        return self.ttl

    @retry_safe
    def set_session_TTL(self, secs: object) -> Operation[None]:  # noqa: N802 - the seed's name
        seconds = checks.ttl(secs)
        return self._set_ttl(seconds, self._setting("session_ttl", "session_ttl", seconds))

    def _set_ttl(self, seconds: float, change: tuple[str, dict[str, Any]]) -> Operation[None]:
        yield from self._logged(*change)
        self.ttl = seconds

    def _setting(
        self, column: str, name: str, value: float | bool | None
    ) -> tuple[str, dict[str, Any]]:
        """The statement and parameters that set one setting, with its event."""
        named, sql_type = SETTING_COLUMNS[column]
        query = self._sql(SET_SETTING, column=named, type=sql_type, **LOGS)
        return query, {"value": value, "name": name, **recording.parameters(time.time())}

    @retry_safe
    def set_session_max_age(self, secs: object) -> Operation[None]:
        seconds = checks.optional_seconds(secs, "maximum age", checks.MAX_TTL)
        return self._change(*self._setting("session_max_age", "session_max_age", seconds))

    @retry_safe
    def set_sessions_per_user(self, count: object) -> Operation[None]:
        most = None if count is None else checks.count(count, "sessions_per_user", 1, 100_000)
        return self._change(*self._setting("sessions_per_user", "sessions_per_user", most))

    @retry_safe
    def set_password_policy(
        self, min_length: object, max_length: object, breached: object
    ) -> Operation[None]:
        shortest = None if min_length is None else checks.count(min_length, "min_length", 1, 1024)
        longest = None if max_length is None else checks.count(max_length, "max_length", 1, 1024)
        if shortest is not None and longest is not None and longest < shortest:
            raise BadCallError("max_length must be at least min_length")
        if not isinstance(breached, str) or breached not in BREACHED_CHECKS:
            raise BadCallError(f"breached must be one of {', '.join(BREACHED_CHECKS)}")
        params = {
            "min_length": shortest,
            "max_length": longest,
            "breached": breached,
            **recording.parameters(time.time()),
        }
        return self._change(self._sql(SET_PASSWORD_POLICY, **LOGS), params)

    @retry_safe
    def set_event_retention(self, days: object) -> Operation[None]:
        kept = checks.optional_seconds(days, "retention", MAX_RETENTION_DAYS, "days")
        return self._change(*self._setting("event_retention", "event_retention_days", kept))

    @retry_safe
    def set_login_by_email(self, on: object) -> Operation[None]:
        value = checks.flag(on, "on")
        return self._change(*self._setting("login_by_email", "login_by_email", value))

    @retry_safe
    def set_delivery_attempts(self, attempts: object) -> Operation[None]:
        value = checks.count(attempts, "attempts", 1, 100)
        return self._change(*self._setting("delivery_attempts", "delivery_attempts", value))
