from __future__ import annotations

from translation.usage import AnthropicUsage, GeminiUsage, OpenAIUsage, Usage

# One exchange seen by each provider: 100 fresh prompt tokens, 900 read from cache, 50 written to cache,
# 300 output tokens of which 120 were reasoning.
NORMAL = Usage(input_tokens=100, cache_read_tokens=900, cache_write_tokens=50, output_tokens=300, reasoning_tokens=120)


def test_openai_counts_cache_inside_the_prompt() -> None:
    usage = Usage.from_openai(
        prompt_tokens=1050, completion_tokens=300, cached_tokens=900, cache_write_tokens=50, reasoning_tokens=120
    )
    assert usage == NORMAL
    assert usage.to_openai() == OpenAIUsage(1050, 300, 1350, 900, 50, 120)


def test_anthropic_counts_cache_outside_the_input() -> None:
    usage = Usage.from_anthropic(
        input_tokens=100,
        output_tokens=300,
        cache_read_input_tokens=900,
        cache_creation_input_tokens=50,
        thinking_tokens=120,
    )
    assert usage == NORMAL
    assert usage.to_anthropic() == AnthropicUsage(100, 300, 900, 50, 120)


def test_anthropic_to_openai_moves_cache_into_the_prompt() -> None:
    openai = Usage.from_anthropic(10, 5, cache_read_input_tokens=90).to_openai()
    assert (openai.prompt_tokens, openai.cached_tokens, openai.completion_tokens) == (100, 90, 5)


def test_openai_to_anthropic_takes_cache_out_of_the_input() -> None:
    anthropic = Usage.from_openai(prompt_tokens=100, completion_tokens=5, cached_tokens=90).to_anthropic()
    assert (anthropic.input_tokens, anthropic.cache_read_input_tokens) == (10, 90)


def test_gemini_candidates_exclude_thoughts() -> None:
    usage = Usage.from_gemini(
        prompt_token_count=1000, candidates_token_count=180, cached_content_token_count=900, thoughts_token_count=120
    )
    assert usage == Usage(100, 900, None, 300, 120)
    assert usage.to_gemini() == GeminiUsage(1000, 180, 1300, 900, 120)


def test_unknown_stays_unknown_rather_than_zero() -> None:
    usage = Usage.from_openai(prompt_tokens=None, completion_tokens=None)
    assert usage == Usage()
    assert usage.input_total is None and usage.total is None
    assert usage.to_anthropic().input_tokens is None


def test_missing_cache_breakdown_leaves_the_prompt_as_fresh_input() -> None:
    assert Usage.from_openai(prompt_tokens=40, completion_tokens=2) == Usage(40, None, None, 2, None)


def test_later_snapshots_overlay_earlier_ones() -> None:
    start = Usage(input_tokens=12, cache_read_tokens=3, output_tokens=1)
    assert start.updated(Usage(output_tokens=40)) == Usage(12, 3, None, 40, None)
