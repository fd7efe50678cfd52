"""Model listings and token counting (requests and answers) in each dialect's shape: the small non-generation
endpoints. Model lists both ways: the proxy's own listing, and reading an upstream's (the upstream check)."""

from __future__ import annotations

from typing import Any

from translation.dialect import Dialect

# Listings carry a creation time; aliases have none that means anything, so a fixed epoch is reported.
_EPOCH_SECONDS = 1_735_689_600  # 2025-01-01T00:00:00Z
_EPOCH_RFC3339 = "2025-01-01T00:00:00Z"


def model_entry(dialect: Dialect, name: str, owner: str) -> dict[str, Any]:
    if dialect is Dialect.ANTHROPIC:
        return {"type": "model", "id": name, "display_name": name, "created_at": _EPOCH_RFC3339}
    if dialect is Dialect.GEMINI:
        return {
            "name": f"models/{name}",
            "version": "proxy",
            "displayName": name,
            "description": f"Served by {owner} through the proxy",
            "supportedGenerationMethods": ["generateContent", "streamGenerateContent", "countTokens"],
        }
    return {"id": name, "object": "model", "created": _EPOCH_SECONDS, "owned_by": owner}


def model_list(dialect: Dialect, entries: list[dict[str, Any]]) -> dict[str, Any]:
    if dialect is Dialect.ANTHROPIC:
        return {
            "data": entries,
            "has_more": False,
            "first_id": entries[0]["id"] if entries else None,
            "last_id": entries[-1]["id"] if entries else None,
        }
    if dialect is Dialect.GEMINI:
        return {"models": entries}
    return {"object": "list", "data": entries}


# A provider's model list asked for in pages this long (the largest each accepts); Chat and Responses lists
# (OpenAI, and the servers that copy it: Ollama, LM Studio, vLLM, OpenRouter) come in one piece.
_MODEL_PAGE_SIZE = "1000"


def model_list_query(dialect: Dialect) -> dict[str, str]:
    """The query of the first page of a provider's model list (`GET …/models`)."""
    if dialect is Dialect.ANTHROPIC:
        return {"limit": _MODEL_PAGE_SIZE}
    if dialect is Dialect.GEMINI:
        return {"pageSize": _MODEL_PAGE_SIZE}
    return {}


def read_model_list(dialect: Dialect, body: Any) -> tuple[list[str], dict[str, str] | None]:
    """The model ids in one page of a provider's model list, and the query of the next page (None after the
    last): `{"data": [{"id"}]}` (OpenAI and its copies; Anthropic with `has_more`/`last_id`), Gemini's
    `{"models": [{"name": "models/…"}]}` with `nextPageToken` (ids without the `models/` prefix). Entries
    without an id are skipped; an answer that is not an object lists nothing."""
    if not isinstance(body, dict):
        return [], None
    if dialect is Dialect.GEMINI:
        entries = body.get("models") or []
        ids = [str(e["name"]).removeprefix("models/") for e in entries if isinstance(e, dict) and e.get("name")]
        token = body.get("nextPageToken")
        return ids, {"pageSize": _MODEL_PAGE_SIZE, "pageToken": str(token)} if token else None
    entries = body.get("data") or []
    ids = [str(e["id"]) for e in entries if isinstance(e, dict) and e.get("id")]
    if dialect is Dialect.ANTHROPIC and body.get("has_more") and body.get("last_id"):
        return ids, {"limit": _MODEL_PAGE_SIZE, "after_id": str(body["last_id"])}
    return ids, None


# The generation fields each counting endpoint accepts (the rest of a generation request is refused there).
_COUNT_FIELDS = {
    Dialect.ANTHROPIC: ("model", "messages", "system", "tools", "tool_choice", "thinking"),
    Dialect.OPENAI_RESPONSES: ("model", "input", "instructions", "tools", "tool_choice", "reasoning", "text"),
    # Bedrock CountTokens (`POST /model/{modelId}/count-tokens`) takes them under `input.converse`.
    Dialect.BEDROCK: ("messages", "system", "toolConfig", "additionalModelRequestFields"),
}


def token_count_request(dialect: Dialect, generation: dict[str, Any], model: str) -> dict[str, Any]:
    """The body of a count request, from the generation request encoded for `dialect` (Chat has no counter)."""
    if dialect is Dialect.GEMINI:
        return {"generateContentRequest": {"model": f"models/{model}", **generation}}
    fields = {k: v for k, v in generation.items() if k in _COUNT_FIELDS[dialect]}
    return {"input": {"converse": fields}} if dialect is Dialect.BEDROCK else fields


def read_token_count(dialect: Dialect, body: Any) -> int | None:
    """The count in a counting endpoint's answer, or None when the answer has none."""
    name = {Dialect.GEMINI: "totalTokens", Dialect.BEDROCK: "inputTokens"}.get(dialect, "input_tokens")
    value = body.get(name) if isinstance(body, dict) else None
    return value if isinstance(value, int) else None


def token_count(dialect: Dialect, input_tokens: int) -> dict[str, Any]:
    if dialect is Dialect.GEMINI:
        return {"totalTokens": input_tokens}
    if dialect is Dialect.OPENAI_RESPONSES:
        return {"object": "response.input_tokens", "input_tokens": input_tokens}
    if dialect is Dialect.BEDROCK:
        return {"inputTokens": input_tokens}
    return {"input_tokens": input_tokens}
