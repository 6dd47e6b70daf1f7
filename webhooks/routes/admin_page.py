"""The admin page: HTML shells (the JavaScript loads every datum from the JSON API with the
session cookie), its static files, and the security headers on everything under /admin."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, FastAPI, Path, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from signals.registry import SIGNALS
from webhooks.deps import RuntimeDep
from webhooks.sessions import COOKIE_NAME
from webhooks.ui import STATIC_DIR, TEMPLATES_DIR

PREFIX = "/admin"
Headers = tuple[tuple[bytes, bytes], ...]
# Every page of our own (the admin page, the API docs) sends these; each adds its own policy.
FRAME_AND_SNIFF_HEADERS: Headers = (
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
    (b"x-content-type-options", b"nosniff"),
)
# No inline script or style anywhere: the page's JavaScript and CSS are static files.
SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (
        b"content-security-policy",
        b"default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'",
    ),
    *FRAME_AND_SNIFF_HEADERS,
)

# Rendered into every page (body data-signal-labels) so that the script names no signal of its
# own: [name, label] pairs, as the template's JSON would sort an object's keys.
SIGNAL_LABELS: tuple[tuple[str, str], ...] = tuple(
    (signal.name, signal.label) for signal in SIGNALS
)

router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(directory=TEMPLATES_DIR)


class AdminHeaders:
    """Pure ASGI middleware (no response buffering): the security headers on /admin paths, or
    on the paths of `policies` (prefix -> headers; the API docs have their own)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        policies: tuple[tuple[str, Headers], ...] = ((PREFIX, SECURITY_HEADERS),),
    ) -> None:
        self.app = app
        self.policies = policies

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        headers = next(
            (
                policy
                for prefix, policy in self.policies
                if path == prefix or path.startswith(prefix + "/")
            ),
            None,
        )
        if headers is None:
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                names = {name.lower() for name, _ in message.get("headers", [])}
                extra = [header for header in headers if header[0] not in names]
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await self.app(scope, receive, send_with_headers)


def install(app: FastAPI) -> None:
    """Register the pages, the static files and the headers on the app."""
    app.include_router(router)
    app.mount(f"{PREFIX}/static", StaticFiles(directory=STATIC_DIR), name="admin-static")
    app.add_middleware(AdminHeaders)


def _signed_in(request: Request, runtime: RuntimeDep) -> bool:
    # The signature and expiry only: the API checks the key itself (revocation, role).
    return runtime.signer.read(request.cookies.get(COOKIE_NAME), now=datetime.now(UTC)) is not None


def _page(request: Request, runtime: RuntimeDep, page: str, **context: object) -> Response:
    if not _signed_in(request, runtime):
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"{PREFIX}/login?next={quote(target, safe='')}", status_code=303)
    response = templates.TemplateResponse(
        request, f"{page}.html", {"page": page, "signal_labels": SIGNAL_LABELS, **context}
    )
    response.headers["Cache-Control"] = "no-store"
    return response


@router.get(f"{PREFIX}/login", response_class=HTMLResponse)
async def login(request: Request) -> Response:
    return templates.TemplateResponse(request, "login.html", {"page": "login"})


@router.get(PREFIX, response_class=HTMLResponse)
@router.get(f"{PREFIX}/", response_class=HTMLResponse)
async def accounts(request: Request, runtime: RuntimeDep) -> Response:
    return _page(request, runtime, "accounts")


@router.get(f"{PREFIX}/accounts/{{account_id}}", response_class=HTMLResponse)
async def account(
    request: Request, runtime: RuntimeDep, account_id: Annotated[str, Path(max_length=200)]
) -> Response:
    return _page(request, runtime, "account", account_id=account_id)


@router.get(f"{PREFIX}/config", response_class=HTMLResponse)
async def config(request: Request, runtime: RuntimeDep) -> Response:
    return _page(request, runtime, "config")


@router.get(f"{PREFIX}/calibration", response_class=HTMLResponse)
async def calibration(request: Request, runtime: RuntimeDep) -> Response:
    return _page(request, runtime, "calibration")


@router.get(f"{PREFIX}/alerts", response_class=HTMLResponse)
async def alerts(request: Request, runtime: RuntimeDep) -> Response:
    return _page(request, runtime, "alerts")


@router.get(f"{PREFIX}/sync", response_class=HTMLResponse)
async def sync(request: Request, runtime: RuntimeDep) -> Response:
    return _page(request, runtime, "sync")
