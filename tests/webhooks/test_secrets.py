"""Stored credentials are encrypted with the configured key; OAuth state is signed."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet

from webhooks.secrets import (
    SecretKeyError,
    StateError,
    TokenCipher,
    sign_state,
    verify_state,
)

PASSPHRASE = "a passphrase that is long enough to use"


def test_encrypted_credentials_round_trip_and_hide_the_token() -> None:
    cipher = TokenCipher(PASSPHRASE)

    stored = cipher.encrypt({"access_token": "secret-token-value"})

    assert "secret-token-value" not in stored
    assert cipher.decrypt(stored) == {"access_token": "secret-token-value"}


def test_a_fernet_key_is_used_as_is() -> None:
    key = Fernet.generate_key().decode()

    stored = TokenCipher(key).encrypt({"a": 1})

    assert Fernet(key.encode()).decrypt(stored.encode()) == b'{"a": 1}'


def test_rotation_keeps_old_values_readable_and_encrypts_with_the_new_key() -> None:
    old = TokenCipher(PASSPHRASE)
    stored_before = old.encrypt({"v": "old"})
    new_key = "the new passphrase that is also long enough"
    rotated = TokenCipher(f"{new_key},{PASSPHRASE}")

    assert rotated.decrypt(stored_before) == {"v": "old"}
    assert TokenCipher(new_key).decrypt(rotated.encrypt({"v": "new"})) == {"v": "new"}


def test_a_value_encrypted_with_another_key_is_a_clear_error() -> None:
    stored = TokenCipher(PASSPHRASE).encrypt({"v": 1})

    with pytest.raises(SecretKeyError, match="cannot be decrypted"):
        TokenCipher("some other passphrase of enough length").decrypt(stored)


@pytest.mark.parametrize("keys", ["", " , ", "too-short"])
def test_an_unusable_key_setting_is_refused(keys: str) -> None:
    with pytest.raises(SecretKeyError, match="CRM_HEALTH_ENCRYPTION_KEY"):
        TokenCipher(keys)


def test_state_issued_by_us_verifies_within_its_age() -> None:
    state = sign_state(PASSPHRASE, issued_at=1_000, nonce="n1")

    verify_state(PASSPHRASE, state, now=1_100, max_age_seconds=900)


def test_forged_state_is_refused() -> None:
    state = sign_state("another passphrase that is long enough", issued_at=1_000, nonce="n1")

    with pytest.raises(StateError, match="not issued by this service"):
        verify_state(PASSPHRASE, state, now=1_000, max_age_seconds=900)


def test_tampered_issue_time_is_refused() -> None:
    _issued, nonce, mac = sign_state(PASSPHRASE, issued_at=1_000, nonce="n1").split(".")

    with pytest.raises(StateError, match="not issued"):
        verify_state(PASSPHRASE, f"2000.{nonce}.{mac}", now=2_000, max_age_seconds=900)


def test_stale_state_is_refused() -> None:
    state = sign_state(PASSPHRASE, issued_at=1_000, nonce="n1")

    with pytest.raises(StateError, match="older than 900 s"):
        verify_state(PASSPHRASE, state, now=1_901, max_age_seconds=900)


@pytest.mark.parametrize("state", ["", "abc", "1.2", "x.y.z"])
def test_malformed_state_is_refused(state: str) -> None:
    with pytest.raises(StateError):
        verify_state(PASSPHRASE, state, now=0, max_age_seconds=900)
