"""Importing pgusers 0.9 databases, made by the real pgusers 0.9.4 in a virtual
environment of its own: users log in with their old passwords, live sessions keep
working until their old expiry, and nothing is imported halfway."""

import datetime
import decimal
import json
import os
import pickle
import subprocess
import sys
import uuid
import venv
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

import pgusers
from pgusers import EXPIRED, NOT_FOUND, OK, BadCallError, LegacyImportError

from .support import FAST_HASHER, Clock, only, row_of

ORIGINAL = "0.9.4"
DRIVER = Path(__file__).resolve().parent / "legacy_driver.py"
ENVIRONMENT = Path(
    os.environ.get("PGUSERS_ORIGINAL_VENV")
    or Path.home() / ".cache" / "pgusers-tests" / f"venv-pgusers-{ORIGINAL}"
)


@pytest.fixture(scope="session")
def original_python() -> str:
    """The Python of a virtual environment with the original pgusers installed."""
    python = ENVIRONMENT / "bin" / "python"
    if not python.exists():
        venv.create(ENVIRONMENT, with_pip=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", f"pgusers=={ORIGINAL}"], check=True
        )
    return str(python)


@pytest.fixture
def legacy_database(server_dsn: str, dsn: str) -> Iterator[tuple[str, str]]:
    """A new database for a 0.9 application: (its conninfo on the server, the same
    database as the userspaces under test reach it)."""
    name = f"pgusers_legacy_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(server_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    yield (
        psycopg.conninfo.make_conninfo(server_dsn, dbname=name),
        psycopg.conninfo.make_conninfo(dsn, dbname=name),
    )
    with psycopg.connect(server_dsn, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


@pytest.fixture
def legacy(original_python: str, legacy_database: tuple[str, str]) -> tuple[str, str, Any]:
    """Legacy data made by pgusers 0.9.4 itself: (direct conninfo, conninfo for the
    userspace, what the driver made)."""
    direct, through = legacy_database
    result = subprocess.run(
        [str(original_python), str(DRIVER), direct],
        capture_output=True,
        text=True,
        check=True,
        cwd="/",
    )
    made = json.loads(result.stdout)
    with psycopg.connect(direct, autocommit=True) as conn:
        # The expired session: its expiry an hour ago (0.9 stored it as float4).
        conn.execute(
            "UPDATE sessions SET expiration = extract(epoch FROM now()) - 3600 WHERE key = %s",
            (made["expired_key"],),
        )
        # A session whose user is gone, whatever 0.9.4's delete_user left.
        conn.execute(
            "INSERT INTO sessions VALUES (%s, %s, extract(epoch FROM now()) + 86400, NULL)",
            (made["deleted_userid"], "f" * 32),
        )
    return direct, through, made


def value_of(text: str) -> Any:
    """The value the driver printed with repr()."""
    names = {"datetime": datetime, "Decimal": decimal.Decimal, "UUID": uuid.UUID}
    return eval(text, names)


def legacy_digest(conninfo: str) -> str:
    with psycopg.connect(conninfo) as conn:
        return str(
            only(
                conn.execute(
                    """SELECT md5(coalesce((SELECT string_agg(u::text, '|' ORDER BY userid)
                                    FROM public.users u), '')
                       || coalesce((SELECT string_agg(s::text, '|' ORDER BY key, userid)
                                    FROM public.sessions s), ''))"""
                ).fetchone()
            )
        )


@pytest.fixture
def target(
    open_userspace: Callable[..., Any], legacy: tuple[str, str, Any]
) -> Iterator[tuple[Any, Any, str]]:
    """The userspace (API under test) in the legacy database, and what 0.9.4 made."""
    direct, through, made = legacy
    usp = open_userspace(conninfo=through, hasher=FAST_HASHER)
    yield usp, made, direct
    usp.close()


def test_users_and_live_sessions_come_over_and_work(target: tuple[Any, Any, str]) -> None:
    usp, made, direct = target
    before = legacy_digest(direct)
    report = usp.import_legacy()
    assert (report.users, report.sessions) == (4, 3)
    assert report.sessions_skipped == {"orphan (no such user)": 2, "expired": 1}
    assert report.problems == () and report.opaque_extra_data == ()
    for user in made["users"]:
        assert usp.validate_user(user["username"], user["password"] + "x").key == ""
        key, admin, userid = usp.validate_user(user["username"], user["password"])
        assert (bool(key), admin, userid) == (True, user["admin"], user["userid"])
        found = usp.find_user(userid=user["userid"])
        assert found["extra_data"] == value_of(user["extra_data"])
        assert found["email_verified"] is False
    for session in made["sessions"]:
        result = usp.check_key(session["key"])
        assert (result.status, result.userid) == (OK, session["userid"])
        assert result.extra_data == value_of(session["extra_data"])
    assert usp.check_key(made["expired_key"]).status == NOT_FOUND
    assert usp.check_key("f" * 32).status == NOT_FOUND
    assert legacy_digest(direct) == before


def test_a_login_upgrades_the_old_hash_to_argon2id(
    target: tuple[Any, Any, str], sql_conn: psycopg.Connection[tuple[Any, ...]]
) -> None:
    usp, made, direct = target
    usp.import_legacy()
    user = made["users"][1]
    with psycopg.connect(direct) as conn:
        stored = only(
            conn.execute(
                "SELECT password_hash FROM pgusers.users WHERE userid = %s", (user["userid"],)
            ).fetchone()
        )
        assert stored.startswith("$pbkdf2-sha512$i=100000$")
        assert usp.validate_user(user["username"], user["password"]).key
        stored = only(
            conn.execute(
                "SELECT password_hash FROM pgusers.users WHERE userid = %s", (user["userid"],)
            ).fetchone()
        )
    assert stored.startswith("$argon2id$")
    assert usp.validate_user(user["username"], user["password"]).key
    assert usp.change_password(user["userid"], "new", user["password"]) == OK


def test_change_password_checks_an_old_legacy_hash(target: tuple[Any, Any, str]) -> None:
    usp, made, _ = target
    usp.import_legacy()
    user = made["users"][3]  # ada, who changed her password under 0.9
    assert usp.change_password(user["userid"], "x", "first-pw") == pgusers.REJECTED
    assert usp.change_password(user["userid"], "third-pw", "second-pw") == OK
    assert usp.validate_user("ada", "third-pw").key


def test_userids_keep_their_gaps_and_new_ones_follow(target: tuple[Any, Any, str]) -> None:
    usp, made, _ = target
    usp.import_legacy()
    largest = max(user["userid"] for user in made["users"])
    assert usp.find_user(userid=made["deleted_userid"]) is None
    new = usp.create_user("newcomer", "pw", "new@example.com")
    assert new > max(largest, made["deleted_userid"], made["users"][-1]["userid"])


def test_imported_sessions_stop_at_their_old_expiry(
    target: tuple[Any, Any, str], clock: Clock
) -> None:
    usp, made, direct = target
    usp.import_legacy()
    key = made["sessions"][0]["key"]
    with psycopg.connect(direct) as conn:
        (ends,) = row_of(
            conn.execute(
                "SELECT expiration::float8 FROM public.sessions WHERE key = %s", (key,)
            ).fetchone()
        )
    while clock.now + 3600 < ends:
        clock.advance(3600 * 24)
        if clock.now < ends:
            assert usp.check_key(key).status == OK
    clock.now = ends + 1
    assert usp.check_key(key).status == EXPIRED


def test_a_second_import_is_refused_and_changes_nothing(target: tuple[Any, Any, str]) -> None:
    usp, made, _ = target
    usp.import_legacy()
    key = made["sessions"][1]["key"]
    usp.kill_sessions(made["sessions"][1]["userid"])
    with pytest.raises(BadCallError, match="imported already"):
        usp.import_legacy()
    assert usp.check_key(key).status == NOT_FOUND


def test_dry_run_reports_and_writes_nothing(target: tuple[Any, Any, str]) -> None:
    usp, _, _ = target
    report = usp.import_legacy(dry_run=True)
    assert (report.dry_run, report.users, report.sessions) == (True, 4, 3)
    assert list(usp.all_users()) == []
    assert usp.import_legacy().users == 4


def test_sessions_end_imports_users_only(target: tuple[Any, Any, str]) -> None:
    usp, made, _ = target
    report = usp.import_legacy(sessions="end")
    assert (report.users, report.sessions) == (4, 0)
    assert report.sessions_skipped["ended (sessions='end')"] == 3
    assert usp.check_key(made["sessions"][0]["key"]).status == NOT_FOUND


def test_the_import_is_recorded_in_the_audit_trail(target: tuple[Any, Any, str]) -> None:
    usp, _, _ = target
    with pgusers.acting_as("cli:operator"):
        usp.import_legacy()
    (event,) = usp.events(kinds="legacy.imported")
    assert (event.actor, event.detail["users"], event.detail["sessions"]) == (
        "cli:operator",
        4,
        3,
    )


# -- rows that break the rules -----------------------------------------------------------


def add_legacy_rows(conninfo: str, rows: list[tuple[Any, ...]]) -> None:
    """Insert users as another program writing 0.9's tables could have (no checks)."""
    with psycopg.connect(conninfo, autocommit=True) as conn:
        for userid, username, email, salt, kpasswd in rows:
            conn.execute(
                """INSERT INTO public.users (userid, username, email, salt, kpasswd, admin,
                                             extra_data)
                VALUES (%s, %s, %s, %s, %s, false, %s)""",
                (userid, username, email, salt, kpasswd, pickle.dumps(None)),
            )


BROKEN = [
    (101, "ROOT", "other@example.com", "00" * 16, "11" * 64),  # root, other case
    (102, "dup-email", "ROOT@example.com", "00" * 16, "11" * 64),  # root's email
    (103, "", "empty@example.com", "00" * 16, "11" * 64),
    (104, "bell\x07", "bell@example.com", "00" * 16, "11" * 64),
    (105, "noemail", None, "00" * 16, "11" * 64),
    (106, "bademail", "not an address", "00" * 16, "11" * 64),
    (107, "nohash", "nohash@example.com", None, None),
    (108, "r\u043e\u043et", "lookalike@example.com", "00" * 16, "11" * 64),  # Cyrillic o
]


def test_rule_breakers_are_listed_and_nothing_is_imported(
    target: tuple[Any, Any, str], sql_conn: psycopg.Connection[tuple[Any, ...]]
) -> None:
    usp, _, direct = target
    add_legacy_rows(direct, BROKEN)
    before = legacy_digest(direct)
    with pytest.raises(LegacyImportError) as raised:
        usp.import_legacy()
    problems = {
        (userid, problem.split(" (")[0].split(":")[0])
        for userid, _, problem in (raised.value.report.problems)
    }
    assert problems == {
        (101, "duplicate username"),
        (101, "look-alike username"),
        (102, "duplicate email"),
        (103, "empty username"),
        (104, "invalid username"),
        (105, "missing email"),
        (106, "malformed email"),
        (107, "missing or malformed password hash"),
        (108, "look-alike username"),
    }
    assert list(usp.all_users()) == []
    assert list(usp.events()) == []
    assert legacy_digest(direct) == before


def test_resolutions_import_every_row_and_are_recorded(target: tuple[Any, Any, str]) -> None:
    usp, _, direct = target
    add_legacy_rows(direct, BROKEN)
    report = usp.import_legacy(
        on_conflict=["suffix-usernames", "placeholder-emails", "unusable-passwords"]
    )
    assert report.users == 4 + len(BROKEN)
    names = {row.userid: row.username for row in usp.all_users()}
    assert (names[101], names[103], names[104], names[108]) == (
        "ROOT-101",
        "user-103",
        "user-104",
        "r\u043e\u043et-108",
    )
    assert usp.find_user(userid=105)["email"] == "user-105@legacy.invalid"
    assert usp.find_user(userid=102)["email"] == "user-102@legacy.invalid"
    assert usp.validate_user("nohash", "anything").key == ""
    resolved = {event.userid for event in usp.events(kinds="legacy.resolved")}
    assert resolved == {userid for userid, *_ in BROKEN}
    # The user who had the name first keeps it.
    assert usp.validate_user("root", "r00t-Pa55").userid == 1


def test_skip_users_leaves_out_the_rest_and_their_sessions(target: tuple[Any, Any, str]) -> None:
    usp, _, direct = target
    add_legacy_rows(direct, BROKEN)
    report = usp.import_legacy(on_conflict="skip-users")
    assert (report.users, report.users_skipped) == (4, len(BROKEN))


def test_a_malicious_pickle_is_refused_without_running_it(
    target: tuple[Any, Any, str], tmp_path: Path
) -> None:
    usp, made, direct = target
    marker = tmp_path / "ran"
    evil = b"cos\nsystem\n(S'touch " + str(marker).encode() + b"'\ntR."
    with psycopg.connect(direct, autocommit=True) as conn:
        conn.execute(
            "UPDATE public.users SET extra_data = %s WHERE userid = %s",
            (evil, made["users"][0]["userid"]),
        )
    report = usp.import_legacy()
    assert report.opaque_extra_data == (made["users"][0]["userid"],)
    assert not marker.exists()
    with pytest.raises(BadCallError, match="serializer='pickle'"):
        usp.find_user(userid=made["users"][0]["userid"])


def billion_laughs(depth: int) -> bytes:
    """A pickle of a few hundred bytes: a list holding one list twice, ``depth`` deep,
    which unfolds to 2**depth values when every reference is followed."""
    value: list[Any] = []
    for _ in range(depth):
        value = [value, value]
    return pickle.dumps(value, protocol=2)


def test_a_pickle_that_unfolds_past_the_limit_is_refused() -> None:
    from pgusers._core import legacy

    assert len(billion_laughs(60)) < 500
    with pytest.raises(legacy.RefusedPickleError, match="unfolds to more than"):
        legacy.unpickle(billion_laughs(60))
    assert legacy.unpickle(billion_laughs(10))  # 2**11 values: well within


def test_an_import_keeps_an_unfolding_pickle_opaque(target: tuple[Any, Any, str]) -> None:
    usp, made, direct = target
    with psycopg.connect(direct, autocommit=True) as conn:
        conn.execute(
            "UPDATE public.users SET extra_data = %s WHERE userid = %s",
            (billion_laughs(60), made["users"][0]["userid"]),
        )
    report = usp.import_legacy(dry_run=True)
    assert report.opaque_extra_data == (made["users"][0]["userid"],)


def test_safe_types_in_pickles_come_back_equal() -> None:
    from pgusers._core import legacy

    value = {
        "when": datetime.datetime(
            2020, 1, 1, tzinfo=datetime.timezone(datetime.timedelta(hours=2))
        ),
        "span": datetime.timedelta(days=3),
        "money": decimal.Decimal("1.10"),
        "things": frozenset({1, 2}),
        "id": uuid.uuid4(),
    }
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        assert legacy.unpickle(pickle.dumps(value, protocol=protocol)) == value
    with pytest.raises(legacy.RefusedPickleError):
        legacy.unpickle(pickle.dumps(sys.exit))
    with pytest.raises(legacy.RefusedPickleError):
        legacy.unpickle(b"not a pickle")


@pytest.mark.parametrize(
    "arguments",
    [
        {"from_schema": ""},
        {"from_schema": "pgusers"},
        {"from_schema": 5},
        {"sessions": "drop"},
        {"on_conflict": ["rename-everything"]},
        {"dry_run": "yes"},
        {"progress": "print"},
    ],
)
def test_bad_arguments_are_refused(target: tuple[Any, Any, str], arguments: Any) -> None:
    usp, _, _ = target
    with pytest.raises(BadCallError):
        usp.import_legacy(**arguments)
    assert list(usp.all_users()) == []


def test_a_schema_without_legacy_tables_is_refused(target: tuple[Any, Any, str]) -> None:
    usp, _, _ = target
    with pytest.raises(BadCallError, match="no table 'users'"):
        usp.import_legacy("nowhere")


# -- the command -------------------------------------------------------------------------


def run_cli(conninfo: str, *args: str, stdin: str | None = None) -> tuple[int, str, str]:
    from click.testing import CliRunner

    from pgusers.cli import main

    result = CliRunner().invoke(main, ["--dsn", conninfo, *args], input=stdin)
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def test_the_command_dry_runs_asks_and_imports(
    legacy: tuple[str, str, Any], sql_conn: psycopg.Connection[tuple[Any, ...]]
) -> None:
    _, through, made = legacy
    code, out, _ = run_cli(through, "import-legacy", "--dry-run")
    assert code == 0
    assert out.startswith("would import 4 users and 3 sessions from schema 'public'")
    code, _, err = run_cli(through, "import-legacy")
    assert code == 2 and "--yes" in err
    code, out, err = run_cli(through, "import-legacy", "--yes", "--json")
    assert code == 0, err
    report = json.loads(out)
    assert (report["users"], report["sessions"], report["dry_run"]) == (4, 3, False)
    code, _, err = run_cli(through, "import-legacy", "--yes")
    assert code == 2 and "imported already" in err
    code, out, _ = run_cli(through, "check", made["sessions"][0]["key"])
    assert code == 0


def test_the_command_lists_every_problem_and_exits_2(legacy: tuple[str, str, Any]) -> None:
    direct, through, _ = legacy
    add_legacy_rows(direct, BROKEN)
    code, out, err = run_cli(through, "import-legacy", "--yes")
    assert code == 2
    assert err.splitlines()[-1].startswith("pgusers: 8 legacy users break pgusers' rules")
    assert "nothing was imported" in err
    listed = out.splitlines()[1:]
    assert len(listed) == 9
    assert all(line.split()[0] in {str(row[0]) for row in BROKEN} for line in listed)
    code, out, _ = run_cli(
        through,
        "import-legacy",
        "--yes",
        "--on-conflict",
        "skip-users",
    )
    assert code == 0 and "users skipped: 8" in out
