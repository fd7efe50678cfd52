"""Costs: operator overrides first, then the bundled genai-prices 0.2.3 catalogue; cache-aware, offline.

Expected costs are written out as arithmetic on the list prices (USD per million tokens) so a reader can check
them against the providers' price pages; a genai-prices upgrade that changes a price fails here on purpose.
"""

from __future__ import annotations

import socket
from decimal import Decimal

import pytest

from translation.usage import Usage
from usage.models import ModelPrice
from usage.pricing import PriceBook, Quote

M = 1_000_000
ANTHROPIC = {"upstream": "anthropic", "base_url": "https://api.anthropic.com", "upstream_format": "anthropic"}
OPENAI = {"upstream": "openai", "base_url": "https://api.openai.com/v1", "upstream_format": "openai-chat"}
GEMINI = {"upstream": "gemini", "base_url": "https://generativelanguage.googleapis.com", "upstream_format": "gemini"}
OLLAMA = {"upstream": "ollama", "base_url": "http://127.0.0.1:11434/v1", "upstream_format": "openai-chat"}


def price(pattern: str, input: str, output: str, upstream: str = "", **cache: str) -> ModelPrice:
    return ModelPrice(
        model_pattern=pattern,
        upstream=upstream,
        input_per_mtok=Decimal(input),
        output_per_mtok=Decimal(output),
        cache_read_per_mtok=Decimal(cache["read"]) if "read" in cache else None,
        cache_write_per_mtok=Decimal(cache["write"]) if "write" in cache else None,
    )


NO_OVERRIDES = PriceBook([])


# --- genai-prices ---------------------------------------------------------------------------------------------


def test_anthropic_model_with_cache_reads_and_writes():
    usage = Usage.from_anthropic(
        input_tokens=1000, output_tokens=300, cache_read_input_tokens=2000, cache_creation_input_tokens=500
    )
    quote = NO_OVERRIDES.quote(usage, model="claude-sonnet-4-5-20250929", **ANTHROPIC)

    # Claude Sonnet 4.5: $3 input, $0.30 cache read, $3.75 cache write (5 min), $15 output.
    expected = (
        Decimal(1000) * 3 + Decimal(2000) * Decimal("0.3") + Decimal(500) * Decimal("3.75") + Decimal(300) * 15
    ) / M
    assert expected == Decimal("0.009975")
    assert quote == Quote(
        cost_usd=expected,
        source="genai-prices 0.2.3: anthropic/claude-sonnet-4-5",
        input_per_mtok=Decimal("3"),
        output_per_mtok=Decimal("15"),
        cache_read_per_mtok=Decimal("0.3"),
        cache_write_per_mtok=Decimal("3.75"),
    )


def test_anthropic_long_prompt_tier_applies_to_the_whole_prompt():
    # 190k fresh + 20k cached = 210k prompt tokens: above 200k every token is billed at the long-context rates.
    usage = Usage(input_tokens=190_000, cache_read_tokens=20_000, output_tokens=1000)
    quote = NO_OVERRIDES.quote(usage, model="claude-sonnet-4-5", **ANTHROPIC)

    assert quote is not None
    expected = (Decimal(190_000) * 6 + Decimal(20_000) * Decimal("0.6") + Decimal(1000) * Decimal("22.5")) / M
    assert quote.cost_usd == expected == Decimal("1.1745")
    assert quote.input_per_mtok == 6
    assert quote.cache_read_per_mtok == Decimal("0.6")
    assert quote.output_per_mtok == Decimal("22.5")


def test_openai_model_with_cached_tokens():
    # OpenAI counts cached tokens inside prompt_tokens: 1000 prompt = 800 fresh + 200 cached.
    usage = Usage.from_openai(prompt_tokens=1000, completion_tokens=300, cached_tokens=200, reasoning_tokens=100)
    quote = NO_OVERRIDES.quote(usage, model="gpt-4o", **OPENAI)

    # GPT-4o: $2.50 input, $1.25 cached input, $10 output (reasoning is part of the 300 output tokens).
    expected = (Decimal(800) * Decimal("2.5") + Decimal(200) * Decimal("1.25") + Decimal(300) * 10) / M
    assert quote is not None
    assert quote.cost_usd == expected == Decimal("0.00525")
    assert quote.source == "genai-prices 0.2.3: openai/gpt-4o"
    assert quote.cache_read_per_mtok == Decimal("1.25")
    assert quote.cache_write_per_mtok == Decimal("2.5")  # no cache-write price: writes cost the input price


def test_gemini_model():
    # Gemini counts cached tokens inside promptTokenCount and thoughts outside candidatesTokenCount.
    usage = Usage.from_gemini(
        prompt_token_count=1000, candidates_token_count=200, cached_content_token_count=400, thoughts_token_count=100
    )
    quote = NO_OVERRIDES.quote(usage, model="gemini-2.5-flash", **GEMINI)

    # Gemini 2.5 Flash: $0.30 input, $0.03 cached input, $2.50 output (thinking included).
    expected = (Decimal(600) * Decimal("0.3") + Decimal(400) * Decimal("0.03") + Decimal(300) * Decimal("2.5")) / M
    assert quote is not None
    assert quote.cost_usd == expected == Decimal("0.000942")
    assert quote.source == "genai-prices 0.2.3: google/gemini-2.5-flash"


def test_the_provider_is_found_from_the_base_url_then_from_the_format():
    usage = Usage(input_tokens=1000, output_tokens=100)
    openrouter = {"upstream": "or", "base_url": "https://openrouter.ai/api/v1", "upstream_format": "openai-chat"}
    quote = NO_OVERRIDES.quote(usage, model="anthropic/claude-sonnet-4.5", **openrouter)
    assert quote is not None
    assert quote.source == "genai-prices 0.2.3: openrouter/anthropic/claude-sonnet-4.5"

    # A company gateway genai-prices does not know: the OpenAI format implies OpenAI's prices.
    gateway = {"upstream": "gw", "base_url": "https://llm.corp.example.com/v1", "upstream_format": "openai-chat"}
    quote = NO_OVERRIDES.quote(usage, model="gpt-4o", **gateway)
    assert quote is not None
    assert quote.cost_usd == (Decimal(1000) * Decimal("2.5") + Decimal(100) * 10) / M


def test_unknown_models_are_unpriced_never_free():
    usage = Usage(input_tokens=1000, output_tokens=100)
    assert NO_OVERRIDES.quote(usage, model="llama3.2", **OLLAMA) is None
    assert NO_OVERRIDES.quote(usage, model="no-such-model", **OPENAI) is None
    assert NO_OVERRIDES.quote(usage, model="", **OPENAI) is None
    # A self-hosted model whose name matches a cloud model is not given the cloud's list price.
    assert NO_OVERRIDES.quote(usage, model="gpt-oss-20b", **OLLAMA) is None


def test_usage_all_unknown_has_no_cost_but_keeps_the_prices():
    quote = NO_OVERRIDES.quote(Usage(), model="claude-sonnet-4-5", **ANTHROPIC)
    assert quote is not None
    assert quote.cost_usd is None
    assert (quote.input_per_mtok, quote.output_per_mtok) == (3, 15)

    book = PriceBook([price("llama3*", "0.1", "0.2")])
    quote = book.quote(Usage(), model="llama3.2", **OLLAMA)
    assert quote is not None
    assert quote.cost_usd is None
    assert quote.input_per_mtok == Decimal("0.1")


def test_pricing_does_no_network_io(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("pricing tried to open a connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    quote = NO_OVERRIDES.quote(Usage(input_tokens=10, output_tokens=10), model="claude-haiku-4-5", **ANTHROPIC)
    assert quote is not None and quote.cost_usd == (Decimal(10) * 1 + Decimal(10) * 5) / M


# --- overrides ------------------------------------------------------------------------------------------------


def test_override_without_cache_prices_bills_cache_at_the_input_price():
    book = PriceBook([price("llama3*", "0.10", "0.40", upstream="ollama")])
    quote = book.quote(Usage(1000, 2000, 500, 300), model="llama3.2", **OLLAMA)

    expected = (Decimal(1000) * Decimal("0.1") + (2000 + 500) * Decimal("0.1") + Decimal(300) * Decimal("0.4")) / M
    assert quote == Quote(
        cost_usd=expected,
        source="override: llama3* on ollama",
        input_per_mtok=Decimal("0.1"),
        output_per_mtok=Decimal("0.4"),
        cache_read_per_mtok=Decimal("0.1"),
        cache_write_per_mtok=Decimal("0.1"),
    )
    assert expected == Decimal("0.00047")


def test_override_with_cache_prices():
    book = PriceBook([price("my-finetune", "2", "8", read="0.5", write="2.5")])
    quote = book.quote(Usage(1000, 2000, 500, 300), model="my-finetune", **OPENAI)

    expected = (
        Decimal(1000) * 2 + Decimal(2000) * Decimal("0.5") + Decimal(500) * Decimal("2.5") + Decimal(300) * 8
    ) / M
    assert quote is not None
    assert quote.cost_usd == expected == Decimal("0.00665")
    assert quote.source == "override: my-finetune"
    assert (quote.cache_read_per_mtok, quote.cache_write_per_mtok) == (Decimal("0.5"), Decimal("2.5"))


def test_an_override_wins_over_genai_prices():
    book = PriceBook([price("gpt-4o", "1", "2")])
    quote = book.quote(Usage(input_tokens=1000, output_tokens=1000), model="gpt-4o", **OPENAI)
    assert quote is not None
    assert quote.source == "override: gpt-4o"
    assert quote.cost_usd == (Decimal(1000) * 1 + Decimal(1000) * 2) / M


def source(book: PriceBook, model: str, upstream: str) -> str | None:
    quote = book.quote(Usage(input_tokens=1), model=model, upstream=upstream, base_url="http://10.0.0.5:8000/v1")
    return quote.source if quote else None


def test_an_exact_name_wins_over_a_pattern():
    book = PriceBook([price("qwen*", "1", "1"), price("qwen3-coder", "2", "2"), price("*", "3", "3")])
    assert source(book, "qwen3-coder", "vllm") == "override: qwen3-coder"
    assert source(book, "QWEN3-Coder", "vllm") == "override: qwen3-coder"  # names compare case-insensitively
    assert source(book, "qwen2.5", "vllm") == "override: qwen*"  # the more specific pattern
    assert source(book, "mistral", "vllm") == "override: *"


def test_an_upstream_specific_override_wins_over_a_general_one():
    book = PriceBook(
        [
            price("qwen3-coder", "1", "1"),
            price("qwen3-coder", "2", "2", upstream="vllm"),
            price("qwen*", "3", "3", upstream="ollama"),
        ]
    )
    assert source(book, "qwen3-coder", "vllm") == "override: qwen3-coder on vllm"
    assert source(book, "qwen3-coder", "lmstudio") == "override: qwen3-coder"
    # Where the tokens were spent decides first: the upstream's pattern beats a general exact name.
    assert source(book, "qwen3-coder", "ollama") == "override: qwen* on ollama"
    assert source(book, "qwen2.5", "lmstudio") is None


@pytest.mark.django_db
def test_load_reads_the_overrides_in_one_query(django_assert_num_queries):
    price("llama3*", "0.1", "0.2", upstream="ollama").save()
    price("llama3.2", "0.3", "0.4").save()
    with django_assert_num_queries(1):
        book = PriceBook.load()
    usage = Usage(input_tokens=1000, output_tokens=1000)
    assert book.quote(usage, model="llama3.2", **OLLAMA).source == "override: llama3* on ollama"
    quote = book.quote(usage, model="llama3.2", upstream="together", base_url="https://api.together.xyz/v1")
    assert quote is not None
    assert quote.source == "override: llama3.2"
    assert quote.cost_usd == (Decimal(1000) * Decimal("0.3") + Decimal(1000) * Decimal("0.4")) / M


def test_cloud_models_are_priced_from_the_clouds_entries():
    usage = Usage(input_tokens=1000, output_tokens=100)
    vertex = {
        "upstream": "vx",
        "base_url": "https://us-east5-aiplatform.googleapis.com/v1",
        "upstream_format": "anthropic",
    }
    quote = NO_OVERRIDES.quote(usage, model="claude-sonnet-4-5@20250929", **vertex)
    assert quote is not None and quote.source == "genai-prices 0.2.3: google/claude-sonnet-4-5"
    assert quote.cost_usd == (Decimal(1000) * 3 + Decimal(100) * 15) / M
    bedrock = {
        "upstream": "br",
        "base_url": "https://bedrock-runtime.us-east-1.amazonaws.com",
        "upstream_format": "bedrock",
    }
    quote = NO_OVERRIDES.quote(usage, model="us.anthropic.claude-sonnet-4-5-20250929-v1:0", **bedrock)
    assert quote is not None and quote.source.startswith("genai-prices 0.2.3: aws/")
