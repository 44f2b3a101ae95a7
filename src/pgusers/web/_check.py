"""``POST /v1/check``: the per-request call of every server behind the service.

It is answered here, in plain ASGI, before the framework's middleware and routing,
which cost more than the check itself; the route in ``_api`` declares it for the
OpenAPI document and answers with the same function when it is reached. The body
is read up to :data:`MAX_CHECK_BODY` bytes and refused past it.
"""

import json
from typing import Any, Final

from starlette.types import ASGIApp, Receive, Scope, Send

from pgusers._door import looks_like_api_key
from pgusers._results import Status
from pgusers.web._errors import ApiError, error_body, error_headers, send_json
from pgusers.web._service import Service

PATH: Final = "/v1/check"
MAX_CHECK_BODY: Final = 4096
"""The most bytes a check's body may take: a key is under a hundred."""
STATUS_NAMES: Final = {status: status.name.lower() for status in Status}


def decode_json(body: bytes) -> Any:
    """The JSON of a request body; a 400 for anything that is not JSON, nested too
    deeply to decode included."""
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        raise ApiError(400, "bad_request", "the body is not JSON, or nested too deeply") from None


async def answer(service: Service, authorization: str, body: bytes) -> dict[str, Any]:
    """The answer to a check: the caller's API key, then the key in the body."""
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not looks_like_api_key(token):
        raise ApiError(
            401, "unauthorized", "POST /v1/check takes an API key", {"WWW-Authenticate": "Bearer"}
        )
    if await service.api_key(token) is None:
        raise ApiError(
            401,
            "unauthorized",
            "the API key is revoked or unknown",
            {"WWW-Authenticate": "Bearer"},
        )
    request = decode_json(body)
    key = request.get("key") if isinstance(request, dict) and len(request) == 1 else None
    if not isinstance(key, str):
        raise ApiError(422, "invalid_request", 'the body must be {"key": "<session key>"}')
    space = await service.space()
    result = await space.check_key(key)
    if service.metrics is not None:
        service.metrics.checked(STATUS_NAMES[result.status])
    return {
        "status": STATUS_NAMES[result.status],
        "userid": result.userid,
        "username": result.username,
        "extra_data": await service.data_as_json(result.extra_data),
    }


class CheckEndpoint:
    """Answer ``POST /v1/check`` ahead of ``app``; pass every other request on."""

    def __init__(self, app: ASGIApp, service: Service, headers: list[tuple[bytes, bytes]]) -> None:
        self.app = app
        self.service = service
        self.headers = headers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != PATH or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        authorization = ""
        length = 0
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization = value.decode("latin-1")
            elif name == b"content-length" and value.isdigit():
                length = int(value)
        try:
            if length > MAX_CHECK_BODY:
                raise ApiError(413, "too_large", f"the body is over {MAX_CHECK_BODY} bytes")
            body = await read_body(receive, MAX_CHECK_BODY)
            content = await answer(self.service, authorization, body)
        except ApiError as error:
            await send_json(
                send,
                error.status,
                error_body(error.code, error.message),
                [*self.headers, *error_headers(error)],
            )
            return
        await send_json(send, 200, content, self.headers)


async def read_body(receive: Receive, limit: int) -> bytes:
    """The request's body, refused with a 413 once it passes ``limit`` bytes."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise ApiError(413, "too_large", f"the body is over {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)
