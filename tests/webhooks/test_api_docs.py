"""/docs and /redoc load nothing from another host: their HTML names same-origin files only,
each served from the package, under a CSP that allows scripts from this origin only."""

from __future__ import annotations

import re
import tomllib
from collections.abc import AsyncIterator
from html.parser import HTMLParser
from pathlib import Path

import httpx
import pytest

from testkit import PUBLIC_URL, make_settings
from webhooks.app import create_app
from webhooks.ui import STATIC_DIR

PAGES = ["/docs", "/redoc", "/docs/oauth2-redirect"]
ADMIN_CSP = "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'"
VENDOR = STATIC_DIR / "vendor"
VENDORED = [
    "swagger-ui/swagger-ui-bundle.js",
    "swagger-ui/swagger-ui-bundle.js.LICENSE.txt",
    "swagger-ui/swagger-ui.css",
    "swagger-ui/oauth2-redirect.js",
    "swagger-ui/LICENSE",
    "swagger-ui/NOTICE",
    "redoc/redoc.standalone.js",
    "redoc/redoc.standalone.js.LICENSE.txt",
    "redoc/LICENSE",
    "README.md",
]
CONTENT_TYPES = {
    ".js": {"text/javascript", "application/javascript"},
    ".css": {"text/css"},
    ".svg": {"image/svg+xml"},
    ".json": {"application/json"},
}
PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


class _Page(HTMLParser):
    """The URLs a page makes the browser load, and its scripts."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.scripts: list[dict[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "script":
            self.scripts.append(found)
        for name in ("src", "href", "spec-url", "data-openapi-url", "data-oauth2-redirect-url"):
            if found.get(name):
                self.urls.append(str(found[name]))


def _parse(html: str) -> _Page:
    page = _Page()
    page.feed(html)
    return page


def _directives(csp: str) -> dict[str, list[str]]:
    parts = (directive.split() for directive in csp.split(";") if directive.strip())
    return {name: sources for name, *sources in parts}


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    # The pages need nothing from the runtime (no lifespan): the app and its schema only.
    app = create_app(make_settings("sqlite+aiosqlite://"))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url=PUBLIC_URL
    ) as client:
        yield client


@pytest.mark.parametrize("path", PAGES)
async def test_the_page_names_same_origin_urls_only(client, path) -> None:
    page = await client.get(path)

    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert not re.search(r"https?://|//[a-z0-9]", page.text, flags=re.I)
    urls = _parse(page.text).urls
    assert urls
    assert all(url.startswith("/") and not url.startswith("//") for url in urls), urls


@pytest.mark.parametrize("path", PAGES)
async def test_the_page_has_no_inline_script(client, path) -> None:
    scripts = _parse((await client.get(path)).text).scripts

    assert scripts
    assert all(script.get("src") for script in scripts)


@pytest.mark.parametrize("path", PAGES)
async def test_every_url_of_the_page_is_served_with_its_content_type(client, path) -> None:
    for url in _parse((await client.get(path)).text).urls:
        if url in PAGES:  # Swagger UI's redirect page, checked on its own
            continue
        answer = await client.get(url)
        assert answer.status_code == 200, url
        content_type = answer.headers["content-type"].split(";")[0]
        assert content_type in CONTENT_TYPES[Path(url).suffix], (url, content_type)


async def test_swagger_ui_is_given_the_schema_and_the_redirect_page(client) -> None:
    page = await client.get("/docs")

    assert 'data-openapi-url="/openapi.json"' in page.text
    assert 'data-oauth2-redirect-url="/docs/oauth2-redirect"' in page.text
    assert '<script src="/admin/static/api-docs.js" defer></script>' in page.text


async def test_the_pages_follow_the_root_path_of_a_proxy() -> None:
    app = create_app(make_settings("sqlite+aiosqlite://"))
    transport = httpx.ASGITransport(app=app, root_path="/health")
    async with httpx.AsyncClient(transport=transport, base_url=PUBLIC_URL) as client:
        page = await client.get("/health/redoc")

    urls = _parse(page.text).urls
    assert "/health/openapi.json" in urls
    assert all(url.startswith("/health/") for url in urls), urls


@pytest.mark.parametrize("path", PAGES)
async def test_scripts_may_come_from_this_origin_only(client, path) -> None:
    page = await client.get(path)

    directives = _directives(page.headers["content-security-policy"])
    assert directives["script-src"] == ["'self'"]
    assert directives["default-src"] == ["'self'"]
    assert page.headers["x-frame-options"] == "DENY"
    assert page.headers["referrer-policy"] == "same-origin"
    assert page.headers["x-content-type-options"] == "nosniff"


@pytest.mark.parametrize("path", ["/docs", "/docs/oauth2-redirect"])
async def test_swagger_ui_runs_under_the_admin_pages_policy(client, path) -> None:
    page = await client.get(path)

    assert page.headers["content-security-policy"] == ADMIN_CSP


async def test_redoc_is_allowed_inline_styles_and_a_blob_worker_only(client) -> None:
    page = await client.get("/redoc")

    directives = _directives(page.headers["content-security-policy"])
    assert directives == {
        **_directives(ADMIN_CSP),
        "style-src": ["'self'", "'unsafe-inline'"],
        "worker-src": ["blob:"],
    }


async def test_fastapis_own_pages_are_off_and_the_schema_stays(client) -> None:
    app = create_app(make_settings("sqlite+aiosqlite://"))

    assert (app.docs_url, app.redoc_url, app.openapi_url) == (None, None, "/openapi.json")
    assert (await client.get("/openapi.json")).json()["info"]["title"] == "crm-health"


@pytest.mark.parametrize("name", VENDORED)
def test_the_vendored_file_is_in_the_package(name) -> None:
    assert (VENDOR / name).is_file()
    assert (VENDOR / name).stat().st_size > 0


@pytest.mark.parametrize(
    "name",
    ["swagger-ui/swagger-ui-bundle.js", "swagger-ui/swagger-ui.css", "redoc/redoc.standalone.js"],
)
def test_the_vendored_bundle_loads_no_image_or_style_from_another_host(name) -> None:
    # ReDoc's bundle carried a logo URL on a CDN; the vendor README says how it is patched out.
    text = (VENDOR / name).read_text(encoding="utf-8")

    assert not re.search(r"""\bsrc:\s*["']https?:""", text)
    assert not re.search(r"""url\(\s*["']?https?:""", text)


@pytest.mark.parametrize(
    ("package", "version", "bundle", "marker"),
    [
        ("swagger-ui-dist", "5.35.0", "swagger-ui/swagger-ui-bundle.js", 'PACKAGE_VERSION:"{}"'),
        ("redoc", "2.5.4", "redoc/redoc.standalone.js", 'ReDoc Version: ","{}"'),
    ],
)
def test_the_vendor_readme_names_the_version_vendored(package, version, bundle, marker) -> None:
    readme = (VENDOR / "README.md").read_text(encoding="utf-8")

    assert f"| `{package}` | {version} |" in readme
    assert marker.format(version) in (VENDOR / bundle).read_text(encoding="utf-8")


def test_every_static_file_is_shipped_in_the_wheel() -> None:
    package = STATIC_DIR.parents[1]
    globs = tomllib.loads(PYPROJECT.read_text())["tool"]["setuptools"]["package-data"]["webhooks"]
    shipped = {path for pattern in globs for path in package.glob(pattern) if path.is_file()}

    static = {path for path in STATIC_DIR.rglob("*") if path.is_file()}
    assert static - shipped == set()
