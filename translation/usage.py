"""Token usage, normalised: the one place the providers' different conventions are reconciled.

The providers disagree on what "input tokens" means:
- OpenAI (Chat and Responses): `prompt_tokens` / `input_tokens` INCLUDE cached and cache-written tokens;
  `cached_tokens` / `cache_write_tokens` are a breakdown of them.
- Anthropic: `input_tokens` EXCLUDES cache; `cache_read_input_tokens` and `cache_creation_input_tokens` are
  added on top of it.
- Bedrock Converse: like Anthropic, `inputTokens` EXCLUDES `cacheReadInputTokens` / `cacheWriteInputTokens`;
  `totalTokens` is all of them plus `outputTokens`.
- Gemini: `promptTokenCount` includes `cachedContentTokenCount` (and tool-use prompt tokens are separate);
  `candidatesTokenCount` EXCLUDES `thoughtsTokenCount`.

`Usage` stores disjoint input buckets (so cost = each bucket times its own price, summed) and an output count
that INCLUDES reasoning (what every provider bills as output). Every field is `int | None`: None means the
upstream did not report it, which the ledger must keep distinct from 0. Codecs convert only through the
`from_*`/`to_*` helpers below; never copy numbers field by field across dialects.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from typing import Any

# Counts are stored in 64-bit signed integer columns (the ledger, the rollups, the rate-limit counters).
COUNT_LIMIT = 2**63


def count(value: Any) -> int | None:
    """A token count as an upstream reported it, made safe to add and store: a non-negative integer below 2^63,
    else None (unknown). Upstreams have sent counts as strings ("7") and floats (7.0); a negative, fractional
    beyond rounding, boolean or absurd value is not a count. One bad number must never stop the ledger."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        text = value.strip()
        try:
            value = int(text)
        except ValueError:
            try:
                value = float(text)
            except ValueError:
                return None
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        value = round(value)
    if isinstance(value, int) and 0 <= value < COUNT_LIMIT:
        return value
    return None


@dataclass(frozen=True, slots=True)
class Usage:
    input_tokens: int | None = None
    """Prompt tokens neither read from nor written to a cache (billed at the base input rate)."""
    cache_read_tokens: int | None = None
    """Prompt tokens served from a cache."""
    cache_write_tokens: int | None = None
    """Prompt tokens written to a cache on this request."""
    output_tokens: int | None = None
    """Generated tokens, reasoning included."""
    reasoning_tokens: int | None = None
    """The part of `output_tokens` spent on reasoning (a breakdown, never added again)."""

    @property
    def input_total(self) -> int | None:
        """All prompt tokens, cached or not (OpenAI's `prompt_tokens`); None if nothing about input is known."""
        parts = (self.input_tokens, self.cache_read_tokens, self.cache_write_tokens)
        return None if all(p is None for p in parts) else sum(p or 0 for p in parts)

    @property
    def total(self) -> int | None:
        if self.input_total is None and self.output_tokens is None:
            return None
        return (self.input_total or 0) + (self.output_tokens or 0)

    def updated(self, later: Usage) -> Usage:
        """This snapshot overlaid with a later one: the later value wins wherever it is known.

        Stream usage is cumulative in every dialect (Anthropic restates input in `message_delta`, Gemini repeats
        `usageMetadata`), so overlaying, never adding, is right.
        """
        changes = {f.name: getattr(later, f.name) for f in fields(later) if getattr(later, f.name) is not None}
        return replace(self, **changes)

    # -- OpenAI: cache inside the prompt count ---------------------------------------------------------------

    @classmethod
    def from_openai(
        cls,
        prompt_tokens: Any,
        completion_tokens: Any,
        cached_tokens: Any = None,
        cache_write_tokens: Any = None,
        reasoning_tokens: Any = None,
    ) -> Usage:
        """From Chat `prompt_tokens`/`completion_tokens`(+details) or Responses `input_tokens`/`output_tokens`."""
        prompt_tokens, completion_tokens = count(prompt_tokens), count(completion_tokens)
        cached_tokens, cache_write_tokens = count(cached_tokens), count(cache_write_tokens)
        reasoning_tokens = count(reasoning_tokens)
        fresh = None
        if prompt_tokens is not None:
            fresh = max(prompt_tokens - (cached_tokens or 0) - (cache_write_tokens or 0), 0)
        return cls(fresh, cached_tokens, cache_write_tokens, completion_tokens, reasoning_tokens)

    def to_openai(self) -> OpenAIUsage:
        return OpenAIUsage(
            prompt_tokens=self.input_total,
            completion_tokens=self.output_tokens,
            total_tokens=self.total,
            cached_tokens=self.cache_read_tokens,
            cache_write_tokens=self.cache_write_tokens,
            reasoning_tokens=self.reasoning_tokens,
        )

    # -- Anthropic: cache outside the input count ------------------------------------------------------------

    @classmethod
    def from_anthropic(
        cls,
        input_tokens: Any,
        output_tokens: Any,
        cache_read_input_tokens: Any = None,
        cache_creation_input_tokens: Any = None,
        thinking_tokens: Any = None,
    ) -> Usage:
        return cls(
            count(input_tokens),
            count(cache_read_input_tokens),
            count(cache_creation_input_tokens),
            count(output_tokens),
            count(thinking_tokens),
        )

    def to_anthropic(self) -> AnthropicUsage:
        return AnthropicUsage(
            input_tokens=self.input_tokens,
            output_tokens=self.output_tokens,
            cache_read_input_tokens=self.cache_read_tokens,
            cache_creation_input_tokens=self.cache_write_tokens,
            thinking_tokens=self.reasoning_tokens,
        )

    # -- Bedrock Converse: cache outside the input count, as Anthropic ----------------------------------------

    @classmethod
    def from_bedrock(
        cls,
        input_tokens: Any,
        output_tokens: Any,
        cache_read_input_tokens: Any = None,
        cache_write_input_tokens: Any = None,
    ) -> Usage:
        """From Converse `usage` (`inputTokens`, `outputTokens`, `cacheReadInputTokens`, `cacheWriteInputTokens`);
        `totalTokens` is derived, never read."""
        return cls(
            count(input_tokens), count(cache_read_input_tokens), count(cache_write_input_tokens), count(output_tokens)
        )

    def to_bedrock(self) -> BedrockUsage:
        return BedrockUsage(
            input_tokens=self.input_tokens,
            output_tokens=self.output_tokens,
            total_tokens=self.total,
            cache_read_input_tokens=self.cache_read_tokens,
            cache_write_input_tokens=self.cache_write_tokens,
        )

    # -- Gemini: cache inside the prompt, thoughts outside the candidates ------------------------------------

    @classmethod
    def from_gemini(
        cls,
        prompt_token_count: Any,
        candidates_token_count: Any,
        cached_content_token_count: Any = None,
        thoughts_token_count: Any = None,
        tool_use_prompt_token_count: Any = None,
    ) -> Usage:
        prompt_token_count, candidates_token_count = count(prompt_token_count), count(candidates_token_count)
        cached_content_token_count = count(cached_content_token_count)
        thoughts_token_count = count(thoughts_token_count)
        tool_use_prompt_token_count = count(tool_use_prompt_token_count)
        fresh = None
        if prompt_token_count is not None or tool_use_prompt_token_count is not None:
            prompt = (prompt_token_count or 0) + (tool_use_prompt_token_count or 0)
            fresh = count(max(prompt - (cached_content_token_count or 0), 0))
        output = None
        if candidates_token_count is not None or thoughts_token_count is not None:
            output = count((candidates_token_count or 0) + (thoughts_token_count or 0))
        return cls(fresh, cached_content_token_count, None, output, thoughts_token_count)

    def to_gemini(self) -> GeminiUsage:
        """Gemini has no cache-write count: written tokens are reported inside the prompt count."""
        candidates = None
        if self.output_tokens is not None:
            candidates = max(self.output_tokens - (self.reasoning_tokens or 0), 0)
        return GeminiUsage(
            prompt_token_count=self.input_total,
            candidates_token_count=candidates,
            total_token_count=self.total,
            cached_content_token_count=self.cache_read_tokens,
            thoughts_token_count=self.reasoning_tokens,
        )


@dataclass(frozen=True, slots=True)
class OpenAIUsage:
    """Numbers in OpenAI's convention; Responses calls prompt/completion `input_tokens`/`output_tokens`."""

    prompt_tokens: int | None
    completion_tokens: int | None
    total_tokens: int | None
    cached_tokens: int | None
    cache_write_tokens: int | None
    reasoning_tokens: int | None


@dataclass(frozen=True, slots=True)
class AnthropicUsage:
    input_tokens: int | None
    output_tokens: int | None
    cache_read_input_tokens: int | None
    cache_creation_input_tokens: int | None
    thinking_tokens: int | None


@dataclass(frozen=True, slots=True)
class GeminiUsage:
    prompt_token_count: int | None
    candidates_token_count: int | None
    total_token_count: int | None
    cached_content_token_count: int | None
    thoughts_token_count: int | None


@dataclass(frozen=True, slots=True)
class BedrockUsage:
    input_tokens: int | None
    output_tokens: int | None
    total_tokens: int | None
    cache_read_input_tokens: int | None
    cache_write_input_tokens: int | None
