"""/docs (Swagger UI) and /redoc (ReDoc) served with their assets from the package (no CDN), so
they work offline; FastAPI's own pages are off (create_app: docs_url=None, redoc_url=None)."""

from __future__ import annotations

from html import escape

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse

from webhooks.routes.admin_page import (
    FRAME_AND_SNIFF_HEADERS,
    PREFIX,
    SECURITY_HEADERS,
    AdminHeaders,
    Headers,
)

DOCS_URL = "/docs"
OAUTH2_REDIRECT_URL = f"{DOCS_URL}/oauth2-redirect"
REDOC_URL = "/redoc"
# The admin page's static mount (webhooks/ui/static): the vendored libraries under vendor/
# (see its README.md for versions and how to refresh them) and our init script.
STATIC = f"{PREFIX}/static"

# Swagger UI runs under the admin page's policy as it is. ReDoc needs two more sources, for
# /redoc only (checked in Chromium, tests/e2e/test_api_docs_browser.py):
# - style-src 'unsafe-inline': ReDoc styles itself with styled-components, which writes <style>
#   elements at run time; without it ReDoc fails to render at all.
# - worker-src blob: ReDoc builds its search index in a Web Worker made from a blob: URL.
# Scripts stay same-origin only everywhere: no 'unsafe-inline', no 'unsafe-eval'. img-src is not
# widened either: the one outside image in ReDoc's bundle (a logo) is blanked when vendoring.
REDOC_HEADERS: Headers = (
    (
        b"content-security-policy",
        b"default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
        b"script-src 'self'; worker-src blob:",
    ),
    *FRAME_AND_SNIFF_HEADERS,
)

router = APIRouter(include_in_schema=False)


def install(app: FastAPI) -> None:
    """Register the two pages (and Swagger UI's OAuth2 redirect) with their security headers."""
    app.include_router(router)
    app.add_middleware(
        AdminHeaders, policies=((DOCS_URL, SECURITY_HEADERS), (REDOC_URL, REDOC_HEADERS))
    )


def _root(request: Request) -> str:
    # Behind a proxy that mounts the service under a path, as FastAPI's own pages do.
    root: str = request.scope.get("root_path", "")
    return root.rstrip("/")


def _page(
    request: Request, *, title: str, styles: tuple[str, ...], scripts: tuple[str, ...], body: str
) -> HTMLResponse:
    """An HTML shell loading same-origin files only: `styles` and `scripts` are paths under
    the static mount; the scripts are deferred, so they find the body's element."""
    static = _root(request) + STATIC
    lines = [
        "<!doctype html>",
        '<html lang="en">',
        "<head>",
        '  <meta charset="utf-8">',
        '  <meta name="viewport" content="width=device-width, initial-scale=1">',
        f"  <title>{escape(request.app.title)} - {title}</title>",
        f'  <link rel="icon" href="{static}/favicon.svg" type="image/svg+xml">',
        *(f'  <link rel="stylesheet" href="{static}/{path}">' for path in styles),
        *(f'  <script src="{static}/{path}" defer></script>' for path in scripts),
        "</head>",
        "<body>",
        f"  {body}",
        "</body>",
        "</html>",
        "",
    ]
    return HTMLResponse("\n".join(lines))


def _openapi_url(request: Request) -> str:
    return escape(_root(request) + (request.app.openapi_url or ""))


@router.get(DOCS_URL, response_class=HTMLResponse)
async def swagger_ui(request: Request) -> HTMLResponse:
    redirect_url = escape(_root(request) + OAUTH2_REDIRECT_URL)
    return _page(
        request,
        title="Swagger UI",
        styles=("vendor/swagger-ui/swagger-ui.css", "api-docs.css"),
        scripts=("vendor/swagger-ui/swagger-ui-bundle.js", "api-docs.js"),
        body=(
            f'<div id="swagger-ui" data-openapi-url="{_openapi_url(request)}"'
            f' data-oauth2-redirect-url="{redirect_url}"></div>'
        ),
    )


@router.get(OAUTH2_REDIRECT_URL, response_class=HTMLResponse)
async def swagger_ui_oauth2_redirect(request: Request) -> HTMLResponse:
    # Swagger UI's own redirect page, with its script as a file rather than inline.
    return _page(
        request,
        title="Swagger UI: OAuth2 redirect",
        styles=(),
        scripts=("vendor/swagger-ui/oauth2-redirect.js",),
        body="",
    )


@router.get(REDOC_URL, response_class=HTMLResponse)
async def redoc(request: Request) -> HTMLResponse:
    # The standalone bundle renders every <redoc spec-url> on load: no init script of ours.
    return _page(
        request,
        title="ReDoc",
        styles=("api-docs.css",),
        scripts=("vendor/redoc/redoc.standalone.js",),
        body=f'<redoc spec-url="{_openapi_url(request)}"></redoc>',
    )
