"""Login throttling: per login name and per source, in PostgreSQL, with no lockout."""

import subprocess
import sys
import threading
from typing import Any

import psycopg
import pytest

from pgusers import DISABLED, OK, REJECTED, THROTTLED, BadCallError

from .support import Clock


@pytest.fixture
def ada(usp: Any) -> int:
    return int(usp.create_user("ada", "s3cret", "ada@example.com"))


def fail(usp: Any, name: str, times: int, source: str | None = None) -> None:
    for _ in range(times):
        assert usp.login(name, "wrong", source=source).status in (REJECTED, THROTTLED)


def test_five_failures_are_free_then_the_wait_doubles(usp: Any, ada: int, clock: Clock) -> None:
    for _ in range(4):
        assert usp.login("ada", "wrong").status == REJECTED
    assert usp.login("ada", "wrong").status == REJECTED  # the fifth: now a wait of 1 s
    refused = usp.login("ada", "s3cret")
    assert (refused.status, refused.key, refused.retry_after) == (
        THROTTLED,
        "",
        pytest.approx(1, abs=0.01),
    )
    clock.advance(1.01)
    assert usp.login("ada", "wrong").status == REJECTED  # the sixth: 2 s
    clock.advance(1.5)
    assert usp.login("ada", "s3cret").retry_after == pytest.approx(0.5, abs=0.01)
    clock.advance(0.51)
    assert usp.login("ada", "s3cret").status == OK


def test_the_wait_stops_doubling_at_the_maximum(usp: Any, ada: int, clock: Clock) -> None:
    usp.set_login_policy(max_backoff=10)
    for _ in range(12):
        fail(usp, "ada", 1)
        clock.advance(11)
    fail(usp, "ada", 1)
    assert usp.login("ada", "s3cret").retry_after == pytest.approx(10, abs=0.01)


def test_a_throttled_correct_password_is_refused_until_the_wait_passes(
    usp: Any, ada: int, clock: Clock
) -> None:
    usp.set_login_policy(free_failures=1)
    fail(usp, "ada", 1)
    assert usp.validate_user("ada", "s3cret") == ("", False, None)
    clock.advance(1.01)
    assert usp.validate_user("ada", "s3cret").userid == ada


def test_a_success_clears_the_count(usp: Any, ada: int, clock: Clock) -> None:
    fail(usp, "ada", 4)
    assert usp.login("ada", "s3cret").status == OK
    fail(usp, "ada", 4)
    assert usp.login("ada", "s3cret").status == OK


def test_throttling_an_unknown_name_looks_like_throttling_a_real_one(
    usp: Any, ada: int, clock: Clock
) -> None:
    usp.set_login_policy(free_failures=2)
    answers = {}
    for name in ("ada", "nobody"):
        answers[name] = [usp.login(name, "wrong") for _ in range(3)]
    assert answers["ada"] == answers["nobody"]
    assert [a.status for a in answers["ada"]] == [REJECTED, REJECTED, THROTTLED]


def test_the_count_is_per_name_folded_like_the_name(usp: Any, ada: int, clock: Clock) -> None:
    usp.create_user("bob", "pw", "bob@example.com")
    usp.set_login_policy(free_failures=1)
    fail(usp, "ADA", 1)
    assert usp.login("ada", "s3cret").status == THROTTLED
    assert usp.login("bob", "pw").status == OK


def test_a_source_is_blocked_after_its_limit_within_the_window(
    usp: Any, ada: int, clock: Clock
) -> None:
    usp.set_login_policy(source_limit=3, source_window=60, source_block=120)
    for number in range(3):
        assert usp.login(f"user{number}", "x", source="198.51.100.7").status == REJECTED
    blocked = usp.login("ada", "s3cret", source="198.51.100.7")
    assert (blocked.status, blocked.retry_after) == (THROTTLED, pytest.approx(120, abs=0.01))
    assert usp.login("ada", "s3cret", source="198.51.100.8").status == OK
    clock.advance(121)
    assert usp.login("ada", "s3cret", source="198.51.100.7").status == OK


def test_failures_spread_over_more_than_the_window_do_not_block_a_source(
    usp: Any, ada: int, clock: Clock
) -> None:
    usp.set_login_policy(source_limit=3, source_window=60)
    for number in range(6):
        fail(usp, f"user{number}", 1, source="198.51.100.7")
        clock.advance(31)
    assert usp.login("ada", "s3cret", source="198.51.100.7").status == OK


def test_a_disabled_account_is_told_only_after_the_right_password(usp: Any, ada: int) -> None:
    usp.disable_user(ada)
    assert usp.login("ada", "wrong").status == REJECTED
    assert usp.login("ada", "s3cret")[:5] == (DISABLED, "", False, None, 0.0)


def test_a_reset_works_while_throttled_and_lifts_the_throttle(
    usp: Any, ada: int, clock: Clock
) -> None:
    usp.set_login_policy(free_failures=1, max_backoff=3600)
    fail(usp, "ada", 1)
    assert usp.login("ada", "s3cret").status == THROTTLED
    assert usp.reset_password(usp.issue_token(ada, "reset_password"), "n3w-pw") == OK
    assert usp.login("ada", "n3w-pw").status == OK


def test_an_operator_clears_the_failures(usp: Any, ada: int, clock: Clock) -> None:
    usp.set_login_policy(free_failures=1, max_backoff=3600, source_limit=1)
    fail(usp, "ada", 1, source="198.51.100.7")
    assert usp.login("ada", "s3cret", source="198.51.100.7").status == THROTTLED
    # the name from every source, and the name from that source
    assert usp.clear_login_failures(username="ADA") == 2
    assert usp.login("ada", "s3cret", source="198.51.100.7").status == THROTTLED  # the source
    assert usp.clear_login_failures(source="198.51.100.7") == 1
    assert usp.login("ada", "s3cret", source="198.51.100.7").status == OK
    assert usp.clear_login_failures(username="ada", source="198.51.100.7") == 0


def test_clearing_a_source_clears_every_names_count_from_it(
    usp: Any, ada: int, clock: Clock
) -> None:
    usp.set_login_policy(free_failures=1, max_backoff=3600)
    fail(usp, "ada", 1, source="198.51.100.7")
    assert usp.clear_login_failures(source="198.51.100.7") == 2  # the source, the pair
    assert usp.login("ada", "s3cret", source="198.51.100.7").status == OK


def test_sixteen_threads_failing_at_once_are_all_counted(
    usp: Any, ada: int, sql_conn: psycopg.Connection[tuple[Any, ...]], schema: str
) -> None:
    usp.set_login_policy(free_failures=100)
    barrier = threading.Barrier(16)

    def attempt() -> None:
        barrier.wait()
        usp.login("ada", "wrong", source="198.51.100.7")

    threads = [threading.Thread(target=attempt) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    counts = dict(
        sql_conn.execute(f"SELECT subject, failures FROM {schema}.login_failures").fetchall()
    )
    assert counts == {
        "name:ada": 16,
        "pair:ada\x1f198.51.100.7": 16,
        "source:198.51.100.7": 16,
    }


def test_stale_counts_are_removed_by_later_failures(
    usp: Any, ada: int, sql_conn: psycopg.Connection[tuple[Any, ...]], schema: str, clock: Clock
) -> None:
    for number in range(30):
        fail(usp, f"user{number}", 1, source=f"198.51.100.{number}")
    clock.advance(86400 + 1)
    fail(usp, "ada", 1)
    left = sql_conn.execute(
        f"SELECT subject FROM {schema}.login_failures ORDER BY subject"
    ).fetchall()
    assert left == [("name:ada",), ("pair:ada\x1f",)]


def test_the_policy_and_the_counts_are_shared_by_every_process(
    usp: Any, ada: int, dsn: str, schema: str
) -> None:
    # A source's block lasts source_block (10 minutes), however slowly the other
    # process starts.
    usp.set_login_policy(source_limit=1)
    fail(usp, "ada", 1, source="198.51.100.7")
    script = (
        "import sys, pgusers; "
        "usp = pgusers.UserSpace(conninfo=sys.argv[1], schema=sys.argv[2]); "
        "print(usp.login('ada', 's3cret', source='198.51.100.7').status.name)"
    )
    other = subprocess.run(
        [sys.executable, "-c", script, dsn, schema],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert other.stdout == "THROTTLED\n"


BAD_POLICIES = {
    "free failures negative": {"free_failures": -1},
    "free failures float": {"free_failures": 1.5},
    "max backoff zero": {"max_backoff": 0},
    "max backoff over a day": {"max_backoff": 86401},
    "source limit zero": {"source_limit": 0},
    "window nan": {"source_window": float("nan")},
    "block str": {"source_block": "60"},
}


@pytest.mark.parametrize("policy", BAD_POLICIES.values(), ids=BAD_POLICIES.keys())
def test_a_bad_policy_is_refused(usp: Any, policy: Any) -> None:
    with pytest.raises(BadCallError):
        usp.set_login_policy(**policy)


def test_bad_login_arguments_are_refused(usp: Any, ada: int) -> None:
    with pytest.raises(BadCallError):
        usp.login("ada", "s3cret", source="x" * 256)
    with pytest.raises(BadCallError):
        usp.login("ada", "s3cret", user_agent=5)
    with pytest.raises(BadCallError):
        usp.clear_login_failures()


def test_login_failures_lists_names_and_sources_with_their_waits(
    usp: Any, ada: int, clock: Clock
) -> None:
    usp.set_login_policy(free_failures=2, source_limit=5)
    fail(usp, "Ada", 2, source="198.51.100.7")
    rows = {(row.kind, row.subject): row for row in usp.login_failures()}
    assert set(rows) == {
        ("name", "ada"),
        ("pair", "ada from 198.51.100.7"),
        ("source", "198.51.100.7"),
    }
    pair = rows["pair", "ada from 198.51.100.7"]
    assert (pair.failures, pair.retry_after) == (2, pytest.approx(1, abs=0.01))
    assert rows["name", "ada"].retry_after == 0  # far below the ceiling
    assert rows["source", "198.51.100.7"].retry_after == 0
    clock.advance(86400 + 1)
    assert list(usp.login_failures()) == []


def test_a_stranger_failing_slowly_never_locks_the_user_out(
    usp: Any, ada: int, clock: Clock
) -> None:
    """The attacker works its count up, waiting out each back-off, then guesses once
    every max_backoff (15 minutes): the user's correct password from another address
    is never refused (before, 26 attempts of 26 were)."""
    for _ in range(14):
        fail(usp, "ada", 1, source="203.0.113.66")
        clock.advance(901)
    refused = 0
    for _ in range(26):
        fail(usp, "ada", 1, source="203.0.113.66")
        clock.advance(60)
        refused += usp.login("ada", "s3cret", source="198.51.100.7").status != OK
        clock.advance(841)
    assert refused == 0


def test_many_sources_past_the_name_ceiling_slow_only_sources_that_failed(
    usp: Any, ada: int, clock: Clock
) -> None:
    usp.set_login_policy(free_failures=2, max_backoff=3600, source_limit=1000)
    for number in range(40):  # 2 x 20 failures, each source under its own limit
        fail(usp, "ada", 1, source=f"203.0.113.{number}")
    assert usp.login("ada", "s3cret", source="203.0.113.5").status == THROTTLED
    assert usp.login("ada", "s3cret", source="198.51.100.7").status == OK


def test_a_pair_backs_off_like_a_name_did(usp: Any, ada: int, clock: Clock) -> None:
    usp.set_login_policy(free_failures=2)
    fail(usp, "ada", 2, source="203.0.113.9")
    assert usp.login("ada", "s3cret", source="203.0.113.9").status == THROTTLED
    assert usp.login("ada", "s3cret", source="203.0.113.10").status == OK


def test_a_name_of_no_user_is_never_stored_or_listed(
    usp: Any, ada: int, sql_conn: psycopg.Connection[tuple[Any, ...]], schema: str
) -> None:
    """Such a name is often a password typed into the name box."""
    usp.set_login_policy(free_failures=1)
    fail(usp, "Tr0ub4dor&3", 2, source="198.51.100.7")
    assert usp.login("Tr0ub4dor&3", "x", source="198.51.100.7").status == THROTTLED
    stored = [row[0] for row in sql_conn.execute(f"SELECT subject FROM {schema}.login_failures")]
    assert len(stored) == 3
    assert not any("tr0ub4dor" in subject.lower() for subject in stored)
    assert [(row.kind, row.subject) for row in usp.login_failures()] == [("source", "198.51.100.7")]
    assert usp.clear_login_failures(username="Tr0ub4dor&3") == 2


def test_a_flood_of_throttled_attempts_records_one_event_a_minute(
    usp: Any, ada: int, clock: Clock
) -> None:
    usp.set_login_policy(source_limit=1, source_block=600)
    fail(usp, "ada", 1, source="203.0.113.66")
    for _ in range(50):
        assert usp.login("ada", "x", source="203.0.113.66").status == THROTTLED
        clock.advance(0.5)
    assert len(list(usp.events(kinds="login.throttled"))) == 1
    clock.advance(60)
    assert usp.login("ada", "x", source="203.0.113.66").status == THROTTLED
    assert usp.login("ada", "x", source="203.0.113.67").status == REJECTED
    assert len(list(usp.events(kinds="login.throttled"))) == 2
