"""What every domain's operations share: the userspace's state, and running a
statement that writes events.

Each public method of a part checks its arguments, then returns an
:data:`~pgusers._core.steps.Operation`: a generator that yields the SQL statements
and password work it needs (see :mod:`pgusers._core.steps`). Arguments are checked
before the first step, so a bad call never reaches the database. The parts are put
together as :class:`pgusers._core.operations.Core`.
"""

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, Generic, TypeVar

from psycopg import errors as pgerrors
from psycopg.types.json import Jsonb

from pgusers._core import recording
from pgusers._core.cache import SessionCache
from pgusers._core.codec import Codec
from pgusers._core.passwords import Passwords
from pgusers._core.schema import LAST_WAY_IN
from pgusers._core.sealing import HOW_TO_SET, SecretBox
from pgusers._core.sql import LOG_EVENTS, LOGGED, SESSION_CHANGES, render
from pgusers._core.steps import Execute, Offload, Operation
from pgusers._errors import BadCallError, WeakPasswordError
from pgusers._results import LAST_METHOD, NOT_FOUND, OK, Status

DEFAULT_TTL = 864000.0

MAX_SOURCE: Final = 255

LOGS: Final = {"log": LOG_EVENTS, "logged": LOGGED}
"""The fragments of a statement that writes events: where they are written, and the
column that returns them."""

_DUPLICATES = {
    "users_username_key": "a user with that username already exists",
    "users_email_key": "a user with that email already exists",
    "users_username_skeleton_key": (
        "a user with a username that looks the same (confusable characters) already exists"
    ),
}


def is_last_way(error: Exception) -> bool:
    """Whether a statement failed because it would remove a user's last way to sign in
    (the trigger of schema version 17 refused it)."""
    return isinstance(error, pgerrors.RaiseException) and error.diag.message_primary == LAST_WAY_IN


def duplicate(error: pgerrors.UniqueViolation) -> BadCallError:
    return BadCallError(
        _DUPLICATES.get(
            error.diag.constraint_name or "", "a user with that username or email already exists"
        )
    )


R = TypeVar("R")
"""What a streamed query's rows become."""


BreachLookup = Callable[[str], tuple[int | None, str]]
"""How often the password of a SHA-1 (hex, upper case) appears in known breaches: the
count, or None and why the source could not answer (see pgusers._drivers.breaches)."""

PASSWORD_POLICY: Final = """
    SELECT password_min_length, password_max_length, breached_check FROM {schema}.settings
"""

RECORD_EVENT: Final = """
    WITH happened AS (
        SELECT %(kind)s::text AS kind, %(userid)s::bigint AS userid,
               NULL::text AS session_id, %(detail)s::jsonb AS detail
    ), {log}
    SELECT {logged}
"""
"""Write one event that comes with no change of its own (a login of a disabled user, a
breach check that could not be made)."""


@dataclass(frozen=True, slots=True)
class Query(Generic[R]):
    """A streamed query: the SQL, its parameters and how each row becomes a result."""

    sql: str
    params: dict[str, Any]
    convert: Callable[[Any], R]


class Part:
    """What a UserSpace knows besides its connections: schema, codec, hasher, TTL,
    and its session cache, if any."""

    def __init__(
        self,
        schema: str,
        codec: Codec,
        passwords: Passwords,
        cache: SessionCache | None = None,
        *,
        box: SecretBox | None = None,
        breaches: BreachLookup | None = None,
        providers: Any = None,
    ) -> None:
        self.schema = schema
        self.cache = cache
        self.box = box
        self.breaches = breaches
        self.providers = providers
        """What asks identity providers over HTTP (see pgusers._core.federation)."""
        self.codec = codec
        self.passwords = passwords
        self.ttl = DEFAULT_TTL

    def _sql(self, template: str, **fragments: str) -> str:
        return render(template, self.schema, **fragments)

    def _sealing(self) -> SecretBox:
        """The box that seals secrets the server must read again, or a refusal that
        says how to give one."""
        if self.box is None:
            raise BadCallError(f"this needs a secret key to seal secrets with: {HOW_TO_SET}")
        return self.box

    def _policy_allows(
        self, secret: str, what: str, logging: dict[str, Any], userid: int | None = None
    ) -> Operation[None]:
        """Refuse ``secret`` with :class:`WeakPasswordError` when the password policy
        does: too short, too long, or found in known breaches. When the breach check
        cannot be made, ``best_effort`` lets the password through and records why,
        ``required`` refuses."""
        shortest, longest, mode = yield Execute(self._sql(PASSWORD_POLICY))
        if shortest is not None and len(secret) < shortest:
            raise WeakPasswordError(f"{what} must be at least {shortest} characters long")
        if longest is not None and len(secret) > longest:
            raise WeakPasswordError(f"{what} must be at most {longest} characters long")
        if mode == "off" or self.breaches is None:
            return
        sha1 = hashlib.sha1(secret.encode(), usedforsecurity=False).hexdigest().upper()
        seen, why = yield Offload(self.breaches, (sha1,), waits=True)
        if seen:
            raise WeakPasswordError(
                f"{what} appears in {seen:,} known data breaches: choose another"
            )
        if seen is None:
            if mode == "required":
                raise BadCallError(
                    f"the breached-password check could not be made ({why}): try again later"
                )
            unchecked = {
                "kind": "password.breach_check_failed",
                "userid": userid,
                "detail": Jsonb({"reason": why}),
            }
            yield from self._logged(self._sql(RECORD_EVENT, **LOGS), {**logging, **unchecked})

    def _decode(self, data: Any) -> Any:
        return None if data is None else self.codec.decode(data)

    def _logged(self, query: str, params: Any) -> Operation[tuple[Any, ...] | None]:
        """Run a statement that writes events (its last column); log them and return
        the rest of its row, or None when it returned no row."""
        row = yield Execute(query, params)
        if row is None:
            return None
        *values, events = row
        recording.emit(events)
        if self.cache is not None and events:
            for event in events:  # this process forgets at once; others hear the NOTIFY
                if event["kind"] in SESSION_CHANGES:
                    self.cache.apply(event)
        return tuple(values)

    def _status_of(self, query: str, params: Any) -> Operation[Status]:
        """Run a statement that returns the row it changed (and its events): OK, or
        NOT_FOUND."""
        try:
            row = yield from self._logged(query, params)
        except pgerrors.UniqueViolation as error:
            raise duplicate(error) from None
        return NOT_FOUND if row is None else OK

    def _status_keeping_a_way_in(self, query: str, params: Any) -> Operation[Status]:
        """:meth:`_status_of` for a statement that removes a way to sign in:
        ``LAST_METHOD`` (and nothing changed) when it would remove a user's last."""
        try:
            return (yield from self._status_of(query, params))
        except pgerrors.RaiseException as error:
            if not is_last_way(error):
                raise
            return LAST_METHOD

    def _count(self, query: str, params: Any) -> Operation[int]:
        """Run a statement that returns a count (and its events); return the count."""
        row = yield from self._logged(query, params)
        assert row is not None  # the statement always returns one row
        return int(row[0])

    def _change(self, query: str, params: dict[str, Any]) -> Operation[None]:
        yield from self._logged(query, params)

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
