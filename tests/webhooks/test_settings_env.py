"""Settings from the environment: what an operator's env file means."""

from __future__ import annotations

import pytest

from webhooks.settings import Settings


def test_an_empty_variable_is_unset_not_an_empty_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    # A template's `CRM_HEALTH_HUBSPOT_CLIENT_SECRET=` must not become a key anyone can sign with.
    monkeypatch.setenv("CRM_HEALTH_HUBSPOT_CLIENT_SECRET", "")
    monkeypatch.setenv("CRM_HEALTH_SEGMENT_WRITE_KEY", "")
    monkeypatch.setenv("CRM_HEALTH_WORKER_BATCH_SIZE", "")

    settings = Settings()

    assert settings.hubspot_client_secret is None
    assert settings.segment_write_key is None
    assert settings.worker_batch_size == Settings.model_fields["worker_batch_size"].default


def test_a_set_variable_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRM_HEALTH_HUBSPOT_CLIENT_SECRET", "s3cret")

    secret = Settings().hubspot_client_secret

    assert secret is not None
    assert secret.get_secret_value() == "s3cret"
