"""Usernames and emails: what is refused, what folds together, what looks alike."""

from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from psycopg import sql

import pgusers
from pgusers import BadCallError, MigrationError
from pgusers._core import identities, migrations
from pgusers._core import schema as schema_sql
from pgusers._core.sql import render

from .support import FAST_HASHER, only

INVISIBLE = {
    "zero-width space": "admin\u200b",
    "soft hyphen": "ad\u00admin",
    "byte order mark": "\ufeffadmin",
    "right-to-left override": "\u202enimda",
    "escape": "ad\x1bmin",
    "zero-width joiner": "ad\u200dmin",
}

LOOKALIKES = {
    "fullwidth": "\uff41\uff44\uff4d\uff49\uff4e",
    "mathematical bold": "\U0001d41a\U0001d41d\U0001d426\U0001d422\U0001d427",
    "Cyrillic a": "\u0430dmin",
    "upper case": "ADMIN",
    "r and n for m": "adrnin",
}


@pytest.fixture
def admin(usp: Any) -> int:
    return int(usp.create_user("admin", "pw", "admin@example.com", admin=True))


@pytest.mark.parametrize("name", INVISIBLE.values(), ids=INVISIBLE.keys())
def test_invisible_and_format_characters_are_refused(usp: Any, admin: int, name: Any) -> None:
    with pytest.raises(BadCallError, match="not allowed"):
        usp.create_user(name, "pw", "other@example.com")
    assert [row[1] for row in usp.all_users()] == ["admin"]


@pytest.mark.parametrize("name", LOOKALIKES.values(), ids=LOOKALIKES.keys())
def test_a_username_that_looks_like_another_cannot_be_created(
    usp: Any, admin: int, name: Any
) -> None:
    with pytest.raises(BadCallError, match="already exists"):
        usp.create_user(name, "pw", "other@example.com")
    assert [row[1] for row in usp.all_users()] == ["admin"]


@pytest.mark.parametrize("name", LOOKALIKES.values(), ids=LOOKALIKES.keys())
def test_no_user_can_be_renamed_to_look_like_another(usp: Any, admin: int, name: Any) -> None:
    other = usp.create_user("mallory", "pw", "mallory@example.com")
    with pytest.raises(BadCallError, match="already exists"):
        usp.modify_user(other, username=name)
    assert usp.find_user(userid=other)["username"] == "mallory"


def test_canonically_equal_usernames_are_the_same_user(usp: Any) -> None:
    composed = usp.create_user("Jos\u00e9", "pw", "jose@example.com")
    with pytest.raises(BadCallError, match="already exists"):
        usp.create_user("Jose\u0301", "pw", "jose2@example.com")
    assert usp.find_user(username="JOSE\u0301")["userid"] == composed


def test_full_case_folding_and_runs_of_spaces(usp: Any) -> None:
    userid = usp.create_user("Ada  Stra\u00dfe", "pw", "ada@example.com")
    assert usp.find_user(username="ada strasse")["userid"] == userid
    assert usp.validate_user("ADA\u00a0STRASSE", "pw")[2] == userid


def test_a_username_is_stored_and_shown_as_given(usp: Any) -> None:
    userid = usp.create_user("\uff21da", "pw", "ada@example.com")
    assert usp.find_user(userid=userid)["username"] == "\uff21da"
    assert usp.find_user(username="ada")["userid"] == userid


def test_names_in_other_scripts_are_welcome(usp: Any) -> None:
    for number, name in enumerate(
        ["\u65e5\u672c\u8a9e", "\u0391\u03b8\u03b7\u03bd\u03ac", "O'Brien"]
    ):
        usp.create_user(name, "pw", f"u{number}@example.com")
    assert len(list(usp.all_users())) == 3


@pytest.mark.parametrize(
    "address",
    ["x\x1b@example.com", "x\x07@example.com", "x\x7f@example.com", "x@exa\x1bmple.com"],
    ids=["ESC", "BEL", "DEL", "ESC in domain"],
)
def test_emails_with_control_characters_are_refused(usp: Any, address: Any) -> None:
    with pytest.raises(BadCallError, match="email is not a valid address"):
        usp.create_user("ada", "pw", address)
    assert list(usp.all_users()) == []


def test_emails_fold_case_and_domain_forms(usp: Any) -> None:
    userid = usp.create_user("ada", "pw", "Ada@B\u00fccher.example")
    assert usp.find_user(email="ADA@b\u00fccher.EXAMPLE")["userid"] == userid
    with pytest.raises(BadCallError, match="email already exists"):
        usp.create_user("ada2", "pw", "ada@B\u00dcCHER.example")


def test_the_swapped_password_never_appears_in_the_message(usp: Any) -> None:
    with pytest.raises(BadCallError) as raised:
        usp.create_user("ada", "ada@example.com", "pa ss@w!rd\x1b")
    assert "pa ss" not in str(raised.value)
    assert "w!rd" not in str(raised.value)


def test_fold_and_skeleton_come_from_the_unicode_data() -> None:
    assert identities.fold("\U0001d41a\uff24MIN") == "admin"
    assert identities.skeleton(identities.fold("\u0430dmin")) == identities.skeleton("admin")
    assert identities.skeleton("admin") != identities.skeleton("bdmin")


# -- migration 2 -----------------------------------------------------------------


def make_version_1(conn: psycopg.Connection, schema: str, users: list[tuple[str, str]]) -> None:
    """Lay out ``schema`` as pgusers 1.0.0.dev0 did (version 1), holding ``users``
    with the keys that version computed (NFC, then casefold)."""
    import unicodedata

    conn.execute(render(schema_sql.CREATE_SCHEMA[0], schema))
    conn.execute(render(schema_sql.CREATE_SCHEMA[1], schema))
    conn.execute(render("INSERT INTO {schema}.schema_version VALUES (true, 1)", schema))
    conn.execute(render(schema_sql.MIGRATION_1, schema))
    table = sql.Identifier(schema, "users")
    for name, email in users:
        conn.execute(
            sql.SQL(
                "INSERT INTO {} (username, username_key, email, email_key, password_hash) "
                "VALUES (%s, %s, %s, %s, %s)"
            ).format(table),
            (
                name,
                unicodedata.normalize("NFC", name).casefold(),
                email,
                unicodedata.normalize("NFC", email).casefold(),
                FAST_HASHER.hash("pw"),
            ),
        )


def version_of(conn: psycopg.Connection, schema: str) -> int:
    return int(
        only(
            conn.execute(
                sql.SQL("SELECT version FROM {}").format(sql.Identifier(schema, "schema_version"))
            ).fetchone()
        )
    )


def test_migration_2_refuses_users_that_would_collide_and_changes_nothing(
    open_userspace: Callable[..., Any],
    dsn: str,
    schema: str,
    sql_conn: psycopg.Connection[tuple[Any, ...]],
) -> None:
    make_version_1(
        sql_conn,
        schema,
        [
            ("admin", "a@example.com"),
            ("\uff41\uff44\uff4d\uff49\uff4e", "b@example.com"),
            ("carol", "c@example.com"),
            ("\u0441arol", "d@example.com"),
            ("dave", "e@example.com"),
        ],
    )
    with pytest.raises(MigrationError) as raised:
        open_userspace(conninfo=dsn, schema=schema, hasher=FAST_HASHER)
    message = str(raised.value)
    assert "username: userids 1, 2" in message
    assert "look-alike username: userids 3, 4" in message
    assert "nothing was changed" in message
    assert version_of(sql_conn, schema) == 1
    columns = only(
        sql_conn.execute(
            "SELECT count(*) FROM information_schema.columns "
            "WHERE table_schema = %s AND column_name = 'username_skeleton'",
            (schema,),
        ).fetchone()
    )
    assert columns == 0


def test_migration_2_and_later_rekey_every_user_and_keep_sessions(
    open_userspace: Callable[..., Any],
    dsn: str,
    schema: str,
    sql_conn: psycopg.Connection[tuple[Any, ...]],
) -> None:
    make_version_1(sql_conn, schema, [("Jos\u00e9", "J@Example.com"), ("\uff22ob", "b@x.org")])
    sql_conn.execute(
        sql.SQL("INSERT INTO {} (key, userid, expires_at) VALUES (%s, 1, now() + '1 day')").format(
            sql.Identifier(schema, "sessions")
        ),
        ("k" * 43,),
    )
    with open_userspace(conninfo=dsn, schema=schema, hasher=FAST_HASHER) as usp:
        assert version_of(sql_conn, schema) == migrations.LATEST
        assert usp.find_user(username="bob")["username"] == "\uff22ob"
        assert usp.find_user(email="j@example.COM")["userid"] == 1
        assert usp.check_key("k" * 43)[:3] == (pgusers.OK, "Jos\u00e9", 1)
        with pytest.raises(BadCallError, match="already exists"):
            usp.create_user("BOB", "pw", "bob2@x.org")


ADDRESSES = [
    "Ada.Lovelace@Example.COM",
    "x+y@b\u00fccher.de",
    "a_b-c%d@xn--bcher-kva.de",
    "first.last@sub.example.org",
    "a@localhost",
    "a@example",
    "a@EXAMPLE.invalid",
    "a@-bad-.com",
    "a@bad_domain.com",
    "a@[192.0.2.1]",
    ".a@example.com",
    "a..b@example.com",
    "a@example..com",
    "x" * 64 + "@example.com",
    "x" * 65 + "@example.com",
    "a@" + "b" * 63 + "." + "c" * 63 + "." + "d" * 63 + "." + "e" * 57 + ".com",
    "a@" + "b" * 64 + ".com",
    "\u00e9l\u00e8ve@\u00e9cole.fr",
    "user@\uff45xample.com",
    "user@example.com.",
]


@pytest.mark.parametrize("address", ADDRESSES)
def test_the_remembered_domains_give_what_whole_validation_gives(address: Any) -> None:
    """identities remembers validated domains (an import checks a million addresses
    of a few domains); an address must come out exactly as email-validator makes it
    whole, or be refused the same."""
    from email_validator import EmailNotValidError

    try:
        whole = identities._validated(address)
    except EmailNotValidError:
        whole = None
    try:
        fast = identities._normalized(address)
    except EmailNotValidError:
        fast = None
    assert fast == whole
