"""The README's configuration table lists exactly the settings the service reads."""

from __future__ import annotations

import re
from pathlib import Path

from webhooks.settings import Settings, settings_table

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_documents_every_setting_and_no_other() -> None:
    text = README.read_text()
    table = text.split("<!-- settings-table:start -->")[1].split("<!-- settings-table:end -->")[0]
    documented = set(re.findall(r"`CRM_HEALTH_([A-Z0-9_]+)`", table))
    assert documented == {name.upper() for name in Settings.model_fields}
    # Word for word what the model says (regenerate with `make settings-table`).
    assert table.strip() == settings_table()


def test_readme_gives_the_two_setup_commands() -> None:
    text = README.read_text()
    assert "make demo" in text
    assert "make test" in text
