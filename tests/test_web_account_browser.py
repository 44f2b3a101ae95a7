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
    page.get_by_role("button", name="Sign in", exact=True).click()


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
    page.get_by_role("button", name="Sign in", exact=True).click()
    expect(page.get_by_role("heading", name="Security")).to_be_visible()

    page.get_by_role("button", name="Sign out").click()
    sign_in(page)
    page.get_by_role("textbox", name="Code").fill(codes[0])
    page.get_by_role("button", name="Sign in", exact=True).click()
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


# -- passkeys, with Chromium's virtual authenticator -------------------------------------------


@pytest.fixture
def localhost(base_url: str, space: pgusers.UserSpace) -> str:
    """The service at http://localhost:PORT (WebAuthn takes no IP address as the
    relying party), with passkeys bound to it."""
    url = base_url.replace("127.0.0.1", "localhost")
    space.set_webauthn("localhost", "pgusers tests", [url])
    return url


@pytest.fixture
def device(browser: Browser, localhost: str) -> Iterator[tuple[Page, Any, str]]:
    """A page whose browser has a platform authenticator with resident keys and user
    verification (through the DevTools protocol), and that authenticator's id."""
    context = browser.new_context(base_url=localhost)
    page = context.new_page()
    refused: list[str] = []
    page.on("console", lambda m: refused.append(m.text) if m.type == "error" else None)
    cdp = context.new_cdp_session(page)
    cdp.send("WebAuthn.enable")
    made = cdp.send(
        "WebAuthn.addVirtualAuthenticator",
        {
            "options": {
                "protocol": "ctap2",
                "transport": "internal",
                "hasResidentKey": True,
                "hasUserVerification": True,
                "isUserVerified": True,
                "automaticPresenceSimulation": True,
            }
        },
    )
    yield page, cdp, made["authenticatorId"]
    context.close()
    assert [text for text in refused if "Content Security Policy" in text] == []


def test_a_passkey_registered_on_the_page_signs_in_with_no_name(
    device: tuple[Page, Any, str], space: pgusers.UserSpace
) -> None:
    page, cdp, authenticator = device
    ada = space.create_user("ada", PASSWORD, "ada@example.com")
    sign_in(page)
    page.get_by_label("Name").fill("laptop")
    page.get_by_role("button", name="Add a passkey").click()
    page.get_by_role("button", name="Create the passkey").click()
    expect(page.get_by_role("status")).to_contain_text("Your passkey is added")
    (factor,) = space.factors(ada).factors
    assert (factor.kind, factor.label) == ("passkey", "laptop")
    stored = cdp.send("WebAuthn.getCredentials", {"authenticatorId": authenticator})
    assert len(stored["credentials"]) == 1 and stored["credentials"][0]["isResidentCredential"]

    page.get_by_role("button", name="Sign out").click()
    page.get_by_role("button", name="Sign in with a passkey").click()  # no name typed
    expect(page.get_by_role("heading", name="Security")).to_be_visible()
    latest = max(space.sessions(ada), key=lambda s: s.created_at)
    assert "passkey" in [e.detail.get("method") for e in space.events(userid=ada)]
    assert latest.user_agent is not None

    # After a password, the passkey is the second step.
    page.get_by_role("button", name="Sign out").click()
    sign_in(page)
    page.get_by_role("button", name="Use a passkey").click()
    expect(page.get_by_role("heading", name="Security")).to_be_visible()

    # An authenticator that cannot verify its user opens nothing.
    page.get_by_role("button", name="Sign out").click()
    before = len(list(space.sessions(ada)))
    cdp.send(
        "WebAuthn.setUserVerified", {"authenticatorId": authenticator, "isUserVerified": False}
    )
    page.goto("/account/login")
    page.get_by_role("button", name="Sign in with a passkey").click()
    expect(
        page.get_by_text("No passkey was used").or_(page.get_by_text("not accepted"))
    ).to_be_visible()
    assert len(list(space.sessions(ada))) == before
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
