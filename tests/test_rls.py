"""Row-level security in the application's own tables: a policy reads what
authorize() set for the transaction, through a role that is neither the table's owner
nor a superuser (either would bypass it), on the application's own connection."""

import asyncio
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql

import pgusers

from .support import FAST_HASHER


@pytest.fixture
def notes(
    space: pgusers.UserSpace, sql_conn: psycopg.Connection[Any], schema: str
) -> Iterator[tuple[str, str]]:
    """A table of notes with policies on the userspace's functions, and the role the
    application queries it as: (table, role)."""
    table, role = f"notes_{schema}", f"{schema}_app"
    ids = {"schema": sql.Identifier(schema), "table": sql.Identifier(table)}
    ids["role"] = sql.Identifier(role)
    statements = [
        "CREATE ROLE {role} NOLOGIN",
        "CREATE TABLE public.{table} (id serial PRIMARY KEY, owner bigint, org bigint, body text)",
        "ALTER TABLE public.{table} ENABLE ROW LEVEL SECURITY",
        "CREATE POLICY own ON public.{table} FOR SELECT USING (owner = {schema}.current_userid())",
        "CREATE POLICY org_readers ON public.{table} FOR SELECT"
        " USING (org = {schema}.current_org() AND {schema}.has_permission('notes:read'))",
        "GRANT SELECT ON public.{table} TO {role}",
        # The application's role uses pgusers' tables (as the library's connections do).
        "GRANT USAGE ON SCHEMA {schema} TO {role}",
        "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {schema} TO {role}",
    ]
    for statement in statements:
        sql_conn.execute(sql.SQL(statement).format(**ids))
    yield table, role
    sql_conn.execute(sql.SQL("DROP TABLE public.{table}").format(**ids))
    sql_conn.execute(sql.SQL("DROP OWNED BY {role}").format(**ids))
    sql_conn.execute(sql.SQL("DROP ROLE {role}").format(**ids))


def visible(conn: psycopg.Connection[Any], table: str) -> list[str]:
    query = sql.SQL("SELECT body FROM public.{} ORDER BY id").format(sql.Identifier(table))
    return [row[0] for row in conn.execute(query)]


def test_each_user_sees_their_own_rows(
    space: pgusers.UserSpace, dsn: str, sql_conn: psycopg.Connection[Any], notes: tuple[str, str]
) -> None:
    table, role = notes
    ada = space.create_user("ada", "pw", "ada@example.com")
    bob = space.create_user("bob", "pw", "bob@example.com")
    acme = space.create_org("Acme")
    space.define_role("reader", ["notes:read"])
    space.add_member(acme, ada, "reader")
    insert = sql.SQL("INSERT INTO public.{} (owner, org, body) VALUES (%s, %s, %s)")
    for owner, org, body in ((ada, None, "ada's"), (bob, None, "bob's"), (None, acme, "acme's")):
        sql_conn.execute(insert.format(sql.Identifier(table)), (owner, org, body))
    ada_key, bob_key = space.login("ada", "pw").key, space.login("bob", "pw").key
    as_role = sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(role))
    with psycopg.connect(dsn) as app:  # the application's own connection
        with app.transaction():
            app.execute(as_role)
            info = space.authorize(app, ada_key)
            assert (info.status, info.userid) == (pgusers.OK, ada)
            assert visible(app, table) == ["ada's"]
        with app.transaction():  # a new transaction: nothing of the last one is left
            app.execute(as_role)
            assert visible(app, table) == []
        with app.transaction():
            app.execute(as_role)
            space.authorize(app, bob_key)
            assert visible(app, table) == ["bob's"]
        with app.transaction():
            app.execute(as_role)
            refused = space.authorize(app, "not-a-key-of-anyone-at-all-43-characters-x")
            assert refused.status == pgusers.NOT_FOUND
            assert visible(app, table) == []
        with app.transaction():
            app.execute(as_role)
            info = space.authorize(app, ada_key, org="acme")
            assert info.permissions == ("notes:read",)
            assert visible(app, table) == ["ada's", "acme's"]
        space.revoke_role(ada, "reader", org=acme)  # refused at once, no cache to wait for
        with app.transaction():
            app.execute(as_role)
            space.authorize(app, ada_key, org=acme)
            assert visible(app, table) == ["ada's"]


def test_the_asyncio_api_authorizes_too(
    dsn: str, schema: str, sql_conn: psycopg.Connection[Any], notes: tuple[str, str]
) -> None:
    table, role = notes

    async def scenario() -> list[str]:
        async with await pgusers.AsyncUserSpace.connect(
            conninfo=dsn, schema=schema, hasher=FAST_HASHER
        ) as usp:
            ada = await usp.create_user("ada", "pw", "ada@example.com")
            sql_conn.execute(
                sql.SQL("INSERT INTO public.{} (owner, body) VALUES (%s, 'mine')").format(
                    sql.Identifier(table)
                ),
                (ada,),
            )
            key = (await usp.login("ada", "pw")).key
            async with await psycopg.AsyncConnection.connect(dsn) as app, app.transaction():
                await app.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(role)))
                info = await usp.authorize(app, key)
                assert info.userid == ada
                cursor = await app.execute(
                    sql.SQL("SELECT body FROM public.{}").format(sql.Identifier(table))
                )
                return [row[0] for row in await cursor.fetchall()]

    assert asyncio.run(scenario()) == ["mine"]


def test_authorize_is_one_statement(
    space: pgusers.UserSpace, dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    space.create_user("ada", "pw", "ada@example.com")
    key = space.login("ada", "pw").key
    with psycopg.connect(dsn) as app:
        sent: list[Any] = []
        real = app.execute

        def counted(*args: Any, **kwargs: Any) -> Any:
            sent.append(args[0])
            return real(*args, **kwargs)

        monkeypatch.setattr(app, "execute", counted)
        with app.transaction():
            assert space.authorize(app, key).status == pgusers.OK
    assert len(sent) == 1


def test_the_integrations_authorize_a_request(
    space: pgusers.UserSpace,
    dsn: str,
    schema: str,
    sql_conn: psycopg.Connection[Any],
    notes: tuple[str, str],
) -> None:
    from functools import partial

    from fastapi import FastAPI, Request
    from flask import Flask, jsonify
    from starlette.middleware.authentication import AuthenticationMiddleware
    from starlette.testclient import TestClient

    from pgusers.integrations import flask as flask_pgusers
    from pgusers.integrations import starlette as starlette_pgusers

    table, role = notes
    ada = space.create_user("ada", "pw", "ada@example.com")
    sql_conn.execute(
        sql.SQL("INSERT INTO public.{} (owner, body) VALUES (%s, 'mine'), (-1, 'theirs')").format(
            sql.Identifier(table)
        ),
        (ada,),
    )
    key = space.login("ada", "pw").key
    as_role = sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(role))
    select = sql.SQL("SELECT body FROM public.{}").format(sql.Identifier(table))

    opener = partial(
        pgusers.AsyncUserSpace.connect, conninfo=dsn, schema=schema, hasher=FAST_HASHER
    )
    auth = starlette_pgusers.PgUsers(opener)
    api = FastAPI()
    api.add_middleware(AuthenticationMiddleware, backend=auth.backend)

    @api.get("/notes")
    async def read_notes(request: Request) -> list[str]:
        async with await psycopg.AsyncConnection.connect(dsn) as conn, conn.transaction():
            await conn.execute(as_role)
            await starlette_pgusers.authorize(request, conn)
            return [row[0] for row in await (await conn.execute(select)).fetchall()]

    with TestClient(api, base_url="https://testserver") as client:
        assert client.get("/notes").status_code == 401
        client.cookies.set("pgusers_session", key)
        assert client.get("/notes").json() == ["mine"]

    app = Flask(__name__)
    app.config.update(
        PGUSERS_DSN=dsn, PGUSERS_SCHEMA=schema, PGUSERS_OPTIONS={"hasher": FAST_HASHER}
    )
    ext = flask_pgusers.PgUsers(app)

    @app.get("/notes")
    def flask_notes() -> Any:
        with psycopg.connect(dsn) as conn, conn.transaction():
            conn.execute(as_role)
            ext.authorize(conn)
            return jsonify([row[0] for row in conn.execute(select)])

    web = app.test_client()
    assert web.get("/notes", base_url="https://localhost").status_code == 401
    web.set_cookie("pgusers_session", key, domain="localhost")
    assert web.get("/notes", base_url="https://localhost").get_json() == ["mine"]
    with app.app_context():
        ext.userspace.close()
