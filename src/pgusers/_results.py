"""What the methods of a userspace return: status codes, result tuples and row streams.

The status codes are an :class:`~enum.IntEnum` and the tuples are
:class:`~typing.NamedTuple`\\ s, so they compare equal to the plain ints and tuples
the original package returned (``usp.check_key(key) == (OK, "ada", 1, None)``)
while naming their parts (``usp.check_key(key).username``).
"""

from collections.abc import AsyncGenerator, Generator
from enum import IntEnum
from typing import Any, Final, Generic, NamedTuple, Self, TypedDict, TypeVar

T = TypeVar("T")


class Status(IntEnum):
    """The outcome of a call."""

    OK = 0
    """The call did what was asked."""
    NOT_FOUND = 1
    """No such user or session."""
    EXPIRED = 2
    """The session existed but its time to live had run out; it is now removed."""
    REJECTED = 3
    """The old password given to ``change_password`` did not match; or a login's
    username or password was wrong (one answer for both)."""
    THROTTLED = 4
    """Too many failed logins: the login was refused without checking the password."""
    DISABLED = 5
    """The password was right, but the account is disabled."""
    MFA_REQUIRED = 6
    """The password was right, and the user has a second factor: the login goes on
    with ``complete_login`` and the outcome's ``ticket``."""
    LINK_REQUIRED = 7
    """Another site vouched for someone that no user here is linked to, and none could
    be linked or made for them without risk: they sign in another way, then link it."""
    LAST_METHOD = 8
    """Refused: the change would leave the user no way to sign in (no password, no
    passkey, no linked identity)."""


OK = Status.OK
NOT_FOUND = Status.NOT_FOUND
EXPIRED = Status.EXPIRED
REJECTED = Status.REJECTED
THROTTLED = Status.THROTTLED
DISABLED = Status.DISABLED
MFA_REQUIRED = Status.MFA_REQUIRED
LINK_REQUIRED = Status.LINK_REQUIRED
LAST_METHOD = Status.LAST_METHOD


class LoginResult(NamedTuple):
    """What ``validate_user`` returns: ``("", False, None)`` for a failed login."""

    key: str
    admin: bool
    userid: int | None


class LoginOutcome(NamedTuple):
    """What ``login`` and ``complete_login`` return: a key, the admin flag and the
    userid when ``status`` is ``OK``; with ``THROTTLED``, the seconds to wait in
    ``retry_after``; with ``MFA_REQUIRED``, the ``ticket`` that ``complete_login``
    takes (valid 5 minutes, for at most 5 answers) and the ``factors`` the user can
    answer with (``"totp"``, ``"recovery_code"``)."""

    status: Status
    key: str
    admin: bool
    userid: int | None
    retry_after: float
    ticket: str | None = None
    factors: tuple[str, ...] = ()


REJECTED_LOGIN: Final = LoginOutcome(REJECTED, "", False, None, 0.0)
"""A login that opened nothing: a wrong name or password, and, in the framework
integrations, a name or password too malformed to be anyone's."""


class CheckResult(NamedTuple):
    """What ``check_key`` returns: the username, userid and session data are None
    unless ``status`` is ``OK``."""

    status: Status
    username: str | None
    userid: int | None
    extra_data: Any


class SessionInfo(NamedTuple):
    """What ``check_session`` returns: ``check_key``'s four fields first, then the
    admin flag, the session's id, how its user proved who they are (``"password"``,
    ``"totp"``, ``"recovery_code"``, ``"passkey"``) and when they last did (a Unix
    time), then the roles the user holds and the permissions they grant (sorted; in
    one organization when asked about one, with those held everywhere). Every field
    after ``status`` is None (the tuples empty) unless ``status`` is ``OK``."""

    status: Status
    username: str | None
    userid: int | None
    extra_data: Any
    admin: bool | None = None
    session_id: str | None = None
    auth_methods: tuple[str, ...] = ()
    authenticated_at: float | None = None
    roles: tuple[str, ...] = ()
    permissions: tuple[str, ...] = ()

    def checked(self) -> CheckResult:
        """The answer ``check_key`` gives for the same session."""
        return CheckResult(self.status, self.username, self.userid, self.extra_data)


class Enrollment(NamedTuple):
    """A TOTP factor being set up, as ``begin_totp`` returns it: show the QR code
    (or the secret, for typing in), then ``confirm_totp`` with a code the app shows.
    ``uri`` is the ``otpauth://`` URI the QR code holds; ``qr_svg`` an SVG image."""

    factor_id: str
    secret: str
    uri: str
    qr_svg: str


class Role(NamedTuple):
    """A role, as ``roles`` lists it: its name, the permissions it grants (sorted), its
    description, and when it was first defined (a Unix time)."""

    name: str
    permissions: tuple[str, ...]
    description: str | None
    created_at: float


class RoleGrant(NamedTuple):
    """A role a user holds: everywhere (``org_id`` None) or in one organization."""

    role: str
    org_id: int | None
    org_slug: str | None


class Org(NamedTuple):
    """An organization: its id, its slug (for URLs), its name, when it was made."""

    org_id: int
    slug: str
    name: str
    created_at: float


class Member(NamedTuple):
    """A member of an organization, with the roles they hold there."""

    userid: int
    username: str
    roles: tuple[str, ...]
    joined_at: float


class ExternalLogin(NamedTuple):
    """What ``begin_external_login`` returns: the provider's page to send the browser
    to, and the sign-in's ``state``, which the application keeps in the browser (a
    cookie) and gives to ``finish_external_login`` with the callback."""

    authorization_url: str
    state: str


class IdentityProvider(NamedTuple):
    """A provider users may sign in with, as ``identity_providers`` lists it (never
    its client secret); ``identities`` counts the users linked to it."""

    name: str
    kind: str
    client_id: str
    discovery_url: str | None
    scopes: tuple[str, ...]
    link_by_verified_email: bool
    trusted_for_mfa: bool
    allow_signup: bool
    keep_claims: tuple[str, ...]
    keep_tokens: bool
    created_at: float
    identities: int


class Identity(NamedTuple):
    """A user's account at a provider: its subject there, the email the provider gave
    and whether it verified it, the profile claims kept, when it was linked and last
    used (Unix times)."""

    provider: str
    subject: str
    email: str | None
    email_verified: bool
    claims: dict[str, Any]
    linked_at: float
    last_used_at: float | None


class PasskeyChallenge(NamedTuple):
    """What ``begin_passkey_registration`` and ``begin_passkey_login`` return: ``OK``
    with the challenge's id (to send back with the answer) and the options for the
    browser as JSON; ``NOT_FOUND`` (no live session, or no live ticket) or
    ``REJECTED`` (a registration whose session last proved who its user is more than
    ten minutes ago: ``reauthenticate`` first) with empty strings."""

    status: Status
    challenge_id: str
    options: str


class Factor(NamedTuple):
    """One second factor of a user: ``kind`` is ``"totp"`` or ``"passkey"``; times are
    Unix times; ``last_used_at`` is None until it is used, ``confirmed`` false until
    ``confirm_totp``; ``cloned`` true for a passkey whose signature count went back,
    refused until ``clear_passkey_flag``."""

    factor_id: str
    kind: str
    label: str | None
    created_at: float
    last_used_at: float | None
    confirmed: bool
    cloned: bool = False


class Factors(NamedTuple):
    """What ``factors`` returns: the user's factors, oldest first, and how many
    recovery codes remain unused."""

    factors: tuple[Factor, ...]
    recovery_codes: int


class MailSettings(NamedTuple):
    """How the userspace sends mail, as ``mail_settings`` shows it: never the SMTP
    password, only whether one is kept. ``security`` is ``"starttls"``, ``"tls"`` or
    ``"none"``; ``base_url`` is what links in mail start with; at most
    ``per_recipient`` messages an hour go to one address; ``new_device``: a user is
    told of each sign-in from a browser or program new to their account."""

    host: str
    port: int
    security: str
    username: str | None
    has_password: bool
    sender: str
    base_url: str
    app_name: str
    per_recipient: int
    new_device: bool
    updated_at: float


class Webhook(NamedTuple):
    """A webhook, as ``webhooks`` lists it (never its signing secret): the kinds of
    event it receives (``"*"`` for all); ``previous_valid_until`` is when the secret
    that a rotation replaced stops signing (None when none does)."""

    webhook_id: str
    url: str
    kinds: list[str]
    description: str | None
    created_at: float
    previous_valid_until: float | None


class OutboxMessage(NamedTuple):
    """A message a delivery worker took from the outbox (``take_messages``): its
    ``channel`` (``"mail"`` or ``"webhook"``), ``purpose`` (a mail's template, a
    webhook's event kind), the recipient (an address, a webhook id) and what the
    message says (``payload``). A mail that carries a token has it, with its
    ``expires_at`` and, for a sign-in link, its 6-digit ``code``; a webhook call has
    the webhook's ``url`` and its signing ``secrets`` (the current one first)."""

    message_id: str
    channel: str
    purpose: str
    userid: int | None
    recipient: str
    payload: dict[str, Any]
    attempts: int
    created_at: float
    token: str | None = None
    code: str | None = None
    expires_at: float | None = None
    url: str | None = None
    secrets: tuple[str, ...] = ()


class OutboxEntry(NamedTuple):
    """A message in the outbox, as ``outbox`` lists it (what it says left out):
    ``state`` is ``"pending"``, ``"sent"`` or ``"dead"`` (its attempts spent);
    times are Unix times."""

    message_id: str
    channel: str
    purpose: str
    userid: int | None
    recipient: str
    state: str
    attempts: int
    created_at: float
    due_at: float
    sent_at: float | None
    last_error: str | None


class UserRow(NamedTuple):
    """One user, as ``all_users`` yields it."""

    userid: int
    username: str
    email: str
    admin: bool


class SessionRow(NamedTuple):
    """One session, as ``list_sessions`` yields it (``expiration``: a Unix time)."""

    username: str
    key: str
    expiration: float


class Session(NamedTuple):
    """One session, as ``sessions`` yields it: never its key. Times are Unix times;
    ``expires_at`` is when it ends unless used (its maximum age included);
    ``last_seen_at`` moves with the expiry's slide, so it is exact to about a
    minute; ``current`` is true for the session whose key was passed as ``key=``."""

    session_id: str
    userid: int
    username: str
    created_at: float
    last_seen_at: float
    expires_at: float
    source: str | None
    user_agent: str | None
    current: bool


class Event(NamedTuple):
    """One entry of the audit trail, as ``events`` yields it (``at``: a Unix time).

    ``actor`` is who made the change (see ``pgusers.acting_as``), ``source`` where
    from (a login's source, or the one given to ``acting_as``); ``detail`` holds
    what else the kind of event records, never a password, key or token."""

    id: int
    at: float
    kind: str
    userid: int | None
    actor: str | None
    source: str | None
    session_id: str | None
    detail: dict[str, Any]


class FoundUser(TypedDict):
    """What :meth:`~pgusers.UserSpace.find_user` returns: a plain dict, as in 0.9,
    with these keys."""

    userid: int
    username: str
    email: str
    admin: bool
    extra_data: Any
    email_verified: bool
    disabled: bool


class Account(NamedTuple):
    """One user as an administrator sees it (the HTTP service and console)."""

    userid: int
    username: str
    email: str
    admin: bool
    disabled: bool
    email_verified: bool
    created_at: float
    throttled: bool
    extra_data: Any
    second_factor: bool = False


class ApiKey(NamedTuple):
    """One API key of the HTTP service, never its secret (times are Unix times)."""

    key_id: str
    name: str
    scope: str
    created_at: float
    created_by: str | None
    revoked_at: float | None


class Settings(NamedTuple):
    """The userspace-wide settings, as stored."""

    session_ttl: float
    session_max_age: float | None
    key_storage: str
    event_retention: float | None
    free_failures: int
    max_backoff: float
    source_limit: int
    source_window: float
    source_block: float
    sessions_per_user: int | None = None
    password_min_length: int | None = None
    password_max_length: int | None = None
    breached_check: str = "off"
    admins_need_mfa: bool = False
    webauthn_rp_id: str | None = None
    webauthn_rp_name: str | None = None
    webauthn_origins: list[str] | None = None
    login_by_email: bool = False
    delivery_attempts: int = 8


class ImportReport(NamedTuple):
    """What ``import_legacy`` did (or, with ``dry_run``, would do).

    ``problems`` lists ``(userid, username, problem)`` for each rule a legacy user
    broke (up to 100,000; ``problem_counts`` counts them all by kind);
    ``resolutions`` lists ``(userid, problems, what was done)``;
    ``opaque_extra_data`` the userids whose extra_data could not be read safely
    and was kept as an opaque pickle (``opaque_session_data``: how many sessions').
    """

    from_schema: str
    dry_run: bool
    users: int
    sessions: int
    users_skipped: int
    sessions_skipped: dict[str, int]
    problems: tuple[tuple[int, str | None, str], ...]
    problem_counts: dict[str, int]
    resolutions: tuple[tuple[int, str, str], ...]
    opaque_extra_data: tuple[int, ...]
    opaque_session_data: int
    seconds: float


class LoginFailureRow(NamedTuple):
    """Failed logins counted for a login name or a source, as ``login_failures``
    yields them: ``kind`` is ``"name"`` (``subject`` is the folded username) or
    ``"source"``; ``retry_after`` is how long it is still throttled (0: not)."""

    kind: str
    subject: str
    failures: int
    last_failure: float
    retry_after: float


FAILED_LOGIN = LoginResult("", False, None)
NO_SESSION = CheckResult(NOT_FOUND, None, None, None)
NO_SESSION_INFO = SessionInfo(NOT_FOUND, None, None, None)


class Rows(Generic[T]):
    """The rows of a stream (``all_users``, ``list_sessions``, ``sessions``,
    ``events``...), fetched as they are iterated.

    The stream holds a pooled connection until it is read to the end or closed: use
    it in a ``with`` block, or call :meth:`close`, when you stop early.
    """

    def __init__(self, rows: Generator[T, None, None]) -> None:
        self._rows = rows

    def __iter__(self) -> Self:
        return self

    def __next__(self) -> T:
        return next(self._rows)

    def close(self) -> None:
        """Stop reading and give the connection back to the pool."""
        self._rows.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class AsyncRows(Generic[T]):
    """The asyncio form of :class:`Rows`: ``async for`` over it, and ``async with``
    it or ``await rows.aclose()`` when you stop early."""

    def __init__(self, rows: AsyncGenerator[T, None]) -> None:
        self._rows = rows

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> T:
        return await anext(self._rows)

    async def aclose(self) -> None:
        """Stop reading and give the connection back to the pool."""
        await self._rows.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()
