"""What a client asks an API to do: the one list of operations the proxy, the upstream URLs and the ledger share."""

from __future__ import annotations

from enum import StrEnum


class Operation(StrEnum):
    GENERATE = "generate"
    COUNT_TOKENS = "count_tokens"
    LIST_MODELS = "list_models"
    GET_MODEL = "get_model"

    @property
    def calls_upstream(self) -> bool:
        """Generation and token counting reach an upstream (and are recorded in the ledger); model listings
        are answered from the proxy's own configuration."""
        return self in (Operation.GENERATE, Operation.COUNT_TOKENS)
