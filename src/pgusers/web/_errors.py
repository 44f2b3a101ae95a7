"""The service's errors: JSON with a stable code and a message."""

import json
from typing import Any

from starlette.types import Send


class ApiError(Exception):
    """An answer other than success: HTTP status, stable code, message, headers."""

    def __init__(
        self, status: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers


def error_body(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


async def send_json(
    send: Send, status: int, content: Any, headers: list[tuple[bytes, bytes]]
) -> None:
    """Answer a request with JSON, in plain ASGI (for what is answered before routing)."""
    payload = json.dumps(content, ensure_ascii=False, allow_nan=False).encode()
    head = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(payload)).encode()),
        *headers,
    ]
    await send({"type": "http.response.start", "status": status, "headers": head})
    await send({"type": "http.response.body", "body": payload})


def error_headers(error: ApiError) -> list[tuple[bytes, bytes]]:
    """An error's own headers, as ASGI carries them."""
    return [
        (name.lower().encode(), value.encode()) for name, value in (error.headers or {}).items()
    ]
