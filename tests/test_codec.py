"""extra_data: tagged JSON round trips through a real jsonb column, and the pickle opt-in."""

import datetime as dt
import json
import math
import uuid
import zoneinfo
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import psycopg
import pytest

from pgusers import BadCallError, StoredDataError
from pgusers._core.codec import Codec

from .support import FAST_HASHER

ROUND_TRIPS = {
    "none": None,
    "bool": True,
    "int": -12,
    "big int": 2**200,
    "float": 0.1 + 0.2,
    "float exponent": 1e300,
    "tiny float": 5e-324,
    "negative zero": -0.0,
    "infinity": math.inf,
    "str": "héllo ✓ \U0001f600",
    "empty str": "",
    "bytes": b"\x00\xff binary",
    "list": [1, "two", 3.0],
    "tuple": (1, (2, 3)),
    "dict": {"a": 1, "b": [2]},
    "dict int keys": {1: "one", 2: "two"},
    "dict mixed keys": {1: "one", "1": "uno"},
    "dict with tag key": {"$type": "bytes", "base64": "AAAA"},
    "set": {1, 2, 3},
    "frozenset": frozenset({"x"}),
    "datetime naive": dt.datetime(2026, 11, 28, 15, 40, 58, 123456),
    "datetime aware": dt.datetime(2026, 11, 28, 15, 40, tzinfo=dt.timezone(dt.timedelta(hours=2))),
    "date": dt.date(1999, 12, 31),
    "time": dt.time(23, 59, 59, 999999),
    "timedelta": dt.timedelta(days=-1, seconds=5, microseconds=7),
    "decimal": Decimal("3.14159265358979323846264338327950288"),
    "decimal nan": Decimal("NaN"),
    "uuid": uuid.UUID("12345678-1234-5678-1234-567812345678"),
    "nested": {"users": [{"id": (1, frozenset({b"k"})), "at": dt.date(2020, 1, 1)}]},
}


@pytest.mark.parametrize("value", ROUND_TRIPS.values(), ids=ROUND_TRIPS.keys())
def test_user_extra_data_round_trips_exactly(usp: Any, value: Any) -> None:
    uid = usp.create_user("ada", "pw", "ada@example.com", extra_data=value)
    stored = usp.find_user(userid=uid)["extra_data"]
    if isinstance(value, Decimal) and value.is_nan():
        assert stored.is_nan()
        return
    assert stored == value
    assert type(stored) is type(value)
    if isinstance(value, float):
        assert math.copysign(1, stored) == math.copysign(1, value)


@pytest.mark.parametrize("value", [("a", 1), {"k": {1, 2}}, dt.datetime(2026, 1, 1)])
def test_session_extra_data_round_trips(usp: Any, value: Any) -> None:
    usp.create_user("ada", "pw", "ada@example.com")
    key = usp.validate_user("ada", "pw", extra_data=value)[0]
    assert usp.check_key(key)[3] == value


def test_nested_types_keep_their_types() -> None:
    codec = Codec()
    value = [(1,), {2: {3}}, [frozenset()]]
    decoded = codec.decode(codec.encode(value))
    assert decoded == value
    assert type(decoded[0]) is tuple
    assert type(decoded[2][0]) is frozenset


def test_plain_json_is_stored_readably(
    usp: Any, sql_conn: psycopg.Connection[tuple[Any, ...]], schema: str
) -> None:
    uid = usp.create_user("ada", "pw", "ada@example.com", extra_data={"plan": "pro", "seats": 3})
    row = sql_conn.execute(
        f"SELECT extra_data ->> 'plan', (extra_data ->> 'seats')::int FROM {schema}.users "
        "WHERE userid = %s",
        (uid,),
    ).fetchone()
    assert row == ("pro", 3)


class Custom:
    def __eq__(self, other: object) -> bool:
        return isinstance(other, Custom)

    __hash__ = object.__hash__


def test_unsupported_type_is_refused_naming_the_type_and_the_opt_in(usp: Any) -> None:
    with pytest.raises(BadCallError, match=r"Custom.*serializer='pickle'"):
        usp.create_user("ada", "pw", "ada@example.com", extra_data={"x": Custom()})
    assert usp.find_user(username="ada") is None


@pytest.mark.parametrize(
    "value",
    ["nul \x00 inside", "lone \ud800 surrogate", {"k\x00": 1}, 10**5000],
    ids=["nul", "surrogate", "nul key", "huge int"],
)
def test_unstorable_values_are_refused(usp: Any, value: Any) -> None:
    with pytest.raises(BadCallError):
        usp.create_user("ada", "pw", "ada@example.com", extra_data=value)


def test_subclasses_are_refused_rather_than_changed() -> None:
    class Flag(int):
        pass

    with pytest.raises(BadCallError, match="Flag"):
        Codec().encode(Flag(1))


def test_self_referencing_value_is_refused() -> None:
    loop: list[object] = []
    loop.append(loop)
    with pytest.raises(BadCallError, match="nested"):
        Codec().encode(loop)


def test_oversized_value_is_refused() -> None:
    with pytest.raises(BadCallError, match="limit"):
        Codec().dumps("x" * (2 << 20))


def test_pickle_serializer_stores_arbitrary_objects(
    open_userspace: Callable[..., Any], dsn: str, schema: str
) -> None:
    with open_userspace(
        conninfo=dsn, schema=schema, serializer="pickle", hasher=FAST_HASHER
    ) as usp:
        uid = usp.create_user("ada", "pw", "ada@example.com", extra_data={"obj": Custom(), "n": 1})
        assert usp.find_user(userid=uid)["extra_data"] == {"obj": Custom(), "n": 1}


def test_json_serializer_will_not_unpickle(
    open_userspace: Callable[..., Any], dsn: str, schema: str
) -> None:
    with open_userspace(
        conninfo=dsn, schema=schema, serializer="pickle", hasher=FAST_HASHER
    ) as usp:
        usp.create_user("ada", "pw", "ada@example.com", extra_data=Custom())
    with (
        open_userspace(conninfo=dsn, schema=schema, hasher=FAST_HASHER) as usp,
        pytest.raises(BadCallError, match="serializer='pickle'"),
    ):
        usp.find_user(username="ada")


def test_unknown_serializer_is_a_bad_call(
    open_userspace: Callable[..., Any], dsn: str, schema: str
) -> None:
    with pytest.raises(BadCallError, match="serializer"):
        open_userspace(conninfo=dsn, schema=schema, serializer="yaml")


ZONED = {
    "time": dt.time(9, 30, tzinfo=zoneinfo.ZoneInfo("Europe/Paris")),
    "datetime": dt.datetime(2026, 3, 29, 1, 30, tzinfo=zoneinfo.ZoneInfo("Europe/London")),
    "datetime, second of a repeated hour": dt.datetime(
        2026, 10, 25, 1, 30, fold=1, tzinfo=zoneinfo.ZoneInfo("Europe/London")
    ),
}


@pytest.mark.parametrize("value", ZONED.values(), ids=ZONED.keys())
def test_a_zoneinfo_zone_is_kept(usp: Any, value: Any) -> None:
    uid = usp.create_user("ada", "pw", "ada@example.com", extra_data=value)
    back = usp.find_user(userid=uid)["extra_data"]
    assert (back, back.tzinfo, back.fold) == (value, value.tzinfo, value.fold)


def test_the_size_limit_counts_bytes() -> None:
    text = "\u00e9" * 600_000  # 600,000 characters, 1.2 MB of UTF-8
    with pytest.raises(BadCallError, match="bytes as JSON; the limit is 1048576"):
        Codec().dumps(text)


def test_a_message_names_extra_data_once() -> None:
    deep: list[object] = []
    for _ in range(150):
        deep = [deep]
    with pytest.raises(BadCallError) as raised:
        Codec().dumps(deep)
    assert str(raised.value) == "extra_data is nested more than 100 levels deep"
    with pytest.raises(BadCallError) as raised:
        Codec().dumps(10**5000)
    assert str(raised.value).count("extra_data") == 1


FOREIGN = {
    "unknown tag": {"$type": "nope"},
    "missing member": {"$type": "datetime"},
    "too large": {"$type": "timedelta", "days": 10**12, "seconds": 0, "microseconds": 0},
    "items not a list": {"$type": "tuple", "items": 5},
    "bad base64": {"$type": "bytes", "base64": "!!!"},
    "unhashable tag": {"$type": ["x"]},
    "unhashable key": {"$type": "dict", "items": [[[1], 2]]},
    "unknown zone": {"$type": "time", "iso": "10:00", "zone": "No/Such_Zone", "fold": 0},
    "bad iso": {"$type": "date", "iso": "yesterday"},
    "decimal out of range": {"$type": "decimal", "text": "1e99999999999999999999"},
}


@pytest.mark.parametrize("data", FOREIGN.values(), ids=FOREIGN.keys())
def test_data_written_by_other_software_is_a_stored_data_error(
    usp: Any, sql_conn: psycopg.Connection[tuple[Any, ...]], schema: str, data: Any
) -> None:
    uid = usp.create_user("ada", "pw", "ada@example.com")
    key = usp.validate_user("ada", "pw")[0]
    for table in ("users", "sessions"):
        sql_conn.execute(f"UPDATE {schema}.{table} SET extra_data = %s", (json.dumps(data),))
    with pytest.raises(StoredDataError, match="stored extra_data cannot be decoded"):
        usp.find_user(userid=uid)
    with pytest.raises(StoredDataError, match="stored extra_data cannot be decoded"):
        usp.check_key(key)
