"""Results are tuples built from a statement's columns in order; each statement that
fills a result names its columns as the result names its fields, and this test runs
every one of them and compares, so a column added or moved in the middle of a
statement fails here instead of shifting data into the wrong field."""

from collections.abc import Callable
from typing import Any

import psycopg
import pytest

import pgusers
from pgusers._core.base import Query
from pgusers._core.codec import Codec
from pgusers._core.operations import Core
from pgusers._core.passwords import Passwords
from pgusers._core.steps import Execute, Stepper
from pgusers._results import Account, ApiKey, Event, Session, SessionRow, Settings, UserRow

from .support import FAST_HASHER

# Each result type is a NamedTuple class: its _fields name its columns.
RESULTS: dict[str, tuple[Callable[[Core], Any], Any]] = {
    "settings": (lambda core: core.settings(), Settings),
    "api_keys": (lambda core: core.api_keys(), ApiKey),
    "all_users": (lambda core: core.all_users(), UserRow),
    "accounts": (lambda core: core.accounts(None, 0, 10, {}), Account),
    "sessions": (lambda core: core.sessions(0, False, None), Session),
    "list_sessions": (lambda core: core.list_sessions(0, False), SessionRow),
    "events": (lambda core: core.events(None, None, None, None, True), Event),
}


@pytest.mark.parametrize("operation", RESULTS)
def test_each_statement_names_its_columns_as_its_result_names_its_fields(
    operation: Any,
    space: pgusers.UserSpace,
    sql_conn: psycopg.Connection[tuple[Any, ...]],
    schema: str,
) -> None:
    make, result = RESULTS[operation]
    made = make(Core(schema, Codec("json"), Passwords(FAST_HASHER)))
    params: Any
    if isinstance(made, Query):
        query, params = made.sql, made.params
    else:
        step = Stepper(made).start()
        assert isinstance(step, Execute)
        query, params = step.query, step.params
    with sql_conn.transaction():
        cursor = sql_conn.execute(query, params)
        names = [column.name for column in cursor.description or ()]
    assert names == list(result._fields)
