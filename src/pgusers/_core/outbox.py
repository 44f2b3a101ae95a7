"""What the userspace tells the world: mail and webhook calls, written to the outbox
by the statement whose change causes them (see :data:`pgusers._core.sql.OUTGOING`),
and taken from it by delivery workers.

A message that carries a token holds none at rest: the worker that sends it asks for
the token as it takes the message (:meth:`OutboxPart.take_messages`), so a copy of
the outbox opens nothing. Mail settings and webhooks are userspace settings; the SMTP
password and the webhooks' signing secrets are sealed under the secret key.
"""

import base64
import email.utils
import hashlib
import re
import secrets
import time
from typing import Any, Final

from pgusers._core import checks, identities, oidc, recording
from pgusers._core.base import LOGS, Part
from pgusers._core.keys import digest, new_token
from pgusers._core.retries import retry_safe
from pgusers._core.steps import Execute, Fetch, Operation
from pgusers._core.tokens import TOKEN_LIFETIMES
from pgusers._errors import BadCallError
from pgusers._results import (
    NOT_FOUND,
    OK,
    MailSettings,
    OutboxEntry,
    OutboxMessage,
    Status,
    Webhook,
)

LOGIN_LINK_LIFETIME: Final = 600.0
"""Seconds a sign-in link and its code stay usable."""

MAIL_LIFETIMES: Final = {**TOKEN_LIFETIMES, "login_link": LOGIN_LINK_LIFETIME}
"""The purposes of mail that carry a token, and how long the token lives."""

NOTICES: Final = (
    "password_changed",
    "factor_added",
    "factor_removed",
    "new_device",
    "email_changing",
)
"""The purposes of mail that tell a user of a change, carrying no token."""

PURPOSES: Final = (*MAIL_LIFETIMES, *NOTICES)
"""Every purpose of mail, each with its own template."""

SECURITIES: Final = ("starttls", "tls", "none")

STATES: Final = ("pending", "sent", "dead")

MAX_WEBHOOKS: Final = 50
MAX_KINDS: Final = 100
MAX_ERROR: Final = 500
MAX_TAKEN: Final = 500
MAX_LISTED: Final = 1000
MAX_GRACE: Final = 7 * 86400.0
RETRY_BASE: Final = 10.0
"""Seconds before the first retry of a failed delivery; each later one waits twice as
long as the one before, up to RETRY_CAP, each with a random part (between half and
all of it), so that many failures at once do not come back at once."""
RETRY_CAP: Final = 3600.0

_KIND: Final = re.compile(r"[a-z_]+\.[a-z_]+")

MESSAGE_ID: Final = "msg_"
WEBHOOK_ID: Final = "wh_"

SET_MAIL: Final = """
    WITH stored AS (
        INSERT INTO {schema}.mail_settings AS m (
            host, port, security, username, password, sender, base_url, app_name,
            per_recipient, new_device, updated_at)
        VALUES (%(host)s, %(port)s, %(security)s, %(username)s, %(password)s, %(sender)s,
                %(base_url)s, %(app_name)s, %(per_recipient)s, %(new_device)s,
                to_timestamp(%(now)s))
        ON CONFLICT (singleton) DO UPDATE SET
            host = excluded.host, port = excluded.port, security = excluded.security,
            username = excluded.username, password = excluded.password,
            sender = excluded.sender, base_url = excluded.base_url,
            app_name = excluded.app_name, per_recipient = excluded.per_recipient,
            new_device = excluded.new_device, updated_at = excluded.updated_at
        RETURNING 1
    ), happened AS (
        SELECT 'mail.changed' AS kind, NULL::bigint AS userid, NULL::text AS session_id,
               jsonb_build_object('host', %(host)s::text, 'port', %(port)s::integer,
                                  'sender', %(sender)s::text) AS detail
        FROM stored
    ), {log}
    SELECT {logged}
"""

MAIL_SETTINGS: Final = """
    SELECT host, port, security, username, password, sender, base_url, app_name,
           per_recipient, new_device, extract(epoch FROM updated_at)::float8
    FROM {schema}.mail_settings
"""

REMOVE_MAIL: Final = """
    WITH removed AS (
        DELETE FROM {schema}.mail_settings RETURNING 1
    ), happened AS (
        SELECT 'mail.changed' AS kind, NULL::bigint AS userid, NULL::text AS session_id,
               jsonb_build_object('removed', true) AS detail
        FROM removed
    ), {log}
    SELECT 1, {logged} FROM removed
"""

# A request for mail writes the event mail.queued, which OUTGOING turns into the
# message (for an email change, two: the link to the new address, and a notice to
# the old one). The answer is the same whether or not a user has the address, and the
# statement is the same in both cases: nothing tells a caller who has an account.
# A disabled user gets nothing; a sign-in link goes only while the setting allows it.
REQUEST_MAIL: Final = """
    WITH configured AS (
        SELECT true AS mail, (SELECT login_by_email FROM {schema}.settings) AS by_email
        FROM {schema}.mail_settings
    ), target AS (
        SELECT u.userid, coalesce(%(new_email)s::text, u.email) AS email, u.email AS old_email
        FROM {schema}.users u
        WHERE {which} AND NOT u.disabled
          AND (%(purpose)s <> 'login_link' OR (SELECT by_email FROM configured))
          AND (%(purpose)s <> 'verify_email' OR NOT u.email_verified)
    ), happened AS (
        SELECT 'mail.queued' AS kind, userid, NULL::text AS session_id,
               jsonb_build_object('purpose', %(purpose)s::text, 'email', email) AS detail
        FROM target WHERE EXISTS (SELECT 1 FROM configured)
        UNION ALL  -- an email change is told to the address it leaves, too
        SELECT 'mail.queued', userid, NULL,
               jsonb_build_object('purpose', 'email_changing', 'email', old_email,
                                  'new_email', email)
        FROM target WHERE EXISTS (SELECT 1 FROM configured) AND %(purpose)s = 'change_email'
    ), {log}
    SELECT (SELECT mail FROM configured), (SELECT by_email FROM configured),
           EXISTS (SELECT 1 FROM target), {logged}
"""
BY_EMAIL: Final = "u.email_key = %(email_key)s"
BY_USERID: Final = "u.userid = %(userid)s"

TAKEN_BY_OTHER: Final = """
    SELECT 1 FROM {schema}.users WHERE email_key = %(email_key)s AND userid <> %(userid)s
"""

ADD_WEBHOOK: Final = """
    WITH added AS (
        INSERT INTO {schema}.webhooks (id, url, kinds, description, secret, created_at)
        SELECT %(id)s, %(url)s, %(kinds)s, %(description)s, %(secret)s, to_timestamp(%(now)s)
        WHERE (SELECT count(*) FROM {schema}.webhooks) < %(most)s
        RETURNING id
    ), happened AS (
        SELECT 'webhook.added' AS kind, NULL::bigint AS userid, NULL::text AS session_id,
               jsonb_build_object('webhook_id', id, 'url', %(url)s::text,
                                  'kinds', %(kinds)s::text[]) AS detail
        FROM added
    ), {log}
    SELECT EXISTS (SELECT 1 FROM added), {logged}
"""

LIST_WEBHOOKS: Final = """
    SELECT id, url, kinds, description, extract(epoch FROM created_at)::float8,
           CASE WHEN previous_until > to_timestamp(%(now)s)
                THEN extract(epoch FROM previous_until)::float8 END
    FROM {schema}.webhooks ORDER BY created_at, id
"""

REMOVE_WEBHOOK: Final = """
    WITH removed AS (
        DELETE FROM {schema}.webhooks WHERE id = %(id)s RETURNING id, url
    ), happened AS (
        SELECT 'webhook.removed' AS kind, NULL::bigint AS userid, NULL::text AS session_id,
               jsonb_build_object('webhook_id', id, 'url', url) AS detail
        FROM removed
    ), {log}
    SELECT 1, {logged} FROM removed
"""

# The old secret keeps signing (beside the new one) until the grace period ends, so
# that receivers can change theirs meanwhile.
ROTATE_WEBHOOK: Final = """
    WITH rotated AS (
        UPDATE {schema}.webhooks SET
            previous_secret = secret, secret = %(secret)s,
            previous_until = to_timestamp(%(now)s) + make_interval(secs => %(grace)s)
        WHERE id = %(id)s
        RETURNING id
    ), happened AS (
        SELECT 'webhook.rotated' AS kind, NULL::bigint AS userid, NULL::text AS session_id,
               jsonb_build_object('webhook_id', id, 'grace', %(grace)s::float8) AS detail
        FROM rotated
    ), {log}
    SELECT 1, {logged} FROM rotated
"""

# A worker takes due messages under FOR UPDATE SKIP LOCKED, so two workers never take
# one, and holds each by moving its due time to the end of its lease: a worker that
# dies lets its messages fall due again, to be sent by another (delivery is at least
# once). Taking counts an attempt; a message whose attempts are spent (its last
# worker died) is dead. Sent messages older than the events' retention go, a few at
# a time, in the same statement.
TAKE_MESSAGES: Final = """
    WITH due AS (
        SELECT id FROM {schema}.outbox
        WHERE state = 'pending' AND due_at <= to_timestamp(%(now)s)
        ORDER BY due_at
        LIMIT %(limit)s
        FOR UPDATE SKIP LOCKED
    ), taken AS (
        UPDATE {schema}.outbox o SET
            attempts = o.attempts + 1,
            state = CASE WHEN o.attempts >= t.delivery_attempts THEN 'dead' ELSE 'pending' END,
            last_error = CASE WHEN o.attempts >= t.delivery_attempts
                              THEN 'no attempt left' ELSE o.last_error END,
            due_at = to_timestamp(%(now)s) + make_interval(secs => %(lease)s),
            taken_by = %(worker)s
        FROM due d CROSS JOIN {schema}.settings t
        WHERE o.id = d.id
        RETURNING o.id, o.channel, o.purpose, o.userid, o.recipient, o.payload, o.attempts,
                  extract(epoch FROM o.created_at)::float8 AS created, o.state
    ), purged AS (
        DELETE FROM {schema}.outbox WHERE id IN (
            SELECT b.id FROM {schema}.outbox b
            WHERE b.state = 'sent'
              AND b.created_at < to_timestamp(%(now)s) - make_interval(
                  secs => (SELECT event_retention FROM {schema}.settings) * 86400)
            LIMIT 100
            FOR UPDATE SKIP LOCKED
        )
    )
    SELECT k.id, k.channel, k.purpose, k.userid, k.recipient, k.payload, k.attempts,
           k.created, w.url, w.secret,
           CASE WHEN w.previous_until > to_timestamp(%(now)s) THEN w.previous_secret END
    FROM taken k
    LEFT JOIN {schema}.webhooks w ON k.channel = 'webhook' AND w.id = k.recipient
    WHERE k.state = 'pending'
    ORDER BY k.created, k.id
"""

# The token a mail carries, made as the mail is sent: a new one of its purpose
# replaces the user's older ones. It is issued only while the address the mail goes
# to is still the user's (for an email change: still free), the user not disabled.
ISSUE_FOR_MAIL: Final = """
    WITH owner AS (
        SELECT u.userid FROM {schema}.users u
        WHERE u.userid = %(userid)s AND NOT u.disabled
          AND CASE WHEN %(purpose)s = 'change_email'
                   THEN NOT EXISTS (SELECT 1 FROM {schema}.users o
                                    WHERE o.email_key = %(email_key)s)
                   ELSE u.email_key = %(email_key)s END
    ), revoked AS (
        DELETE FROM {schema}.tokens k USING owner o
        WHERE k.userid = o.userid AND k.purpose = %(purpose)s
    ), issued AS (
        INSERT INTO {schema}.tokens (digest, userid, purpose, email, email_key, expires_at, code)
        SELECT %(digest)s, o.userid, %(purpose)s,
               CASE WHEN %(purpose)s = 'change_email' THEN %(email)s END,
               CASE WHEN %(purpose)s = 'change_email' THEN %(email_key)s END,
               to_timestamp(%(now)s) + make_interval(secs => %(ttl)s), %(code)s
        FROM owner o
        RETURNING userid, purpose, expires_at
    ), happened AS (
        SELECT 'token.issued' AS kind, userid, NULL::text AS session_id,
               jsonb_build_object('purpose', purpose, 'by', 'mail',
                   'expires_at', extract(epoch FROM expires_at)::float8) AS detail
        FROM issued
    ), {log}
    SELECT EXISTS (SELECT 1 FROM issued), {logged}
"""

MESSAGE_SENT: Final = """
    UPDATE {schema}.outbox SET
        state = 'sent', sent_at = to_timestamp(%(now)s), taken_by = NULL, last_error = NULL
    WHERE id = %(id)s AND state = 'pending'
    RETURNING 1
"""

# A failure sends the message back to wait, longer after each attempt, or, with its
# attempts spent (or a failure that no retry can mend), to the dead letters.
MESSAGE_FAILED: Final = """
    UPDATE {schema}.outbox o SET
        state = CASE WHEN o.attempts >= t.delivery_attempts OR %(permanent)s
                     THEN 'dead' ELSE 'pending' END,
        due_at = to_timestamp(%(now)s) + make_interval(secs => least(
                     %(cap)s, %(base)s * power(2, greatest(o.attempts - 1, 0)))
                     * (0.5 + random() / 2)),
        taken_by = NULL,
        last_error = %(error)s
    FROM {schema}.settings t
    WHERE o.id = %(id)s AND o.state = 'pending'
    RETURNING o.state
"""

LIST_OUTBOX: Final = """
    SELECT id, channel, purpose, userid, recipient, state, attempts,
           extract(epoch FROM created_at)::float8, extract(epoch FROM due_at)::float8,
           extract(epoch FROM sent_at)::float8, last_error
    FROM {schema}.outbox
    WHERE %(state)s::text IS NULL OR state = %(state)s
    ORDER BY created_at DESC, id DESC
    LIMIT %(limit)s
"""

OUTBOX_BACKLOG: Final = """
    SELECT count(*) FILTER (WHERE state = 'pending'),
           count(*) FILTER (WHERE state = 'dead'),
           coalesce(extract(epoch FROM to_timestamp(%(now)s)
               - min(created_at) FILTER (WHERE state = 'pending')), 0)::float8
    FROM {schema}.outbox
"""

RETRY_MESSAGE: Final = """
    WITH revived AS (
        UPDATE {schema}.outbox SET
            state = 'pending', attempts = 0, due_at = to_timestamp(%(now)s), taken_by = NULL
        WHERE id = %(id)s AND state = 'dead'
        RETURNING id, channel, purpose, userid
    ), happened AS (
        SELECT 'mail.retried' AS kind, userid, NULL::text AS session_id,
               jsonb_build_object('message_id', id, 'channel', channel, 'purpose', purpose)
                   AS detail
        FROM revived
    ), wake AS (
        SELECT pg_notify({outbox_channel}, '') FROM revived
    ), {log}
    SELECT (SELECT count(*) FROM wake), {logged} FROM revived
"""


def code_digest(token_digest: bytes, code: str) -> bytes:
    """What is stored of a sign-in code: the SHA-256 of its token's digest and the code
    (so that the code is tried only together with the address its token went to)."""
    return hashlib.sha256(token_digest + code.encode()).digest()


def new_code() -> str:
    """A 6-digit sign-in code."""
    return f"{secrets.randbelow(10**6):06d}"


class OutboxPart(Part):
    """The operations on mail settings, webhooks and the outbox."""

    # -- mail settings -------------------------------------------------------------

    @retry_safe
    def set_mail(  # noqa: PLR0917 - the facades pass them in order
        self,
        host: object,
        port: object,
        sender: object,
        base_url: object,
        security: object,
        username: object,
        password: object,
        app_name: object,
        per_recipient: object,
        new_device: object,
    ) -> Operation[None]:
        if not isinstance(security, str) or security not in SECURITIES:
            raise BadCallError(f"security must be one of {', '.join(SECURITIES)}")
        address = _sender(sender)
        account = None if username is None else checks.label(username, "username", 320)
        secret = None if password is None else checks.text(password, "password", 1024)
        if secret is not None and account is None:
            raise BadCallError("password= is given with username=")
        params = {
            "host": checks.label(host, "host", 255),
            "port": checks.count(port, "port", 1, 65535),
            "security": security,
            "username": account,
            "password": None if secret is None else self._sealing().seal(secret.encode(), "mail"),
            "sender": address,
            "base_url": oidc.web_address(base_url, "base_url").rstrip("/"),
            "app_name": checks.label(app_name, "app_name", 100),
            "per_recipient": checks.count(per_recipient, "per_recipient", 1, 1000),
            "new_device": checks.flag(new_device, "new_device"),
            **recording.parameters(time.time()),
        }
        return self._change(self._sql(SET_MAIL, **LOGS), params)

    @retry_safe
    def mail_settings(self) -> Operation[MailSettings | None]:
        row = yield Execute(self._sql(MAIL_SETTINGS))
        return None if row is None else _mail_settings(row)

    def mail_delivery(self) -> Operation[tuple[MailSettings, str | None] | None]:
        """The mail settings and the SMTP password, opened (for a delivery worker), in
        one statement; None when mail is not set up."""
        row = yield Execute(self._sql(MAIL_SETTINGS))
        if row is None:
            return None
        sealed = row[4]
        password = None if sealed is None else self._sealing().open(sealed, "mail").decode()
        return _mail_settings(row), password

    @retry_safe
    def remove_mail(self) -> Operation[Status]:
        return self._status_of(self._sql(REMOVE_MAIL, **LOGS), recording.parameters(time.time()))

    # -- requests for mail ---------------------------------------------------------

    @retry_safe  # a repeated request sends one more mail, whose token replaces the first's
    def request_password_reset(self, email: object, source: object) -> Operation[None]:
        return self._request_by_email("reset_password", _by_email(email, source))

    @retry_safe
    def request_login_link(self, email: object, source: object) -> Operation[None]:
        return self._request_by_email("login_link", _by_email(email, source))

    @retry_safe
    def request_email_verification(self, userid: object) -> Operation[Status]:
        params = {"userid": checks.userid(userid), **recording.parameters(time.time())}
        return self._request_for("verify_email", params)

    @retry_safe
    def request_email_change(self, userid: object, email: object) -> Operation[Status]:
        address, address_key = identities.email(email)
        params = {
            "userid": checks.userid(userid),
            "new_email": address,
            "email_key": address_key,
            **recording.parameters(time.time()),
        }
        return self._request_for("change_email", params)

    def _request_by_email(self, purpose: str, params: dict[str, Any]) -> Operation[None]:
        yield from self._request(purpose, BY_EMAIL, params)

    def _request_for(self, purpose: str, params: dict[str, Any]) -> Operation[Status]:
        if purpose == "change_email":
            taken = yield Execute(self._sql(TAKEN_BY_OTHER), params)
            if taken is not None:
                raise BadCallError("a user with that email already exists")
        found = yield from self._request(purpose, BY_USERID, params)
        return OK if found else NOT_FOUND

    def _request(self, purpose: str, which: str, params: dict[str, Any]) -> Operation[bool]:
        params = {"new_email": None, "email_key": None, "userid": None, **params}
        query = self._sql(REQUEST_MAIL, which=which, **LOGS)
        row = yield from self._logged(query, params | {"purpose": purpose})
        assert row is not None  # the statement always returns one row
        configured, by_email, found = row
        if not configured:
            raise BadCallError("mail is not set up: set it with set_mail (pgusers mail set)")
        if purpose == "login_link" and not by_email:
            raise BadCallError(
                "sign-in by email is off: turn it on with set_login_by_email(True) "
                "(pgusers mail login-by-email on)"
            )
        return bool(found)

    # -- webhooks ------------------------------------------------------------------

    def add_webhook(
        self, url: object, kinds: object, description: object
    ) -> Operation[tuple[str, str]]:
        address = oidc.web_address(url, "url")
        chosen = _kinds(kinds)
        text = None if description is None else checks.label(description, "description", 200)
        webhook_id = WEBHOOK_ID + secrets.token_hex(8)
        secret = _signing_secret()
        params = {
            "id": webhook_id,
            "url": address,
            "kinds": chosen,
            "description": text,
            "secret": self._sealing().seal(secret.encode(), "webhook:" + webhook_id),
            "most": MAX_WEBHOOKS,
            **recording.parameters(time.time()),
        }
        return self._add_webhook(params, webhook_id, secret)

    def _add_webhook(
        self, params: dict[str, Any], webhook_id: str, secret: str
    ) -> Operation[tuple[str, str]]:
        row = yield from self._logged(self._sql(ADD_WEBHOOK, **LOGS), params)
        assert row is not None  # the statement always returns one row
        if not row[0]:
            raise BadCallError(f"a userspace has at most {MAX_WEBHOOKS} webhooks")
        return webhook_id, secret

    @retry_safe
    def webhooks(self) -> Operation[list[Webhook]]:
        rows = yield Execute(self._sql(LIST_WEBHOOKS), {"now": time.time()}, Fetch.ALL)
        return [Webhook(i, u, list(k), d, c, r) for i, u, k, d, c, r in rows]

    @retry_safe
    def remove_webhook(self, webhook_id: object) -> Operation[Status]:
        params = {"id": _webhook_id(webhook_id), **recording.parameters(time.time())}
        return self._status_of(self._sql(REMOVE_WEBHOOK, **LOGS), params)

    def rotate_webhook_secret(self, webhook_id: object, grace: object) -> Operation[str | None]:
        checked = _webhook_id(webhook_id)
        secret = _signing_secret()
        params = {
            "id": checked,
            "secret": self._sealing().seal(secret.encode(), "webhook:" + checked),
            "grace": checks.seconds(grace, "grace", MAX_GRACE),
            **recording.parameters(time.time()),
        }
        return self._rotate(params, secret)

    def _rotate(self, params: dict[str, Any], secret: str) -> Operation[str | None]:
        status = yield from self._status_of(self._sql(ROTATE_WEBHOOK, **LOGS), params)
        return secret if status is OK else None

    # -- delivery ------------------------------------------------------------------

    def take_messages(
        self, worker: object, limit: object, lease: object
    ) -> Operation[list[OutboxMessage]]:
        params = {
            "worker": checks.label(worker, "worker", 200),
            "limit": checks.count(limit, "limit", 1, MAX_TAKEN),
            "lease": checks.seconds(lease, "lease", 86400.0),
            "now": time.time(),
        }
        return self._take(params)

    def _take(self, params: dict[str, Any]) -> Operation[list[OutboxMessage]]:
        rows = yield Execute(self._sql(TAKE_MESSAGES), params, Fetch.ALL)
        taken = []
        for (message_id, channel, purpose, userid, recipient, payload, attempts, created,
             url, secret, previous) in rows:  # fmt: skip
            message = OutboxMessage(
                message_id, channel, purpose, userid, recipient, payload, attempts, created
            )
            if channel == "webhook":
                if url is None:  # the webhook was removed meanwhile
                    yield from self._failed(message_id, "the webhook was removed", True)
                    continue
                row = "webhook:" + recipient
                opened = tuple(
                    self._sealing().open(s, row).decode() for s in (secret, previous) if s
                )
                message = message._replace(url=url, secrets=opened)
            elif purpose in MAIL_LIFETIMES:
                carrying = yield from self._with_token(message)
                if carrying is None:
                    continue
                message = carrying
            taken.append(message)
        return taken

    def _with_token(self, message: OutboxMessage) -> Operation[OutboxMessage | None]:
        """The message with the token it carries, issued now; None (and the message
        dead) when it can no longer be sent: too old, or its address no longer fits."""
        lifetime = MAIL_LIFETIMES[message.purpose]
        now = time.time()
        if message.created_at + lifetime < now:
            yield from self._failed(message.message_id, "expired before it could be sent", True)
            return None
        address, address_key = identities.email(message.recipient)
        token = new_token()
        token_digest = digest(token)
        code = new_code() if message.purpose == "login_link" else None
        params = {
            "userid": message.userid,
            "purpose": message.purpose,
            "email": address,
            "email_key": address_key,
            "digest": token_digest,
            "code": None if code is None else code_digest(token_digest, code),
            "ttl": lifetime,
            **recording.parameters(now),
        }
        row = yield from self._logged(self._sql(ISSUE_FOR_MAIL, **LOGS), params)
        if row is None or not row[0]:
            yield from self._failed(message.message_id, "the address is no longer the user's", True)
            return None
        return message._replace(token=token, code=code, expires_at=now + lifetime)

    def message_sent(self, message_id: object) -> Operation[Status]:
        params = {"id": _message_id(message_id), "now": time.time()}
        return self._sent(params)

    def _sent(self, params: dict[str, Any]) -> Operation[Status]:
        row = yield Execute(self._sql(MESSAGE_SENT), params)
        return NOT_FOUND if row is None else OK

    def message_failed(
        self, message_id: object, error: object, permanent: object
    ) -> Operation[str | None]:
        checked = _message_id(message_id)
        why = checks.printable(checks.text(error, "error", 10_000))[:MAX_ERROR]
        return self._failed(checked, why, checks.flag(permanent, "permanent"))

    def _failed(self, message_id: str, error: str, permanent: bool) -> Operation[str | None]:
        params = {
            "id": message_id,
            "error": error,
            "permanent": permanent,
            "base": RETRY_BASE,
            "cap": RETRY_CAP,
            "now": time.time(),
        }
        row = yield Execute(self._sql(MESSAGE_FAILED), params)
        return None if row is None else str(row[0])

    @retry_safe
    def outbox(self, state: object, limit: object) -> Operation[list[OutboxEntry]]:
        if state is not None and (not isinstance(state, str) or state not in STATES):
            raise BadCallError(f"state must be one of {', '.join(STATES)}")
        params = {"state": state, "limit": checks.count(limit, "limit", 1, MAX_LISTED)}
        return self._list(params)

    def _list(self, params: dict[str, Any]) -> Operation[list[OutboxEntry]]:
        rows = yield Execute(self._sql(LIST_OUTBOX), params, Fetch.ALL)
        return [OutboxEntry._make(row) for row in rows]

    @retry_safe
    def outbox_backlog(self) -> Operation[tuple[int, int, float]]:
        row = yield Execute(self._sql(OUTBOX_BACKLOG), {"now": time.time()})
        pending, dead, oldest = row
        return int(pending), int(dead), float(oldest)

    @retry_safe
    def retry_message(self, message_id: object) -> Operation[Status]:
        params = {"id": _message_id(message_id), **recording.parameters(time.time())}
        return self._status_of(self._sql(RETRY_MESSAGE, **LOGS), params)


def _mail_settings(row: tuple[Any, ...]) -> MailSettings:
    """MAIL_SETTINGS' row as shown: whether a password is kept, never the password."""
    host, port, security, username, password, sender, base_url, app_name, most, new, at = row
    return MailSettings(
        host, port, security, username, password is not None, sender, base_url, app_name,
        most, new, at,
    )  # fmt: skip


def _by_email(email: object, source: object) -> dict[str, Any]:
    checked_source = checks.source(source)
    return {
        "email_key": identities.email(email)[1],
        **recording.parameters(time.time(), checked_source),
    }


def _sender(value: object) -> str:
    """The From of mail: an address, or a name and an address (``Name <a@b.example>``)."""
    text = checks.label(value, "sender", 400)
    name, address = email.utils.parseaddr(text)
    if not address:
        raise BadCallError("sender must be an address, or a name and an address in <>")
    checked = identities.email(address)[0]
    return email.utils.formataddr((name, checked)) if name else checked


def _kinds(kinds: object) -> list[str]:
    chosen = checks.strings(kinds, "kinds", MAX_KINDS, 100)
    if not chosen:
        raise BadCallError("kinds must name at least one kind of event, or '*' for all")
    for kind in chosen:
        if kind != "*" and not _KIND.fullmatch(kind):
            raise BadCallError(f"{kind!r} is not a kind of event (such as 'user.created')")
    return sorted(set(chosen))


def _signing_secret() -> str:
    """A Standard Webhooks signing secret: 'whsec_' and 32 random bytes in base64."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def _webhook_id(value: object) -> str:
    text = checks.text(value, "webhook_id", 100)
    if not text.startswith(WEBHOOK_ID):
        raise BadCallError("a webhook id starts with 'wh_'")
    return text


def _message_id(value: object) -> str:
    text = checks.text(value, "message_id", 100)
    if not text.startswith(MESSAGE_ID):
        raise BadCallError("a message id starts with 'msg_'")
    return text
