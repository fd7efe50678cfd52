"""An alias's targets and an upstream's key pool, as operators write them (admin JSON, YAML config).

An alias always has its own upstream and model, its first target. `targets` adds more: each an upstream (by
name) and a model, with a `weight` (share of the traffic the non-fallback targets split, default 1) and
`fallback: true` for one used only when every other target failed or is cooling down. How requests are
spread and retried over them is routing.dataplane.failover's business; here is only what is valid.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# The most weight a target may have: enough for any split a team wants, small enough to keep arithmetic exact.
MAX_WEIGHT = 1000


def parse_targets(value: Any) -> list[dict[str, Any]]:
    """Validate an alias's further targets ([{upstream, model[, weight][, fallback]}]) and return them
    normalised (weight and fallback written out); raises ValueError saying what is wrong."""
    if value in (None, ""):
        return []
    if not isinstance(value, list):
        raise ValueError('give a list such as [{"upstream": "b", "model": "m2", "weight": 1}]')
    cleaned: list[dict[str, Any]] = []
    for index, entry in enumerate(value, start=1):
        where = f"target {index}"
        if not isinstance(entry, Mapping):
            raise ValueError(f"{where}: give a mapping with upstream and model")
        unknown = set(entry) - {"upstream", "model", "weight", "fallback"}
        if unknown:
            raise ValueError(f"{where}: unknown field(s) {', '.join(sorted(map(str, unknown)))}")
        upstream, model = entry.get("upstream"), entry.get("model", "")
        if not isinstance(upstream, str) or not upstream.strip():
            raise ValueError(f"{where}: upstream (a name) is required")
        if not isinstance(model, str):
            raise ValueError(f"{where}: model must be a string (empty: the name the client sent)")
        cleaned.append(
            {
                "upstream": upstream.strip(),
                "model": model.strip(),
                "weight": parse_weight(entry.get("weight", 1), where),
                "fallback": _flag(entry.get("fallback", False), where),
            }
        )
    return cleaned


def parse_weight(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_WEIGHT:
        raise ValueError(f"{where}: weight must be a whole number from 1 to {MAX_WEIGHT}")
    return value


def _flag(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{where}: fallback must be true or false")
    return value


def key_variables(value: str) -> list[str]:
    """The environment variable names of an upstream's key pool: `api_key_env` holds one name, or several
    separated by commas (used round-robin)."""
    return [name.strip() for name in value.split(",") if name.strip()]


# Stored keys of a pool are kept as one encrypted secret, one key per line (keys hold no line breaks).
STORED_KEY_SEPARATOR = "\n"


def stored_keys(plaintext: str) -> list[str]:
    """The keys of a stored secret: one per line (or separated by commas or spaces, as an operator pastes)."""
    return [key for key in plaintext.replace(",", " ").split() if key]
