"""The API's interactive documentation at ``/v1/docs``: Swagger UI, from the files
the ``fastapi-offline`` package installs (no CDN: it works offline), reading the
service's own OpenAPI document."""

from pathlib import Path
from typing import Final

from fastapi import FastAPI
from fastapi.responses import HTMLResponse, Response
from fastapi.staticfiles import StaticFiles

PATH: Final = "/v1/docs"

PAGE: Final = f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>pgusers API</title>
<link rel="stylesheet" href="{PATH}/static/swagger-ui.css">
<link rel="icon" href="{PATH}/static/favicon.png">
</head>
<body>
<div id="api"></div>
<script src="{PATH}/static/swagger-ui-bundle.js"></script>
<script src="{PATH}/start.js"></script>
</body>
</html>
"""

START: Final = """window.ui = SwaggerUIBundle({
  url: "/v1/openapi.json",
  dom_id: "#api",
  deepLinking: true,
  persistAuthorization: false,
});
"""
"""Swagger UI's start, as a script file of its own: the page's Content-Security-Policy
allows scripts from this service only, none written inline."""


def mount(app: FastAPI) -> None:
    """Serve the documentation, when Swagger UI's files are installed (``pgusers[web]``)."""
    try:
        import fastapi_offline  # noqa: PLC0415 - optional
    except ImportError:
        return
    files = Path(fastapi_offline.__file__).parent / "static"
    app.mount(f"{PATH}/static", StaticFiles(directory=files), name="docs-static")

    @app.get(PATH, include_in_schema=False)
    async def docs() -> HTMLResponse:
        return HTMLResponse(PAGE)

    @app.get(f"{PATH}/start.js", include_in_schema=False)
    async def start() -> Response:
        return Response(START, media_type="text/javascript")
