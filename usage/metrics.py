"""Prometheus metrics of this process, kept in memory and written by hand in the text exposition format 0.0.4.

`GET /metrics` (routing.dataplane) serves `render()`. The counters live in the memory of one server process:
each process started behind a load balancer (or by a process manager) exposes its own counters, which start
at zero when it starts. Scrape every process as its own target and let Prometheus add them up
(`sum by (alias) (rate(llmproxy_requests_total[5m]))`); `rate()` handles the reset at a restart.

The ledger (usage.ledger) feeds the request metrics: `exchange_started` and `exchange_finished` run on the
event loop, on the request path, and do only dict and number arithmetic. `cost_recorded` runs on the database
thread, where rows are priced; the cost counter alone is guarded by a lock.

Labels are kept to what an operator configured, so the number of series stays small: the alias (its name as
configured, a glob pattern included; empty for a direct `UPSTREAM/MODEL` route and for a request that failed
before a route was chosen, which also has an empty upstream), the upstream's name, the client's dialect, the
operation (`generate`, `count_tokens`) and the outcome. Never the user, key, session or requested model.

Metrics:

- `llmproxy_requests_total{dialect,alias,upstream,operation,outcome}`: finished exchanges.
- `llmproxy_tokens_total{alias,upstream,kind}`: tokens the upstreams reported for generations; `kind` is
  `input` (prompt tokens neither read from nor written to a cache), `cache_read`, `cache_write`, `output`
  (reasoning included) and `reasoning` (the part of output spent reasoning). The three input kinds are
  disjoint: the whole prompt is their sum. A number the upstream did not report is not added.
- `llmproxy_cost_usd_total{alias,upstream}`: the priced cost of the generations, in US dollars. Pricing
  happens when ledger rows are written, about half a second after an exchange ends.
- `llmproxy_request_duration_seconds{alias,upstream}`: histogram of generation durations, from the request
  to the end of the answer.
- `llmproxy_time_to_first_token_seconds{alias,upstream}`: histogram of the time until the first generated
  output reached the client (for a whole answer: until it was sent).
- `llmproxy_in_flight_requests`, `llmproxy_in_flight_streams`: exchanges (streamed ones) begun and not ended.
"""

from __future__ import annotations

import math
import threading
from bisect import bisect_left
from collections.abc import Callable, Iterable, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Generic, TypeVar

from translation.operation import Operation

if TYPE_CHECKING:
    from usage.ledger import ExchangeRecord

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# Whole LLM exchanges take from well under a second (a short answer from a fast model) to many minutes (a long
# reasoning answer); the first token comes after tens of milliseconds to a couple of minutes.
DURATION_BUCKETS = (0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0)
TTFT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0)

_GENERATE = Operation.GENERATE

Labels = tuple[str, ...]
N = TypeVar("N", int, Decimal)


class Counter(Generic[N]):
    def __init__(self, name: str, help_text: str, label_names: Sequence[str]) -> None:
        self.name = name
        self.help = help_text
        self.label_names = tuple(label_names)
        self.values: dict[Labels, N] = {}

    def inc(self, labels: Labels, amount: N) -> None:
        current = self.values.get(labels)
        self.values[labels] = amount if current is None else current + amount

    def render(self) -> list[str]:
        lines = _header(self.name, self.help, "counter")
        for labels, value in sorted(self.values.items()):
            lines.append(f"{self.name}{_labels(self.label_names, labels)} {_number(value)}")
        return lines


class Histogram:
    def __init__(self, name: str, help_text: str, label_names: Sequence[str], buckets: Sequence[float]) -> None:
        self.name = name
        self.help = help_text
        self.label_names = tuple(label_names)
        self.bounds = tuple(sorted(buckets))
        # Per label set: the count of each bucket alone (the last one is +Inf), then the sum.
        self.counts: dict[Labels, list[int]] = {}
        self.sums: dict[Labels, float] = {}

    def observe(self, labels: Labels, value: float) -> None:
        counts = self.counts.get(labels)
        if counts is None:
            counts = self.counts[labels] = [0] * (len(self.bounds) + 1)
            self.sums[labels] = 0.0
        counts[bisect_left(self.bounds, value)] += 1  # `le` is inclusive: a value on a bound goes in its bucket
        self.sums[labels] += value

    def render(self) -> list[str]:
        lines = _header(self.name, self.help, "histogram")
        names = self.label_names
        for labels, counts in sorted(self.counts.items()):
            cumulative = 0
            for bound, count in zip((*self.bounds, math.inf), counts, strict=True):
                cumulative += count
                bucket = _labels((*names, "le"), (*labels, _number(bound)))
                lines.append(f"{self.name}_bucket{bucket} {cumulative}")
            lines.append(f"{self.name}_sum{_labels(names, labels)} {_number(self.sums[labels])}")
            lines.append(f"{self.name}_count{_labels(names, labels)} {cumulative}")
        return lines


requests_total: Counter[int] = Counter(
    "llmproxy_requests_total",
    "Finished exchanges, by client dialect, alias, upstream, operation and outcome.",
    ("dialect", "alias", "upstream", "operation", "outcome"),
)
tokens_total: Counter[int] = Counter(
    "llmproxy_tokens_total",
    "Tokens reported by upstreams for generations; input, cache_read and cache_write are disjoint, "
    "output includes reasoning.",
    ("alias", "upstream", "kind"),
)
cost_usd_total: Counter[Decimal] = Counter(
    "llmproxy_cost_usd_total",
    "Priced cost of generations in US dollars (added when the ledger rows are written).",
    ("alias", "upstream"),
)
request_duration = Histogram(
    "llmproxy_request_duration_seconds",
    "Duration of generations, from the request to the end of the answer.",
    ("alias", "upstream"),
    DURATION_BUCKETS,
)
time_to_first_token = Histogram(
    "llmproxy_time_to_first_token_seconds",
    "Time from the request until the first generated output reached the client.",
    ("alias", "upstream"),
    TTFT_BUCKETS,
)
upstream_attempts_total: Counter[int] = Counter(
    "llmproxy_upstream_attempts_total",
    "Upstream attempts of generations, by upstream and outcome: the error kind of an attempt that failed over "
    "to another target, else the exchange's outcome.",
    ("upstream", "outcome"),
)
fallbacks_total: Counter[int] = Counter(
    "llmproxy_fallbacks_total",
    "Generations served by another target than the alias's first choice (after a failed attempt, or by a "
    "fallback target while the others rest), by alias and the upstream that served.",
    ("alias", "upstream"),
)
IN_FLIGHT_REQUESTS = "llmproxy_in_flight_requests"
IN_FLIGHT_STREAMS = "llmproxy_in_flight_streams"

# The exchanges begun and not yet ended, by record id. Whether one streams is known only later than its
# start, so the in-flight gauges are counted from these records when they are rendered.
_open: dict[str, ExchangeRecord] = {}
# The cost counter is the one metric written from another thread (the database thread).
_cost_lock = threading.Lock()
# Gauges other layers own (name -> help text and a function that reads the value), e.g. open circuits.
_gauges: dict[str, tuple[str, Callable[[], float]]] = {}


def register_gauge(name: str, help_text: str, read: Callable[[], float]) -> None:
    """A gauge whose value `read` gives when the metrics are rendered (on the event loop thread)."""
    _gauges[name] = (help_text, read)


def exchange_started(record: ExchangeRecord) -> None:
    _open[record.id] = record


def exchange_finished(record: ExchangeRecord) -> None:
    _open.pop(record.id, None)
    alias = record.alias
    upstream = record.upstream
    requests_total.inc((record.dialect, alias, upstream, record.operation, record.outcome), 1)
    if record.operation != _GENERATE:
        return  # a token count: its numbers are not tokens consumed, its speed is not a generation's
    usage = record.usage
    for kind, value in (
        ("input", usage.input_tokens),
        ("cache_read", usage.cache_read_tokens),
        ("cache_write", usage.cache_write_tokens),
        ("output", usage.output_tokens),
        ("reasoning", usage.reasoning_tokens),
    ):
        if value is not None:
            tokens_total.inc((alias, upstream, kind), value)
    for failure in record.failed_attempts:
        upstream_attempts_total.inc((str(failure["target"]).partition("/")[0], str(failure["error"])), 1)
    if record.upstream:
        upstream_attempts_total.inc((upstream, record.outcome), 1)
    if record.fallback and record.upstream:
        fallbacks_total.inc((alias, upstream), 1)
    request_duration.observe((alias, upstream), record.duration)
    if record.first_output is not None:
        time_to_first_token.observe((alias, upstream), max(record.first_output - record.started, 0.0))


def cost_recorded(alias: str, upstream: str, upstream_model: str, cost_usd: Decimal) -> None:
    """One priced ledger row (called from the database thread). `upstream_model` is accepted for the caller's
    convenience but is not a label: on a direct route it is whatever the client asked for."""
    with _cost_lock:
        cost_usd_total.inc((alias, upstream), cost_usd)


def render() -> str:
    """Every metric in the text exposition format 0.0.4 (call on the event loop thread)."""
    open_records = list(_open.values())
    lines: list[str] = []
    lines += requests_total.render()
    lines += tokens_total.render()
    with _cost_lock:
        lines += cost_usd_total.render()
    lines += request_duration.render()
    lines += time_to_first_token.render()
    lines += upstream_attempts_total.render()
    lines += fallbacks_total.render()
    lines += _header(IN_FLIGHT_REQUESTS, "Exchanges begun and not yet ended in this process.", "gauge")
    lines.append(f"{IN_FLIGHT_REQUESTS} {len(open_records)}")
    lines += _header(IN_FLIGHT_STREAMS, "Streamed exchanges begun and not yet ended in this process.", "gauge")
    lines.append(f"{IN_FLIGHT_STREAMS} {sum(1 for record in open_records if record.stream)}")
    for name, (help_text, read) in _gauges.items():
        lines += _header(name, help_text, "gauge")
        lines.append(f"{name} {_number(read())}")
    return "\n".join(lines) + "\n"


def reset() -> None:
    """Forget everything (tests)."""
    _open.clear()
    requests_total.values.clear()
    tokens_total.values.clear()
    upstream_attempts_total.values.clear()
    fallbacks_total.values.clear()
    with _cost_lock:
        cost_usd_total.values.clear()
    for histogram in (request_duration, time_to_first_token):
        histogram.counts.clear()
        histogram.sums.clear()


# -- the text format --------------------------------------------------------------------------------------------


def _header(name: str, help_text: str, kind: str) -> list[str]:
    escaped = help_text.replace("\\", "\\\\").replace("\n", "\\n")
    return [f"# HELP {name} {escaped}", f"# TYPE {name} {kind}"]


def _labels(names: Iterable[str], values: Iterable[str]) -> str:
    pairs = ",".join(f'{name}="{_escape(value)}"' for name, value in zip(names, values, strict=True))
    return f"{{{pairs}}}" if pairs else ""


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: int | float | Decimal) -> str:
    if isinstance(value, int):
        return str(value)
    number = float(value)
    if math.isinf(number):
        return "+Inf" if number > 0 else "-Inf"
    if math.isnan(number):
        return "NaN"
    return repr(number)
