"""The admin page's files: Jinja2 templates and the static CSS/JavaScript it loads (no build
step, no CDN); the routes that serve them are in webhooks.routes.admin_page."""

from __future__ import annotations

from pathlib import Path

TEMPLATES_DIR = Path(__file__).parent / "templates"
STATIC_DIR = Path(__file__).parent / "static"
