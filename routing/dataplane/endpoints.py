"""Which client dialect and operation a data-plane request is, from its method, path and headers."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from translation.dialect import Dialect
from translation.operation import Operation


@dataclass(frozen=True, slots=True)
class Endpoint:
    dialect: Dialect
    operation: Operation | None  # None: no such endpoint (answered 404 in the dialect)
    model: str | None = None  # from the path (Gemini, Bedrock, or GET …/models/{id})
    stream: bool | None = None  # decided by the path (Gemini, Bedrock) rather than the body
    # An AWS SDK on the bedrock-runtime paths: errors in Bedrock's shape, streams in AWS's event-stream framing
    # (Converse's events, or InvokeModel's Anthropic events each in a `chunk` message).
    aws: bool = False


PREFIX_DIALECTS = {"/anthropic": Dialect.ANTHROPIC, "/openai": Dialect.OPENAI_CHAT, "/gemini": Dialect.GEMINI}
DATA_PLANE_ROOTS = ("/v1/", "/v1beta/", "/v1alpha/", "/anthropic/", "/openai/", "/gemini/", "/model/")
DATA_PLANE_EXACT = ("/v1", "/v1beta", "/v1/models", "/v1beta/models")
# The roots as a URLRouter pattern (which matches paths without their leading slash).
DATA_PLANE_PATTERN = "(?:" + "|".join(root.strip("/") for root in DATA_PLANE_ROOTS) + ")(?:/|$)"

_GEMINI_METHOD = re.compile(r"^/v1(?:beta|alpha)?/models/(?P<model>[^:]+):(?P<method>[A-Za-z]+)$")
_MODEL_ITEM = re.compile(r"^/v1(?P<beta>beta|alpha)?/models/(?P<model>[^:]+)$")
# bedrock-runtime: Converse for every model, InvokeModel with the model's own body (Anthropic's Messages here).
_BEDROCK_METHOD = re.compile(
    r"^/model/(?P<model>[^/]+)/(?P<method>converse|converse-stream|invoke|invoke-with-response-stream)$"
)
_BEDROCK_METHODS = {
    "converse": (Dialect.BEDROCK, False),
    "converse-stream": (Dialect.BEDROCK, True),
    "invoke": (Dialect.ANTHROPIC, False),
    "invoke-with-response-stream": (Dialect.ANTHROPIC, True),
}

_POST_ROUTES = {
    "/v1/messages": (Dialect.ANTHROPIC, Operation.GENERATE),
    "/v1/messages/count_tokens": (Dialect.ANTHROPIC, Operation.COUNT_TOKENS),
    "/v1/chat/completions": (Dialect.OPENAI_CHAT, Operation.GENERATE),
    "/v1/responses": (Dialect.OPENAI_RESPONSES, Operation.GENERATE),
    "/v1/responses/input_tokens": (Dialect.OPENAI_RESPONSES, Operation.COUNT_TOKENS),
}
_GEMINI_METHODS = {
    "generateContent": (Operation.GENERATE, False),
    "streamGenerateContent": (Operation.GENERATE, True),
    "countTokens": (Operation.COUNT_TOKENS, None),
}


# A prefix is one or more path segments; its first may not be a root the data plane or the site already has.
_PREFIX_PATH = re.compile(r"^(?:/[A-Za-z0-9._-]+)+$")
RESERVED_FIRST_SEGMENTS = frozenset(
    {"v1", "v1beta", "v1alpha", "anthropic", "openai", "gemini", "model", "admin", "static", "dashboard", "me"}
    | {"accounts"}
    | {"health", "healthz", "metrics"}
)


def prefix_path_problem(path: str) -> str | None:
    """Why `path` cannot be an operator-defined prefix (None: it can)."""
    if not _PREFIX_PATH.match(path):
        return "Give a path such as /team-a: it starts with /, has no trailing /, and uses letters, digits, - _ ."
    if path.split("/")[1].lower() in RESERVED_FIRST_SEGMENTS:
        return f"{path.split('/')[1]!r} is already a path of the proxy: choose another first segment"
    return None


def split_prefix(path: str, prefixes: Iterable[str]) -> tuple[str, str] | None:
    """(prefix, the rest) when `path` is a data-plane path under one of `prefixes` (the longest that fits)."""
    for prefix in sorted(prefixes, key=len, reverse=True):
        if path.startswith(prefix + "/"):
            rest = path[len(prefix) :]
            return (prefix, rest) if is_data_plane(rest) else None
    return None


def is_data_plane(path: str) -> bool:
    return path.startswith(DATA_PLANE_ROOTS) or path in DATA_PLANE_EXACT


def dialect_from_headers(headers: dict[str, str], query: dict[str, str]) -> Dialect:
    """For paths that every dialect shares (`GET /v1/models`): who is asking, by the headers they send."""
    if "anthropic-version" in headers or "x-api-key" in headers:
        return Dialect.ANTHROPIC
    if "x-goog-api-key" in headers or "key" in query:
        return Dialect.GEMINI
    return Dialect.OPENAI_CHAT


def match(method: str, path: str, headers: dict[str, str], query: dict[str, str]) -> Endpoint:
    hinted: Dialect | None = None
    for prefix, dialect in PREFIX_DIALECTS.items():
        if path.startswith(prefix + "/"):
            hinted, path = dialect, path[len(prefix) :]
            break
    if hinted is Dialect.OPENAI_CHAT and not path.startswith("/v1"):
        path = "/v1" + path  # /openai/chat/completions, for clients given a base URL without /v1
    fallback = hinted or dialect_from_headers(headers, query)

    if method == "POST":
        if path in _POST_ROUTES:
            dialect, action = _POST_ROUTES[path]
            return Endpoint(dialect, action)
        gemini = _GEMINI_METHOD.match(path)
        if gemini and gemini["method"] in _GEMINI_METHODS:
            action, stream = _GEMINI_METHODS[gemini["method"]]
            return Endpoint(Dialect.GEMINI, action, model=gemini["model"], stream=stream)
        bedrock = _BEDROCK_METHOD.match(path)
        if bedrock:
            dialect, stream = _BEDROCK_METHODS[bedrock["method"]]
            return Endpoint(dialect, Operation.GENERATE, model=bedrock["model"], stream=stream, aws=True)
    elif method == "GET":
        if path in ("/v1beta/models", "/v1alpha/models"):
            return Endpoint(Dialect.GEMINI, Operation.LIST_MODELS)
        if path == "/v1/models":
            return Endpoint(fallback, Operation.LIST_MODELS)
        item = _MODEL_ITEM.match(path)
        if item:
            dialect = Dialect.GEMINI if item["beta"] else fallback
            return Endpoint(dialect, Operation.GET_MODEL, model=item["model"])
    if path.startswith("/v1beta/") or path.startswith("/v1alpha/") or _GEMINI_METHOD.match(path):
        return Endpoint(Dialect.GEMINI, None)
    if path.startswith("/v1/messages"):
        return Endpoint(Dialect.ANTHROPIC, None)
    if path.startswith("/model/"):
        return Endpoint(Dialect.BEDROCK, None, aws=True)
    if path.startswith("/v1/responses"):
        return Endpoint(Dialect.OPENAI_RESPONSES, None)
    return Endpoint(fallback, None)
