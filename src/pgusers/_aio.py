"""AsyncUserSpace: the asyncio API, sharing every rule and statement with UserSpace.

The operations come from :class:`pgusers._core.operations.Core` unchanged; only
the driver differs (:class:`pgusers._drivers.driver_async.AsyncDriver`).
"""

import asyncio
import weakref
from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import datetime
from typing import Any, ClassVar, Self

import psycopg

from pgusers._core.operations import Core
from pgusers._drivers.driver_async import AsyncDriver
from pgusers._drivers.target import Target
from pgusers._errors import BadCallError
from pgusers._opening import Opening
from pgusers._options import Options
from pgusers._registry import Registry
from pgusers._results import (
    AsyncRows,
    CheckResult,
    Enrollment,
    Event,
    ExternalLogin,
    Factors,
    FoundUser,
    Identity,
    IdentityProvider,
    ImportReport,
    LoginFailureRow,
    LoginOutcome,
    LoginResult,
    MailSettings,
    Member,
    Org,
    OutboxEntry,
    OutboxMessage,
    PasskeyChallenge,
    Role,
    RoleGrant,
    Session,
    SessionInfo,
    SessionRow,
    Settings,
    Status,
    UserRow,
    Webhook,
)


class AsyncUserSpace(Opening):
    """User accounts and sessions in one PostgreSQL database, for asyncio.

    Takes the same arguments as :class:`pgusers.UserSpace`, and has the same
    methods as coroutines (``all_users`` and ``list_sessions`` return async
    iterators). Open it with ``async with AsyncUserSpace(...) as usp:`` or
    ``usp = await AsyncUserSpace.connect(...)``. Within one event loop, the same
    target gives the same object; one left open is closed when its loop shuts down.
    """

    _registry: ClassVar[Registry["AsyncUserSpace"]] = Registry()
    _driver: AsyncDriver

    @classmethod
    def _registry_key(cls, space_key: tuple[str, ...]) -> tuple[object, ...]:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            raise BadCallError(
                "AsyncUserSpace must be created inside a running event loop"
            ) from None
        return (loop, *space_key)

    def _new_driver(self, where: Target, options: Options, core: Core) -> AsyncDriver:
        return AsyncDriver(where, options.wiring(), core, self._name(where))

    @classmethod
    async def connect(cls, dbname: str | None = None, **kwargs: Any) -> "AsyncUserSpace":
        """Open a userspace and return it (the async way to write ``UserSpace(...)``)."""
        space = cls(dbname, **kwargs)
        await space._open()
        return space

    async def _open(self) -> None:
        if await self._driver.open():
            self._driver.close_at_shutdown(self.close)

    async def close(self) -> None:
        """Close the connections; safe to call twice. A userspace still open when
        its event loop shuts down (``asyncio.run`` returning) is closed then."""
        self._registry.forget(self._key, self)
        await self._driver.close()

    async def __aenter__(self) -> Self:
        await self._open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def create_user(
        self,
        username: str,
        password: str,
        email: str,
        admin: bool = False,
        extra_data: Any = None,
    ) -> int:
        """Create a user and return its numeric userid.

        Raises :class:`BadCallError` if the username or the email is taken
        (compared case-insensitively, look-alikes included) or an argument is invalid.
        """
        return await self._driver.run(
            self._core.create_user, username, password, email, admin, extra_data
        )

    async def validate_user(
        self, username: str, password: str, extra_data: Any = None
    ) -> LoginResult:
        """Log a user in: return ``(key, admin, userid)``, or ``("", False, None)`` if
        the username is unknown or the password wrong."""
        return await self._driver.run(self._core.validate_user, username, password, extra_data)

    async def login(
        self,
        username: str,
        password: str,
        *,
        source: str | None = None,
        user_agent: str | None = None,
        extra_data: Any = None,
    ) -> LoginOutcome:
        """Log a user in, throttled: ``(status, key, admin, userid, retry_after)``.

        ``status`` is ``OK`` (with a new session key), ``REJECTED`` (unknown user or
        wrong password, one answer), ``THROTTLED`` (too many failures for this
        username, or for ``source`` such as the client's address: wait
        ``retry_after`` seconds) or ``DISABLED`` (right password, disabled account).
        ``source`` and ``user_agent`` are recorded with the session.
        """
        return await self._driver.run(
            self._core.login, username, password, source, user_agent, extra_data
        )

    async def set_login_policy(
        self,
        *,
        free_failures: int | None = None,
        max_backoff: float | None = None,
        source_limit: int | None = None,
        source_window: float | None = None,
        source_block: float | None = None,
        admins_need_mfa: bool | None = None,
    ) -> None:
        """Change the login policy (None leaves a value as it is; stored in the
        database, so every process follows it): ``free_failures`` per username
        (default 5) before a wait that doubles from 1 s up to ``max_backoff``
        (900 s); ``source_limit`` failures (50) from one source within
        ``source_window`` seconds (600) block it for ``source_block`` (600).
        With ``admins_need_mfa``, the service's pages send an administrator without
        a second factor to enroll one before anything else, and its API refuses
        their session the admin endpoints (see :meth:`needs_enrollment`)."""
        await self._driver.run(
            self._core.set_login_policy,
            free_failures,
            max_backoff,
            source_limit,
            source_window,
            source_block,
            admins_need_mfa,
        )

    def login_failures(self) -> AsyncRows[LoginFailureRow]:
        """Yield the login names and sources with failures in the last day, the most
        recent first, each with how long it is still throttled.
        On AsyncUserSpace, iterate with ``async for``."""
        return AsyncRows(self._driver.stream(self._core.login_failures))

    async def clear_login_failures(
        self, username: str | None = None, source: str | None = None
    ) -> int:
        """Forget the failed logins of a username and/or a source, lifting their
        throttle; return how many counts were removed (0, 1 or 2)."""
        return await self._driver.run(self._core.clear_login_failures, username, source)

    async def delete_user(self, username: str | None = None, userid: int | None = None) -> Status:
        """Delete a user, and its sessions, by username or userid: ``OK`` or ``NOT_FOUND``."""
        return await self._driver.run(self._core.delete_user, username, userid)

    async def change_password(
        self,
        userid: int,
        newpassword: str,
        oldpassword: str | None = None,
        *,
        end_sessions: bool = False,
    ) -> Status:
        """Set a new password: ``OK``, ``NOT_FOUND``, or ``REJECTED`` when ``oldpassword``
        is given and does not match. With ``end_sessions=True`` the user's sessions end."""
        return await self._driver.run(
            self._core.change_password, userid, newpassword, oldpassword, end_sessions
        )

    async def check_key(self, key: str) -> CheckResult:
        """Check a session key and slide its expiry: ``(status, username, userid,
        extra_data)`` with status ``OK``, ``NOT_FOUND`` or ``EXPIRED`` (the last two
        with Nones). Any string that is not a live key is ``NOT_FOUND``. With
        ``session_cache=True`` a recent answer may come from memory, without a query."""
        cached = self._core.cached(key)
        if cached is not None:
            return cached
        return await self._driver.run(self._core.check_key, key)

    async def set_session_TTL(self, secs: float) -> None:  # noqa: N802 - the original's name
        """Set the time to live, in seconds, given to new and checked sessions."""
        await self._driver.run(self._core.set_session_TTL, secs)

    async def find_user(
        self,
        username: str | None = None,
        email: str | None = None,
        userid: int | None = None,
    ) -> FoundUser | None:
        """Return the user matching every argument given, or None: a dict
        (:class:`FoundUser`) with ``userid``, ``username``, ``email``, ``admin``,
        ``extra_data``, ``email_verified`` and ``disabled``."""
        return await self._driver.run(self._core.find_user, username, email, userid)

    async def modify_user(
        self,
        userid: int,
        username: str | None = None,
        email: str | None = None,
        extra_data: Any = None,
    ) -> Status:
        """Change the fields given (None leaves a field as it is): ``OK`` or ``NOT_FOUND``."""
        return await self._driver.run(self._core.modify_user, userid, username, email, extra_data)

    async def is_admin(self, userid: int) -> bool:
        """Tell whether the user is an administrator (False for an unknown userid)."""
        return await self._driver.run(self._core.is_admin, userid)

    async def set_admin(self, userid: int, admin: bool = True) -> Status:
        """Grant (or, with ``admin=False``, revoke) admin rights: ``OK`` or ``NOT_FOUND``."""
        return await self._driver.run(self._core.set_admin, userid, admin)

    async def disable_user(self, userid: int, disabled: bool = True) -> Status:
        """Disable a user (or, with ``disabled=False``, enable it again): its sessions
        end, it cannot log in, and its keys are not found. ``OK`` or ``NOT_FOUND``."""
        return await self._driver.run(self._core.disable_user, userid, disabled)

    async def issue_token(
        self,
        userid: int,
        purpose: str,
        *,
        ttl: float | None = None,
        email: str | None = None,
        org: int | str | None = None,
        role: str | None = None,
        anyone: bool = False,
    ) -> str:
        """Return a one-time token for ``purpose``: ``"reset_password"``,
        ``"verify_email"`` or ``"change_email"`` (with ``email=``, the new address),
        or ``"invite"``: an invitation made by ``userid`` to organization ``org``
        with ``role`` there, for the user whose verified address is ``email=``, or,
        with ``anyone=True``, for whoever has the token (see :meth:`accept_invite`).

        The token lives ``ttl`` seconds (default one hour for a reset, seven days for
        an invitation, three days otherwise); a reset or a verification revokes the
        user's older tokens of the same purpose.
        """
        if purpose == "invite":
            return await self._driver.run(
                self._core.issue_invite, userid, org, role, email, anyone, ttl
            )
        if org is not None or role is not None or anyone:
            raise BadCallError('org=, role= and anyone= are for purpose="invite"')
        return await self._driver.run(self._core.issue_token, userid, purpose, ttl, email)

    async def accept_invite(self, token: str, key: str) -> Status:
        """Accept an invitation for the user of session ``key``: they join its
        organization with its role. ``OK``; ``REJECTED`` when the invitation names
        another address, or one the user has not verified, or ``key`` is no live
        session; ``NOT_FOUND`` (unknown or used) or ``EXPIRED``."""
        return await self._driver.run(self._core.accept_invite, token, key)

    async def reset_password(
        self, token: str, newpassword: str, *, end_sessions: bool = True
    ) -> Status:
        """Set a new password with a ``"reset_password"`` token: ``OK``, ``NOT_FOUND``
        (unknown, used or revoked token) or ``EXPIRED``. The user's sessions end unless
        ``end_sessions=False``."""
        return await self._driver.run(self._core.reset_password, token, newpassword, end_sessions)

    async def verify_email(self, token: str) -> Status:
        """Use a ``"verify_email"`` token (the address is verified) or a
        ``"change_email"`` one (the new address replaces the old, verified):
        ``OK``, ``NOT_FOUND`` or ``EXPIRED``."""
        return await self._driver.run(self._core.verify_email, token)

    def all_users(self) -> AsyncRows[UserRow]:
        """Yield ``(userid, username, email, admin)`` for every user, by username.

        Close the stream (``async with`` or ``aclose()``) if you stop before its end.
        On AsyncUserSpace, iterate with ``async for``."""
        return AsyncRows(self._driver.stream(self._core.all_users))

    def list_sessions(self, uid: int, expired: bool = False) -> AsyncRows[SessionRow]:
        """Yield ``(username, key, expiration)`` for the user's sessions, or everyone's
        when ``uid`` is 0; only the expired ones when ``expired`` is True. Once keys
        are kept hashed, the session id stands where the key was.

        Close the stream (``async with`` or ``aclose()``) if you stop before its end.
        On AsyncUserSpace, iterate with ``async for``."""
        return AsyncRows(self._driver.stream(self._core.list_sessions, uid, expired))

    async def kill_sessions(self, uid: int, expired: bool = False) -> int:
        """End the user's sessions (everyone's when ``uid`` is 0; only the expired ones
        when ``expired``) and return how many ended."""
        return await self._driver.run(self._core.kill_sessions, uid, expired)

    def sessions(
        self, uid: int = 0, *, expired: bool = False, key: str | None = None
    ) -> AsyncRows[Session]:
        """Yield a :class:`Session` (id, userid, username, created, last seen, expiry,
        source, user agent, current) for each of the user's sessions, or everyone's
        when ``uid`` is 0; only the expired ones when ``expired``. Never the key:
        ``current`` marks the session whose key is ``key``, for "this device".

        Close the stream (``async with`` or ``aclose()``) if you stop before its end.
        On AsyncUserSpace, iterate with ``async for``."""
        return AsyncRows(self._driver.stream(self._core.sessions, uid, expired, key))

    async def end_session(self, session_id: str) -> int:
        """End one session by its id (from :meth:`sessions`); return 1, or 0 if there
        was none."""
        return await self._driver.run(self._core.end_session, session_id)

    async def set_session_data(self, key: str, data: Any) -> Status:
        """Replace the data of a live session (what ``check_key`` returns as its
        ``extra_data``): ``OK``, ``NOT_FOUND``, or ``EXPIRED``. The same rules as
        ``extra_data`` at login; the session's expiry does not move."""
        return await self._driver.run(self._core.set_session_data, key, data)

    async def end_other_sessions(self, key: str) -> int:
        """End every session of the key's user but the key's own ("log out everywhere
        else"); return how many ended (0 when the key is not a live session)."""
        return await self._driver.run(self._core.end_other_sessions, key)

    async def logout(self, key: str) -> int:
        """Log out: end the live session ``key`` opened, in one statement; return 1, or
        0 when it has none (unknown, expired or already ended). The other sessions of
        its user stay; :meth:`kill_sessions` ends them all."""
        return await self._driver.run(self._core.end_key_session, key)

    async def set_sessions_per_user(self, count: int | None) -> None:
        """Set how many sessions one user may have at once (100 by default; None: no
        limit). A login past it ends that user's oldest sessions, so that no account,
        however often it logs in, fills the database. Stored in the database."""
        await self._driver.run(self._core.set_sessions_per_user, count)

    # -- second factors -------------------------------------------------------------

    async def check_session(self, key: str, *, org: int | str | None = None) -> SessionInfo:
        """Check a session key as :meth:`check_key` does (the same one statement, the
        same cache), and say more: ``check_key``'s four fields, then ``admin``,
        ``session_id``, ``auth_methods`` (how the user proved who they are, such as
        ``("password", "totp")``) and ``authenticated_at`` (when they last did, a Unix
        time), for a framework to ask for a recent proof before a sensitive change;
        then the ``roles`` the user holds and the ``permissions`` they grant, held
        everywhere or (with ``org``, an organization's id or slug) there too. One
        statement; answers for no ``org`` come from the cache when it holds them."""
        cached = None if org is not None else self._core.cached_session(key)
        if cached is not None:
            return cached
        return await self._driver.run(self._core.check_session, key, org)

    async def authorize(
        self, conn: psycopg.AsyncConnection[Any], key: str, *, org: int | str | None = None
    ) -> SessionInfo:
        """Check ``key`` on the application's own connection ``conn``, inside its open
        transaction, and, for a live session, set for the rest of that transaction
        what row-level security policies read: ``<schema>.current_userid()``,
        ``<schema>.current_org()`` (``org``'s id) and ``<schema>.has_permission(text)``.
        One statement; it answers as :meth:`check_session` does. A key that is not live
        sets nothing (the answer's status says so). The settings are local to the
        transaction (``set_config(..., true)``): open one first (``with
        conn.transaction():``), or they end with the statement."""
        return await self._driver.run_on(conn, self._core.authorize, key, org)

    async def complete_login(
        self,
        ticket: str,
        *,
        totp: str | None = None,
        recovery_code: str | None = None,
        passkey: str | dict[str, Any] | None = None,
        source: str | None = None,
        user_agent: str | None = None,
    ) -> LoginOutcome:
        """Finish a login that answered ``MFA_REQUIRED``, with one answer: a code of
        the user's authenticator app (``totp``), one of their recovery codes, or a
        passkey's answer (``passkey``: the browser's JSON for the challenge of
        ``begin_passkey_login(ticket=...)``).

        ``status`` is ``OK`` (with a new session key), ``REJECTED`` (a wrong or reused
        answer, which counts as a failed login; or the password changed, the user was
        disabled or their sessions ended since the ticket was issued), ``THROTTLED``,
        ``EXPIRED`` (the ticket is past its 5 minutes or its 5 answers) or
        ``NOT_FOUND`` (no such ticket, or it was used). Each code is accepted once.
        """
        return await self._driver.run(
            self._core.complete_login, ticket, totp, recovery_code, source, user_agent, passkey
        )

    async def reauthenticate(
        self,
        key: str,
        *,
        password: str | None = None,
        totp: str | None = None,
        recovery_code: str | None = None,
    ) -> Status:
        """Prove again who the user of session ``key`` is, with one of their password,
        a TOTP code or a recovery code: ``OK`` (the session's ``authenticated_at`` is
        now, and the method joins its ``auth_methods``), ``REJECTED`` (counted as a
        failed login), ``THROTTLED`` or ``NOT_FOUND`` (no live session)."""
        return await self._driver.run(self._core.reauthenticate, key, password, totp, recovery_code)

    async def begin_totp(self, userid: int, *, label: str | None = None) -> Enrollment:
        """Start setting up a TOTP factor (an authenticator app) for a user: its id,
        the secret, the ``otpauth://`` URI and its QR code as SVG. The factor is used
        once :meth:`confirm_totp` has seen a code from the app, within 15 minutes.
        Needs the userspace's ``secret_key``, under which the secret is stored."""
        return await self._driver.run(self._core.begin_totp, userid, label)

    async def confirm_totp(self, userid: int, factor_id: str, code: str) -> Status:
        """Confirm a factor :meth:`begin_totp` started, with a code the app shows:
        ``OK`` (from now on a login asks for a code), ``REJECTED`` (wrong code) or
        ``NOT_FOUND`` (no such unconfirmed factor, or its 15 minutes are over)."""
        return await self._driver.run(self._core.confirm_totp, userid, factor_id, code)

    async def new_recovery_codes(self, userid: int) -> list[str]:
        """Make a user's recovery codes: 10 new ones, each usable once instead of a
        code from the app, replacing any earlier set. Only their digests are stored:
        show them to the user now."""
        return await self._driver.run(self._core.new_recovery_codes, userid)

    async def factors(self, userid: int) -> Factors:
        """A user's second factors (id, kind, label, created, last used, confirmed),
        oldest first, and how many recovery codes remain."""
        return await self._driver.run(self._core.factors, userid)

    async def set_webauthn(self, rp_id: str, rp_name: str, origins: Iterable[str]) -> None:
        """Set the relying party passkeys are bound to, stored in the database so every
        process agrees: ``rp_id`` (the site's domain, such as ``example.com``),
        ``rp_name`` (what the browser shows) and the ``origins`` the pages asking for
        passkeys are served from (``https://example.com``; ``http://localhost:8000``
        while developing), each on ``rp_id`` or below it."""
        await self._driver.run(self._core.set_webauthn, rp_id, rp_name, origins)

    async def begin_passkey_registration(
        self, key: str, *, label: str | None = None
    ) -> PasskeyChallenge:
        """Begin registering a passkey for the user of session ``key``, who must have
        proved who they are in the last ten minutes (``REJECTED`` otherwise;
        ``NOT_FOUND`` for no live session): the challenge's id and the creation
        options for ``PublicKeyCredential.parseCreationOptionsFromJSON``, valid five
        minutes."""
        return await self._driver.run(self._core.begin_passkey_registration, key, label)

    async def finish_passkey_registration(
        self, key: str, challenge_id: str, credential: str | dict[str, Any]
    ) -> str:
        """Finish a registration with the browser's answer (the JSON of the
        ``PublicKeyCredential`` that ``navigator.credentials.create`` gave), from the
        session that began it: the new factor's id. A refused answer, a used or
        expired challenge, or an authenticator registered already raise
        ``BadCallError`` saying which."""
        return await self._driver.run(
            self._core.finish_passkey_registration, key, challenge_id, credential
        )

    async def begin_passkey_login(
        self,
        username: str | None = None,
        *,
        ticket: str | None = None,
        source: str | None = None,
    ) -> PasskeyChallenge:
        """Begin signing in with a passkey: with no arguments, any passkey the browser
        holds for this site (a discoverable credential); with ``username``, one of that
        user's only; with the ``ticket`` of a login that answered ``MFA_REQUIRED``, the
        challenge of its second step (``NOT_FOUND`` for a ticket that is not live),
        answered through ``complete_login(ticket, passkey=...)``. ``source`` bounds how
        many unanswered challenges one address holds."""
        return await self._driver.run(self._core.begin_passkey_login, username, ticket, source)

    async def finish_passkey_login(
        self,
        challenge_id: str,
        credential: str | dict[str, Any],
        *,
        source: str | None = None,
        user_agent: str | None = None,
        extra_data: Any = None,
    ) -> LoginOutcome:
        """Finish signing in with the browser's answer: ``OK`` with a session key
        (whose ``auth_methods`` are ``("passkey",)``); ``REJECTED`` (an answer that
        does not verify, an unknown or flagged credential, missing user
        verification, a signature count that went back, which flags the credential);
        ``EXPIRED`` or ``NOT_FOUND`` (a challenge past its time, used or unknown);
        ``THROTTLED``; ``DISABLED``. Refusals count in the login throttle.
        ``extra_data`` is the new session's data, as in ``login``."""
        return await self._driver.run(
            self._core.finish_passkey_login,
            challenge_id,
            credential,
            source,
            user_agent,
            extra_data,
        )

    async def clear_passkey_flag(self, userid: int, factor_id: str) -> Status:
        """Let a passkey flagged as cloned sign in again (once its owner is known to
        hold the only copy): ``OK``, or ``NOT_FOUND`` for no flagged passkey of that
        id."""
        return await self._driver.run(self._core.clear_passkey_flag, userid, factor_id)

    async def rename_factor(self, userid: int, factor_id: str, label: str | None) -> Status:
        """Give one of a user's factors a new label (None: none): ``OK`` or
        ``NOT_FOUND``."""
        return await self._driver.run(self._core.rename_factor, userid, factor_id, label)

    # -- roles, permissions, organizations -------------------------------------------

    async def define_role(
        self, name: str, permissions: Iterable[str], *, description: str | None = None
    ) -> None:
        """Define a role, or change what it grants: ``permissions`` are names the
        application chooses (``"invoice:write"``; letters, digits and ``_ . : / * -``).
        Holders' sessions answer the new permissions at once, in every process."""
        await self._driver.run(self._core.define_role, name, permissions, description)

    async def delete_role(self, name: str) -> Status:
        """Delete a role and every grant of it: ``OK`` or ``NOT_FOUND``."""
        return await self._driver.run(self._core.delete_role, name)

    async def roles(self) -> list[Role]:
        """Every role, by name, with its permissions and description."""
        return await self._driver.run(self._core.roles)

    async def grant_role(self, userid: int, role: str, *, org: int | str | None = None) -> Status:
        """Give a user a role everywhere, or only in the organization ``org`` (its id
        or slug; the user must be a member): ``OK`` (held already included), or
        ``NOT_FOUND`` for no such user, role or organization."""
        return await self._driver.run(self._core.grant_role, userid, role, org)

    async def revoke_role(self, userid: int, role: str, *, org: int | str | None = None) -> Status:
        """Take a role back (everywhere, or in ``org``): ``OK`` or ``NOT_FOUND``. An
        organization's last owner keeps ``"owner"`` there (``BadCallError``)."""
        return await self._driver.run(self._core.revoke_role, userid, role, org)

    async def user_roles(self, userid: int) -> list[RoleGrant]:
        """The roles a user holds: everywhere (``org_id`` None) first, then by
        organization."""
        return await self._driver.run(self._core.user_roles, userid)

    def users_with_role(self, role: str, *, org: int | str | None = None) -> AsyncRows[UserRow]:
        """Yield the users who hold ``role`` everywhere (or in ``org``), by userid."""
        return AsyncRows(self._driver.stream(self._core.users_with_role, role, org))

    async def has_permission(
        self, userid: int, permission: str, *, org: int | str | None = None
    ) -> bool:
        """Whether a user holds a role granting ``permission`` everywhere, or in
        ``org``: for code that has a userid and no session."""
        return await self._driver.run(self._core.has_permission, userid, permission, org)

    async def create_org(self, name: str, *, slug: str | None = None) -> int:
        """Create an organization; ``slug`` (made from the name when not given) names
        it in URLs and calls. Returns its id."""
        return await self._driver.run(self._core.create_org, name, slug)

    async def delete_org(self, org: int | str) -> Status:
        """Delete an organization, its memberships and the roles held there."""
        return await self._driver.run(self._core.delete_org, org)

    async def orgs(self, userid: int) -> list[Org]:
        """The organizations a user is a member of."""
        return await self._driver.run(self._core.orgs, userid)

    def org_members(self, org: int | str) -> AsyncRows[Member]:
        """Yield an organization's members, by userid, with the roles they hold there."""
        return AsyncRows(self._driver.stream(self._core.org_members, org))

    async def add_member(self, org: int | str, userid: int, role: str) -> Status:
        """Make a user a member of an organization with ``role`` there: ``OK``, or
        ``NOT_FOUND`` for no such organization, user or role."""
        return await self._driver.run(self._core.add_member, org, userid, role)

    async def remove_member(self, org: int | str, userid: int) -> Status:
        """Remove a member, and the roles they hold there: ``OK`` or ``NOT_FOUND``. An
        organization's last owner cannot leave (``BadCallError``)."""
        return await self._driver.run(self._core.remove_member, org, userid)

    # -- signing in through other sites -------------------------------------------

    async def add_identity_provider(
        self,
        name: str,
        *,
        kind: str,
        client_id: str,
        client_secret: str,
        discovery_url: str | None = None,
        scopes: Iterable[str] | None = None,
        link_by_verified_email: bool = False,
        trusted_for_mfa: bool = False,
        allow_signup: bool = True,
        keep_claims: Iterable[str] | None = None,
        keep_tokens: bool = False,
    ) -> Status:
        """Let users sign in through a provider (``OK``; an existing one is replaced).
        ``kind`` is ``"oidc"`` (any OpenID Connect provider, by its
        ``discovery_url``), ``"github"``, or a preset: ``"google"``, ``"microsoft"``.
        The client secret is sealed under the ``secret_key``. See the linking rules
        in docs/security.md before setting ``link_by_verified_email``."""
        return await self._driver.run(
            self._core.add_identity_provider,
            name,
            kind,
            client_id,
            client_secret,
            discovery_url,
            scopes,
            link_by_verified_email,
            trusted_for_mfa,
            allow_signup,
            keep_claims,
            keep_tokens,
        )

    async def identity_providers(self) -> list[IdentityProvider]:
        """The providers users may sign in through, by name (never their secrets)."""
        return await self._driver.run(self._core.identity_providers)

    async def remove_identity_provider(self, name: str) -> Status:
        """Stop signing in through a provider: its identities go with it (``OK`` or
        ``NOT_FOUND``). Refused while a user could sign in through it alone."""
        return await self._driver.run(self._core.remove_identity_provider, name)

    async def begin_external_login(
        self,
        provider: str,
        redirect_uri: str,
        *,
        link_to_key: str | None = None,
        source: str | None = None,
    ) -> ExternalLogin:
        """Begin signing in through ``provider``: the URL to send the browser to, and
        the ``state`` to keep in the browser (a cookie) until the provider sends it
        back to ``redirect_uri``. With ``link_to_key`` (a session that proved who its
        user is in the last ten minutes), the provider's account is linked to that
        user instead. ``source`` bounds how many sign-ins one address has under way."""
        return await self._driver.run(
            self._core.begin_external_login, provider, redirect_uri, link_to_key, source
        )

    async def finish_external_login(
        self,
        state: str,
        callback: str | Mapping[str, str],
        *,
        source: str | None = None,
        user_agent: str | None = None,
        extra_data: Any = None,
    ) -> LoginOutcome:
        """Finish signing in with the ``state`` kept in the browser and the callback
        (the URL the browser came back to, or its query parameters): ``OK`` with a
        key, ``MFA_REQUIRED`` with a ticket (unless the provider is trusted for
        second factors), ``LINK_REQUIRED`` (see the linking rules), ``DISABLED``,
        ``EXPIRED``, or ``REJECTED`` (anything wrong: the event says what). A linking
        sign-in answers ``OK`` with no key: its session goes on."""
        return await self._driver.run(
            self._core.finish_external_login, state, callback, source, user_agent, extra_data
        )

    async def identities(self, userid: int) -> list[Identity]:
        """The accounts at other sites linked to a user, by provider."""
        return await self._driver.run(self._core.identities, userid)

    async def unlink_identity(self, key: str, provider: str) -> Status:
        """Unlink the signed-in user's account at ``provider``: ``OK``, ``NOT_FOUND``,
        ``REJECTED`` (the session last proved who its user is more than ten minutes
        ago) or ``LAST_METHOD`` (it is the user's last way to sign in)."""
        return await self._driver.run(self._core.unlink_identity, key, provider)

    async def provider_tokens(self, userid: int, provider: str) -> dict[str, Any] | None:
        """The tokens a provider kept with ``keep_tokens`` gave at the user's last
        sign-in (``access_token``, ``refresh_token``, ``expires_at``…), refreshed
        first when the access token has expired and a refresh token allows; None
        when none are kept."""
        return await self._driver.run(self._core.provider_tokens, userid, provider)

    async def remove_identity(self, userid: int, provider: str) -> Status:
        """Remove a user's account at ``provider`` (an administrator's call): ``OK``,
        ``NOT_FOUND`` or ``LAST_METHOD``."""
        return await self._driver.run(self._core.remove_identity, userid, provider)

    async def needs_enrollment(self, userid: int) -> bool:
        """Whether the login policy (``admins_need_mfa``) holds this user to a second
        factor they have not confirmed yet: an administrator without one, while the
        policy says so. False for no such user."""
        return await self._driver.run(self._core.needs_enrollment, userid)

    async def remove_factor(self, userid: int, factor_id: str) -> Status:
        """Remove one of a user's factors: ``OK`` or ``NOT_FOUND``. With the last
        confirmed factor, the recovery codes go too, and logins need the password
        alone again."""
        return await self._driver.run(self._core.remove_factor, userid, factor_id)

    async def settings(self) -> Settings:
        """Return the userspace's stored settings (:class:`Settings`): the session TTL
        and maximum age, how session keys are stored, event retention, the login
        policy and the per-user session cap. Every process follows these."""
        return await self._driver.run(self._core.settings)

    async def set_session_max_age(self, secs: float | None) -> None:
        """Set the absolute lifetime of sessions: a session ends ``secs`` after its
        login however often it is used (None: no limit, the default). Stored in the
        database, so every process follows it; it applies to existing sessions too."""
        await self._driver.run(self._core.set_session_max_age, secs)

    async def set_password_policy(
        self,
        *,
        min_length: int | None = 8,
        max_length: int | None = None,
        breached: str = "best_effort",
    ) -> None:
        """Set the password policy that ``create_user``, ``change_password`` and
        ``reset_password`` apply (stored in the database): the shortest and longest
        password (None: no rule; no composition rules) and the breached-password check
        (``"off"``, ``"best_effort"``: a check that cannot be made lets the password
        through and is recorded, or ``"required"``). A refused password raises
        :class:`WeakPasswordError`. The check sends only the first five hex digits of
        the password's SHA-1 to the range API (``breach_source=``)."""
        await self._driver.run(self._core.set_password_policy, min_length, max_length, breached)

    async def set_session_key_storage(
        self, mode: str, *, progress: Callable[[int], object] | None = None
    ) -> int:
        """Keep session keys as given (``"plain"``, the default) or, from now on, only
        as their SHA-256 digests (``"hashed"``): the keys stored so far are converted
        in place, in batches, while other processes keep working, and ``progress`` is
        called with the count converted after each batch. One-way; safe to repeat.
        Returns how many keys this call converted."""
        return await self._driver.run(self._core.set_session_key_storage, mode, progress)

    def events(
        self,
        *,
        userid: int | None = None,
        kinds: str | Iterable[str] | None = None,
        since: float | datetime | None = None,
        until: float | datetime | None = None,
        newest_first: bool = True,
    ) -> AsyncRows[Event]:
        """Yield the audit trail's events (:class:`Event`), the newest first unless
        ``newest_first=False``: those of ``userid``, of ``kinds``, at or after
        ``since`` and before ``until`` (Unix times or aware datetimes) when given.

        Close the stream (``async with`` or ``aclose()``) if you stop before its end.
        On AsyncUserSpace, iterate with ``async for``."""
        return AsyncRows(
            self._driver.stream(self._core.events, userid, kinds, since, until, newest_first)
        )

    async def purge_events(self, before: float | datetime) -> int:
        """Delete the events older than ``before`` (a Unix time or an aware datetime),
        in batches; return how many. The purge itself is recorded as an event."""
        return await self._driver.run(self._core.purge_events, before)

    async def set_event_retention(self, days: float | None) -> None:
        """Keep events ``days`` days (default 90; None: forever). Older events are
        removed a few at a time by the statements that write new ones."""
        await self._driver.run(self._core.set_event_retention, days)

    async def import_legacy(
        self,
        from_schema: str = "public",
        *,
        dry_run: bool = False,
        sessions: str = "keep",
        on_conflict: str | Iterable[str] = (),
        progress: Callable[[str, int], object] | None = None,
    ) -> ImportReport:
        """Import the users and sessions of a pgusers 0.9 database, whose tables are in
        ``from_schema`` of this database, in one transaction; return what was done.

        Users keep their userid, username, email, admin flag and extra_data, and log
        in with their old password (upgraded to Argon2id at their first login). Live
        sessions keep working until their old expiry (``sessions="end"`` imports
        none). Legacy users that break pgusers' rules raise
        :class:`~pgusers.LegacyImportError` listing each, unless ``on_conflict``
        names resolutions: ``"suffix-usernames"``, ``"placeholder-emails"``,
        ``"unusable-passwords"``, ``"skip-users"``. ``dry_run`` does everything,
        then rolls back. ``progress(stage, count)`` is called as it goes. A second
        import of the same schema is refused.
        """
        return await self._driver.run(
            self._core.import_legacy, from_schema, dry_run, sessions, on_conflict, progress
        )

    # -- mail, webhooks and the outbox ---------------------------------------------

    async def set_mail(
        self,
        host: str,
        *,
        sender: str,
        base_url: str,
        port: int = 587,
        security: str = "starttls",
        username: str | None = None,
        password: str | None = None,
        app_name: str = "pgusers",
        per_recipient: int = 5,
        new_device: bool = False,
    ) -> None:
        """Send mail through the SMTP server at ``host``: from ``sender``, with links
        that start with ``base_url`` (never with a request's Host header), the
        connection secured by ``"starttls"``, ``"tls"`` or ``"none"``, signed in as
        ``username`` with ``password`` (sealed under the secret key). At most
        ``per_recipient`` messages an hour go to one address. With ``new_device``, a
        user is told of a sign-in from a browser or program new to their account."""
        return await self._driver.run(
            self._core.set_mail, host, port, sender, base_url, security, username, password,
            app_name, per_recipient, new_device,
        )  # fmt: skip

    async def mail_settings(self) -> MailSettings | None:
        """How mail is sent (never the SMTP password), or None when it is not set up."""
        return await self._driver.run(self._core.mail_settings)

    async def remove_mail(self) -> Status:
        """Stop sending mail (``OK``, or ``NOT_FOUND`` when none was set up); messages
        already queued stay in the outbox."""
        return await self._driver.run(self._core.remove_mail)

    async def set_login_by_email(self, on: bool) -> None:
        """Let users sign in by a link or a code sent to their address (off by
        default)."""
        return await self._driver.run(self._core.set_login_by_email, on)

    async def set_delivery_attempts(self, attempts: int) -> None:
        """How many times a message is tried before it goes to the dead letters
        (default 8)."""
        return await self._driver.run(self._core.set_delivery_attempts, attempts)

    async def request_password_reset(self, email: str, *, source: str | None = None) -> None:
        """Mail a password-reset link to ``email``, if a user has that address: the
        answer (and the work done) is the same either way, so a caller learns nothing
        of who has an account. Needs mail set up (:meth:`set_mail`)."""
        return await self._driver.run(self._core.request_password_reset, email, source)

    async def request_email_verification(self, userid: int) -> Status:
        """Mail the user a link that verifies their address (``OK``; ``NOT_FOUND`` for
        no such user, a disabled one, or one whose address is verified already)."""
        return await self._driver.run(self._core.request_email_verification, userid)

    async def request_email_change(self, userid: int, email: str) -> Status:
        """Mail a link to the new address ``email`` that makes it the user's when
        followed (``OK`` or ``NOT_FOUND``); an address another user has is refused."""
        return await self._driver.run(self._core.request_email_change, userid, email)

    async def request_login_link(self, email: str, *, source: str | None = None) -> None:
        """Mail a one-time sign-in link and a 6-digit code (valid 10 minutes) to
        ``email``, if a user has that address; the answer is the same either way.
        Needs mail set up and :meth:`set_login_by_email` on."""
        return await self._driver.run(self._core.request_login_link, email, source)

    async def login_with_link(
        self,
        token: str,
        *,
        source: str | None = None,
        user_agent: str | None = None,
        extra_data: Any = None,
    ) -> LoginOutcome:
        """Sign in with the token of a mailed link: ``OK`` with a key, ``MFA_REQUIRED``
        with a ticket when a second factor is due, ``EXPIRED``, ``NOT_FOUND`` (unknown
        or used), or ``REJECTED`` (the user disabled, or sign-in by email off)."""
        return await self._driver.run(
            self._core.login_with_link, token, source, user_agent, extra_data
        )

    async def login_with_code(
        self,
        email: str,
        code: str,
        *,
        source: str | None = None,
        user_agent: str | None = None,
        extra_data: Any = None,
    ) -> LoginOutcome:
        """Sign in with the 6-digit code mailed to ``email``: as :meth:`login_with_link`;
        a wrong code is ``REJECTED`` and counts in the login throttle, per address and
        per source (``THROTTLED`` with ``retry_after``)."""
        return await self._driver.run(
            self._core.login_with_code, email, code, source, user_agent, extra_data
        )

    async def add_webhook(
        self, url: str, kinds: Iterable[str], *, description: str | None = None
    ) -> tuple[str, str]:
        """Call ``url`` with every event of ``kinds`` (``"*"`` for all), signed by the
        Standard Webhooks scheme; return the webhook's id and its signing secret
        (``whsec_...``), which is shown only here."""
        return await self._driver.run(self._core.add_webhook, url, kinds, description)

    async def webhooks(self) -> list[Webhook]:
        """The webhooks, oldest first (never their secrets)."""
        return await self._driver.run(self._core.webhooks)

    async def remove_webhook(self, webhook_id: str) -> Status:
        """Stop calling a webhook (``OK`` or ``NOT_FOUND``); its queued calls are not
        sent."""
        return await self._driver.run(self._core.remove_webhook, webhook_id)

    async def rotate_webhook_secret(self, webhook_id: str, *, grace: float = 86400.0) -> str | None:
        """Give a webhook a new signing secret and return it; the old one keeps signing
        beside it for ``grace`` seconds. None when there is no such webhook."""
        return await self._driver.run(self._core.rotate_webhook_secret, webhook_id, grace)

    async def take_messages(
        self, worker: str, *, limit: int = 10, lease: float = 60.0
    ) -> list[OutboxMessage]:
        """Take up to ``limit`` due messages from the outbox to deliver, each held for
        ``lease`` seconds (then due again); a mail that carries a token gets it now.
        Report each with :meth:`message_sent` or :meth:`message_failed`.
        :class:`pgusers.delivery.Worker` does all this."""
        return await self._driver.run(self._core.take_messages, worker, limit, lease)

    async def message_sent(self, message_id: str) -> Status:
        """Record that a message taken was delivered (``OK`` or ``NOT_FOUND``)."""
        return await self._driver.run(self._core.message_sent, message_id)

    async def message_failed(
        self, message_id: str, error: str, *, permanent: bool = False
    ) -> str | None:
        """Record that delivering a message failed: it is tried again later, or, with
        its attempts spent or ``permanent``, it is dead. Return its new state."""
        return await self._driver.run(self._core.message_failed, message_id, error, permanent)

    async def outbox(self, *, state: str | None = None, limit: int = 100) -> list[OutboxEntry]:
        """The newest messages of the outbox, of one ``state`` (``"pending"``,
        ``"sent"``, ``"dead"``) or all."""
        return await self._driver.run(self._core.outbox, state, limit)

    async def outbox_backlog(self) -> tuple[int, int, float]:
        """How many messages wait, how many are dead, and the age in seconds of the
        oldest waiting one."""
        return await self._driver.run(self._core.outbox_backlog)

    async def retry_message(self, message_id: str) -> Status:
        """Send a dead message again, with its attempts counted afresh (``OK``, or
        ``NOT_FOUND`` when no dead message has that id)."""
        return await self._driver.run(self._core.retry_message, message_id)


Opener = Callable[[], Awaitable[AsyncUserSpace]]
"""A function without arguments that returns an open AsyncUserSpace when awaited,
such as ``functools.partial(AsyncUserSpace.connect, "app")`` (the database "app")."""


class PerLoop:
    """The AsyncUserSpace of each running event loop, for code that is handed one
    (or a way to open one) before any loop runs: a web application, which a test
    client may serve from a new loop for every request. A given userspace is used
    as it is; an opener is called once in each loop."""

    def __init__(self, source: AsyncUserSpace | Opener) -> None:
        self._source = source
        self._spaces: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, AsyncUserSpace]
        self._spaces = weakref.WeakKeyDictionary()

    async def get(self) -> AsyncUserSpace:
        loop = asyncio.get_running_loop()
        space = self._spaces.get(loop)
        if space is None:
            if isinstance(self._source, AsyncUserSpace):
                await self._source._open()
                space = self._source
            else:  # two first requests at once get the same object (the registry)
                space = await self._source()
            self._spaces[loop] = space
        return space

    async def close(self) -> None:
        """Close this loop's userspace if it came from the opener."""
        space = self._spaces.pop(asyncio.get_running_loop(), None)
        if space is not None and space is not self._source:
            await space.close()
