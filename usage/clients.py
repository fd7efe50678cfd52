"""Which program sent a request, and the session it belongs to, from what the clients send anyway.

Known programs (as the captured traffic of each real client shows):
- Claude Code: `User-Agent: claude-cli/2.1.197 (external, sdk-cli)`, `X-Claude-Code-Session-Id`, and the same id
  in `metadata.user_id` (a JSON string with `session_id`; older releases: `user_…_session_<uuid>`).
- Codex: `User-Agent: codex_exec/0.169.0 (…)` or `codex_cli_rs/…`, `originator`, `session-id`.
- Gemini CLI: `User-Agent: GeminiCLI-tui/0.61.0/<model> (…)` or `GeminiCLI/…`; no session header.
- The SDKs: `OpenAI/Python 3.54.0`, `Anthropic/Python 2.12.0`, `google-genai-sdk/3.4.0 gl-python/3.11.7`.
Anything else is named by the first product token of its User-Agent (`curl/8.5.0` → curl 8.5.0).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

PROGRAM_MAX = 64
VERSION_MAX = 32
SESSION_MAX = 128


@dataclass(frozen=True, slots=True)
class ClientInfo:
    program: str = ""
    version: str = ""
    session: str = ""


_PRODUCT = re.compile(r"^\s*([^\s/]+)(?:/([^\s/]+))?")
_SDK_LANGUAGES = {"python": "Python", "js": "JS", "node": "JS", "go": "Go", "java": "Java"}
_GENAI_LANGUAGE = re.compile(r"gl-(\w+)/")
_LEGACY_CLAUDE_SESSION = re.compile(r"_session_([0-9a-fA-F-]{8,})")


def _program(user_agent: str) -> tuple[str, str]:
    found = _PRODUCT.match(user_agent)
    if found is None:
        return "", ""
    product, version = found.group(1), found.group(2) or ""
    lowered = product.lower()
    if lowered == "claude-cli":
        return "Claude Code", version
    if lowered.startswith("codex"):
        return "Codex", version
    if lowered.startswith("geminicli"):
        return "Gemini CLI", version
    if lowered in ("openai", "anthropic"):
        sdk = "OpenAI SDK" if lowered == "openai" else "Anthropic SDK"
        language, _, sdk_version = version.partition(" ")
        rest = user_agent[found.end() :].split()
        return f"{sdk} ({_SDK_LANGUAGES.get(language.lower(), language)})", rest[0] if rest else sdk_version
    if lowered == "google-genai-sdk":
        language = _GENAI_LANGUAGE.search(user_agent)
        name = _SDK_LANGUAGES.get(language.group(1).lower(), language.group(1)) if language else ""
        return (f"google-genai SDK ({name})" if name else "google-genai SDK"), version
    return product, version


def identify(headers: Mapping[str, str], payload: Mapping[str, Any] | None = None) -> ClientInfo:
    """The program (and version) and session of a request; empty strings where nothing says."""
    program, version = _program(headers.get("user-agent", ""))
    session = (
        headers.get("x-claude-code-session-id")
        or headers.get("session-id")
        or headers.get("session_id")
        or (_session_from_metadata(payload) if payload is not None else "")
    )
    return ClientInfo(program[:PROGRAM_MAX], version[:VERSION_MAX], session[:SESSION_MAX])


def _session_from_metadata(payload: Mapping[str, Any]) -> str:
    """Claude Code's session id inside Anthropic `metadata.user_id`, when no header carried it."""
    metadata = payload.get("metadata")
    user_id = metadata.get("user_id") if isinstance(metadata, dict) else None
    if not isinstance(user_id, str):
        return ""
    if user_id.startswith("{"):
        try:
            parsed = json.loads(user_id)
        except ValueError:
            return ""
        session = parsed.get("session_id") if isinstance(parsed, dict) else None
        return session if isinstance(session, str) else ""
    legacy = _LEGACY_CLAUDE_SESSION.search(user_id)
    return legacy.group(1) if legacy else ""
