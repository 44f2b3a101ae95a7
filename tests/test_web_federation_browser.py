"""Signing in through another site in a real browser: Debian's Chromium, driven by
Playwright, presses "Sign in with Mock" on the account pages, signs in at a real
OpenID Connect provider (the oidc-provider-mock package, on the loopback interface)
and comes back signed in, the state carried by its own cookie across the two sites.

It skips when no Chromium is installed (``.ci/run`` installs it)."""

import warnings
from functools import partial

import pytest

import pgusers

from .support import FAST_HASHER, served

pytestmark = [
    pytest.mark.browser,
    # The provider package (0.3, the line for Python 3.11) uses authlib's older JOSE
    # module and server hooks, which warn in its server's thread as they work.
    pytest.mark.filterwarnings("ignore::authlib.deprecate.AuthlibDeprecationWarning"),
    pytest.mark.filterwarnings("ignore:get_jwt_config:DeprecationWarning"),
]

playwright_api = pytest.importorskip("playwright.sync_api")
with warnings.catch_warnings():  # it imports authlib's older JOSE module, which warns
    import authlib.deprecate  # which turns its warnings on when first imported

    warnings.simplefilter("ignore", authlib.deprecate.AuthlibDeprecationWarning)
    mock = pytest.importorskip("oidc_provider_mock")
from playwright.sync_api import Browser, expect  # noqa: E402

from .test_web_account_browser import browser  # noqa: E402, F401 - the fixture

KEY = "a-test-secret-key-long-enough-for-aes"


def test_the_sign_in_page_goes_through_the_provider_and_back(
    browser: Browser,  # noqa: F811 - the fixture imported above
    dsn: str,
    schema: str,
) -> None:
    gil = mock.User(sub="gil", claims={"email": "gil@example.com", "email_verified": True})
    opener = partial(
        pgusers.AsyncUserSpace.connect,
        conninfo=dsn, schema=schema, hasher=FAST_HASHER, secret_key=KEY,
    )  # fmt: skip
    from pgusers.web import create_app

    with (
        mock.run_server_in_thread(require_nonce=True, user_claims=[gil]) as server,
        pgusers.UserSpace(conninfo=dsn, schema=schema, hasher=FAST_HASHER, secret_key=KEY) as usp,
        served(create_app(opener)) as base_url,
    ):
        usp.add_identity_provider(
            "mock", kind="oidc", client_id="pgusers", client_secret="anything",
            discovery_url=f"http://localhost:{server.server_port}/.well-known/openid-configuration",
        )  # fmt: skip
        context = browser.new_context(base_url=base_url)
        page = context.new_page()
        page.goto("/account/login")
        page.get_by_role("button", name="Sign in with Mock").click()
        expect(page.get_by_role("heading", name="Authorize Client")).to_be_visible()
        page.get_by_role("button", name="gil").click()
        expect(page.get_by_role("heading", name="Security")).to_be_visible()
        expect(page.locator("#other-sites")).to_contain_text("gil@example.com")
        (found,) = [u for u in usp.all_users()]
        assert found.username == "gil" and found.email == "gil@example.com"
        (identity,) = usp.identities(found.userid)
        assert identity.provider == "mock" and identity.subject == "gil"
        context.close()
