"""What may run again: the marks on the core's operations, and what the docs say."""

import re
from pathlib import Path

import psycopg

from pgusers import UserSpace
from pgusers._core.operations import Core
from pgusers._core.retries import RETRY_SAFE, connection_lost, is_retry_safe

LIBRARY = Path(__file__).resolve().parent.parent / "docs" / "library.md"


def test_the_retry_safe_operations_are_the_ones_the_readme_lists() -> None:
    # The library's page lists the userspace's methods; the service's own operations (API
    # keys, pages of users) are not part of that API.
    text = " ".join(LIBRARY.read_text().split())
    listed = re.search(r"Retry-safe calls, .*?: (.*?) \(a stream", text)
    assert listed is not None
    methods = {name for name in dir(UserSpace) if not name.startswith("_")}
    assert set(re.findall(r"`(\w+)`", listed.group(1))) == RETRY_SAFE & methods


def test_calls_that_may_have_done_their_work_are_not_retry_safe() -> None:
    for name in ("create_user", "delete_user", "change_password", "import_legacy"):
        assert not is_retry_safe(getattr(Core, name))


def test_every_mark_names_an_operation_of_the_core() -> None:
    assert all(callable(getattr(Core, name, None)) for name in RETRY_SAFE)


def test_a_statement_error_is_not_a_lost_connection() -> None:
    assert not connection_lost(psycopg.errors.UniqueViolation())
    assert connection_lost(psycopg.OperationalError("server closed the connection"))
