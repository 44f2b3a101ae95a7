"""The admin console in a real browser: Debian's Chromium driven by Playwright, against
the application served by uvicorn on a real PostgreSQL.

The tests skip when no Chromium is installed (``.ci/run`` installs it). Screenshots of
the main pages go to ``$PGUSERS_SCREENSHOTS`` if set, else to the test's own temporary
directory.
"""

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import pgusers

from .support import Clock, found, matched, served, web_app

pytestmark = pytest.mark.browser

playwright_api = pytest.importorskip("playwright.sync_api")
from playwright.sync_api import (  # noqa: E402 - after the skip
    Browser,
    ConsoleMessage,
    Dialog,
    Page,
    Request,
    expect,
)

CHROMIUM = os.environ.get("PGUSERS_CHROMIUM") or shutil.which("chromium")


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if CHROMIUM is None:
        pytest.skip("no chromium executable (apt-get install chromium)")
    with playwright_api.sync_playwright() as playwright:
        # Names under pgusers.test reach this machine, for the test of a sibling site.
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=["--host-resolver-rules=MAP *.pgusers.test 127.0.0.1"],
        )
        yield launched
        launched.close()


@pytest.fixture
def app(space: pgusers.UserSpace, dsn: str, schema: str) -> Any:
    return web_app(dsn, schema, setup_link=True)


@pytest.fixture
def base_url(app: Any) -> Iterator[str]:
    with served(app) as url:
        yield url


@pytest.fixture
def page(browser: Browser, base_url: str) -> Iterator[Page]:
    context = browser.new_context(base_url=base_url, user_agent="pgusers-console-test")
    yield context.new_page()
    context.close()


@pytest.fixture
def shots(tmp_path: Path) -> Callable[[Page, str], object]:
    folder = Path(os.environ.get("PGUSERS_SCREENSHOTS") or tmp_path / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return lambda page, name: page.screenshot(path=folder / f"{name}.png", full_page=True)


@pytest.fixture
def root(space: pgusers.UserSpace) -> int:
    return space.create_user("root", "root-pw-123", "root@example.com", admin=True)


def log_in(page: Page, username: str = "root", password: str = "root-pw-123") -> None:
    page.goto("/console/login")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()


def test_the_setup_link_creates_the_first_admin_once(
    page: Page, app: Any, space: pgusers.UserSpace, shots: Callable[[Page, str], object]
) -> None:
    page.goto(f"/console/setup?token={app.state.setup_token}")
    shots(page, "setup")
    page.get_by_label("Username").fill("founder")
    page.get_by_label("Email").fill("founder@example.com")
    page.get_by_label("Password").fill("founder-pw-1")
    page.get_by_role("button", name="Create and log in").click()
    expect(page.get_by_role("heading", name="Users")).to_be_visible()
    assert space.is_admin(found(space.find_user(username="founder"))["userid"])
    page.goto(f"/console/setup?token={app.state.setup_token}")
    expect(page.get_by_role("alert")).to_contain_text("has been used")


def test_a_wrong_setup_token_is_refused(page: Page, space: pgusers.UserSpace) -> None:
    page.goto("/console/setup?token=guess")
    expect(page.get_by_role("alert")).to_contain_text("not valid")
    assert list(space.all_users()) == []


def test_an_admin_logs_in_finds_a_user_and_disables_them(
    page: Page, space: pgusers.UserSpace, root: int, shots: Callable[[Page, str], object]
) -> None:
    ada = space.create_user("ada", "ada-pw-123", "ada@example.com", extra_data={"plan": "pro"})
    key = space.login("ada", "ada-pw-123", source="203.0.113.9", user_agent="Firefox").key
    for i in range(3):
        space.create_user(f"user{i}", "pw-1234567", f"user{i}@example.com")
    log_in(page)
    shots(page, "users")
    page.get_by_label("Search").fill("ADA")
    page.get_by_role("button", name="Search").click()
    rows = page.locator("tbody tr")
    expect(rows).to_have_count(1)
    rows.get_by_role("link", name="ada").click()
    expect(page.locator("pre.json")).to_contain_text('"plan": "pro"')
    expect(page.locator("table.sessions")).to_contain_text("203.0.113.9")
    shots(page, "user")
    page.get_by_role("button", name="Disable").click()
    expect(page.get_by_role("status")).to_have_text("User disabled.")
    expect(page.get_by_text("No live sessions.")).to_be_visible()
    assert space.check_key(key).status == pgusers.NOT_FOUND
    assert found(space.find_user(userid=ada))["disabled"] is True


def test_an_admin_ends_one_session(page: Page, space: pgusers.UserSpace, root: int) -> None:
    ada = space.create_user("ada", "ada-pw-123", "ada@example.com")
    first = space.login("ada", "ada-pw-123").key
    second = space.login("ada", "ada-pw-123").key
    log_in(page)
    page.goto(f"/console/users/{ada}")
    page.locator("table.sessions").get_by_role("button", name="End").first.click()
    expect(page.get_by_role("status")).to_have_text("Session ended.")
    statuses = sorted(space.check_key(key).status for key in (first, second))
    assert statuses == [pgusers.OK, pgusers.NOT_FOUND]


def test_an_admin_changes_the_ttl_and_sees_every_action_in_the_event_log(
    page: Page, space: pgusers.UserSpace, root: int, shots: Callable[[Page, str], object]
) -> None:
    ada = space.create_user("ada", "ada-pw-123", "ada@example.com")
    log_in(page)
    page.goto("/console/settings")
    shots(page, "settings")
    page.get_by_label("Seconds", exact=True).fill("3600")
    page.locator("form", has=page.locator("input[name=session_ttl]")).get_by_role(
        "button", name="Save"
    ).click()
    expect(page.get_by_role("status")).to_have_text("Saved.")
    assert space._driver.run(space._core.settings).session_ttl == 3600
    page.goto(f"/console/users/{ada}")
    page.get_by_role("button", name="Make administrator").click()
    page.get_by_role("button", name="Disable").click()
    page.goto("/console/events")
    shots(page, "events")
    actor = f"console:user:{root}"
    for kind in ("settings.changed", "admin.changed", "user.disabled"):
        row = page.locator("tbody tr", has_text=kind)
        expect(row.first).to_contain_text(actor)
    page.get_by_label("Kind").select_option("user.disabled")
    page.get_by_role("button", name="Filter").click()
    expect(page.locator("tbody tr")).to_have_count(1)


def test_a_non_admin_is_refused(page: Page, space: pgusers.UserSpace) -> None:
    space.create_user("ada", "ada-pw-123", "ada@example.com")
    log_in(page, "ada", "ada-pw-123")
    expect(page.get_by_role("alert")).to_contain_text("administrators only")
    page.goto("/console/users")
    expect(page.get_by_role("heading", name="Log in")).to_be_visible()
    (session_count,) = {len(list(space.sessions()))}
    assert session_count == 0


def test_a_form_posted_without_its_csrf_token_is_refused(
    page: Page, space: pgusers.UserSpace, root: int
) -> None:
    ada = space.create_user("ada", "ada-pw-123", "ada@example.com")
    log_in(page)
    page.goto(f"/console/users/{ada}")
    form = page.locator("form", has=page.get_by_role("button", name="Disable"))
    form.locator("input[name=csrf]").evaluate("input => input.remove()")
    form.get_by_role("button", name="Disable").click()
    expect(page.get_by_role("alert")).to_contain_text("did not come from here")
    assert found(space.find_user(userid=ada))["disabled"] is False


def test_a_stored_script_tag_shows_as_text(page: Page, space: pgusers.UserSpace, root: int) -> None:
    evil = "<script>alert(1)</script>"
    userid = space.create_user("mallory", "pw-1234567", "m@example.com", extra_data={"bio": evil})
    space.login("mallory", "pw-1234567", user_agent=evil)
    dialogs: list[str] = []

    def dismiss(dialog: Dialog) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", dismiss)
    log_in(page)
    page.goto(f"/console/users/{userid}")
    expect(page.locator("td.agent")).to_have_text(evil)
    expect(page.locator("pre.json")).to_contain_text(evil)
    assert page.locator("script").count() == 0
    assert dialogs == []


def test_writes_need_a_password_entered_in_the_last_ten_minutes(
    page: Page, space: pgusers.UserSpace, root: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    ada = space.create_user("ada", "ada-pw-123", "ada@example.com")
    log_in(page)
    clock = Clock(monkeypatch)
    clock.advance(11 * 60)
    page.goto(f"/console/users/{ada}")
    page.get_by_role("button", name="Disable").click()
    expect(page.get_by_role("heading", name="Confirm your password")).to_be_visible()
    assert found(space.find_user(userid=ada))["disabled"] is False
    page.get_by_label("Password").fill("root-pw-123")
    page.get_by_role("button", name="Confirm").click()
    expect(page.get_by_role("heading", name="ada")).to_be_visible()
    page.get_by_role("button", name="Disable").click()
    expect(page.get_by_role("status")).to_have_text("User disabled.")


def test_a_sibling_subdomain_cannot_forge_a_console_write(
    browser: Browser, app: Any, space: pgusers.UserSpace, root: int
) -> None:
    """evil.pgusers.test plants a CSRF seed cookie for the parent domain, with a token
    made for that seed by the console's own login page, and posts a form that would
    make its user an administrator on admin.pgusers.test, where root is signed in."""
    from urllib.parse import urlsplit

    import httpx
    from starlette.applications import Starlette
    from starlette.responses import HTMLResponse
    from starlette.routing import Route

    mallory = space.create_user("mallory", "m4llory-pw", "mallory@example.com")
    with served(app) as console_url:
        console = f"http://admin.pgusers.test:{urlsplit(console_url).port}"
        login_page = httpx.get(f"{console_url}/console/login")
        seed = login_page.cookies["pgusers_console_csrf"]
        token = matched(r'name="csrf" value="([0-9a-f]+)"', login_page.text)
        attack = f"""<!doctype html><body>
            <form method="post" action="{console}/console/users/{mallory}/admin">
              <input name="csrf" value="{token}"><input name="value" value="true">
            </form>
            <script>
              document.cookie = "pgusers_console_csrf={seed}; domain=pgusers.test; path=/console";
              document.forms[0].submit();
            </script>"""
        evil_app = Starlette(routes=[Route("/", lambda request: HTMLResponse(attack))])
        with served(evil_app) as evil_url:
            context = browser.new_context(base_url=console)
            try:
                page = context.new_page()
                log_in(page)
                expect(page).to_have_url(f"{console}/console/users")
                page.goto(f"http://evil.pgusers.test:{urlsplit(evil_url).port}/")
                page.wait_for_url(lambda url: url.startswith(console))
            finally:
                context.close()
    assert not space.is_admin(mallory)


def test_the_api_documentation_renders_offline_under_its_policy(page: Page, root: int) -> None:
    refused: list[str] = []
    outside: list[str] = []

    def note_error(message: ConsoleMessage) -> None:
        if message.type == "error":
            refused.append(message.text)

    def note_outside(request: Request) -> None:
        if "127.0.0.1" not in request.url:
            outside.append(request.url)

    page.on("console", note_error)
    page.on("request", note_outside)
    log_in(page)
    page.get_by_role("link", name="API documentation").click()
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("pgusers")
    expect(page.get_by_text("/v1/check").first).to_be_visible()
    assert refused == [] and outside == []


def test_an_admin_creates_a_user_then_deletes_them_after_confirming(
    page: Page, space: pgusers.UserSpace, root: int
) -> None:
    log_in(page)
    page.get_by_role("link", name="New user").click()
    page.get_by_label("Username").fill("ada")
    page.get_by_label("Email").fill("ada@example.com")
    page.get_by_label("Password").fill("ada-pw-123")
    page.get_by_role("button", name="Create user").click()
    expect(page.get_by_role("heading", name="ada")).to_be_visible()
    page.get_by_role("button", name="Delete user").click()
    expect(page.get_by_text("This cannot be undone")).to_be_visible()
    assert space.find_user("ada") is not None
    page.get_by_role("button", name="Delete user").click()
    expect(page.get_by_role("status")).to_have_text("User deleted.")
    assert space.find_user("ada") is None
