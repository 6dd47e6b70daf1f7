"""Encryption at rest for CRM credentials (OAuth tokens), with the key from settings.

Fernet (AES-128-CBC + HMAC-SHA256, from `cryptography`) keeps tokens unreadable in a database
dump or backup and detects tampering. `CRM_HEALTH_ENCRYPTION_KEY` takes one or more keys
separated by commas: the first encrypts, all decrypt, so a key can be rotated without losing
stored tokens (add the new key in front, then re-save or re-install, then drop the old one).
A key may be a Fernet key or any passphrase of at least 32 characters (stretched with SHA-256).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

MIN_PASSPHRASE_LENGTH = 32


class SecretKeyError(ValueError):
    """The encryption key setting is unusable, or a stored value was not encrypted with it."""


def _fernet(key: str) -> Fernet:
    key = key.strip()
    try:
        if len(base64.urlsafe_b64decode(key.encode())) == 32:
            return Fernet(key.encode())
    except (binascii.Error, ValueError):
        pass
    if len(key) < MIN_PASSPHRASE_LENGTH:
        raise SecretKeyError(
            "CRM_HEALTH_ENCRYPTION_KEY: each key must be a Fernet key or a passphrase of at "
            f"least {MIN_PASSPHRASE_LENGTH} characters"
        )
    return Fernet(base64.urlsafe_b64encode(hashlib.sha256(key.encode()).digest()))


class TokenCipher:
    def __init__(self, keys: str) -> None:
        parts = [part for part in keys.split(",") if part.strip()]
        if not parts:
            raise SecretKeyError("CRM_HEALTH_ENCRYPTION_KEY is empty")
        self._fernet = MultiFernet([_fernet(part) for part in parts])

    def encrypt(self, document: dict[str, Any]) -> str:
        return self._fernet.encrypt(json.dumps(document).encode()).decode()

    def decrypt(self, token: str) -> dict[str, Any]:
        try:
            document = json.loads(self._fernet.decrypt(token.encode()))
        except InvalidToken as exc:
            raise SecretKeyError(
                "stored credentials cannot be decrypted with CRM_HEALTH_ENCRYPTION_KEY "
                "(wrong or rotated-out key)"
            ) from exc
        if not isinstance(document, dict):
            raise SecretKeyError("stored credentials are not a JSON object")
        return document


class StateError(ValueError):
    """An OAuth `state` value that this service did not issue, or issued too long ago."""


def _state_key(keys: str) -> bytes:
    # A key of its own for signing, derived from the first encryption key.
    first = next(part for part in keys.split(",") if part.strip()).strip()
    return hashlib.sha256(b"crm-health oauth state\x00" + first.encode()).digest()


def sign_state(keys: str, *, issued_at: int, nonce: str) -> str:
    """An OAuth `state`: when it was issued and a nonce, HMAC-signed, so the callback can tell
    its own installs from forged ones (CSRF) and refuse stale ones."""
    payload = f"{issued_at}.{nonce}"
    mac = hmac.new(_state_key(keys), payload.encode(), hashlib.sha256).hexdigest()
    return f"{payload}.{mac}"


def verify_state(keys: str, state: str, *, now: int, max_age_seconds: int) -> None:
    issued, _, rest = state.partition(".")
    nonce, _, mac = rest.partition(".")
    if not issued.isdigit() or not nonce or not mac:
        raise StateError("state is malformed")
    expected = sign_state(keys, issued_at=int(issued), nonce=nonce)
    if not hmac.compare_digest(expected.encode(), state.encode()):
        raise StateError("state was not issued by this service")
    if not 0 <= now - int(issued) <= max_age_seconds:
        raise StateError(f"state is older than {max_age_seconds} s: start the install again")
