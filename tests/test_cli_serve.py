"""``pgusers apikey`` and ``pgusers serve``."""

import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import IO, Any

import pytest
from click.testing import CliRunner

import pgusers
from pgusers.cli import main

from .support import FAST_HASHER, matched


@pytest.fixture
def cli(dsn: str, schema: str) -> Callable[..., tuple[int, str, str]]:
    def run(*args: str) -> tuple[int, str, str]:
        result = CliRunner().invoke(main, ["--dsn", dsn, "--schema", schema, *args])
        if result.exception and not isinstance(result.exception, SystemExit):
            raise result.exception
        return result.exit_code, result.stdout, result.stderr

    return run


def test_apikey_create_prints_the_key_once_and_list_never_shows_it(
    cli: Callable[..., tuple[int, str, str]], dsn: str, schema: str
) -> None:
    code, out, _ = cli("apikey", "create", "shop", "--scope", "admin", "--json")
    assert code == 0
    made = json.loads(out)
    assert made["key"].startswith("pgusers_") and made["scope"] == "admin"
    code, listed, _ = cli("apikey", "list")
    assert code == 0
    assert made["key_id"] in listed and "shop" in listed and made["key"] not in listed
    with pgusers.UserSpace(conninfo=dsn, schema=schema, hasher=FAST_HASHER) as usp:
        found = usp._driver.run(usp._core.api_key_scope, made["key"])
        assert found == (made["key_id"], "admin", None)


def test_apikey_revoke_and_an_unknown_id(cli: Callable[..., tuple[int, str, str]]) -> None:
    _, out, _ = cli("apikey", "create", "shop", "--json")
    key_id = json.loads(out)["key_id"]
    assert cli("apikey", "revoke", key_id)[0] == 0
    code, _, err = cli("apikey", "revoke", key_id)
    assert code == 1 and "no live API key" in err
    _, listed, _ = cli("apikey", "list", "--json")
    assert json.loads(listed)[0]["revoked_at"] is not None


def test_apikey_refuses_a_bad_scope_and_an_empty_name(
    cli: Callable[..., tuple[int, str, str]],
) -> None:
    assert cli("apikey", "create", "x", "--scope", "root")[0] == 2
    code, _, err = cli("apikey", "create", "")
    assert code == 2 and "name" in err


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def serving(dsn: str, schema: str, *options: str) -> Iterator[tuple[int, IO[str]]]:
    """``pgusers serve`` in a subprocess on a free port: (port, its stderr)."""
    port = free_port()
    command = os.path.join(os.path.dirname(sys.executable), "pgusers")
    args = ["--dsn", dsn, "--schema", schema, "serve", "--port", str(port), *options]
    server = subprocess.Popen(
        [command, *args], stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True
    )
    assert server.stderr is not None
    try:
        yield port, server.stderr
    finally:
        server.terminate()
        server.wait(30)
        server.stderr.close()


def test_serve_prints_a_setup_link_that_opens_the_console(dsn: str, schema: str) -> None:
    with serving(dsn, schema) as (port, stderr):
        link = None
        deadline = time.monotonic() + 60
        while link is None and time.monotonic() < deadline:
            found = re.search(r"(http://\S+/console/setup\?token=\S+)", stderr.readline())
            link = found and found.group(1)
        assert link, "no setup link printed"
        for _ in range(100):  # the link is printed before uvicorn listens
            try:
                page = urllib.request.urlopen(link, timeout=5).read().decode()
                break
            except OSError:
                time.sleep(0.1)
        assert "Create the first administrator" in page
        spec = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/openapi.json"))
        assert "/v1/check" in spec["paths"]


def test_serve_prints_no_setup_link_once_there_is_an_admin(
    space: pgusers.UserSpace, dsn: str, schema: str
) -> None:
    space.create_user("root", "root-pw-1", "root@example.com", admin=True)
    lines: list[str] = []
    with serving(dsn, schema) as (_, stderr):
        while not any("Uvicorn running" in line for line in lines):
            lines.append(stderr.readline())
            assert lines[-1], "".join(lines)
    assert not any("setup" in line for line in lines)


def test_apikey_revoke_takes_an_id_that_begins_with_a_dash(
    cli: Callable[..., tuple[int, str, str]],
) -> None:
    code, _, err = cli("apikey", "revoke", "-AbCdEfG")
    assert code == 1 and "no live API key" in err


def wait_for(port: int) -> Any:
    for _ in range(300):
        try:
            return urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/openapi.json", timeout=5)
        except OSError:
            time.sleep(0.1)
    raise AssertionError("pgusers serve did not answer")


def log_in(port: int, forwarded_for: str) -> Any:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/v1/login",
        data=json.dumps({"username": "ada", "password": "s3cret-pw"}).encode(),
        headers={"content-type": "application/json", "x-forwarded-for": forwarded_for},
    )
    return json.load(urllib.request.urlopen(request, timeout=10))


def test_serve_trusts_no_forwarded_header_unless_told(
    space: pgusers.UserSpace, dsn: str, schema: str
) -> None:
    userid = space.create_user("ada", "s3cret-pw", "ada@example.com")
    with serving(dsn, schema) as (port, _):
        wait_for(port)
        log_in(port, "203.0.113.9")
    with serving(dsn, schema, "--forwarded-allow-ips", "127.0.0.1") as (port, _):
        wait_for(port)
        log_in(port, "203.0.113.7")
    assert sorted(str(session.source) for session in space.sessions(userid)) == [
        "127.0.0.1",
        "203.0.113.7",
    ]


def test_the_setup_link_stays_out_of_the_access_log(dsn: str, schema: str) -> None:
    port = free_port()
    command = os.path.join(os.path.dirname(sys.executable), "pgusers")
    args = ["--dsn", dsn, "--schema", schema, "serve", "--port", str(port)]
    # uvicorn writes its access log to standard output, everything else to standard error
    server = subprocess.Popen(
        [command, *args], stderr=subprocess.STDOUT, stdout=subprocess.PIPE, text=True
    )
    assert server.stdout is not None
    output = server.stdout
    try:
        lines: list[str] = []
        while not any("Uvicorn running" in line for line in lines):
            lines.append(output.readline())
            assert lines[-1], "".join(lines)
        token = matched(r"token=(\S+)", "".join(lines))
        page = urllib.request.urlopen(
            f"http://127.0.0.1:{port}/console/setup?token={token}", timeout=10
        )
        assert page.status == 200
        access = output.readline()
        while "/console/setup" not in access:
            access = output.readline()
            assert access
    finally:
        server.terminate()
        server.wait(30)
        output.close()
    assert token not in access
    assert "token=[hidden]" in access


def test_logins_through_serve_are_not_recorded_as_the_operator(
    space: pgusers.UserSpace, dsn: str, schema: str
) -> None:
    userid = space.create_user("ada", "s3cret-pw", "ada@example.com")
    with serving(dsn, schema) as (port, _):
        wait_for(port)
        log_in(port, "203.0.113.9")
    [login] = space.events(userid=userid, kinds="login.succeeded")
    assert login.actor is None, login
