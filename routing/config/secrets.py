"""Provider credentials at rest: encrypted with Fernet keys from the environment, rotatable.

`ENCRYPTION_KEYS` lists keys newest first: the first encrypts, all of them decrypt, so an operator rotates
by putting a new key in front and running `manage.py rotatesecrets` to re-encrypt what is stored.
"""

from __future__ import annotations

import base64
import hashlib
import os

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings


def _fernet() -> MultiFernet:
    keys: list[str] = list(settings.ENCRYPTION_KEYS)
    if not keys:
        derived = hashlib.sha256(b"llmproxy-credentials:" + settings.SECRET_KEY.encode()).digest()
        keys = [base64.urlsafe_b64encode(derived).decode()]
    return MultiFernet([Fernet(k.encode()) for k in keys])


def encrypt(plaintext: str) -> str:
    return _fernet().encrypt(plaintext.encode()).decode()


def decrypt(token: str) -> str:
    """The stored secret, or raise `ValueError` when no configured key can read it."""
    try:
        return _fernet().decrypt(token.encode()).decode()
    except InvalidToken as exc:
        raise ValueError("stored credential cannot be decrypted with the configured ENCRYPTION_KEYS") from exc


def reencrypt(token: str) -> str:
    """The same secret encrypted under the newest key (for key rotation)."""
    return _fernet().rotate(token.encode()).decode()


def credential_from_environment(variable: str) -> str | None:
    """An upstream credential named by its environment variable (read here, when the route table loads)."""
    return os.environ.get(variable) or None
