"""Signing in by email in a real browser: Debian's Chromium driven by Playwright,
against the application served by uvicorn with its delivery worker, and a real SMTP
server. The code and the link are read from the mail that arrived.

The tests skip when no Chromium is installed (``.ci/run`` installs it).
"""

from collections.abc import Iterator
from functools import partial

import pytest

import pgusers

from .mail_partners import MailCatcher, code_in, link_in, running
from .support import FAST_HASHER, served

pytestmark = pytest.mark.browser

playwright_api = pytest.importorskip("playwright.sync_api")
from playwright.sync_api import Browser, ConsoleMessage, Page, expect  # noqa: E402

from .test_web_account_browser import browser  # noqa: E402, F401 - the fixture

KEY = "browser-outbox-tests-secret-key"


@pytest.fixture
def smtp() -> Iterator[MailCatcher]:
    yield from running(MailCatcher())


@pytest.fixture
def base_url(dsn: str, schema: str, smtp: MailCatcher) -> Iterator[str]:
    from pgusers.web import create_app

    space = pgusers.UserSpace(conninfo=dsn, schema=schema, hasher=FAST_HASHER, secret_key=KEY)
    try:
        opener = partial(
            pgusers.AsyncUserSpace.connect,
            conninfo=dsn, schema=schema, hasher=FAST_HASHER, secret_key=KEY,
        )  # fmt: skip
        with served(create_app(opener, deliver=True)) as url:
            space.set_mail(
                "127.0.0.1", port=smtp.port, security="none", sender="accounts@example.com",
                base_url=url.replace("http://127.0.0.1", "https://127.0.0.1"), app_name="Example",
            )  # fmt: skip
            space.set_login_by_email(True)
            space.create_user("ada", "ada-pw-1234", "ada@example.com")
            yield url
    finally:
        space.close()


@pytest.fixture
def page(browser: Browser, base_url: str) -> Iterator[Page]:  # noqa: F811 - imported above
    context = browser.new_context(base_url=base_url)
    opened = context.new_page()
    refused: list[str] = []

    def note_error(message: ConsoleMessage) -> None:
        # A page refusing a wrong code answers 401, which the browser notes too.
        if message.type == "error" and "responded with a status of 4" not in message.text:
            refused.append(message.text)  # a Content-Security-Policy refusal, for one

    opened.on("console", note_error)
    yield opened
    context.close()
    assert refused == []


def ask_for_a_code(page: Page) -> None:
    page.goto("/account/login")
    page.get_by_role("link", name="Sign in with a code by email").click()
    page.get_by_label("Email").fill("ada@example.com")
    page.get_by_role("button", name="Send me a code").click()
    expect(page.get_by_role("heading", name="Enter your code")).to_be_visible()


def test_a_user_signs_in_with_the_code_from_the_mail(page: Page, smtp: MailCatcher) -> None:
    ask_for_a_code(page)
    [mail] = smtp.wait_for(1)
    page.get_by_label("Code").fill("000000" if code_in(mail) != "000000" else "111111")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("wrong, used or expired")
    page.get_by_label("Code").fill(code_in(mail))
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(f"{page.url.split('/account')[0]}/account")
    expect(page.get_by_text("ada", exact=False).first).to_be_visible()


def test_a_user_signs_in_by_following_the_link(page: Page, smtp: MailCatcher) -> None:
    ask_for_a_code(page)
    [mail] = smtp.wait_for(1)
    path = "/account/" + link_in(mail).split("/account/", 1)[1]
    page.goto(path)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(f"{page.url.split('/account')[0]}/account")
    page.goto(path)  # used: the link works once
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("unknown, used or expired")
