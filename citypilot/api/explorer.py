"""The API explorer at ``/docs``: Swagger UI served from the console build, never a CDN.

The console build copies Swagger UI's own distribution (npm ``swagger-ui-dist``) into
``console/dist/explorer``; this serves it with a page that points it at
``/openapi.json``, so the explorer works in a control room with no internet.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.staticfiles import StaticFiles

DOCS_PATH = "/docs"
ASSETS_PATH = "/docs/assets"
_NOT_BUILT = """<!DOCTYPE html>
<html><head><title>CityPilot API</title></head><body>
<h1>CityPilot API</h1>
<p>The API explorer is part of the console build, which is missing: run
<code>scripts/setup.sh</code>. The OpenAPI description is at
<a href="/openapi.json">/openapi.json</a>.</p>
</body></html>"""


def explorer_assets() -> Path | None:
    """The folder of the bundled Swagger UI files, or None when the console is not built."""
    folder = Path(str(files("citypilot.console").joinpath("dist", "explorer")))
    return folder if (folder / "swagger-ui-bundle.js").is_file() else None


def install_explorer(app: FastAPI) -> None:
    """Serve the explorer page at ``/docs`` and its files under ``/docs/assets``."""
    folder = explorer_assets()
    if folder is not None:
        app.mount(ASSETS_PATH, StaticFiles(directory=folder), name="explorer")

    async def docs(request: Request) -> Response:
        if folder is None:
            return HTMLResponse(_NOT_BUILT)
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{app.title} API",
            swagger_js_url=f"{ASSETS_PATH}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS_PATH}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS_PATH}/favicon-32x32.png",
            # no validator badge: it would be fetched from the internet
            swagger_ui_parameters={"validatorUrl": None, "persistAuthorization": True},
        )

    app.add_route(DOCS_PATH, docs, include_in_schema=False)
