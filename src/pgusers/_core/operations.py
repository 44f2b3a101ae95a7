"""The rules of every UserSpace operation, shared by the sync and async APIs.

Each public method of :class:`Core` checks its arguments, then returns an
:data:`~pgusers.steps.Operation`: a generator that yields the SQL statements
and password work it needs (see :mod:`pgusers.steps`). Arguments are checked
before the first step, so a bad call never reaches the database.
"""

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Generic, TypeVar

from psycopg import errors as pgerrors
from psycopg.types.json import Jsonb

from pgusers._core import audit, checks, identities, queries
from pgusers._core.cache import SessionCache
from pgusers._core.codec import Codec
from pgusers._core.importer import RESOLUTIONS, SESSION_MODES, Importer
from pgusers._core.keys import (
    SESSION_ID_SHAPE,
    STORED_PREFIX,
    could_be_stored,
    digest,
    looks_like_api_key,
    looks_like_legacy_key,
    looks_like_session_key,
    new_api_key,
    new_session_key,
    new_token,
    stored_form,
)
from pgusers._core.passwords import Passwords
from pgusers._core.retries import retry_safe
from pgusers._core.sql import (
    BEGIN,
    COMMIT,
    LOG_EVENTS,
    LOGGED,
    SESSION_CHANGES,
    conjunction,
    render,
)
from pgusers._core.steps import Execute, Fetch, Offload, Operation
from pgusers._errors import BadCallError
from pgusers._results import (
    DISABLED,
    EXPIRED,
    FAILED_LOGIN,
    NO_SESSION,
    NOT_FOUND,
    OK,
    REJECTED,
    REJECTED_LOGIN,
    THROTTLED,
    Account,
    ApiKey,
    CheckResult,
    Event,
    FoundUser,
    ImportReport,
    LoginFailureRow,
    LoginOutcome,
    LoginResult,
    Session,
    SessionRow,
    Settings,
    Status,
    UserRow,
)

DEFAULT_TTL = 864000.0
MAX_RETENTION_DAYS: Final = 100 * 365.0
KEY_STORAGE_MODES: Final = ("plain", "hashed")
MAX_SOURCE: Final = 255
MAX_AGENT: Final = 512
API_KEY_SCOPES: Final = ("admin", "check")
MAX_API_KEY_NAME: Final = 100
MAX_PAGE: Final = 1000
ACCOUNT_FILTERS: Final = ("admin", "disabled", "verified", "throttled")
SUBJECT_PREFIXES: Final = {
    "name_prefix": queries.NAME_SUBJECT,
    "pair_prefix": queries.PAIR_SUBJECT,
    "source_prefix": queries.SOURCE_SUBJECT,
}


TOKEN_LIFETIMES: Final = {
    "reset_password": 3600.0,
    "verify_email": 3 * 86400.0,
    "change_email": 3 * 86400.0,
}
"""The purposes of one-time tokens, and how long each lives unless told otherwise."""

LOGS: Final = {"log": LOG_EVENTS, "logged": LOGGED}
"""The fragments of a statement that writes events: where they are written, and the
column that returns them."""

_DUPLICATE = {
    "users_username_key": "a user with that username already exists",
    "users_email_key": "a user with that email already exists",
    "users_username_skeleton_key": (
        "a user with a username that looks the same (confusable characters) already exists"
    ),
}


def _duplicate(error: pgerrors.UniqueViolation) -> BadCallError:
    return BadCallError(
        _DUPLICATE.get(
            error.diag.constraint_name or "", "a user with that username or email already exists"
        )
    )


@dataclass(frozen=True, slots=True)
class Attempt:
    """A login attempt's checked arguments."""

    name_key: str
    secret: str
    source: str | None
    user_agent: str | None
    extra: str | None
    audit: dict[str, Any]


R = TypeVar("R")
"""What a streamed query's rows become."""


@dataclass(frozen=True, slots=True)
class Query(Generic[R]):
    """A streamed query: the SQL, its parameters and how each row becomes a result."""

    sql: str
    params: dict[str, Any]
    convert: Callable[[Any], R]


class Core:
    """What a UserSpace knows besides its connections: schema, codec, hasher, TTL."""

    def __init__(
        self, schema: str, codec: Codec, passwords: Passwords, cache: SessionCache | None = None
    ) -> None:
        self.schema = schema
        self.cache = cache
        self.codec = codec
        self.passwords = passwords
        self.ttl = DEFAULT_TTL

    def _sql(self, template: str, **fragments: str) -> str:
        return render(template, self.schema, **fragments)

    def _decode(self, data: Any) -> Any:
        return None if data is None else self.codec.decode(data)

    def _logged(self, query: str, params: Any) -> Operation[tuple[Any, ...] | None]:
        """Run a statement that writes events (its last column); log them and return
        the rest of its row, or None when it returned no row."""
        row = yield Execute(query, params)
        if row is None:
            return None
        *values, events = row
        audit.emit(events)
        if self.cache is not None and events:
            for event in events:  # this process forgets at once; others hear the NOTIFY
                if event["kind"] in SESSION_CHANGES:
                    self.cache.apply(event)
        return tuple(values)

    # -- users -----------------------------------------------------------------

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
            **audit.parameters(time.time()),
        }
        return self._create_user(secret, params)

    def _create_user(self, secret: str, params: dict[str, Any]) -> Operation[int]:
        params["password_hash"] = yield Offload(self.passwords.hash, (secret,))
        try:
            row = yield from self._logged(self._sql(queries.CREATE_USER, **LOGS), params)
        except pgerrors.UniqueViolation as error:
            raise _duplicate(error) from None
        assert row is not None  # an INSERT that did not fail returned its row
        return int(row[0])

    @retry_safe
    def find_user(
        self, username: object, email: object, userid: object
    ) -> Operation[FoundUser | None]:
        where, params = self._user_selector(username=username, email=email, userid=userid)
        return self._find_user(where, params)

    def _find_user(self, where: str, params: dict[str, Any]) -> Operation[FoundUser | None]:
        row = yield Execute(self._sql(queries.FIND_USER, where=where), params)
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
        fragments = [queries.USER_BY[name] for name in given if given[name] is not None]
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
            **audit.parameters(time.time()),
        }
        return self._status_of(self._sql(queries.MODIFY_USER, **LOGS), params)

    def delete_user(self, username: object, userid: object) -> Operation[Status]:
        where, params = self._user_selector(username=username, userid=userid)
        params.update(audit.parameters(time.time()))
        return self._status_of(self._sql(queries.DELETE_USER, where=where, **LOGS), params)

    def _status_of(self, query: str, params: Any) -> Operation[Status]:
        """Run a statement that returns the row it changed (and its events): OK, or
        NOT_FOUND."""
        try:
            row = yield from self._logged(query, params)
        except pgerrors.UniqueViolation as error:
            raise _duplicate(error) from None
        return NOT_FOUND if row is None else OK

    def change_password(
        self, userid: object, newpassword: object, oldpassword: object, end_sessions: object
    ) -> Operation[Status]:
        if userid is None:
            raise BadCallError("change_password needs the userid of the user")
        uid = checks.userid(userid)
        new = checks.password(newpassword, "newpassword")
        old = None if oldpassword is None else checks.password(oldpassword, "oldpassword")
        ending = checks.flag(end_sessions, "end_sessions")
        return self._change_password(uid, new, old, ending, audit.parameters(time.time()))

    def _change_password(
        self, uid: int, new: str, old: str | None, ending: bool, logging: dict[str, Any]
    ) -> Operation[Status]:
        old_hash = None
        if old is None:
            new_hash = yield Offload(self.passwords.hash, (new,))
        else:
            row = yield Execute(self._sql(queries.PASSWORD_HASH), (uid,))
            if row is None:
                return NOT_FOUND
            old_hash = row[0]
            new_hash = yield Offload(self.passwords.verify_and_hash, (old_hash, old, new))
            if new_hash is None:
                return REJECTED
        params = {
            "userid": uid,
            "new_hash": new_hash,
            "old_hash": old_hash,
            "end_sessions": ending,
            **logging,
        }
        row = yield from self._logged(self._sql(queries.SET_PASSWORD, **LOGS), params)
        if row is not None:
            return OK
        # Nothing was updated: the user is gone, or its password changed since it was read.
        return NOT_FOUND if old is None else REJECTED

    @retry_safe
    def is_admin(self, userid: object) -> Operation[bool]:
        uid = checks.userid(userid)
        return self._is_admin(uid)

    def _is_admin(self, uid: int) -> Operation[bool]:
        row = yield Execute(self._sql(queries.IS_ADMIN), (uid,))
        return bool(row and row[0])

    @retry_safe
    def set_admin(self, userid: object, admin: object) -> Operation[Status]:
        params = {
            "admin": checks.flag(admin, "admin"),
            "userid": checks.userid(userid),
            **audit.parameters(time.time()),
        }
        return self._status_of(self._sql(queries.SET_ADMIN, **LOGS), params)

    @retry_safe
    def disable_user(self, userid: object, disabled: object) -> Operation[Status]:
        params = {
            "userid": checks.userid(userid),
            "disabled": checks.flag(disabled, "disabled"),
            **audit.parameters(time.time()),
        }
        return self._status_of(self._sql(queries.DISABLE_USER, **LOGS), params)

    @retry_safe
    def all_users(self) -> Query[UserRow]:
        return Query(self._sql(queries.ALL_USERS), {}, UserRow._make)

    # -- one-time tokens --------------------------------------------------------

    @retry_safe  # a repeated issue revokes the first token and returns a working one
    def issue_token(
        self, userid: object, purpose: object, ttl: object, email: object
    ) -> Operation[str]:
        uid = checks.userid(userid)
        if not isinstance(purpose, str) or purpose not in TOKEN_LIFETIMES:
            raise BadCallError(f"purpose must be one of {', '.join(TOKEN_LIFETIMES)}")
        seconds = TOKEN_LIFETIMES[purpose] if ttl is None else checks.ttl(ttl)
        if (purpose == "change_email") != (email is not None):
            raise BadCallError("email= is the new address, given with change_email only")
        address, address_key = (None, None) if email is None else identities.email(email)
        token = new_token()
        params = {
            "userid": uid,
            "purpose": purpose,
            "digest": digest(token),
            "email": address,
            "email_key": address_key,
            "ttl": seconds,
            **audit.parameters(time.time()),
        }
        return self._issue_token(token, params)

    def _issue_token(self, token: str, params: dict[str, Any]) -> Operation[str]:
        row = yield from self._logged(self._sql(queries.ISSUE_TOKEN, **LOGS), params)
        assert row is not None  # the statement always returns one row
        issued, taken = row
        if taken:
            raise BadCallError("a user with that email already exists")
        if not issued:
            raise BadCallError(f"no user has userid {params['userid']}")
        return token

    def reset_password(
        self, token: object, newpassword: object, end_sessions: object
    ) -> Operation[Status]:
        text = checks.session_key(token)
        secret = checks.password(newpassword, "newpassword")
        ending = checks.flag(end_sessions, "end_sessions")
        params: dict[str, Any] = {
            "purposes": ["reset_password"],
            "new_hash": None,
            "end_sessions": ending,
            **SUBJECT_PREFIXES,
            **audit.parameters(time.time()),
        }
        return self._reset_password(text, secret, params)

    def _reset_password(self, token: str, secret: str, params: dict[str, Any]) -> Operation[Status]:
        if not looks_like_session_key(token):
            return NOT_FOUND
        params["digest"] = digest(token)
        state = yield Execute(self._sql(queries.TOKEN_STATE), params)
        if state is None:
            return NOT_FOUND
        if state[0]:  # alive: hash only for a token that can be used
            params["new_hash"] = yield Offload(self.passwords.hash, (secret,))
        used = yield from self._logged(self._sql(queries.RESET_PASSWORD, **LOGS), params)
        return _token_status(used)

    def verify_email(self, token: object) -> Operation[Status]:
        text = checks.session_key(token)
        return self._verify_email(text, audit.parameters(time.time()))

    def _verify_email(self, token: str, params: dict[str, Any]) -> Operation[Status]:
        if not looks_like_session_key(token):
            return NOT_FOUND
        params["digest"] = digest(token)
        try:
            used = yield from self._logged(self._sql(queries.VERIFY_EMAIL, **LOGS), params)
        except pgerrors.UniqueViolation as error:  # the new address was taken meanwhile
            raise _duplicate(error) from None
        return _token_status(used)

    # -- sessions --------------------------------------------------------------

    @retry_safe  # a login repeated after a lost reply leaves at most one unused session
    def validate_user(
        self, username: object, password: object, extra_data: object
    ) -> Operation[LoginResult]:
        attempt = self._attempt(username, password, None, None, extra_data)
        return self._validate_user(attempt)

    def _validate_user(self, attempt: Attempt) -> Operation[LoginResult]:
        outcome = yield from self._login(attempt)
        if outcome.status is not OK:
            return FAILED_LOGIN
        return LoginResult(outcome.key, outcome.admin, outcome.userid)

    @retry_safe  # as validate_user; a lost failure may be counted twice
    def login(
        self,
        username: object,
        password: object,
        source: object,
        user_agent: object,
        extra_data: object,
    ) -> Operation[LoginOutcome]:
        return self._login(self._attempt(username, password, source, user_agent, extra_data))

    def _attempt(
        self,
        username: object,
        password: object,
        source: object,
        user_agent: object,
        extra_data: object,
    ) -> Attempt:
        name_key = identities.username_key(username)
        checked_source = None if source is None else checks.label(source, "source", MAX_SOURCE)
        return Attempt(
            name_key=name_key,
            secret=checks.password(password),
            source=checked_source,
            user_agent=(
                None if user_agent is None else checks.label(user_agent, "user_agent", MAX_AGENT)
            ),
            extra=self.codec.dumps(extra_data),
            audit=audit.parameters(time.time(), checked_source),
        )

    def _login(self, attempt: Attempt) -> Operation[LoginOutcome]:
        params: dict[str, Any] = {
            "name_key": attempt.name_key,
            "source": attempt.source,
            "source_subject": attempt.source and queries.SOURCE_SUBJECT + attempt.source,
            **SUBJECT_PREFIXES,
            **attempt.audit,
        }
        query = self._sql(queries.LOGIN_LOOKUP, until=queries.THROTTLED_UNTIL, **LOGS)
        row = yield from self._logged(query, params)
        assert row is not None  # the statement always returns one row
        userid, stored_hash, user_generation, space_generation, disabled, wait, legacy = row
        if wait > 0:  # refused without checking the password
            return LoginOutcome(THROTTLED, "", False, None, wait)
        params["userid"] = userid
        verdict = yield Offload(self.passwords.verify, (stored_hash, attempt.secret, legacy))
        if not verdict.matches:
            query = self._sql(queries.RECORD_FAILURE, restart=queries.COUNT_RESTARTS, **LOGS)
            yield from self._logged(query, params)
            return REJECTED_LOGIN
        if disabled:
            refused = {"kind": "login.failed", "detail": Jsonb({"reason": "disabled"})}
            yield from self._logged(self._sql(queries.RECORD_EVENT, **LOGS), params | refused)
            return LoginOutcome(DISABLED, "", False, None, 0.0)
        key = new_session_key()
        params.update(
            key=key,
            stored=stored_form(key),
            extra_data=attempt.extra,
            old_hash=stored_hash,
            new_hash=verdict.upgraded_hash,
            user_generation=user_generation,
            space_generation=space_generation,
            source=attempt.source,
            user_agent=attempt.user_agent,
        )
        try:
            row = yield from self._logged(self._sql(queries.OPEN_SESSION, **LOGS), params)
        except pgerrors.ForeignKeyViolation:  # the user was deleted meanwhile
            return REJECTED_LOGIN
        assert row is not None  # the statement always returns one row
        opened, admin = row
        if not opened:
            # While the password was verified, it changed, or the user's sessions were
            # ended: this login belongs to the past.
            return REJECTED_LOGIN
        return LoginOutcome(OK, key, bool(admin), userid, 0.0)

    @retry_safe
    def login_failures(self) -> Query[LoginFailureRow]:
        params = {**SUBJECT_PREFIXES, "now": time.time()}
        query = self._sql(queries.LIST_LOGIN_FAILURES, until=queries.THROTTLED_UNTIL)
        return Query(query, params, _failure_row)

    @retry_safe
    def clear_login_failures(self, username: object, source: object) -> Operation[int]:
        if username is None and source is None:
            raise BadCallError("give a username, a source, or both")
        name_key = None if username is None else identities.username_key(username)
        checked = None if source is None else checks.label(source, "source", MAX_SOURCE)
        params = {
            "name_key": name_key,
            "source": checked,
            "source_subject": checked and queries.SOURCE_SUBJECT + checked,
            **SUBJECT_PREFIXES,
            **audit.parameters(time.time()),
        }
        return self._count(self._sql(queries.CLEAR_LOGIN_FAILURES, **LOGS), params)

    def _count(self, query: str, params: Any) -> Operation[int]:
        """Run a statement that returns a count (and its events); return the count."""
        row = yield from self._logged(query, params)
        assert row is not None  # the statement always returns one row
        return int(row[0])

    @retry_safe
    def set_login_policy(
        self,
        free_failures: object,
        max_backoff: object,
        source_limit: object,
        source_window: object,
        source_block: object,
    ) -> Operation[None]:
        params = {
            "free_failures": checks.optional_count(free_failures, "free_failures", 0),
            "max_backoff": checks.optional_duration(max_backoff, "max_backoff"),
            "source_limit": checks.optional_count(source_limit, "source_limit", 1),
            "source_window": checks.optional_duration(source_window, "source_window"),
            "source_block": checks.optional_duration(source_block, "source_block"),
            **audit.parameters(time.time()),
        }
        return self._change(self._sql(queries.SET_LOGIN_POLICY, **LOGS), params)

    @retry_safe
    def check_key(self, key: object) -> Operation[CheckResult]:
        text = checks.session_key(key)
        return self._check_key(text)

    def _check_key(self, key: str) -> Operation[CheckResult]:
        legacy = looks_like_legacy_key(key)
        if not (legacy or looks_like_session_key(key)):
            return NO_SESSION
        params = {"key": key, "stored": stored_form(key), "legacy": legacy, "now": time.time()}
        epoch = 0 if self.cache is None else self.cache.epoch
        row = yield Execute(self._sql(queries.CHECK_KEY), params)
        if row is None:
            return NO_SESSION
        current, alive, username, userid, extra_data, ttl, session_id, expiry, hard_end, _ = row
        self.ttl = ttl
        if not current:  # ended by a call that raced its login
            return NO_SESSION
        if not alive:
            return CheckResult(EXPIRED, None, None, None)
        result = CheckResult(OK, username, userid, self._decode(extra_data))
        if self.cache is not None:
            self.cache.keep(
                key,
                result,
                session_id=session_id,
                stored_expiry=expiry,
                hard_end=hard_end,
                ttl=ttl,
                epoch=epoch,
            )
        return result

    def cached(self, key: object) -> CheckResult | None:
        """check_key's answer from the session cache, when it may be served now."""
        if self.cache is None or not isinstance(key, str):
            return None
        return self.cache.get(key)

    @retry_safe
    def set_session_TTL(self, secs: object) -> Operation[None]:  # noqa: N802 - the seed's name
        seconds = checks.ttl(secs)
        return self._set_ttl(seconds, self._setting("session_ttl", "session_ttl", seconds))

    def _set_ttl(self, seconds: float, change: tuple[str, dict[str, Any]]) -> Operation[None]:
        yield from self._logged(*change)
        self.ttl = seconds

    def _setting(self, column: str, name: str, value: float | None) -> tuple[str, dict[str, Any]]:
        """The statement and parameters that set one numeric setting, with its event."""
        query = self._sql(queries.SET_SETTING, column=queries.SETTING_COLUMNS[column], **LOGS)
        return query, {"value": value, "name": name, **audit.parameters(time.time())}

    def _change(self, query: str, params: dict[str, Any]) -> Operation[None]:
        yield from self._logged(query, params)

    @retry_safe
    def set_session_max_age(self, secs: object) -> Operation[None]:
        seconds = checks.optional_seconds(secs, "maximum age", checks.MAX_TTL)
        return self._change(*self._setting("session_max_age", "session_max_age", seconds))

    @retry_safe
    def set_sessions_per_user(self, count: object) -> Operation[None]:
        most = None if count is None else checks.count(count, "sessions_per_user", 1, 100_000)
        return self._change(*self._setting("sessions_per_user", "sessions_per_user", most))

    @retry_safe
    def set_event_retention(self, days: object) -> Operation[None]:
        kept = checks.optional_seconds(days, "retention", MAX_RETENTION_DAYS, "days")
        return self._change(*self._setting("event_retention", "event_retention_days", kept))

    @retry_safe  # converting is idempotent; a second switch finds it done
    def set_session_key_storage(
        self, mode: object, progress: Callable[[int], object] | None
    ) -> Operation[int]:
        if not isinstance(mode, str) or mode not in KEY_STORAGE_MODES:
            modes = " or ".join(map(repr, KEY_STORAGE_MODES))
            raise BadCallError(f"key storage must be {modes}")
        if progress is not None and not callable(progress):
            raise BadCallError("progress must be a callable taking the count converted so far")
        return self._set_key_storage(mode, progress, audit.parameters(time.time()))

    def _set_key_storage(
        self, mode: str, progress: Callable[[int], object] | None, params: dict[str, Any]
    ) -> Operation[int]:
        if mode == "plain":
            (current,) = yield Execute(self._sql(queries.KEY_STORAGE))
            if current != "plain":
                raise BadCallError(
                    "session keys are kept hashed; that cannot be undone (the keys "
                    "themselves are no longer stored)"
                )
            return 0
        yield Execute(BEGIN, fetch=Fetch.ROWCOUNT)
        yield Execute(self._sql(queries.LOCK_SESSIONS), fetch=Fetch.ROWCOUNT)
        (events,) = yield Execute(self._sql(queries.HASH_KEYS, **LOGS), params)
        yield Execute(COMMIT, fetch=Fetch.ROWCOUNT)
        audit.emit(events)
        converted, after = 0, ""
        batch = {"prefix": STORED_PREFIX, "batch": queries.CONVERT_BATCH}
        while True:
            count, last = yield Execute(self._sql(queries.CONVERT_KEYS), {**batch, "after": after})
            if last is None:
                return converted
            converted += count
            after = last
            if progress is not None:
                progress(converted)

    def load_ttl(self) -> Operation[float]:
        row = yield Execute(self._sql(queries.GET_TTL))
        self.ttl = float(row[0])
        return self.ttl

    def _session_filter(self, uid: object, expired: object) -> tuple[str, dict[str, Any]]:
        userid = checks.userid(uid, allow_all=True)
        only_expired = checks.flag(expired, "expired")
        fragments = []
        if userid:
            fragments.append(queries.SESSIONS_OF_USER)
        if only_expired:
            fragments.append(queries.SESSIONS_EXPIRED)
        params = {
            "userid": userid,
            "batch": queries.KILL_BATCH,
            "end_live": not only_expired,
            "how": "purge" if only_expired else "kill_sessions",
            **audit.parameters(time.time()),
        }
        return conjunction(fragments), params

    @retry_safe
    def list_sessions(self, uid: object, expired: object) -> Query[SessionRow]:
        where, params = self._session_filter(uid, expired)
        query = self._sql(queries.LIST_SESSIONS, where=where, expiry=queries.SESSION_EXPIRY)
        return Query(query, params, _session_row)

    @retry_safe
    def sessions(self, uid: object, expired: object, key: object) -> Query[Session]:
        where, params = self._session_filter(uid, expired)
        text = None if key is None else checks.session_key(key)
        if text is None or not could_be_stored(text):  # no session is the current one
            params.update(key=None, stored=None)
        else:
            params.update(key=text, stored=stored_form(text))
        query = self._sql(queries.SESSIONS, where=where, expiry=queries.SESSION_EXPIRY)
        return Query(query, params, _session)

    @retry_safe
    def kill_sessions(self, uid: object, expired: object) -> Operation[int]:
        where, params = self._session_filter(uid, expired)
        query = self._sql(queries.KILL_SESSIONS, where=where, **LOGS)
        return self._in_batches(query, params, queries.KILL_BATCH)

    def _in_batches(self, query: str, params: dict[str, Any], batch: int) -> Operation[int]:
        """Run a statement that deletes up to ``batch`` rows (returning the count and its
        events) until a batch comes up short; return the total. ``first`` tells the
        statement whether it runs for the first time."""
        done = 0
        while True:
            count = yield from self._count(query, {**params, "first": not done})
            done += count
            if count < batch:
                return done

    @retry_safe
    def end_session(self, session_id: object) -> Operation[int]:
        text = checks.text(session_id, "session_id", MAX_SOURCE)
        params = {"session_id": text, **audit.parameters(time.time())}
        return self._end_session(params)

    def _end_session(self, params: dict[str, Any]) -> Operation[int]:
        if not SESSION_ID_SHAPE.fullmatch(params["session_id"]):
            return 0
        return (yield from self._count(self._sql(queries.END_SESSION, **LOGS), params))

    @retry_safe
    def end_key_session(self, key: object) -> Operation[int]:
        """End the live session ``key`` opened: 1, or 0 when it has none (the facades'
        ``logout``)."""
        text = checks.session_key(key)
        return self._end_key_session(text)

    def _end_key_session(self, key: str) -> Operation[int]:
        if not could_be_stored(key):
            return 0
        params = {
            "key": key,
            "stored": stored_form(key),
            "legacy": looks_like_legacy_key(key),
            **audit.parameters(time.time()),
        }
        return (yield from self._count(self._sql(queries.END_KEY_SESSION, **LOGS), params))

    @retry_safe  # writing the same data twice leaves what writing it once does
    def set_session_data(self, key: object, data: object) -> Operation[Status]:
        text = checks.session_key(key)
        return self._set_session_data(text, self.codec.dumps(data))

    def _set_session_data(self, key: str, data: str | None) -> Operation[Status]:
        if not could_be_stored(key):
            return NOT_FOUND
        params = {
            "key": key,
            "stored": stored_form(key),
            "legacy": looks_like_legacy_key(key),
            "data": data,
            "now": time.time(),
        }
        row = yield Execute(self._sql(queries.SET_SESSION_DATA), params)
        if self.cache is not None:
            self.cache.forget_key(key)
        if row is None or not row[0]:
            return NOT_FOUND
        return OK if row[1] else EXPIRED

    @retry_safe
    def end_other_sessions(self, key: object) -> Operation[int]:
        text = checks.session_key(key)
        return self._end_other_sessions(text)

    def _end_other_sessions(self, key: str) -> Operation[int]:
        if not could_be_stored(key):
            return 0
        params = {"key": key, "stored": stored_form(key), **audit.parameters(time.time())}
        return (yield from self._count(self._sql(queries.END_OTHER_SESSIONS, **LOGS), params))

    # -- importing from pgusers 0.9 ------------------------------------------------------

    def import_legacy(
        self,
        from_schema: object,
        dry_run: object,
        sessions: object,
        on_conflict: object,
        progress: object,
    ) -> Operation[ImportReport]:
        source = checks.text(from_schema, "from_schema", 63)
        if len(source.encode()) > 63:
            raise BadCallError("from_schema is longer than PostgreSQL's 63-byte names")
        if source == self.schema:
            raise BadCallError(
                f"from_schema {source!r} is pgusers' own schema; name the schema of the "
                "pgusers 0.9 tables (usually 'public')"
            )
        if not isinstance(sessions, str) or sessions not in SESSION_MODES:
            raise BadCallError(f"sessions must be {' or '.join(map(repr, SESSION_MODES))}")
        allowed = checks.names(on_conflict, "on_conflict", RESOLUTIONS)
        if progress is not None and not callable(progress):
            raise BadCallError("progress must be a callable taking a stage and a count")
        importer = Importer(
            self.schema,
            source,
            dry_run=checks.flag(dry_run, "dry_run"),
            sessions=sessions,
            resolutions=frozenset(allowed),
            progress=progress,
            audit=audit.parameters(time.time()),
        )
        return importer.run()

    # -- the audit trail ------------------------------------------------------------

    @retry_safe
    def events(
        self, userid: object, kinds: object, since: object, until: object, newest_first: object
    ) -> Query[Event]:
        params: dict[str, Any] = {}
        if userid is not None:
            params["userid"] = checks.userid(userid)
        if kinds is not None:
            params["kinds"] = checks.names(kinds, "kinds", audit.KINDS)
        if since is not None:
            params["since"] = checks.moment(since, "since")
        if until is not None:
            params["until"] = checks.moment(until, "until")
        newest = checks.flag(newest_first, "newest_first")
        order = queries.NEWEST_FIRST if newest else queries.OLDEST_FIRST
        where = conjunction([queries.EVENTS_BY[name] for name in params])
        return Query(self._sql(queries.EVENTS, where=where, order=order), params, _event)

    @retry_safe
    def purge_events(self, before: object) -> Operation[int]:
        params = {
            "before": checks.moment(before, "before"),
            "batch": queries.PURGE_BATCH,
            **audit.parameters(time.time()),
        }
        query = self._sql(queries.PURGE_EVENTS, logged=LOGGED)
        return self._in_batches(query, params, queries.PURGE_BATCH)

    # -- for the HTTP service and the command line (not on the facades) ------------

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
            **audit.parameters(time.time()),
        }
        return self._made_api_key(params, secret)

    def _made_api_key(self, params: dict[str, Any], secret: str) -> Operation[tuple[str, str]]:
        query = self._sql(queries.CREATE_API_KEY, happened=queries.API_KEY_EVENT, **LOGS)
        yield from self._logged(query, params)
        return params["key_id"], secret

    @retry_safe
    def revoke_api_key(self, key_id: object) -> Operation[Status]:
        params = {
            "key_id": checks.text(key_id, "key_id", 16),
            "kind": "apikey.revoked",
            **audit.parameters(time.time()),
        }
        query = self._sql(queries.REVOKE_API_KEY, happened=queries.API_KEY_EVENT, **LOGS)
        return self._status_of(query, params)

    @retry_safe
    def api_keys(self) -> Query[ApiKey]:
        return Query(self._sql(queries.API_KEYS), {}, ApiKey._make)

    @retry_safe
    def api_key_scope(self, key: object) -> Operation[tuple[str, str, int | None] | None]:
        """The id, scope and maker of a live API key whose maker still has its rights,
        or None (a malformed one without a statement)."""
        text = checks.session_key(key)
        if not looks_like_api_key(text):
            return None
        row = yield Execute(self._sql(queries.API_KEY_SCOPE), (digest(text),))
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
        names = [name for name in queries.ADMIN_USERS_BY if name in params]
        where = conjunction([queries.ADMIN_USERS_BY[name] for name in names])
        rows = yield Execute(self._sql(queries.ADMIN_USERS, where=where), params, Fetch.ALL)
        # extra_data is the last column, decoded like everywhere else
        return [Account._make((*row[:-1], self._decode(row[-1]))) for row in rows]

    @retry_safe
    def settings(self) -> Operation[Settings]:
        row = yield Execute(self._sql(queries.READ_SETTINGS), ())
        return Settings._make(row)


def _failure_row(row: tuple[str, int, datetime, float]) -> LoginFailureRow:
    subject, failures, last_at, retry_after = row
    kind, _, value = subject.partition(":")
    if kind == "pair":  # a name from one source: "ada from 198.51.100.7"
        name, _, source = value.partition(queries.PAIR_SEPARATOR)
        value = f"{name} from {source or 'no source'}"
    return LoginFailureRow(kind, value, failures, last_at.timestamp(), retry_after)


def _token_status(used: tuple[bool] | None) -> Status:
    """The status of a token use: no row, the token was not there (or used already)."""
    if used is None:
        return NOT_FOUND
    return OK if used[0] else EXPIRED


def _session_row(row: tuple[str, str, datetime]) -> SessionRow:
    username, key, expires_at = row
    return SessionRow(username, key, expires_at.timestamp())


def _session(row: tuple[Any, ...]) -> Session:
    session_id, userid, username, created, seen, expires, source, agent, current = row
    return Session(
        session_id,
        userid,
        username,
        created.timestamp(),
        seen.timestamp(),
        expires.timestamp(),
        source,
        agent,
        bool(current),
    )


def _event(row: tuple[Any, ...]) -> Event:
    event_id, at, kind, userid, actor, source, session_id, detail = row
    return Event(event_id, at.timestamp(), kind, userid, actor, source, session_id, detail)
