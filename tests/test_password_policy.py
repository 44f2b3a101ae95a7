"""The password policy: lengths, and the breached-password check against a range API
played by a server on localhost, which records what it was sent."""

import hashlib
import http.server
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import pgusers
from pgusers import OK, BadCallError, WeakPasswordError

from .support import FAST_HASHER

BREACHED = "correct horse battery staple"
"""A password the range server says was seen in 42 breaches."""


def sha1_of(password: str) -> str:
    return hashlib.sha1(password.encode(), usedforsecurity=False).hexdigest().upper()


class RangeServer:
    """Answers ``GET /range/<PREFIX>`` as the range API does (padded), and records the
    paths and headers it was sent."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.failing = False
        known = sha1_of(BREACHED)
        served = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                served.requests.append((self.path, dict(self.headers)))
                if served.failing:
                    self.send_error(503)
                    return
                lines = [f"{'0' * 35}:0" for _ in range(50)]  # padding
                if self.path == f"/range/{known[:5]}":
                    lines.append(f"{known[5:]}:42")
                body = "\r\n".join(lines).encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/range/"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def ranges() -> Iterator[RangeServer]:
    server = RangeServer()
    yield server
    server.close()


@pytest.fixture
def usp(
    open_userspace: Callable[..., Any], dsn: str, schema: str, ranges: RangeServer
) -> Iterator[Any]:
    space = open_userspace(
        conninfo=dsn, schema=schema, hasher=FAST_HASHER, breach_source=ranges.url
    )
    yield space
    space.close()


def policy_of(settings: pgusers.Settings) -> tuple[int | None, int | None, str]:
    return settings.password_min_length, settings.password_max_length, settings.breached_check


def test_without_a_policy_any_password_goes_as_in_0_9(usp: Any, ranges: RangeServer) -> None:
    assert usp.create_user("ada", "pw", "ada@example.com") == 1
    assert policy_of(usp.settings()) == (None, None, "off")
    assert ranges.requests == []  # nothing is asked while the check is off


def test_the_policy_refuses_short_and_long_passwords_and_writes_nothing(usp: Any) -> None:
    usp.set_password_policy(min_length=8, max_length=64, breached="off")
    with pytest.raises(WeakPasswordError, match="at least 8 characters") as refused:
        usp.create_user("ada", "short", "ada@example.com")
    assert "short" not in str(refused.value)
    with pytest.raises(WeakPasswordError, match="at most 64"):
        usp.create_user("ada", "x" * 65, "ada@example.com")
    assert usp.find_user(username="ada") is None
    uid = usp.create_user("ada", "long enough", "ada@example.com")
    with pytest.raises(WeakPasswordError):
        usp.change_password(uid, "short")
    token = usp.issue_token(uid, "reset_password")
    with pytest.raises(WeakPasswordError):
        usp.reset_password(token, "short")
    assert usp.reset_password(token, "long enough too") == OK
    assert isinstance(WeakPasswordError("x"), BadCallError)


def test_a_breached_password_is_refused_and_only_a_prefix_leaves(
    usp: Any, ranges: RangeServer
) -> None:
    usp.set_password_policy()
    with pytest.raises(WeakPasswordError, match="42 known data breaches"):
        usp.create_user("ada", BREACHED, "ada@example.com")
    uid = usp.create_user("ada", "a fresh and long passphrase", "ada@example.com")
    (breached_path, headers), (fresh_path, _) = ranges.requests
    assert breached_path == f"/range/{sha1_of(BREACHED)[:5]}"
    assert fresh_path == f"/range/{sha1_of('a fresh and long passphrase')[:5]}"
    assert headers.get("Add-Padding") == "true"
    sent = repr(ranges.requests)
    assert sha1_of(BREACHED)[5:] not in sent and BREACHED not in sent
    with pytest.raises(WeakPasswordError):
        usp.change_password(uid, BREACHED)


def test_best_effort_lets_a_password_through_when_the_check_fails_and_says_so(
    usp: Any, ranges: RangeServer
) -> None:
    usp.set_password_policy(breached="best_effort")
    ranges.failing = True
    uid = usp.create_user("ada", BREACHED, "ada@example.com")
    (event,) = usp.events(kinds="password.breach_check_failed")
    assert event.detail == {"reason": "HTTPError"}
    usp.set_password_policy(breached="required")
    with pytest.raises(BadCallError, match="could not be made"):
        usp.change_password(uid, "another long passphrase")
    ranges.failing = False
    assert usp.change_password(uid, "another long passphrase") == OK


def test_an_offline_directory_of_range_files_is_a_source_too(
    open_userspace: Callable[..., Any], dsn: str, schema: str, tmp_path: Path
) -> None:
    digest = sha1_of(BREACHED)
    (tmp_path / digest[:5]).write_text(f"{digest[5:]}:7\r\n{'1' * 35}:0\r\n")
    usp = open_userspace(
        conninfo=dsn, schema=schema, hasher=FAST_HASHER, breach_source=str(tmp_path)
    )
    try:
        usp.set_password_policy(breached="required")
        with pytest.raises(WeakPasswordError, match="7 known data breaches"):
            usp.create_user("ada", BREACHED, "ada@example.com")
        # A prefix without its file is a check that could not be made.
        with pytest.raises(BadCallError, match="could not be made"):
            usp.create_user("ada", "another long passphrase", "ada@example.com")
    finally:
        usp.close()


@pytest.mark.parametrize(
    "bad",
    [
        {"min_length": 0},
        {"min_length": "8"},
        {"max_length": 2000},
        {"min_length": 10, "max_length": 9},
        {"breached": "sometimes"},
    ],
)
def test_a_bad_policy_is_refused(usp: Any, bad: dict[str, Any]) -> None:
    with pytest.raises(BadCallError):
        usp.set_password_policy(**bad)
    assert policy_of(usp.settings()) == (None, None, "off")


# -- the offline source, made by the command line ---------------------------------------------


def test_the_command_line_makes_a_directory_the_check_reads(
    dsn: str, schema: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from click.testing import CliRunner

    from pgusers.cli import main

    breached = ["password1", "letmein", "hunter22"]
    hashes = sorted(f"{sha1_of(p)}:{i + 7}" for i, p in enumerate(breached))
    # Other hashes, one of them under the prefix of a password no breach holds (a
    # full download has every prefix).
    fine = sha1_of("not-in-the-list")
    unrelated = [f"{'0' * 35}{n:05X}:1" for n in range(3)] + [f"{fine[:5]}{'F' * 35}:2"]
    download = tmp_path / "pwned.txt"
    # Sorted as downloaded, with one line out of order at the end, in lower case.
    download.write_text("\n".join([*unrelated, *hashes[1:], hashes[0].lower()]) + "\n")
    into = tmp_path / "ranges"
    runner = CliRunner()
    base = ["--dsn", dsn, "--schema", schema]
    made = runner.invoke(main, [*base, "breached-passwords", "import", str(download), str(into)])
    assert made.exit_code == 0, made.output
    assert "range files" in made.stdout
    first = sha1_of("password1")
    assert (into / first[:5]).read_text().splitlines().count(f"{first[5:]}:7") == 1
    again = runner.invoke(main, [*base, "breached-passwords", "import", str(download), str(into)])
    assert again.exit_code == 2 and "exists already" in again.stderr

    monkeypatch.setenv("PGUSERS_BREACH_SOURCE", str(into))
    added = runner.invoke(
        main, [*base, "adduser", "eve@example.com", "--password-stdin"], input="password1\n"
    )
    assert added.exit_code == 0, added.output  # no policy yet
    with pgusers.UserSpace(conninfo=dsn, schema=schema, breach_source=str(into)) as usp:
        usp.set_password_policy(min_length=None, breached="required")
    refused = runner.invoke(
        main, [*base, "adduser", "mallory@example.com", "--password-stdin"], input="letmein\n"
    )
    assert refused.exit_code == 2 and "breach" in refused.stderr
    allowed = runner.invoke(
        main, [*base, "adduser", "ada@example.com", "--password-stdin"], input="not-in-the-list\n"
    )
    assert allowed.exit_code == 0, allowed.output


def test_a_malformed_download_leaves_no_directory(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from pgusers.cli import main

    download = tmp_path / "pwned.txt"
    download.write_text(f"{sha1_of('a')}:1\nnot a hash\n")
    into = tmp_path / "ranges"
    answer = CliRunner().invoke(main, ["breached-passwords", "import", str(download), str(into)])
    assert answer.exit_code == 2
    assert "line 2 of SOURCE is not HASH:COUNT" in answer.stderr
    assert list(tmp_path.iterdir()) == [download]
