"""Persistence: SQLAlchemy models, the repositories (every query lives here), migrations."""
