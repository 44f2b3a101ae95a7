"""UserSpace and AsyncUserSpace: one API, blocking and asyncio."""

import inspect
from typing import Any

import pytest

import pgusers
from tests.support import STREAMS

ASYNC_ONLY = {"connect"}


def public(cls: type) -> set[str]:
    return {name for name in dir(cls) if not name.startswith("_")}


def test_both_apis_offer_the_same_methods() -> None:
    assert public(pgusers.UserSpace) == public(pgusers.AsyncUserSpace) - ASYNC_ONLY


@pytest.mark.parametrize("name", sorted(public(pgusers.UserSpace) - {"ttl"}))
def test_each_method_has_the_same_signature_on_both_apis(name: Any) -> None:
    sync = inspect.signature(getattr(pgusers.UserSpace, name))
    asynchronous = inspect.signature(getattr(pgusers.AsyncUserSpace, name))
    # The application's own connection is psycopg's blocking or asyncio one.
    assert [str(p) for p in sync.parameters.values()] == [
        str(p).replace("psycopg.AsyncConnection", "psycopg.Connection")
        for p in asynchronous.parameters.values()
    ]


def test_both_constructors_take_the_same_arguments() -> None:
    assert inspect.signature(pgusers.UserSpace) == inspect.signature(pgusers.AsyncUserSpace)


def test_the_async_methods_are_coroutines_and_the_streams_async_iterators() -> None:
    streams = STREAMS
    for name in public(pgusers.UserSpace) - {"ttl"} - streams:
        assert inspect.iscoroutinefunction(getattr(pgusers.AsyncUserSpace, name)), name
    for name in streams:
        assert not inspect.iscoroutinefunction(getattr(pgusers.AsyncUserSpace, name))


@pytest.mark.parametrize("name", sorted(public(pgusers.UserSpace) - {"ttl"}))
def test_each_method_is_documented_on_both_apis_in_the_same_words(name: Any) -> None:
    sync = inspect.getdoc(getattr(pgusers.UserSpace, name))
    asynchronous = inspect.getdoc(getattr(pgusers.AsyncUserSpace, name))
    assert sync and asynchronous and not asynchronous.startswith("See ")
    if name != "close":  # closing differs: an AsyncUserSpace also closes with its loop
        assert asynchronous.splitlines()[0] == sync.splitlines()[0]
