"""What every route of the service shares: the userspace, opened on first use, and
the calls the service makes that are not methods of a userspace (API keys, pages of
accounts, the settings)."""

import hashlib
import hmac
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar

from starlette.requests import Request

from pgusers import _door as door
from pgusers._aio import AsyncUserSpace, PerLoop
from pgusers._door import Core
from pgusers._results import Account, ApiKey, Session, Settings, Status

CONSOLE_SESSION: Final = {"pgusers_console": True}
"""The data a console session carries: the API refuses such a session's key, so that
the console's rule (a password entered in the last ten minutes before a change)
cannot be stepped around by sending its cookie as a bearer token."""


def is_console_session(data: Any) -> bool:
    return isinstance(data, dict) and data.get("pgusers_console") is True


REGISTRATIONS_PER_SOURCE: Final = 10
REGISTRATION_WINDOW: Final = 600.0
MAX_REGISTERING_SOURCES: Final = 10_000


@dataclass
class RegistrationThrottle:
    """At most REGISTRATIONS_PER_SOURCE attempts to register per source within
    REGISTRATION_WINDOW seconds, in this process: each attempt hashes a password and
    tells whether a name or email is taken, so neither may be had in bulk. Memory is
    bounded: past MAX_REGISTERING_SOURCES sources, the oldest windows are dropped."""

    _attempts: dict[str | None, list[float]] = field(default_factory=dict)

    def wait(self, source: str | None) -> float:
        """Seconds ``source`` must wait before it may try again (0: count it, go on)."""
        now = time.monotonic()
        recent = [at for at in self._attempts.pop(source, []) if now - at < REGISTRATION_WINDOW]
        if len(recent) >= REGISTRATIONS_PER_SOURCE:
            self._attempts[source] = recent
            return REGISTRATION_WINDOW - (now - recent[0])
        recent.append(now)
        self._attempts[source] = recent
        while len(self._attempts) > MAX_REGISTERING_SOURCES:
            del self._attempts[next(iter(self._attempts))]
        return 0.0


SETUP_LIFETIME: Final = 15 * 60.0
"""How long the first-administrator setup link works, in seconds."""
MAX_REMEMBERED_KEYS: Final = 1000

T = TypeVar("T")
ApiKeyGrant = tuple[str, str, int | None]
"""A live API key's id, scope, and the userid whose rights it acts with (None: the
operator's)."""


async def first(rows: AsyncIterator[T], limit: int) -> list[T]:
    """The first ``limit`` items of a stream, closing it when it is not read to the end."""
    taken: list[T] = []
    async for item in rows:
        taken.append(item)
        if len(taken) >= limit:
            break
    closer = getattr(rows, "aclose", None)
    if closer is not None:
        await closer()
    return taken


def client_address(request: Request) -> str | None:
    """The client's address, recorded as the source of logins and changes."""
    return request.client.host if request.client else None


def service_of(request: Request) -> "Service":
    """The service a request of the application came to."""
    service: Service = request.app.state.service
    return service


async def current_session(space: AsyncUserSpace, userid: int, key: str) -> Session | None:
    """The session of ``key``, found among its user's (None once it has ended)."""
    async with space.sessions(userid, key=key) as rows:
        async for session in rows:
            if session.current:
                return session
    return None


@dataclass
class SetupLink:
    """The one-time link that lets the first visitor create the first administrator."""

    digest: bytes
    expires_at: float
    used: bool = False

    @classmethod
    def new(cls) -> tuple["SetupLink", str]:
        token = secrets.token_urlsafe(32)
        return cls(hashlib.sha256(token.encode()).digest(), time.time() + SETUP_LIFETIME), token

    def take(self, token: str) -> bool:
        """Accept ``token`` and mark the link used, in one step with no ``await`` in it,
        so that of requests racing with the link exactly one gets it; :meth:`give_back`
        when what it was taken for failed."""
        if not self.accepts(token):
            return False
        self.used = True
        return True

    def give_back(self) -> None:
        self.used = False

    def accepts(self, token: str) -> bool:
        given = hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()
        return (
            not self.used
            and time.time() < self.expires_at
            and hmac.compare_digest(given, self.digest)
        )


@dataclass
class Service:
    """The service's state: how to reach the userspace and what the app was made with."""

    spaces: PerLoop
    registration: bool
    secret: bytes
    api_key_cache: float
    max_session_data: int = 4096
    setup: SetupLink | None = None
    registrations: RegistrationThrottle = field(default_factory=RegistrationThrottle)
    metrics: Any = None
    """The service's :class:`pgusers.metrics.Metrics`, when it counts."""
    _api_keys: dict[bytes, tuple[ApiKeyGrant, float]] = field(default_factory=dict, repr=False)

    async def space(self) -> AsyncUserSpace:
        """The userspace (of the running event loop)."""
        return await self.spaces.get()

    async def close(self) -> None:
        """Close the userspace if the service opened it from a factory."""
        await self.spaces.close()

    async def api_key(self, key: str) -> ApiKeyGrant | None:
        """The id and scope of a live API key, or None. A key found is remembered for
        ``api_key_cache`` seconds, so a server calling ``/v1/check`` on every request
        costs one statement, not two; revoking through this service forgets at once."""
        digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()
        now = time.monotonic()
        remembered = self._api_keys.get(digest)
        if remembered is not None and now - remembered[1] < self.api_key_cache:
            return remembered[0]
        found = await door.arun(await self.space(), Core.api_key_scope, key)
        if found is None:
            self._api_keys.pop(digest, None)
        elif self.api_key_cache > 0:
            if len(self._api_keys) >= MAX_REMEMBERED_KEYS:
                self._api_keys.clear()
            self._api_keys[digest] = (found, now)
        return found

    async def data_as_json(self, data: object) -> Any:
        """Session or user data as JSON, by the codec's own lossless rules (a Decimal
        stays text, a NaN or bytes are tagged): whatever was stored can be answered."""
        if data is None:
            return None
        return door.codec(await self.space()).encode(data)

    async def create_api_key(self, name: str, scope: str, maker: int | None) -> tuple[str, str]:
        return await door.arun(await self.space(), Core.create_api_key, name, scope, maker)

    async def revoke_api_key(self, key_id: str) -> Status:
        status = await door.arun(await self.space(), Core.revoke_api_key, key_id)
        self._api_keys.clear()
        return status

    async def api_keys(self) -> AsyncIterator[ApiKey]:
        async for key in door.astream(await self.space(), Core.api_keys):
            yield key

    async def accounts(
        self, search: str | None, after: int, limit: int, filters: dict[str, bool]
    ) -> list[Account]:
        return await door.arun(await self.space(), Core.accounts, search, after, limit, filters)

    async def account(self, userid: int) -> Account | None:
        found = await door.arun(await self.space(), Core.account, userid)
        return found[0] if found else None

    async def settings(self) -> Settings:
        return await (await self.space()).settings()

    async def has_admin(self) -> bool:
        return bool(await self.accounts(None, 0, 1, {"admin": True}))
