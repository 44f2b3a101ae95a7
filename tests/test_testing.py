"""pgusers.testing, the pytest plugin applications use: its fixtures, by use here, and
the plugin as an application's suite meets it, in a pytest run of its own."""

import asyncio
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

import pgusers
from pgusers.testing import FAST_HASHER


def test_userspace_is_empty_and_of_the_tests_own_schema(
    userspace: Any, pgusers_schema: str
) -> None:
    assert list(userspace.all_users()) == []
    assert repr(userspace).endswith(f"schema={pgusers_schema}>")


def test_make_user_makes_users_with_names_of_its_own(userspace: Any, make_user: Any) -> None:
    first, second = make_user(), make_user(admin=True)
    named = make_user("ada", "s3cret", extra_data={"plan": "pro"})
    assert [row.username for row in userspace.all_users()] == ["ada", "user1", "user2"]
    assert userspace.is_admin(second) and not userspace.is_admin(first)
    assert userspace.login("ada", "s3cret").userid == named
    assert userspace.find_user(userid=named)["extra_data"] == {"plan": "pro"}


def test_async_userspace_opens_in_the_tests_loop(make_user: Any, async_userspace: Any) -> None:
    userid = make_user("ada", "s3cret")

    async def scenario() -> tuple[int | None, pgusers.Status]:
        usp = await async_userspace()
        try:
            outcome = await usp.login("ada", "s3cret")
            return outcome.userid, (await usp.check_key(outcome.key)).status
        finally:
            await usp.close()

    assert asyncio.run(scenario()) == (userid, pgusers.OK)


def test_passwords_are_hashed_cheaply_by_default(
    userspace: Any, make_user: Any, pgusers_hasher: Any
) -> None:
    assert pgusers_hasher is FAST_HASHER


@pytest.mark.pgusers_real_hasher
def test_the_marker_asks_for_the_real_parameters(pgusers_hasher: Any) -> None:
    assert pgusers_hasher is None


def test_an_applications_suite_gets_the_fixtures_from_the_entry_point(
    tmp_path: Path, server_dsn: str
) -> None:
    (tmp_path / "test_app.py").write_text(
        textwrap.dedent(
            """
            import pytest

            def test_fixtures(userspace, make_user, pgusers_hasher):
                userid = make_user("grace", "pw-12345")
                assert userspace.login("grace", "pw-12345").userid == userid
                assert pgusers_hasher is None  # --pgusers-real-hasher was given
            """
        )
    )
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--pgusers-real-hasher"],
        cwd=tmp_path,
        env={**os.environ, "PGUSERS_TEST_DSN": server_dsn},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout


def test_an_applications_suite_on_the_embedded_server_runs_free_of_warnings(tmp_path: Path) -> None:
    (tmp_path / "test_app.py").write_text(
        textwrap.dedent(
            """
            def test_fixtures(userspace, make_user):
                userid = make_user("grace")
                assert userspace.login("grace", "password").userid == userid
            """
        )
    )
    environment = {
        name: value
        for name, value in os.environ.items()
        if name not in ("PGUSERS_TEST_DSN", "XDG_RUNTIME_DIR") and not name.startswith("PG")
    }
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-W", "error"],
        cwd=tmp_path,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout and "warning" not in result.stdout
