"""The account pages in a real browser: Debian's Chromium driven by Playwright,
against the application served by uvicorn on a real PostgreSQL. The test reads the
authenticator's key from the page and computes its codes with pyotp, as an app would;
the clock moves through ``time.time`` so that each code is a new one.

The tests skip when no Chromium is installed (``.ci/run`` installs it).
"""

import os
import shutil
from collections.abc import Iterator
from functools import partial
from typing import Any

import pytest

import pgusers

from .support import FAST_HASHER, Clock, served

pytestmark = pytest.mark.browser

playwright_api = pytest.importorskip("playwright.sync_api")
pyotp = pytest.importorskip("pyotp")
from playwright.sync_api import Browser, ConsoleMessage, Page, expect  # noqa: E402

CHROMIUM = os.environ.get("PGUSERS_CHROMIUM") or shutil.which("chromium")
KEY = "a-test-secret-key-long-enough-for-aes"
PASSWORD = "ada-pw-1234"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if CHROMIUM is None:
        pytest.skip("no chromium executable (apt-get install chromium)")
    with playwright_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield launched
        launched.close()


@pytest.fixture
def base_url(space: pgusers.UserSpace, dsn: str, schema: str) -> Iterator[str]:
    from pgusers.web import create_app

    opener = partial(
        pgusers.AsyncUserSpace.connect,
        conninfo=dsn,
        schema=schema,
        hasher=FAST_HASHER,
        secret_key=KEY,
    )
    with served(create_app(opener)) as url:
        yield url


@pytest.fixture
def page(browser: Browser, base_url: str) -> Iterator[Page]:
    context = browser.new_context(base_url=base_url, user_agent="pgusers-account-test")
    opened = context.new_page()
    refused: list[str] = []

    def note_error(message: ConsoleMessage) -> None:
        if message.type == "error":  # a Content-Security-Policy refusal, for one
            refused.append(message.text)

    opened.on("console", note_error)
    yield opened
    context.close()
    assert refused == []


@pytest.fixture
def steady(clock: Clock) -> Clock:
    clock.now = (clock.now // 30) * 30 + 1
    return clock


def sign_in(page: Page, username: str = "ada", password: str = PASSWORD) -> None:
    page.goto("/account/login")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()


def add_app(page: Page, clock: Clock, start: str) -> tuple[str, list[str]]:
    """Set up an authenticator app from the page: its key, and the codes shown."""
    page.get_by_role("button", name=start).click()
    expect(page.get_by_role("heading", name="Add an authenticator app")).to_be_visible()
    expect(page.locator("figure.qr svg")).to_be_visible()
    secret = page.locator("#totp-secret").inner_text()
    page.get_by_role("textbox", name="Code").fill(pyotp.TOTP(secret).at(clock.now))
    page.get_by_role("button", name="Turn on").click()
    expect(page.get_by_role("heading", name="Your recovery codes")).to_be_visible()
    codes = page.locator("#recovery-codes code").all_inner_texts()
    page.get_by_role("link", name="I have saved them").click()
    clock.advance(30)
    return secret, codes


def test_a_user_sets_up_an_app_and_signs_in_with_it(
    page: Page, space: pgusers.UserSpace, steady: Clock
) -> None:
    ada = space.create_user("ada", PASSWORD, "ada@example.com")
    sign_in(page)
    expect(page.get_by_role("heading", name="Security")).to_be_visible()
    secret, codes = add_app(page, steady, "Set up an authenticator app")
    assert len(codes) == 10
    expect(page.locator("#codes-left")).to_have_text("Recovery codes left: 10")

    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    sign_in(page)
    expect(page.get_by_role("heading", name="Second factor")).to_be_visible()
    page.get_by_role("textbox", name="Code").fill(pyotp.TOTP(secret).at(steady.now))
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Security")).to_be_visible()

    page.get_by_role("button", name="Sign out").click()
    sign_in(page)
    page.get_by_role("textbox", name="Code").fill(codes[0])
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#codes-left")).to_have_text("Recovery codes left: 9")

    steady.advance(601)  # new codes need a proof of the last ten minutes
    page.get_by_role("button", name="Make new recovery codes").click()
    expect(page.get_by_role("heading", name="Confirm it is you")).to_be_visible()
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Confirm", exact=True).click()
    expect(page.get_by_role("status")).to_contain_text("You can make the change now")
    page.get_by_role("button", name="Make new recovery codes").click()
    fresh = page.locator("#recovery-codes code").all_inner_texts()
    assert len(fresh) == 10 and set(fresh).isdisjoint(codes)
    assert space.factors(ada).recovery_codes == 10
    kinds = {event.kind for event in space.events(userid=ada)}
    assert {"mfa.enrolled", "mfa.recovery_code_used", "mfa.recovery_codes_generated"} <= kinds


def test_an_admin_is_sent_to_set_up_an_app_first(
    page: Page, space: pgusers.UserSpace, steady: Clock, base_url: Any
) -> None:
    root = space.create_user("root", PASSWORD, "root@example.com", admin=True)
    space.set_login_policy(admins_need_mfa=True)
    page.goto("/console/login")
    page.get_by_label("Username").fill("root")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(f"{base_url}/console/enroll")
    expect(page.get_by_text("Administrators need a second factor")).to_be_visible()
    page.goto("/console/settings")
    expect(page).to_have_url(f"{base_url}/console/enroll")
    add_app(page, steady, "Set up an authenticator app")
    expect(page.get_by_role("heading", name="Users")).to_be_visible()
    assert space.factors(root).recovery_codes == 10
