"""What an exchange cost: the operator's price overrides first, then the `genai-prices` catalogue.

Why it looks like this:
- Costs are cache-aware because caching is most of the bill for coding agents: `translation.usage.Usage`
  keeps disjoint input buckets, and each bucket is billed at its own price (input, cache read, cache write,
  output). An empty cache price means "the input price", as it does in `genai-prices`.
- `genai-prices` counts cache tokens INSIDE `input_tokens` (OpenAI's convention); ours does not, so the
  conversion goes through `Usage.input_total`. Its own `calc_price` computes the cost, so its price tiers
  (Anthropic and Gemini charge more above 200k prompt tokens) apply.
- Only the snapshot bundled with the pinned package is used: nothing here starts `genai_prices.UpdatePrices`
  (the one part of it that fetches prices), so pricing never does network I/O and the same row prices the
  same way on every server.
- A model nobody knows the price of gets no quote: the ledger shows it as unpriced, never as free. That
  includes a self-hosted upstream (a loopback, private or single-label host) whose model name merely looks
  like a cloud model: its cost is the operator's to state, with an override.

Overrides (`usage.models.ModelPrice`) are matched on the upstream model name, case-insensitively, in this
order: limited to this upstream, exact name; limited to this upstream, pattern; every upstream, exact name;
every upstream, pattern. Among patterns, the one with more literal characters wins.
"""

from __future__ import annotations

import fnmatch
import functools
import ipaddress
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from urllib.parse import urlsplit

import genai_prices
from genai_prices import data_snapshot
from genai_prices.types import ModelInfo, Provider, TieredPrices

from translation.dialect import Dialect
from translation.usage import Usage
from usage.models import ModelPrice

logger = logging.getLogger(__name__)

MTOK = 1_000_000
# The precision of the ledger's columns (LedgerEntry.cost_usd and price_*), so both databases store the same.
COST_QUANTUM = Decimal("0.00000001")
PRICE_QUANTUM = Decimal("0.000001")

# The provider a format implies when the base URL names none that genai-prices knows (a company gateway).
_FORMAT_PROVIDER = {
    Dialect.ANTHROPIC.value: "anthropic",
    Dialect.OPENAI_CHAT.value: "openai",
    Dialect.OPENAI_RESPONSES.value: "openai",
    Dialect.GEMINI.value: "google",
    Dialect.BEDROCK.value: "aws",  # a Bedrock endpoint whose URL genai-prices does not know (a VPC endpoint)
}


@dataclass(frozen=True, slots=True)
class Quote:
    """A price for one exchange. Prices are USD per million tokens, the ones actually used (a cache price
    that falls back to the input price is given as the input price)."""

    cost_usd: Decimal | None
    """None when the upstream reported no token counts at all."""
    source: str
    """Where the prices come from: "genai-prices 0.2.3: anthropic/claude-sonnet-4-5", "override: llama3* on ollama"."""
    input_per_mtok: Decimal | None
    output_per_mtok: Decimal | None
    cache_read_per_mtok: Decimal | None
    cache_write_per_mtok: Decimal | None


@dataclass(frozen=True, slots=True)
class _Override:
    label: str
    input: Decimal
    output: Decimal
    cache_read: Decimal
    cache_write: Decimal


class PriceBook:
    """The overrides of one moment (load it once per batch) and the bundled `genai-prices` catalogue."""

    def __init__(self, overrides: Iterable[ModelPrice]) -> None:
        # Keyed by upstream name ("" = every upstream): exact lowercased names, and patterns most specific first.
        self._exact: dict[tuple[str, str], _Override] = {}
        self._patterns: dict[str, list[tuple[re.Pattern[str], _Override]]] = {}
        for row in sorted(overrides, key=lambda row: (-_literal_chars(row.model_pattern), row.model_pattern)):
            override = _Override(
                label=f"override: {row}",
                input=row.input_per_mtok,
                output=row.output_per_mtok,
                cache_read=row.input_per_mtok if row.cache_read_per_mtok is None else row.cache_read_per_mtok,
                cache_write=row.input_per_mtok if row.cache_write_per_mtok is None else row.cache_write_per_mtok,
            )
            if any(ch in row.model_pattern for ch in "*?["):
                regex = re.compile(fnmatch.translate(row.model_pattern), re.IGNORECASE)
                self._patterns.setdefault(row.upstream, []).append((regex, override))
            else:
                self._exact.setdefault((row.upstream, row.model_pattern.lower()), override)

    @classmethod
    def load(cls) -> PriceBook:
        """The current overrides (one query; synchronous ORM, so call it from the database thread)."""
        return cls(ModelPrice.objects.all())

    def quote(
        self,
        usage: Usage,
        *,
        model: str,
        upstream: str = "",
        base_url: str = "",
        upstream_format: str = "",
        at: datetime | None = None,
    ) -> Quote | None:
        """The cost of `usage` on `model` (the upstream's model name), or None when no price is known.

        `at` selects dated catalogue prices (default: now); overrides have no dates.
        """
        if not model:
            return None
        override = self._override(model, upstream)
        if override is not None:
            return _override_quote(override, usage)
        return _catalogue_quote(usage, model, base_url, upstream_format, at)

    def _override(self, model: str, upstream: str) -> _Override | None:
        scopes = (upstream, "") if upstream else ("",)
        for scope in scopes:
            exact = self._exact.get((scope, model.lower()))
            if exact is not None:
                return exact
            for regex, override in self._patterns.get(scope, ()):
                if regex.fullmatch(model):
                    return override
        return None


def _literal_chars(pattern: str) -> int:
    return len(re.sub(r"\[[^]]*]|[*?]", "", pattern))


def _override_quote(override: _Override, usage: Usage) -> Quote:
    cost = None
    if not _unknown(usage):
        cost = (
            Decimal(usage.input_tokens or 0) * override.input
            + Decimal(usage.cache_read_tokens or 0) * override.cache_read
            + Decimal(usage.cache_write_tokens or 0) * override.cache_write
            + Decimal(usage.output_tokens or 0) * override.output
        ) / MTOK
    return _quote(cost, override.label, override.input, override.output, override.cache_read, override.cache_write)


def _catalogue_quote(
    usage: Usage, model: str, base_url: str, upstream_format: str, at: datetime | None
) -> Quote | None:
    provider_id = _provider_id(base_url, upstream_format)
    if provider_id is None:
        return None
    counts = genai_prices.Usage(
        input_tokens=usage.input_total or 0,
        cache_read_tokens=usage.cache_read_tokens or 0,
        cache_write_tokens=usage.cache_write_tokens or 0,
        output_tokens=usage.output_tokens or 0,
    )
    found = _catalogue_model(model.removeprefix("models/"), provider_id)
    if found is None:
        return None
    provider, info = found
    try:
        calc = info.calc_price(counts, provider, genai_request_timestamp=at or datetime.now(UTC))
    except ValueError:  # data genai-prices refuses: unpriced rather than a batch the ledger cannot write
        logger.exception("genai-prices could not price %s on %s", model, provider_id)
        return None
    prices = calc.model_price
    prompt = usage.input_total or 0
    input_price = _tier(prices.input_mtok, prompt)
    cache_read = _tier(prices.cache_read_mtok, prompt)
    cache_write = _tier(prices.cache_write_mtok, prompt)
    return _quote(
        None if _unknown(usage) else calc.total_price,
        f"genai-prices {genai_prices.__version__}: {calc.provider.id}/{calc.model.id}",
        input_price,
        _tier(prices.output_mtok, prompt),
        input_price if cache_read is None else cache_read,
        input_price if cache_write is None else cache_write,
    )


# Both lookups scan the whole catalogue; the ledger prices every row with them, so they are remembered (the
# catalogue is the one bundled with the package and never changes while the process runs).
@functools.lru_cache(maxsize=1024)
def _catalogue_model(model: str, provider_id: str) -> tuple[Provider, ModelInfo] | None:
    try:
        return data_snapshot.get_snapshot().find_provider_model(model, None, provider_id, None)
    except LookupError:
        return None


@functools.lru_cache(maxsize=256)
def _provider_id(base_url: str, upstream_format: str) -> str | None:
    """The genai-prices provider: the one the base URL belongs to, else the one the format implies, except
    for a self-hosted upstream (None: only an override prices it)."""
    if base_url:
        try:
            return data_snapshot.get_snapshot().find_provider(None, None, base_url).id
        except LookupError:
            if _self_hosted(base_url):
                return None
    return _FORMAT_PROVIDER.get(upstream_format)


def _self_hosted(base_url: str) -> bool:
    host = (urlsplit(base_url).hostname or "").lower()
    if not host:
        return False
    if "." not in host or host.endswith((".localhost", ".local", ".internal", ".lan")):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_private or address.is_loopback or address.is_link_local


def _tier(price: Decimal | TieredPrices | None, prompt_tokens: int) -> Decimal | None:
    """The per-Mtok price genai-prices applies for a prompt of this size (the same rule as its calc_price)."""
    if not isinstance(price, TieredPrices):
        return price
    for tier in reversed(price.tiers):
        if prompt_tokens > tier.start:
            return tier.price
    return price.base


def _unknown(usage: Usage) -> bool:
    return usage.input_total is None and usage.output_tokens is None


def _quote(
    cost: Decimal | None,
    source: str,
    input_price: Decimal | None,
    output: Decimal | None,
    cache_read: Decimal | None,
    cache_write: Decimal | None,
) -> Quote:
    def price(value: Decimal | None) -> Decimal | None:
        return None if value is None else value.quantize(PRICE_QUANTUM)

    return Quote(
        cost_usd=None if cost is None else cost.quantize(COST_QUANTUM),
        source=source,
        input_per_mtok=price(input_price),
        output_per_mtok=price(output),
        cache_read_per_mtok=price(cache_read),
        cache_write_per_mtok=price(cache_write),
    )
