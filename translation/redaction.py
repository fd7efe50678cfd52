"""Credentials taken out of text an upstream wrote (error messages, error bodies) before anyone else reads it.

Some upstreams and gateways echo the key they were sent ("Incorrect API key provided: sk-…"). Two things are
redacted: the exact secrets the caller names (the credential it sent), and anything shaped like a provider key
or a bearer token, since the echoed key may not be the one that was sent (a gateway's own key, a client key).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any

REDACTED = "[redacted]"
# Shorter literals are not treated as secrets: replacing "local" everywhere would garble messages, and
# nothing that short protects anything.
MIN_SECRET_LENGTH = 8
# Names of headers and parameters whose values are credentials (Authorization, x-api-key, x-goog-api-key…).
SECRET_NAME = re.compile(r"auth|key|token|secret|passw|credential|cookie|signature|session", re.IGNORECASE)

# A key starts a word, or follows a JSON string escape (…\nsk-…) when raw JSON text is scanned.
_START = r"(?:(?<![A-Za-z0-9])|(?<=\\[nrtbf]))"
_KEY_SHAPES = re.compile(
    _START + r"(?:sk-ant-[A-Za-z0-9_\-]{8,}"  # Anthropic
    r"|sk-[A-Za-z0-9_\-*]{16,}"  # OpenAI (sk-proj-…), OpenRouter (sk-or-…), DeepSeek, this proxy (sk-llmp-…)
    r"|AIza[0-9A-Za-z_\-]{20,}"  # Google
    r"|xai-[A-Za-z0-9]{20,}"  # xAI
    r"|gsk_[A-Za-z0-9]{20,})"  # Groq
    r"|(?P<scheme>\b[Bb]earer\s+)[A-Za-z0-9._~+/=\-]{8,}"
)


# An SSE chunk that carries an error object (`"error": {…}`, Anthropic's `event: error`), not `"error": null`
# as every Responses lifecycle event has, nor the word in generated text (escaped quotes inside a JSON string).
_ERROR_EVENT = re.compile(rb'"error"\s*:\s*\{|^event:\s*error', re.MULTILINE)


def carries_error_event(chunk: bytes) -> bool:
    return b"error" in chunk and _ERROR_EVENT.search(chunk) is not None


def _replace(match: re.Match[str]) -> str:
    return (match.group("scheme") or "") + REDACTED


def redact_text(text: str, secrets: Iterable[str] = ()) -> str:
    for secret in secrets:
        if len(secret) >= MIN_SECRET_LENGTH and secret in text:
            text = text.replace(secret, REDACTED)
    return _KEY_SHAPES.sub(_replace, text)


def redact_bytes(data: bytes, secrets: Iterable[str] = ()) -> bytes:
    """`redact_text` on raw bytes (a chunk may end inside a UTF-8 sequence: surrogateescape keeps it intact)."""
    text = data.decode("utf-8", "surrogateescape")
    redacted = redact_text(text, secrets)
    return data if redacted == text else redacted.encode("utf-8", "surrogateescape")


def redact_json_body(body: bytes, secrets: Iterable[str] = ()) -> bytes:
    """A JSON body with every string redacted, still valid JSON (re-serialised only when something changed);
    a body that is not JSON is redacted as text."""
    secrets = tuple(secrets)
    try:
        document = json.loads(body)
    except ValueError:
        return redact_bytes(body, secrets)
    redacted = _redact_value(document, secrets)
    return body if redacted == document else json.dumps(redacted, ensure_ascii=False).encode()


def _redact_value(value: Any, secrets: tuple[str, ...]) -> Any:
    if isinstance(value, str):
        return redact_text(value, secrets)
    if isinstance(value, list):
        return [_redact_value(item, secrets) for item in value]
    if isinstance(value, dict):
        return {redact_text(str(k), secrets): _redact_value(v, secrets) for k, v in value.items()}
    return value
