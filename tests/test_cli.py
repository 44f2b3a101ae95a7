"""The command line, driven through click's test runner and as a real subprocess."""

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner

import pgusers
from pgusers.cli import main

from .support import Clock, row_of

PASSWORD = "op3rator-pw"


@pytest.fixture
def cli(dsn: str, schema: str) -> Callable[..., tuple[int, str, str]]:
    """Run ``pgusers --dsn DSN --schema SCHEMA ARGS...``; return (exit code, stdout, stderr)."""
    runner = CliRunner()

    def run(*args: str, stdin: str | None = None) -> tuple[int, str, str]:
        result = runner.invoke(main, ["--dsn", dsn, "--schema", schema, *args], input=stdin)
        if result.exception and not isinstance(result.exception, SystemExit):
            raise result.exception
        return result.exit_code, result.stdout, result.stderr

    return run


@pytest.fixture
def ada(cli: Callable[..., tuple[int, str, str]]) -> int:
    code, out, _ = cli(
        "adduser", "ada@example.com", "ada", "--password-stdin", stdin=PASSWORD + "\n"
    )
    assert code == 0, out
    return 1


def users_in(dsn: str, schema: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(f"SELECT userid, username, email, admin FROM {schema}.users").fetchall()


def test_adduser_with_password_on_stdin(
    cli: Callable[..., tuple[int, str, str]], dsn: str, schema: str
) -> None:
    code, out, _ = cli("adduser", "--admin", "root@example.com", "--password-stdin", stdin="pw\n")
    assert (code, out) == (0, "created user 'root@example.com' with userid 1 (admin)\n")
    assert users_in(dsn, schema) == [(1, "root@example.com", "root@example.com", True)]
    with pgusers.UserSpace(conninfo=dsn, schema=schema) as usp:
        assert usp.validate_user("root@example.com", "pw")[2] == 1


def test_adduser_without_terminal_or_flag_refuses(
    cli: Callable[..., tuple[int, str, str]], dsn: str, schema: str
) -> None:
    code, _, err = cli("adduser", "x@example.com")
    assert code == 2
    assert "--password-stdin" in err
    assert err.count("\n") == 1
    assert users_in(dsn, schema) == []


def test_adduser_duplicate_and_malformed_email(
    cli: Callable[..., tuple[int, str, str]], ada: int, dsn: str, schema: str
) -> None:
    code, _, err = cli("adduser", "ADA@example.com", "other", "--password-stdin", stdin="pw\n")
    assert code == 2
    assert "already exists" in err
    code, _, err = cli("adduser", "not-an-email", "--password-stdin", stdin="pw\n")
    assert (code, err) == (
        2,
        "pgusers: email is not a valid address: An email address must have an @-sign\n",
    )
    assert len(users_in(dsn, schema)) == 1


def test_empty_password_on_stdin_is_refused(
    cli: Callable[..., tuple[int, str, str]], dsn: str, schema: str
) -> None:
    code, _, err = cli("adduser", "x@example.com", "--password-stdin", stdin="\n")
    assert code == 2
    assert "no password" in err


def test_cpasswd_by_username_email_or_userid(
    cli: Callable[..., tuple[int, str, str]], ada: int
) -> None:
    for user, password in (("ada", "pw-1"), ("ada@example.com", "pw-2"), ("1", "pw-3")):
        code, out, _ = cli("cpasswd", user, "--password-stdin", stdin=password + "\n")
        assert (code, out) == (0, "password of 'ada' changed\n")
        code, _, _ = cli("login", "ada", "--password-stdin", stdin=password + "\n")
        assert code == 0


def test_unknown_user_exits_1(cli: Callable[..., tuple[int, str, str]]) -> None:
    for args in (
        ("cpasswd", "ghost", "--password-stdin"),
        ("delete", "ghost"),
        ("info", "ghost"),
        ("setadmin", "42"),
        ("listsessions", "ghost"),
    ):
        code, out, err = cli(*args, stdin="pw\n")
        assert (code, out, err) == (1, "", "pgusers: no user 'ghost'\n".replace("ghost", args[1]))


def test_setadmin_and_remove(
    cli: Callable[..., tuple[int, str, str]], ada: int, dsn: str, schema: str
) -> None:
    assert cli("setadmin", "ada") == (0, "'ada' is now an administrator\n", "")
    assert users_in(dsn, schema)[0][3] is True
    assert cli("setadmin", "--remove", "ada")[0] == 0
    assert users_in(dsn, schema)[0][3] is False


def test_list_as_table_and_json(cli: Callable[..., tuple[int, str, str]], ada: int) -> None:
    cli("adduser", "--admin", "bob@example.com", "bob", "--password-stdin", stdin="pw\n")
    code, out, _ = cli("list")
    assert code == 0
    assert out.splitlines() == [
        "userid  username  email            admin",
        "1       ada       ada@example.com",
        "2       bob       bob@example.com  yes",
    ]
    code, out, _ = cli("list", "--json")
    assert json.loads(out) == [
        {"userid": 1, "username": "ada", "email": "ada@example.com", "admin": False},
        {"userid": 2, "username": "bob", "email": "bob@example.com", "admin": True},
    ]


def test_info_shows_extra_data(
    cli: Callable[..., tuple[int, str, str]], ada: int, dsn: str, schema: str
) -> None:
    with pgusers.UserSpace(conninfo=dsn, schema=schema) as usp:
        usp.modify_user(1, extra_data={"tags": ("a", "b")})
    code, out, _ = cli("info", "ada")
    assert code == 0
    assert "extra_data:      {'tags': ('a', 'b')}" in out
    assert "admin:           no" in out
    assert "email_verified:  no" in out
    assert "disabled:        no" in out
    code, out, _ = cli("info", "ada@example.com", "--json")
    assert json.loads(out)["extra_data"] == {"tags": {"$type": "tuple", "items": ["a", "b"]}}


def test_login_prints_a_key_that_check_accepts(
    cli: Callable[..., tuple[int, str, str]], ada: int
) -> None:
    code, out, _ = cli("login", "ada", "--password-stdin", stdin=PASSWORD + "\n")
    key = out.strip()
    assert code == 0 and len(key) == 43
    assert cli("check", key) == (0, "OK: 'ada' (userid 1)\n", "")
    code, out, _ = cli("check", key, "--json")
    assert json.loads(out) == {"status": "OK", "username": "ada", "userid": 1, "extra_data": None}


def test_login_json_and_rejection(cli: Callable[..., tuple[int, str, str]], ada: int) -> None:
    code, out, _ = cli("login", "ada", "--json", "--password-stdin", stdin=PASSWORD + "\n")
    assert code == 0
    assert json.loads(out)["userid"] == 1
    assert cli("login", "ada", "--password-stdin", stdin="wrong\n") == (
        1,
        "",
        "pgusers: login rejected\n",
    )
    assert cli("login", "ghost", "--password-stdin", stdin="wrong\n")[0] == 1


def test_check_reads_the_key_from_stdin_given_a_dash(
    cli: Callable[..., tuple[int, str, str]], ada: int
) -> None:
    key = cli("login", "ada", "--password-stdin", stdin=PASSWORD + "\n")[1].strip()
    assert cli("check", "-", stdin=key + "\n") == (0, "OK: 'ada' (userid 1)\n", "")
    assert cli("check", "-", stdin="A" * 43 + "\n") == (1, "NOT_FOUND\n", "")


def test_check_unknown_key_exits_1(cli: Callable[..., tuple[int, str, str]]) -> None:
    assert cli("check", "A" * 43) == (1, "NOT_FOUND\n", "")
    code, out, _ = cli("check", "A" * 43, "--json")
    assert code == 1
    assert json.loads(out)["status"] == "NOT_FOUND"


def test_listsessions_masks_keys_unless_asked(
    cli: Callable[..., tuple[int, str, str]], ada: int
) -> None:
    key = cli("login", "ada", "--password-stdin", stdin=PASSWORD + "\n")[1].strip()
    code, out, _ = cli("listsessions", "ada")
    assert code == 0
    assert key[:6] + "…" in out
    assert key not in out
    code, out, _ = cli("listsessions", "--all", "--show-keys", "--json")
    [session] = json.loads(out)
    assert (session["username"], session["key"]) == ("ada", key)
    assert cli("listsessions", "--all", "--expired", "--json")[1].strip() == "[]"


def test_listsessions_needs_a_user_or_all(
    cli: Callable[..., tuple[int, str, str]], ada: int
) -> None:
    code, _, err = cli("listsessions")
    assert code == 2
    assert "--all" in err
    assert cli("listsessions", "--all", "ada")[0] == 2


def test_killsessions_prints_the_count(cli: Callable[..., tuple[int, str, str]], ada: int) -> None:
    for _ in range(2):
        cli("login", "ada", "--password-stdin", stdin=PASSWORD + "\n")
    assert cli("killsessions", "--all", "--expired") == (0, "ended 0 sessions\n", "")
    assert cli("killsessions", "ada") == (0, "ended 2 sessions\n", "")


def test_ttl_show_and_set(cli: Callable[..., tuple[int, str, str]]) -> None:
    assert cli("ttl") == (0, "session TTL: 864000 s (10 days, 0:00:00)\n", "")
    assert cli("ttl", "3600") == (0, "session TTL: 3600 s (1:00:00)\n", "")
    assert cli("ttl")[1] == "session TTL: 3600 s (1:00:00)\n"
    code, _, err = cli("ttl", "0")
    assert code == 2
    assert "TTL" in err


def test_delete_removes_user_and_sessions(
    cli: Callable[..., tuple[int, str, str]], ada: int, dsn: str, schema: str
) -> None:
    cli("login", "ada", "--password-stdin", stdin=PASSWORD + "\n")
    code, out, _ = cli("delete", "ada")
    assert (code, out) == (0, "deleted user 'ada' (userid 1) and its sessions\n")
    assert users_in(dsn, schema) == []


def test_unreachable_database_exits_3() -> None:
    result = CliRunner().invoke(main, ["--dsn", "host=127.0.0.1 port=1 dbname=x", "list"])
    assert result.exit_code == 3
    assert result.stderr.startswith("pgusers: database")
    assert result.stderr.count("\n") == 1


def test_usage_error_exits_2(cli: Callable[..., tuple[int, str, str]]) -> None:
    assert cli("no-such-command")[0] == 2
    assert cli("adduser")[0] == 2


def run_pgusers(
    *args: str | bytes, stdin: str | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """The installed console script, as a user runs it (no terminal on stdin)."""
    command = [os.path.join(os.path.dirname(sys.executable), "pgusers"), *args]
    return subprocess.run(
        command, input=stdin, capture_output=True, text=True, env=env, timeout=120, check=False
    )


def test_console_script_reads_the_password_from_stdin_and_never_prints_it(
    dsn: str, schema: str
) -> None:
    secret = "never-shown-pw"
    added = run_pgusers(
        "--dsn",
        dsn,
        "--schema",
        schema,
        "adduser",
        "eve@example.com",
        "--password-stdin",
        stdin=secret + "\n",
    )
    assert added.returncode == 0, added.stderr
    login = run_pgusers(
        "--dsn",
        dsn,
        "--schema",
        schema,
        "login",
        "eve@example.com",
        "--password-stdin",
        stdin=secret + "\n",
    )
    assert login.returncode == 0
    refused = run_pgusers(
        "--dsn", dsn, "--schema", schema, "cpasswd", "eve@example.com", stdin=secret + "\n"
    )
    assert refused.returncode == 2
    assert "Traceback" not in refused.stderr
    for result in (added, login, refused):
        assert secret not in result.stdout + result.stderr


def test_demo_on_a_given_database_leaves_nothing_behind(dsn: str) -> None:
    with psycopg.connect(dsn) as conn:
        schemas_before = conn.execute("SELECT nspname FROM pg_namespace").fetchall()
    result = run_pgusers("--dsn", dsn, "demo")
    assert result.returncode == 0, result.stderr
    assert "$argon2id$" in result.stdout
    assert "appears nowhere" in result.stdout
    assert "done in" in result.stdout
    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT nspname FROM pg_namespace").fetchall() == schemas_before


def test_embedded_default_demo_and_server_commands() -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith("PG")}
    # Run as root, the embedded server drops to a user of its own, which must be able
    # to reach the data directory: a directory of its own, not one in pytest's tree.
    place = tempfile.mkdtemp(prefix="pgusers-cli-")
    os.chmod(place, 0o755)
    env["PGUSERS_DATA_DIR"] = os.path.join(place, "data")
    try:
        demo = run_pgusers("demo", env=env)
        assert demo.returncode == 0, demo.stderr
        assert "embedded PostgreSQL" in demo.stderr
        added = run_pgusers("adduser", "ann@example.com", "--password-stdin", stdin="pw\n", env=env)
        assert added.returncode == 0, added.stderr
        listed = run_pgusers("list", "--json", env=env)
        assert [u["username"] for u in json.loads(listed.stdout)] == ["ann@example.com"]
        status = run_pgusers("server", "status", env=env)
        assert (status.returncode, status.stdout.count(env["PGUSERS_DATA_DIR"])) == (0, 1)
        assert "running" in status.stdout
        conninfo = run_pgusers("server", "dsn", env=env).stdout.strip()
        with psycopg.connect(conninfo) as conn:
            assert conn.execute("SELECT count(*) FROM pgusers.users").fetchone() == (1,)
    finally:
        stopped = run_pgusers("server", "stop", env=env)
    assert stopped.stdout == "stopped\n"
    status = run_pgusers("server", "status", env=env)
    assert (status.returncode, "stopped" in status.stdout) == (1, True)
    again = run_pgusers("list", "--json", env=env)  # started again, data kept
    assert [u["username"] for u in json.loads(again.stdout)] == ["ann@example.com"]
    run_pgusers("server", "stop", env=env)
    shutil.rmtree(place, ignore_errors=True)


def test_unwritable_data_directory_exits_3(tmp_path: Path) -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith("PG")}
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    env["PGUSERS_DATA_DIR"] = str(blocker / "data")
    result = run_pgusers("list", env=env)
    assert result.returncode == 3
    assert result.stderr.startswith("pgusers: cannot start the embedded PostgreSQL")
    assert "Traceback" not in result.stderr


def test_password_prompt_on_a_terminal_asks_twice_without_echo(dsn: str, schema: str) -> None:
    pexpect = pytest.importorskip("pexpect")
    command = os.path.join(os.path.dirname(sys.executable), "pgusers")
    child = pexpect.spawn(
        command,
        ["--dsn", dsn, "--schema", schema, "adduser", "tty@example.com"],
        encoding="utf-8",
        timeout=60,
    )
    child.expect("Password: ")
    child.sendline("typed-secret")
    child.expect("Repeat for confirmation: ")
    child.sendline("typed-secret")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    assert "typed-secret" not in child.before
    with pgusers.UserSpace(conninfo=dsn, schema=schema) as usp:
        assert usp.validate_user("tty@example.com", "typed-secret")[2] == 1


def test_keys_hash_shows_its_progress_in_place_on_a_terminal(
    space: pgusers.UserSpace, dsn: str, schema: str
) -> None:
    pexpect = pytest.importorskip("pexpect")
    space.create_user("ada", "ada-pw-123", "ada@example.com")
    for _ in range(3):
        space.login("ada", "ada-pw-123")
    command = os.path.join(os.path.dirname(sys.executable), "pgusers")
    child = pexpect.spawn(
        command,
        ["--dsn", dsn, "--schema", schema, "keys", "hash"],
        encoding="utf-8",
        timeout=60,
    )
    child.expect(r"Keep only digests .*\[y/N\]: ")
    child.sendline("y")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    assert "\rconverted: 3 keys\r\n" in child.before  # one line, rewritten in place
    assert "session keys are kept hashed; converted 3 stored keys" in child.before


# -- which user an argument names ------------------------------------------------------


def add(cli: Callable[..., tuple[int, str, str]], email: str, username: str) -> None:
    code, _, err = cli("adduser", email, username, "--password-stdin", stdin="pw\n")
    assert code == 0, err


def test_an_argument_naming_two_users_is_refused_with_both(
    cli: Callable[..., tuple[int, str, str]], dsn: str, schema: str
) -> None:
    add(cli, "owner@example.com", "admin2@example.com")  # userid 1: the name looks like an email
    add(cli, "admin2@example.com", "alice")  # userid 2: the owner of that email
    code, out, err = cli("setadmin", "admin2@example.com")
    assert code == 2
    assert "userid 1 (username 'admin2@example.com') by its username" in err
    assert "userid 2 (username 'alice') by its email" in err
    assert "--id, --name or --email" in err
    assert [row[3] for row in sorted(users_in(dsn, schema))] == [False, False]
    code, out, _ = cli("setadmin", "--email", "admin2@example.com")
    assert (code, out) == (0, "'alice' is now an administrator\n")
    assert [row[3] for row in sorted(users_in(dsn, schema))] == [False, True]


def test_a_number_that_is_also_a_username_is_refused(
    cli: Callable[..., tuple[int, str, str]],
) -> None:
    add(cli, "ada@example.com", "ada")
    add(cli, "two@example.com", "1")
    code, _, err = cli("info", "1")
    assert code == 2
    assert "names more than one user" in err
    code, out, _ = cli("info", "--id", "1")
    assert (code, "username:        ada") == (0, out.splitlines()[1])
    code, out, _ = cli("info", "--name", "1")
    assert (code, "username:        1") == (0, out.splitlines()[1])


@pytest.mark.parametrize(
    "digits", ["\u00b2", "\u0661", "\uff12"], ids=["superscript", "arabic", "fullwidth"]
)
def test_digits_of_other_scripts_are_not_userids(
    cli: Callable[..., tuple[int, str, str]], digits: Any
) -> None:
    add(cli, "ada@example.com", "ada")
    add(cli, "bob@example.com", "bob")
    code, out, err = cli("info", digits)
    assert (code, out) == (1, "")
    assert "no user" in err
    code, _, err = cli("info", "--id", digits)
    assert code == 2
    assert "is not a userid" in err


def test_a_huge_number_is_no_user_and_no_traceback(
    cli: Callable[..., tuple[int, str, str]],
) -> None:
    add(cli, "ada@example.com", "ada")
    code, _, err = cli("info", "9" * 5000)
    assert code == 1
    assert err.count("\n") == 1
    code, _, err = cli("delete", "--id", "9" * 5000)
    assert code == 2


def test_stored_data_pgusers_cannot_read_is_one_line_exit_3(
    cli: Callable[..., tuple[int, str, str]], dsn: str, schema: str
) -> None:
    add(cli, "ada@example.com", "ada")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"""UPDATE {schema}.users SET extra_data = '{{"$type": "nope"}}'""")
    code, out, err = cli("info", "ada")
    assert (code, out) == (3, "")
    assert err.startswith("pgusers: stored extra_data cannot be decoded")
    assert err.count("\n") == 1


def test_control_characters_in_stored_data_reach_no_terminal(
    cli: Callable[..., tuple[int, str, str]], dsn: str, schema: str
) -> None:
    add(cli, "ada@example.com", "ada")
    with psycopg.connect(dsn, autocommit=True) as conn:
        # As another program, or an older pgusers, could have stored it.
        conn.execute(
            f"UPDATE {schema}.users SET email = %s, extra_data = %s",
            ("ada\x1b[2J\x07@example.com", '{"note": "\\u001b]0;owned\\u0007 \\u202e"}'),
        )
    for command in (["list"], ["info", "ada"], ["list", "--json"], ["info", "ada", "--json"]):
        code, out, _ = cli(*command)
        assert code == 0
        assert not any(ch in out for ch in "\x1b\x07\u202e"), command
    code, out, _ = cli("list")
    assert "ada\\x1b[2J\\x07@example.com" in out


def test_a_dsn_that_is_not_utf8_is_one_line_exit_2(schema: str) -> None:
    result = run_pgusers("--dsn", b"host=\xff\xfe", "--schema", schema, "list")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1


def test_disable_and_enable(cli: Callable[..., tuple[int, str, str]], ada: int) -> None:
    code, key, _ = cli("login", "ada", "--password-stdin", stdin=PASSWORD + "\n")
    assert code == 0
    assert cli("disable", "ada")[:2] == (0, "'ada' is disabled; its sessions ended\n")
    assert cli("check", key.strip())[0] == 1
    assert cli("login", "ada", "--password-stdin", stdin=PASSWORD + "\n")[0] == 1
    assert "disabled:        yes" in cli("info", "ada")[1]
    assert cli("enable", "--name", "ada")[:2] == (0, "'ada' is enabled\n")
    assert cli("login", "ada", "--password-stdin", stdin=PASSWORD + "\n")[0] == 0
    assert cli("disable", "nobody")[0] == 1


def test_reset_token_prints_a_token_that_resets_the_password(
    cli: Callable[..., tuple[int, str, str]], ada: int, dsn: str, schema: str
) -> None:
    code, out, _ = cli("reset-token", "ada")
    assert code == 0
    token = out.strip()
    with pgusers.UserSpace(conninfo=dsn, schema=schema) as usp:
        assert usp.reset_password(token, "n3w-pw") == pgusers.OK
        assert usp.validate_user("ada", "n3w-pw").userid == 1
    code, out, _ = cli("reset-token", "--json", "--ttl", "60", "ada@example.com")
    assert (code, json.loads(out)["username"]) == (0, "ada")
    assert cli("reset-token", "--ttl", "-5", "ada")[0] == 2


def test_check_takes_a_key_that_begins_with_a_dash(
    cli: Callable[..., tuple[int, str, str]],
) -> None:
    assert cli("check", "-" + "A" * 42) == (1, "NOT_FOUND\n", "")


def test_throttle_clear_lifts_a_users_throttle(
    cli: Callable[..., tuple[int, str, str]], ada: int, dsn: str, schema: str, clock: Clock
) -> None:
    with pgusers.UserSpace(conninfo=dsn, schema=schema) as usp:
        usp.set_login_policy(free_failures=1, max_backoff=3600)
        usp.login("ada", "wrong", source="198.51.100.7")
        assert usp.login("ada", PASSWORD, source="198.51.100.7").status == pgusers.THROTTLED
    # the name's count from every source, and from that one
    assert cli("throttle", "clear", "ada") == (0, "cleared 2 failure counts\n", "")
    assert cli("throttle", "clear", "--source", "198.51.100.7")[1] == "cleared 1 failure count\n"
    assert cli("login", "ada", "--password-stdin", stdin=PASSWORD + "\n")[0] == 0
    assert cli("throttle", "clear")[0] == 2


def test_throttle_list_and_info_show_the_throttle(
    cli: Callable[..., tuple[int, str, str]], ada: int, dsn: str, schema: str, clock: Clock
) -> None:
    with pgusers.UserSpace(conninfo=dsn, schema=schema) as usp:
        usp.set_login_policy(free_failures=1, max_backoff=3600)
        usp.login("ADA", "wrong", source="198.51.100.7")
    code, out, _ = cli("throttle", "list", "--json")
    assert code == 0
    listed = {(row["kind"], row["subject"]): row for row in json.loads(out)}
    assert listed[("pair", "ada from 198.51.100.7")]["retry_after"] > 0
    assert listed[("name", "ada")]["failures"] == 1
    assert listed[("source", "198.51.100.7")]["failures"] == 1
    assert "198.51.100.7" in cli("throttle", "list")[1]
    assert "throttled_for:   1 s" in cli("info", "ada")[1]
    assert json.loads(cli("info", "ada", "--json")[1])["throttled_for"] > 0


def login_key(cli: Callable[..., tuple[int, str, str]]) -> str:
    code, out, _ = cli("login", "ada", "--password-stdin", stdin=PASSWORD + "\n")
    assert code == 0
    return out.strip()


def test_sessions_lists_ids_never_keys_and_endsession_ends_one(
    cli: Callable[..., tuple[int, str, str]], ada: int, dsn: str, schema: str
) -> None:
    keys = [login_key(cli), login_key(cli)]
    code, out, _ = cli("sessions", "ada")
    assert code == 0
    assert out.splitlines()[0].split()[:3] == ["session", "id", "username"]
    assert not any(key[:8] in out for key in keys)
    code, out, _ = cli("sessions", "ada", "--json")
    rows = json.loads(out)
    assert [row["username"] for row in rows] == ["ada", "ada"]
    assert set(rows[0]) == {
        "session_id",
        "userid",
        "username",
        "created_at",
        "last_seen_at",
        "expires_at",
        "source",
        "user_agent",
    }
    code, out, _ = cli("endsession", rows[0]["session_id"])
    assert (code, out) == (0, f"ended session {rows[0]['session_id']}\n")
    code, _, err = cli("endsession", rows[0]["session_id"])
    assert code == 1 and "no session" in err
    statuses = [cli("check", key)[0] for key in keys]
    assert sorted(statuses) == [0, 1]


def test_events_show_the_operating_system_user_as_actor(
    cli: Callable[..., tuple[int, str, str]], ada: int
) -> None:
    import getpass

    code, out, _ = cli("setadmin", "ada")
    assert code == 0
    code, out, _ = cli("events", "ada", "--kind", "admin.changed", "--json")
    (event,) = json.loads(out)
    assert (event["actor"], event["userid"], event["detail"]) == (
        f"cli:{getpass.getuser()}",
        1,
        {"admin": True},
    )
    code, out, _ = cli("events", "--since", "1h", "--limit", "1")
    lines = out.splitlines()
    assert len(lines) == 2 and "admin.changed" in lines[1]
    code, out, _ = cli("events", "--since", "2999-01-01")
    assert out.splitlines()[1:] == []


def test_events_refuses_a_time_it_cannot_read(cli: Callable[..., tuple[int, str, str]]) -> None:
    code, _, err = cli("events", "--since", "last tuesday")
    assert code == 2 and "ISO 8601" in err
    code, _, err = cli("events", "--kind", "user.exploded")
    assert code == 2


def test_keys_hash_asks_first_then_converts_with_progress(
    cli: Callable[..., tuple[int, str, str]], ada: int, dsn: str, schema: str
) -> None:
    key = login_key(cli)
    code, _, err = cli("keys", "hash")
    assert code == 2 and "--yes" in err
    code, out, _ = cli("keys", "hash", stdin="n\n")
    assert code == 2  # no terminal: refused, nothing changed
    code, out, err = cli("keys", "hash", "--yes")
    assert code == 0
    assert "converted 1 stored keys" in out
    assert err.endswith("converted: 1 keys\n")  # no terminal: a plain line
    code, out, _ = cli("keys", "hash")  # nothing left to do: nothing to confirm
    assert (code, out) == (0, "session keys are already kept hashed; nothing to do\n")
    assert cli("check", key)[0] == 0
    with psycopg.connect(dsn) as conn:
        (stored,) = row_of(conn.execute(f"SELECT key FROM {schema}.sessions").fetchone())
    assert stored.startswith("sha256:") and key not in stored
    code, out, _ = cli("listsessions", "ada", "--show-keys")
    assert key not in out


def test_maxage_and_retention_settings(cli: Callable[..., tuple[int, str, str]], ada: int) -> None:
    assert cli("maxage", "3600")[1] == "sessions end 3600 s (1:00:00) after their login\n"
    assert cli("maxage", "none")[1] == "sessions have no maximum age\n"
    assert cli("maxage", "-1")[0] == 2
    assert cli("maxage")[0] == 2
    assert cli("retention", "30")[1] == "events are kept 30 days\n"
    assert cli("retention", "none")[1] == "events are kept forever\n"
    assert cli("retention", "soon")[0] == 2
    code, out, _ = cli("events", "--kind", "settings.changed", "--json")
    assert code == 0
    assert len(json.loads(out)) == 4


def test_a_session_id_that_begins_with_a_dash_is_an_id_not_an_option(
    cli: Callable[..., tuple[int, str, str]], ada: int
) -> None:
    code, _, err = cli("endsession", "-AbCdEfGhIjKlMnO")
    assert code == 1 and "no session" in err
    assert cli("check", "-" + "A" * 42)[0] == 1


def test_the_version_is_written_once_and_read_everywhere() -> None:
    from importlib.metadata import version

    assert pgusers.__version__ == version("pgusers")
    assert run_pgusers("--version").stdout == f"pgusers, version {pgusers.__version__}\n"


def test_adduser_takes_extra_data_and_modify_changes_a_user(
    cli: Callable[..., tuple[int, str, str]], dsn: str, schema: str
) -> None:
    code, out, _ = cli(
        "adduser",
        "bo@example.com",
        "bo",
        "--extra-data",
        '{"plan": "pro"}',
        "--password-stdin",
        stdin="bo-pw-123\n",
    )
    assert code == 0, out
    code, _, err = cli(
        "adduser", "cy@example.com", "--extra-data", "{nope", "--password-stdin", stdin="pw\n"
    )
    assert code == 2 and "--extra-data takes JSON" in err
    assert "cy@example.com" not in cli("list")[1]
    code, out, _ = cli("modify", "bo", "--new-username", "bob", "--extra-data", '{"plan": "team"}')
    assert (code, out) == (0, "changed user 'bob' (userid 1)\n")
    code, out, _ = cli("info", "bob", "--json")
    found = json.loads(out)
    assert (found["email"], found["extra_data"]) == ("bo@example.com", {"plan": "team"})
    code, _, err = cli("modify", "bob")
    assert code == 2 and "say what to change" in err
    assert cli("modify", "nobody", "--new-email", "n@example.com")[0] == 1


def test_empty_results_say_so(cli: Callable[..., tuple[int, str, str]]) -> None:
    assert cli("list")[1] == "no users\n"
    assert cli("sessions", "--all")[1] == "no sessions\n"
    assert cli("listsessions", "--all")[1] == "no sessions\n"
    assert cli("throttle", "list")[1] == "no failed logins in the last day\n"
    assert cli("apikey", "list")[1] == "no API keys\n"


def test_help_reads_well_at_eighty_columns() -> None:
    groups = [[], ["apikey"], ["keys"], ["mfa"], ["passkey"], ["breached-passwords"]]
    groups += [["server"], ["throttle"], ["role"], ["org"]]
    for group in groups:
        result = CliRunner().invoke(main, [*group, "--help"], terminal_width=80)
        listed = result.stdout.split("Commands:")[-1]
        assert "..." not in listed, (group, listed)
    info = CliRunner().invoke(main, ["info", "--help"], terminal_width=80).stdout
    assert "USER is an email address." in info and "a email" not in info


def test_none_is_no_limit_on_the_command_line_too(cli: Callable[..., tuple[int, str, str]]) -> None:
    assert cli("maxsessions", "5")[1] == "a user may have at most 5 sessions at once\n"
    assert cli("maxsessions", "none")[1] == "a user may have any number of sessions\n"
    code, _, err = cli("maxsessions", "0")
    assert code == 2 and "sessions_per_user" in err
    code, _, err = cli("ttl", "none")
    assert code == 2 and "session_ttl needs a number of seconds" in err
