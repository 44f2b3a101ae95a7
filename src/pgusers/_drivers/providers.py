"""The HTTP of signing in through another site: discovery documents and key sets
(kept a while in memory), the exchange of a code for tokens (authlib's client, on
httpx2), GitHub's user and email endpoints. The core asks through ``Offload`` steps
(see :mod:`pgusers._core.federation`); every answer is a value, or None and the
reason the provider could not be asked, never an exception.

Nothing follows a redirect, every request has a timeout, and a document's size is
bounded, so that a misbehaving provider costs a sign-in, not the process.
"""

import json
import threading
import time
from typing import Any, Final

from pgusers._core.oidc import NEEDS_EXTRA, TokenRequest
from pgusers._errors import BadCallError

TIMEOUT: Final = 5.0
"""Seconds a provider may take to answer one request."""
MAX_DOCUMENT: Final = 512 * 1024
"""Bytes of a discovery document, key set or API answer read at most."""
KEPT_FOR: Final = 3600.0
"""Seconds a discovery document or key set is used before it is fetched again."""
MAX_KEPT: Final = 100

Answer = tuple[Any, str]
"""What the provider answered (None: nothing usable), and why not when None."""


def _http() -> Any:
    try:
        import httpx2  # noqa: PLC0415 - an extra's library, loaded when used
    except ImportError:  # pragma: no cover - the oidc extra is missing
        raise BadCallError(NEEDS_EXTRA) from None
    return httpx2


class ProviderCalls:
    """Asks identity providers; shared by a userspace's operations on every thread."""

    def __init__(self, timeout: float = TIMEOUT) -> None:
        self.timeout = timeout
        self._kept: dict[str, tuple[float, Any]] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"ProviderCalls(timeout={self.timeout})"

    def document(self, url: str, fresh: bool = False) -> Answer:
        """A JSON document (a discovery document or a key set), from memory when it was
        fetched less than an hour ago, unless ``fresh``."""
        now = time.monotonic()
        with self._lock:
            kept = self._kept.get(url)
        if kept is not None and not fresh and now - kept[0] < KEPT_FOR:
            return kept[1], ""
        answer, why = self._get(url, {})
        if answer is not None:
            with self._lock:
                if len(self._kept) >= MAX_KEPT:
                    self._kept.clear()
                self._kept[url] = (now, answer)
        return answer, why

    def _get(self, url: str, headers: dict[str, str]) -> Answer:
        http = _http()
        try:
            with (
                http.Client(timeout=self.timeout, follow_redirects=False) as client,
                client.stream(
                    "GET", url, headers={"Accept": "application/json", **headers}
                ) as reply,
            ):
                if reply.status_code != 200:
                    return None, f"{url} answered {reply.status_code}"
                body = b""
                for chunk in reply.iter_bytes():
                    body += chunk
                    if len(body) > MAX_DOCUMENT:
                        return None, f"{url} answered more than {MAX_DOCUMENT} bytes"
            return _json(body, url)
        except http.HTTPError as error:
            return None, f"{url} could not be reached ({type(error).__name__})"

    def exchange(self, request: TokenRequest) -> Answer:
        """The provider's tokens for an authorization code (with the PKCE verifier), or
        why it refused."""
        return self._token(request, refresh=False)

    def _token(self, request: TokenRequest, *, refresh: bool) -> Answer:
        http = _http()
        from authlib.integrations.base_client import OAuthError  # noqa: PLC0415
        from authlib.integrations.httpx_client import OAuth2Client  # noqa: PLC0415

        try:
            with OAuth2Client(
                request.client_id,
                request.client_secret,
                token_endpoint_auth_method=request.auth_method,
                timeout=self.timeout,
                follow_redirects=False,
            ) as client:
                if refresh:
                    token = client.refresh_token(request.token_url, refresh_token=request.verifier)
                else:
                    token = client.fetch_token(
                        request.token_url,
                        grant_type="authorization_code",
                        code=request.code,
                        redirect_uri=request.redirect_uri,
                        code_verifier=request.verifier,
                    )
        except OAuthError as error:
            return None, f"the provider refused the code ({error.error})"
        except (http.HTTPError, ValueError) as error:
            return None, f"the token endpoint failed ({type(error).__name__})"
        if not isinstance(token, dict) or "access_token" not in token:
            return None, "the token endpoint gave no access token"
        return dict(token), ""

    def refresh(self, request: TokenRequest) -> Answer:
        """New tokens for a refresh token (``request.verifier``), or why not."""
        return self._token(request, refresh=True)

    def github(self, api: str, access_token: str) -> Answer:
        """GitHub's user and its email addresses (``{"user": …, "emails": […]}``)."""
        headers = {
            "Authorization": f"Bearer {access_token}",
            "X-GitHub-Api-Version": "2022-11-28",
        }
        user, why = self._get(f"{api}/user", headers)
        if user is None:
            return None, why
        emails, why = self._get(f"{api}/user/emails", headers)
        if emails is None:
            return None, why
        return {"user": user, "emails": emails}, ""


def _json(body: bytes, url: str) -> Answer:
    try:
        return json.loads(body), ""
    except ValueError:
        return None, f"{url} answered something other than JSON"
