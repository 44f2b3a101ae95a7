"""The ASGI application: the JSON API and the console on one userspace, with the
security headers every response carries and JSON errors for the API."""

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any, Final

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pgusers._aio import AsyncUserSpace, Opener, PerLoop
from pgusers._errors import BadCallError, ProviderUnavailableError
from pgusers.web import _account, _account_email, _api, _api_outbox, _console, _docs, _metrics
from pgusers.web._check import CheckEndpoint
from pgusers.web._errors import ApiError, error_body, send_json
from pgusers.web._pages import Answer, Redirect, RefusedError
from pgusers.web._service import Service, SetupLink

if TYPE_CHECKING:
    from pgusers.metrics import Metrics

MAX_BODY: Final = 64 * 1024
"""The most bytes a request's body may take, unless create_app is told otherwise."""

SECURITY_HEADERS: Final = [
    (
        b"content-security-policy",
        b"default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
        b"frame-ancestors 'none'; base-uri 'none'",
    ),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-content-type-options", b"nosniff"),
]

SCRIPT_HEADERS: Final = [
    # The account pages and the console's sign-in load one script, the project's own
    # static file for passkeys; still no inline script and nothing from elsewhere.
    (
        b"content-security-policy",
        b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        b"form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    ),
    *SECURITY_HEADERS[1:],
]

SCRIPTED_PAGES: Final = ("/account", "/console/login")
"""The paths whose pages may load the passkeys script (and nothing else)."""

DOCS_HEADERS: Final = [
    # The API's documentation page runs Swagger UI's scripts, all served from here, and
    # fetches the OpenAPI document; Swagger UI styles some elements inline.
    (
        b"content-security-policy",
        b"default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        b"img-src 'self' data:; connect-src 'self'; form-action 'none'; "
        b"frame-ancestors 'none'; base-uri 'none'",
    ),
    *SECURITY_HEADERS[1:],
]

HTTP_CODES: Final = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "too_large",
}
"""The stable error codes of the errors Starlette itself raises."""


class SecurityHeaders:
    """Add :data:`SECURITY_HEADERS` to every response (plain ASGI, so the per-request
    check endpoint pays almost nothing for it)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        path = scope["path"]
        if path.startswith(_docs.PATH):
            headers = DOCS_HEADERS
        elif path.startswith(SCRIPTED_PAGES):
            headers = SCRIPT_HEADERS
        else:
            headers = SECURITY_HEADERS

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *headers]
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _lifespan(
    service: Service, deliver: bool, metrics: "Metrics | None"
) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """What the application does while it runs: open the userspace first, and, as
    asked, deliver the outbox and keep the metrics' gauges fresh."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        space = await service.space()
        tasks = []
        stop = asyncio.Event()
        if deliver:
            from pgusers.delivery import Worker  # noqa: PLC0415 - an extra's code

            tasks.append(asyncio.ensure_future(Worker(space, metrics=metrics).run(stop)))
        if metrics is not None:
            metrics.watch(space)
            tasks.append(asyncio.ensure_future(_refreshing(metrics, space, stop)))
        yield
        stop.set()
        await asyncio.gather(*tasks)
        await service.close()

    return lifespan


async def _refreshing(metrics: "Metrics", space: AsyncUserSpace, stop: asyncio.Event) -> None:
    """Keep the outbox's gauges fresh while the application runs (every
    :data:`~pgusers.web._metrics.REFRESH` seconds), for scrapes served elsewhere."""
    while not stop.is_set():
        with contextlib.suppress(Exception):  # a database away for a while: try again
            await metrics.arefresh(space)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), _metrics.REFRESH)


class LongBodies:
    """Refuse a request body over ``limit`` bytes with 413 before it is parsed: at once
    when its ``Content-Length`` says so, else as soon as the bytes read pass it."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        too_large = f"the body is over {self.limit} bytes"
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > self.limit:
                await send_json(send, 413, error_body("too_large", too_large), SECURITY_HEADERS)
                return
        read = 0

        async def counted() -> Message:
            nonlocal read
            message = await receive()
            read += len(message.get("body", b""))
            if read > self.limit:
                # The framework lets an HTTPException from a body's reading through to
                # the handlers, which answer it as JSON.
                raise HTTPException(413, too_large)
            return message

        await self.app(scope, counted, send)


def create_app(
    userspace: AsyncUserSpace | Opener,
    *,
    registration: bool = False,
    console: bool = True,
    account_pages: bool = True,
    setup_link: bool = False,
    secret: bytes | None = None,
    api_key_cache: float = 5.0,
    max_body: int = MAX_BODY,
    max_session_data: int = 4096,
    deliver: bool = False,
    metrics: "Metrics | None" = None,
    metrics_route: bool = True,
) -> FastAPI:
    """Return the service as an ASGI application.

    ``userspace`` is an :class:`~pgusers.AsyncUserSpace`, or a function without
    arguments that returns one when awaited (``functools.partial(AsyncUserSpace.connect,
    ...)``): it is then called on the first request, in the server's event loop, and
    closed at shutdown. ``registration`` opens ``POST /v1/register`` to anyone;
    ``console=False`` leaves the console out, ``account_pages=False`` the pages
    under ``/account`` where users sign in and manage their second factors,
    password and sessions. With ``setup_link``, the application
    makes a one-time link for creating the first administrator (valid 15 minutes,
    and only while there is none): ``app.state.setup_token`` holds its token.
    ``secret`` keys the console's CSRF tokens; give the same one to every process
    behind one address (by default each application makes its own).
    ``api_key_cache`` is how many seconds an API key found live is trusted without
    asking the database again: a key revoked by another process (``pgusers apikey
    revoke``) may work that long in this one; 0 asks every time.
    ``max_body`` is the most bytes a request's body may take: a larger one is
    refused with 413 before it is parsed, by its ``Content-Length`` or as it streams.
    ``max_session_data`` is the most bytes (as JSON) of the data an anonymous caller
    of ``POST /v1/login`` may give its new session. With ``deliver``, the application
    runs a delivery worker (:class:`pgusers.delivery.Worker`) while it serves, so the
    mail and webhook calls of the outbox go out (any number may run beside it).
    With ``metrics`` (a :class:`pgusers.metrics.Metrics`), the application counts its
    checks, deliveries and requests there and, unless ``metrics_route=False`` (when
    they are served elsewhere), serves them at ``GET /metrics`` in Prometheus' format.
    """
    for name, value in (("max_body", max_body), ("max_session_data", max_session_data)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise BadCallError(f"{name} must be a positive number of bytes")
    service = Service(
        PerLoop(userspace),
        registration,
        secret or secrets.token_bytes(32),
        api_key_cache,
        max_session_data,
    )

    service.metrics = metrics
    lifespan = _lifespan(service, deliver, metrics)

    app = FastAPI(
        title="pgusers",
        summary="User accounts and sessions in PostgreSQL, over HTTP",
        version="1",
        openapi_url="/v1/openapi.json",
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.service = service
    app.state.setup_token = None
    if setup_link:
        service.setup, app.state.setup_token = SetupLink.new()
    app.include_router(_api.router)
    app.include_router(_api_outbox.router)
    if metrics is not None and metrics_route:
        _metrics.mount(app, metrics)
    _docs.mount(app)
    if console:
        _console.mount(app)
    if account_pages:
        _account_email.mount(app)

    @app.exception_handler(Redirect)
    async def redirect(request: Request, error: Redirect) -> Response:
        return RedirectResponse(error.url, 303)

    @app.exception_handler(Answer)
    async def answered(request: Request, answer: Answer) -> Response:
        return answer.response

    @app.exception_handler(RefusedError)
    async def refused(request: Request, error: RefusedError) -> Response:
        if request.url.path.startswith("/account"):
            return await _account.refused(request, error)
        return await _console.refused(request, error)

    @app.get("/", include_in_schema=False)
    async def landing() -> Response:
        """The console's address, or (without a console) where the API's pages are."""
        return RedirectResponse("/console/" if console else "/v1/docs", 303)

    @app.get("/favicon.ico", include_in_schema=False)
    async def favicon() -> Response:
        return RedirectResponse("/v1/docs/static/favicon.png", 301)

    app.add_middleware(SecurityHeaders)
    app.add_middleware(LongBodies, limit=max_body)
    # Outermost: the per-request check reads its body with its own, smaller limit.
    app.add_middleware(CheckEndpoint, service=service, headers=SECURITY_HEADERS)
    if metrics is not None:  # around everything, the check's fast path included
        app.add_middleware(_metrics.Timed, metrics=metrics)

    @app.exception_handler(ApiError)
    async def api_error(request: Request, error: ApiError) -> JSONResponse:
        return JSONResponse(
            error_body(error.code, error.message), error.status, headers=error.headers
        )

    @app.exception_handler(BadCallError)
    async def bad_call(request: Request, error: BadCallError) -> JSONResponse:
        return JSONResponse(error_body("bad_request", str(error)), 400)

    @app.exception_handler(ProviderUnavailableError)
    async def provider_unavailable(request: Request, error: ProviderUnavailableError) -> Response:
        return JSONResponse(error_body("provider_unavailable", str(error)), 503)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, error: RequestValidationError) -> Response:
        if console and request.url.path.startswith("/console/"):
            return await _console.not_found(request)  # /console/users/abc: no such page
        problems = "; ".join(
            f"{'.'.join(map(str, problem['loc']))}: {problem['msg']}" for problem in error.errors()
        )
        return JSONResponse(error_body("invalid_request", problems), 422)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException) -> JSONResponse:
        code = HTTP_CODES.get(error.status_code, "http_error")
        headers: dict[str, Any] | None = getattr(error, "headers", None)
        return JSONResponse(error_body(code, str(error.detail)), error.status_code, headers)

    return app
