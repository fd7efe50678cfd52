"""What the staff dashboard shows, as a few aggregate queries.

Every figure comes from one of two sources that give the same numbers:

- the rollups (`UsageRollup`, `LatencyRollup`, kept by `usage.rollups` in the ledger's write transaction):
  what the pages use. A range is read from the daily rows of the whole UTC days inside it and the hourly rows
  of the hours at its ends, a few thousand rows for a month instead of one per exchange;
- the ledger itself (`source=RAW`): what the tests compare the rollups against, and what the benchmark times
  to show why the rollups exist.

Ranges are whole UTC hours (the rollups' grain): `from` is rounded down and `to` up to the hour, so every
figure, chart and CSV export covers exactly the same rows.

Percentiles (duration, time to first token, tokens/s per upstream model): exact when the view holds at most
`EXACT_PERCENTILE_ROWS` exchanges (the values are read and sorted; linear interpolation between the two nearest
ranks, as PostgreSQL's percentile_cont); above that they are read from the rollups' quarter-octave histograms,
approximate to about one bucket (19 %, usually much less) and marked as such. Both work the same on SQLite and
PostgreSQL (percentile_cont exists only on PostgreSQL, and sorting a month of rows per model would not be fast).
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from enum import Enum
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db.models import Case, CharField, Count, F, Max, Min, Q, QuerySet, Sum, Value, When
from django.db.models.functions import TruncDay, TruncHour, TruncMonth

from usage.models import LATENCY_BUCKETS, LatencyRollup, LedgerEntry, Outcome, Period, UsageRollup
from usage.rollups import BUCKET_COLUMNS, NOT_ERRORS, bucket_bounds

Metric = LatencyRollup.Metric

PRESETS: dict[str, str] = {
    "24h": "Last 24 hours",
    "7d": "Last 7 days",
    "30d": "Last 30 days",
    "90d": "Last 90 days",
    "month": "This month (UTC), as budgets count it",
    "last-month": "Last month (UTC)",
}
PRESET_SHORT: dict[str, str] = {"month": "this month", "last-month": "last month"}
DEFAULT_PRESET = "7d"
BUCKETS = ("hour", "day", "month")
# A chart keeps at most this many bars: a finer bucket asked for a long range is widened.
MAX_BUCKETS = 800
EXACT_PERCENTILE_ROWS = 20_000
PERCENTILES = (0.5, 0.9, 0.99)
BREAKDOWN_LIMIT = 20
# How breakdowns can be ordered (largest first, the name A to Z); cost is the default.
SORTS: dict[str, str] = {
    "name": "Name",
    "cost": "Cost",
    "requests": "Requests",
    "errors": "Errors",
    "input": "Input",
    "output": "Output",
    "cache_read": "Cache read",
    "cache_write": "Cache write",
}
DEFAULT_SORT = "cost"
# How the Budgets panel can be ordered (the name A to Z, the soonest reset first, else largest first).
BUDGET_SORTS: dict[str, str] = {
    "name": "Budget of",
    "spent": "Spent",
    "amount": "Budget",
    "used": "Used",
    "resets": "Resets (UTC)",
}
DEFAULT_BUDGET_SORT = "used"


class Source(Enum):
    ROLLUP = "rollup"
    RAW = "raw"


ROLLUP = Source.ROLLUP
RAW = Source.RAW

FIGURES = (
    "requests",
    "errors",
    "cancelled",
    "no_usage",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
    "cost_usd",
    "unpriced",
)
_TOKENS = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens", "reasoning_tokens")


def _aggregates(source: Source) -> dict[str, Any]:
    """The figures as aggregate expressions, named `n_<figure>` (an annotation may not reuse a field's name)."""
    if source is ROLLUP:
        return {f"n_{name}": Sum(name) for name in FIGURES}
    raw = {
        "requests": Count("id"),
        "errors": Count("id", filter=~Q(outcome__in=NOT_ERRORS)),
        "cancelled": Count("id", filter=Q(outcome=Outcome.CANCELLED)),
        "no_usage": Count("id", filter=Q(**{f"{name}__isnull": True for name in _TOKENS})),
        **{name: Sum(name) for name in _TOKENS},
        "cost_usd": Sum("cost_usd"),
        "unpriced": Count("id", filter=Q(cost_usd__isnull=True)),
    }
    return {f"n_{name}": expression for name, expression in raw.items()}


# ---------------------------------------------------------------------------------------------------------------
# Filters


def _floor_hour(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def _ceil_hour(moment: datetime) -> datetime:
    floor = _floor_hour(moment)
    return floor if floor == moment else floor + timedelta(hours=1)


def _parse_moment(text: str, *, end: bool) -> datetime | None:
    """`YYYY-MM-DD` (a whole day: the end of the range takes the day in) or `YYYY-MM-DDTHH:MM`, in UTC."""
    text = text.strip()
    if not text:
        return None
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            start = datetime(day.year, day.month, day.day, tzinfo=UTC)
            return start + timedelta(days=1) if end else start
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _auto_bucket(start: datetime, end: datetime) -> str:
    span = end - start
    if span <= timedelta(days=3):
        return "hour"
    if span <= timedelta(days=93):
        return "day"
    return "month"


def _bucket_count(start: datetime, end: datetime, bucket: str) -> int:
    if bucket == "hour":
        return math.ceil((end - start) / timedelta(hours=1))
    if bucket == "day":
        return math.ceil((end - start) / timedelta(days=1)) + 1
    return (end.year - start.year) * 12 + end.month - start.month + 1


# The dimension filters: query parameter -> Filters attribute. Each is a column of the ledger and of both rollups
# (the group is its members' user ids), so every figure, chart and percentile honours it.
TEXT_FILTERS = ("alias", "upstream", "upstream_model", "client_program", "outcome", "unrouted")
ID_FILTERS = {"user": "user_id", "key": "key_id", "group": "group_id"}


@dataclass(frozen=True)
class Filters:
    start: datetime
    end: datetime
    bucket: str
    preset: str = ""
    user_id: int | None = None
    alias: str | None = None
    bucket_asked: str = ""
    errors: tuple[str, ...] = field(default=(), compare=False)
    key_id: int | None = None
    group_id: int | None = None
    upstream: str | None = None
    upstream_model: str | None = None
    client_program: str | None = None
    outcome: str | None = None
    # The model asked for by exchanges that matched no route (their row in the alias and model breakdowns).
    unrouted: str | None = None
    sort: str = ""
    budget_sort: str = ""

    @classmethod
    def from_params(cls, params: Mapping[str, str], now: datetime | None = None) -> Filters:
        now = now or datetime.now(UTC)
        errors: list[str] = []
        start = _parse_moment(params.get("from", ""), end=False)
        end = _parse_moment(params.get("to", ""), end=True)
        if params.get("from") and start is None:
            errors.append("Ignored an unreadable 'from' date.")
        if params.get("to") and end is None:
            errors.append("Ignored an unreadable 'to' date.")
        preset = ""
        if start is None and end is None:
            preset = params.get("range", "") if params.get("range", "") in PRESETS else DEFAULT_PRESET
            start, end = cls.preset_range(preset, now)
        else:
            end = end or _ceil_hour(now)
            start = start or end - timedelta(days=7)
        start, end = _floor_hour(start), _ceil_hour(end)
        if end <= start:
            errors.append("The range ended before it began; showing the hour it starts with.")
            end = start + timedelta(hours=1)

        asked = params.get("bucket", "")
        bucket = asked if asked in BUCKETS else _auto_bucket(start, end)
        while _bucket_count(start, end, bucket) > MAX_BUCKETS and bucket != "month":
            bucket = BUCKETS[BUCKETS.index(bucket) + 1]

        chosen: dict[str, Any] = {}
        for name, attribute in ID_FILTERS.items():
            if params.get(name, "").isdigit():
                chosen[attribute] = int(params[name])
        for name in TEXT_FILTERS:
            chosen[name] = params.get(name) or None
        if chosen["outcome"] is not None and chosen["outcome"] not in Outcome.values:
            errors.append("Ignored an unknown outcome.")
            chosen["outcome"] = None
        sort = params.get("sort", "")
        budget_sort = params.get("budget_sort", "")
        return cls(
            start=start,
            end=end,
            bucket=bucket,
            preset=preset,
            bucket_asked=asked if asked in BUCKETS else "",
            errors=tuple(errors),
            sort=sort if sort in SORTS else "",
            budget_sort=budget_sort if budget_sort in BUDGET_SORTS else "",
            **chosen,
        )

    @staticmethod
    def preset_range(preset: str, now: datetime) -> tuple[datetime, datetime]:
        """24h: the last 24 whole hours up to the current one. Days: calendar days (UTC), today included. Months:
        the calendar month (UTC), the period a monthly budget counts."""
        today = _floor_hour(now).replace(hour=0)
        if preset in ("month", "last-month"):
            this_month = today.replace(day=1)
            if preset == "month":
                return this_month, (this_month + timedelta(days=32)).replace(day=1)
            return (this_month - timedelta(days=1)).replace(day=1), this_month
        if preset.endswith("h"):
            end = _ceil_hour(now)
            return end - timedelta(hours=int(preset[:-1])), end
        return today - timedelta(days=int(preset[:-1]) - 1), today + timedelta(days=1)

    def params(self, **overrides: str | None) -> dict[str, str]:
        """The query parameters that reproduce this view (with some changed: None removes one)."""
        values: dict[str, str | None] = {}
        if self.preset:
            values["range"] = self.preset
        else:
            values["from"] = self.start.strftime("%Y-%m-%dT%H:%M")
            values["to"] = self.end.strftime("%Y-%m-%dT%H:%M")
        for name, attribute in ID_FILTERS.items():
            if getattr(self, attribute) is not None:
                values[name] = str(getattr(self, attribute))
        for name in TEXT_FILTERS:
            values[name] = getattr(self, name)
        if self.bucket_asked:
            values["bucket"] = self.bucket_asked
        if self.sort:
            values["sort"] = self.sort
        if self.budget_sort:
            values["budget_sort"] = self.budget_sort
        values.update(overrides)
        return {key: value for key, value in values.items() if value}

    def querystring(self, **overrides: str | None) -> str:
        return urlencode(self.params(**overrides))

    def with_(self, **changes: Any) -> Filters:
        return replace(self, **changes)

    @property
    def narrowed(self) -> bool:
        """Whether any dimension filter (not the range) is set."""
        return any(getattr(self, a) is not None for a in ID_FILTERS.values()) or any(
            getattr(self, name) is not None for name in TEXT_FILTERS
        )

    def cleared(self) -> dict[str, None]:
        """The overrides that remove every dimension filter."""
        return {name: None for name in (*ID_FILTERS, *TEXT_FILTERS)}


def _members(group_id: int) -> QuerySet[Any]:
    return get_user_model().objects.filter(groups__id=group_id).values("pk")


def _narrow(qs: QuerySet[Any], filters: Filters, table: str) -> QuerySet[Any]:
    """The dimension filters on the ledger (`ledger`), the usage rollups (`usage`) or the speed histograms
    (`latency`: exchanges that worked only, none that matched no route)."""
    if filters.user_id is not None:
        qs = qs.filter(user_id=filters.user_id)
    if filters.group_id is not None:
        qs = qs.filter(user_id__in=_members(filters.group_id))
    if filters.key_id is not None:
        qs = qs.filter(key_id=filters.key_id)
    for name in ("alias", "upstream", "upstream_model", "client_program"):
        if getattr(filters, name) is not None:
            qs = qs.filter(**{name: getattr(filters, name)})
    if filters.outcome is not None:
        qs = qs.none() if table == "latency" and filters.outcome != Outcome.OK else qs
        qs = qs.filter(outcome=filters.outcome) if table != "latency" else qs
    if filters.unrouted is not None:
        if table == "ledger":
            qs = qs.filter(alias="", upstream_model="", requested_model=filters.unrouted)
        elif table == "usage":
            qs = qs.filter(unrouted_model=filters.unrouted)
        else:
            qs = qs.none()
    return qs


def rows(filters: Filters) -> QuerySet[LedgerEntry]:
    """The ledger rows behind a view."""
    qs = LedgerEntry.objects.filter(started_at__gte=filters.start, started_at__lt=filters.end)
    return _narrow(qs, filters, "ledger")


def periods(start: datetime, end: datetime, hourly: bool = False) -> Q:
    """The rollup rows that cover [start, end) once: daily rows for the whole UTC days, hourly rows for the hours
    before the first and after the last (or hourly rows only)."""
    first_day = _ceil_hour(start)
    if first_day.hour:
        first_day = first_day.replace(hour=0) + timedelta(days=1)
    last_day = end.replace(hour=0)
    if hourly or first_day >= last_day:
        return Q(hours=Period.HOUR, period__gte=start, period__lt=end)
    cover = Q(hours=Period.DAY, period__gte=first_day, period__lt=last_day)
    if start < first_day:
        cover |= Q(hours=Period.HOUR, period__gte=start, period__lt=first_day)
    if last_day < end:
        cover |= Q(hours=Period.HOUR, period__gte=last_day, period__lt=end)
    return cover


def rollup_rows(filters: Filters, hourly: bool = False) -> QuerySet[UsageRollup]:
    return _narrow(UsageRollup.objects.filter(periods(filters.start, filters.end, hourly)), filters, "usage")


def _source_rows(filters: Filters, source: Source) -> QuerySet[Any]:
    return rollup_rows(filters) if source is ROLLUP else rows(filters)


# ---------------------------------------------------------------------------------------------------------------
# Figures


@dataclass
class Figures:
    requests: int = 0
    errors: int = 0
    cancelled: int = 0
    no_usage: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    cost_usd: Decimal = Decimal(0)
    unpriced: int = 0

    @classmethod
    def of(cls, values: Mapping[str, Any]) -> Figures:
        figures = cls()
        for name in FIGURES:
            value = values.get(f"n_{name}")
            if value is None:
                continue
            if name == "cost_usd":
                figures.cost_usd = Decimal(value).quantize(Decimal("0.00000001"))
            else:
                setattr(figures, name, int(value))
        return figures

    def __add__(self, other: Figures) -> Figures:
        return Figures(**{name: getattr(self, name) + getattr(other, name) for name in FIGURES})

    @property
    def all_input_tokens(self) -> int:
        """Everything the model read: fresh input, cache reads and cache writes."""
        return self.input_tokens + self.cache_read_tokens + self.cache_write_tokens

    @property
    def cache_hit_share(self) -> float | None:
        """Cache reads over all input tokens; None when there was no input."""
        total = self.all_input_tokens
        return self.cache_read_tokens / total if total else None

    @property
    def priced(self) -> int:
        return self.requests - self.unpriced

    @property
    def error_share(self) -> float | None:
        return self.errors / self.requests if self.requests else None


def totals(filters: Filters, source: Source = ROLLUP) -> Figures:
    return Figures.of(_source_rows(filters, source).aggregate(**_aggregates(source)))


def bucket_starts(filters: Filters) -> list[datetime]:
    """Every bucket the range touches, in order (empty ones included, so that charts show gaps)."""
    starts: list[datetime] = []
    if filters.bucket == "hour":
        moment = filters.start
        while moment < filters.end:
            starts.append(moment)
            moment += timedelta(hours=1)
    elif filters.bucket == "day":
        moment = filters.start.replace(hour=0)
        while moment < filters.end:
            starts.append(moment)
            moment += timedelta(days=1)
    else:
        moment = filters.start.replace(day=1, hour=0)
        while moment < filters.end:
            starts.append(moment)
            moment = (moment + timedelta(days=32)).replace(day=1)
    return starts


_TRUNC = {"hour": TruncHour, "day": TruncDay, "month": TruncMonth}


def bucket_of(moment: datetime, bucket: str) -> datetime:
    """The start of the hour, day or month a moment falls in (UTC)."""
    moment = moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    if bucket == "hour":
        return moment
    if bucket == "day":
        return moment.replace(hour=0)
    return moment.replace(day=1, hour=0)


def series(filters: Filters, source: Source = ROLLUP) -> list[tuple[datetime, Figures]]:
    """The figures per hour, day or month, every bucket of the range included.

    From the rollups the database groups by their period column (no date function per row: on SQLite those are
    Python functions) and the periods are folded into days or months here; the raw ledger is truncated in SQL.
    """
    found: dict[datetime, Figures] = {}
    if source is ROLLUP:
        by_period = (
            rollup_rows(filters, hourly=filters.bucket == "hour")
            .values("period")
            .order_by()
            .annotate(**_aggregates(source))
        )
        for row in by_period:
            start = bucket_of(_as_utc(row["period"]), filters.bucket)
            figures = Figures.of(row)
            found[start] = found[start] + figures if start in found else figures
    else:
        truncated = rows(filters).values(bucket=_TRUNC[filters.bucket]("started_at", tzinfo=UTC))
        for bucketed in truncated.order_by("bucket").annotate(**_aggregates(source)):
            found[_as_utc(bucketed["bucket"])] = Figures.of(bucketed)
    return [(start, found.get(start, Figures())) for start in bucket_starts(filters)]


def _as_utc(moment: datetime | date) -> datetime:
    if not isinstance(moment, datetime):  # TruncDay on some backends
        return datetime(moment.year, moment.month, moment.day, tzinfo=UTC)
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


# ---------------------------------------------------------------------------------------------------------------
# Breakdowns

DIMENSIONS: dict[str, str] = {
    "user": "By user",
    "key": "By key",
    "alias": "By alias",
    "upstream_model": "By upstream model",
    "client_program": "By client program",
}
_COLUMN = {"user": "user_id", "key": "key_id"}


@dataclass
class BreakdownRow:
    value: Any
    label: str
    figures: Figures
    filter_params: dict[str, str] = field(default_factory=dict)
    # The model the client asked for, on the row of exchanges that matched no route (alias and model breakdowns).
    unrouted: str = ""


@dataclass
class Breakdown:
    dimension: str
    title: str
    rows: list[BreakdownRow]
    more: int = 0


UNROUTED = "unrouted_model"
# The dimensions whose empty value is split by the model asked for: an exchange that matched no route has no
# alias and no upstream model, but the client did ask for something.
_SPLIT_UNROUTED = ("alias", "upstream_model")


def unrouted_expression() -> Case:
    """On ledger rows: the requested model when the row names no alias and no upstream model, else ""."""
    return Case(
        When(Q(alias="") & Q(upstream_model=""), then=F("requested_model")),
        default=Value(""),
        output_field=CharField(),
    )


def unrouted_label(name: str) -> str:
    return f"{name} (no route)"


def breakdown(filters: Filters, dimension: str, source: Source = ROLLUP, limit: int = BREAKDOWN_LIMIT) -> Breakdown:
    """The figures per user, key, alias, upstream model or client program, the busiest first."""
    column = _COLUMN.get(dimension, dimension)
    qs = _source_rows(filters, source)
    columns = [column]
    if dimension in _SPLIT_UNROUTED:
        columns.append(UNROUTED)
        if source is RAW:
            qs = qs.annotate(**{UNROUTED: unrouted_expression()})
    grouped = qs.values(*columns).order_by().annotate(**_aggregates(source))
    found = [
        (row[column] or None, "" if row[column] else (row.get(UNROUTED) or ""), Figures.of(row)) for row in grouped
    ]
    labels = _labels(dimension, [value for value, _, _ in found])
    result = []
    for value, unrouted, figures in found:
        params: dict[str, str] = {}
        if unrouted:
            params = {"unrouted": unrouted}
        elif value is not None:
            params = {FILTER_PARAM.get(dimension, dimension): str(value)}
        label = unrouted_label(unrouted) if unrouted else labels.get(value, _unnamed(dimension, value))
        result.append(BreakdownRow(value, label, figures, params, unrouted))
    result.sort(key=sort_key(filters.sort or DEFAULT_SORT))
    return Breakdown(dimension, DIMENSIONS[dimension], result[:limit], more=max(0, len(result) - limit))


FILTER_PARAM = {"user": "user", "key": "key"}
_SORT_FIGURE = {
    "requests": "requests",
    "errors": "errors",
    "input": "input_tokens",
    "output": "output_tokens",
    "cache_read": "cache_read_tokens",
    "cache_write": "cache_write_tokens",
}


def sort_key(sort: str) -> Callable[[BreakdownRow], tuple[Any, ...]]:
    """Largest first (ties: more requests, then the name), or the name A to Z. Unpriced rows sort as $0."""

    def key(row: BreakdownRow) -> tuple[Any, ...]:
        figures = row.figures
        name = row.label.casefold()
        if sort == "name":
            return (name,)
        value = figures.cost_usd if sort == "cost" else Decimal(getattr(figures, _SORT_FIGURE[sort]))
        return (-value, -figures.requests, name)

    return key


def _unnamed(dimension: str, value: Any) -> str:
    if value is None or value == "":
        return {
            "user": "(no user)",
            "key": "(no key)",
            "client_program": "(unknown client)",
            "alias": "(no alias)",
        }.get(dimension, "(none)")
    if dimension in ("user", "key"):
        return f"#{value} (deleted)"
    return str(value)


def _labels(dimension: str, values: Iterable[Any]) -> dict[Any, str]:
    ids = [value for value in values if value is not None]
    if dimension == "user" and ids:
        names = get_user_model().objects.filter(pk__in=ids).values_list("pk", "username")
        return {pk: str(name) for pk, name in names}
    if dimension == "key" and ids:
        # The key model belongs to routing; reached through the ledger's foreign key (usage never imports routing).
        key_model = LedgerEntry._meta.get_field("key").related_model
        assert not isinstance(key_model, str) and key_model is not None
        keys = key_model._default_manager.filter(pk__in=ids).values_list("pk", "prefix", "label", "user__username")
        return {pk: key_label(prefix, label, username) for pk, prefix, label, username in keys}
    return {}


def key_label(prefix: str | None, label: str | None, username: str | None = None) -> str:
    text = f"{prefix}…" if prefix else "(no key)"
    if label:
        text += f" {label}"
    if username:
        text += f" ({username})"
    return text


def users_with_usage(user_ids: set[int]) -> list[tuple[int, str]]:
    """The users a filter can offer: everyone with a proxy key or a ledger row (a team, so a few dozen)."""
    users = get_user_model().objects.filter(Q(pk__in=user_ids) | Q(proxy_keys__isnull=False)).distinct()
    return [(pk, str(name)) for pk, name in users.order_by("username").values_list("pk", "username")]


SEEN_COLUMNS = ("user_id", "key_id", "alias", "upstream", "upstream_model", "client_program")


def _seen() -> dict[str, list[Any]]:
    """The values each filterable column of the daily rollups has taken, sorted: one pass over the daily rows
    for all six (their distinct combinations, a few thousand at most). Measured over 300 days of a busy team
    (48,000 daily rows among 650,000), a DISTINCT per column cost six scans: 330 ms of a 420 ms page."""
    combinations = UsageRollup.objects.filter(hours=Period.DAY).order_by().values_list(*SEEN_COLUMNS).distinct()
    seen: dict[str, set[Any]] = {column: set() for column in SEEN_COLUMNS}
    for combination in combinations:
        for column, value in zip(SEEN_COLUMNS, combination, strict=True):
            if value:
                seen[column].add(value)
    return {column: sorted(values) for column, values in seen.items()}


@dataclass
class FilterChoices:
    users: list[tuple[int, str]]
    keys: list[tuple[int, str]]
    groups: list[tuple[int, str]]
    aliases: list[str]
    upstreams: list[str]
    upstream_models: list[str]
    client_programs: list[str]
    outcomes: list[tuple[str, str]]


def filter_choices(filters: Filters) -> FilterChoices:
    """What each filter offers: the values seen in the rollups (a chosen value is kept even when unseen)."""

    def keep(values: list[Any], chosen: Any) -> list[Any]:
        return values if chosen is None or chosen in values else [*values, chosen]

    seen = _seen()
    key_ids = keep(seen["key_id"], filters.key_id)
    key_labels = _labels("key", key_ids)
    keys = sorted(((pk, key_labels.get(pk, _unnamed("key", pk))) for pk in key_ids), key=lambda item: item[1])
    group_model = get_user_model()._meta.get_field("groups").related_model
    assert not isinstance(group_model, str) and group_model is not None
    groups = [(pk, str(name)) for pk, name in group_model._default_manager.order_by("name").values_list("pk", "name")]
    return FilterChoices(
        users=users_with_usage(set(seen["user_id"])),
        keys=keys,
        groups=groups,
        aliases=keep(seen["alias"], filters.alias),
        upstreams=keep(seen["upstream"], filters.upstream),
        upstream_models=keep(seen["upstream_model"], filters.upstream_model),
        client_programs=keep(seen["client_program"], filters.client_program),
        outcomes=[(str(value), str(label)) for value, label in Outcome.choices],
    )


# ---------------------------------------------------------------------------------------------------------------
# Speed percentiles

SPEED_COLUMNS: dict[int, str] = {
    Metric.DURATION: "duration_ms",
    Metric.TTFT: "ttft_ms",
    Metric.TOKENS_PER_SECOND: "tokens_per_second",
}


@dataclass
class Speed:
    """The speed of the exchanges that worked (`count`); `failed` were errors, left out of the percentiles."""

    upstream_model: str  # empty for the exchanges that matched no route: `unrouted` names what they asked for
    count: int
    # metric -> (p50, p90, p99), None where the metric has no values; plus how many values each had.
    percentiles: dict[int, tuple[float, ...] | None]
    counts: dict[int, int]
    approximate: bool
    failed: int = 0
    unrouted: str = ""

    @property
    def label(self) -> str:
        if self.upstream_model:
            return self.upstream_model
        return unrouted_label(self.unrouted) if self.unrouted else "(none)"


def exact_percentiles(values: Sequence[float], quantiles: Sequence[float] = PERCENTILES) -> tuple[float, ...] | None:
    """Linear interpolation between the nearest ranks (PostgreSQL's percentile_cont, NumPy's default)."""
    if not values:
        return None
    ordered = sorted(values)
    last = len(ordered) - 1
    result = []
    for q in quantiles:
        position = q * last
        low = math.floor(position)
        high = min(low + 1, last)
        result.append(ordered[low] + (ordered[high] - ordered[low]) * (position - low))
    return tuple(result)


def histogram_percentiles(
    counts: Sequence[int], metric: int, quantiles: Sequence[float] = PERCENTILES
) -> tuple[float, ...] | None:
    """Percentiles from bucket counts: the rank's bucket, then a geometric interpolation inside it."""
    total = sum(counts)
    if not total:
        return None
    result = []
    for q in quantiles:
        rank = q * (total - 1)  # the same rank the exact definition interpolates at
        seen = 0
        for index, count in enumerate(counts):
            if count and seen + count > rank:
                low, high = bucket_bounds(index, metric)
                fraction = (rank - seen + 0.5) / count
                if index == 0:
                    value = high * fraction
                elif math.isinf(high):
                    value = low
                else:
                    value = low * (high / low) ** fraction
                result.append(value)
                break
            seen += count
    return tuple(result)


def speed(filters: Filters, exact_limit: int | None = None, requests: int | None = None) -> list[Speed]:
    """p50, p90, p99 of duration, time to first token and tokens/s per upstream model (see the module docstring)."""
    if exact_limit is None:
        exact_limit = EXACT_PERCENTILE_ROWS
    if requests is None:
        requests = totals(filters).requests
    if requests <= exact_limit and not _pruned(filters):
        return _exact_speed(filters)
    return _histogram_speed(filters)


def _pruned(filters: Filters) -> bool:
    """Whether the range reaches back past the ledger's retention: its raw rows may be gone, its rollups are not."""
    days = settings.LEDGER_RETENTION_DAYS
    return days > 0 and filters.start < datetime.now(UTC) - timedelta(days=days)


def _exact_speed(filters: Filters) -> list[Speed]:
    values: dict[tuple[str, str], dict[int, list[float]]] = defaultdict(
        lambda: {metric: [] for metric in SPEED_COLUMNS}
    )
    counts: dict[tuple[str, str], int] = defaultdict(int)
    failed: dict[tuple[str, str], int] = defaultdict(int)
    columns = ["upstream_model", UNROUTED, "outcome", *SPEED_COLUMNS.values()]
    found = rows(filters).annotate(**{UNROUTED: unrouted_expression()}).order_by().values_list(*columns)
    for model, unrouted, outcome, *measured in found.iterator(chunk_size=5000):
        group = (model, unrouted)
        per_metric = values[group]
        if outcome != Outcome.OK:
            failed[group] += outcome not in NOT_ERRORS
            continue
        counts[group] += 1
        for metric, value in zip(SPEED_COLUMNS, measured, strict=True):
            if value is not None:
                per_metric[metric].append(value)
    result = [
        Speed(
            upstream_model=model,
            count=counts[(model, unrouted)],
            percentiles={metric: exact_percentiles(found) for metric, found in per_metric.items()},
            counts={metric: len(found) for metric, found in per_metric.items()},
            approximate=False,
            failed=failed[(model, unrouted)],
            unrouted=unrouted,
        )
        for (model, unrouted), per_metric in values.items()
    ]
    return sorted(result, key=lambda s: (-s.count, s.upstream_model, s.unrouted))


def _histogram_speed(filters: Filters) -> list[Speed]:
    qs = _narrow(LatencyRollup.objects.filter(periods(filters.start, filters.end)), filters, "latency")
    grouped = (
        qs.values("upstream_model", "metric")
        .order_by()
        .annotate(**{f"n_{column}": Sum(column) for column in BUCKET_COLUMNS})
    )
    histograms: dict[str, dict[int, list[int]]] = defaultdict(dict)
    for row in grouped:
        found: dict[str, Any] = dict(row)
        histograms[found["upstream_model"]][found["metric"]] = [int(found[f"n_{c}"] or 0) for c in BUCKET_COLUMNS]
    # Exchanges that matched no route never worked, so they have no histogram, only a count of failures.
    model_counts: dict[tuple[str, str], tuple[int, int]] = {
        (model, unrouted): (int(requests or 0) - int(errors or 0) - int(cancelled or 0), int(errors or 0))
        for model, unrouted, requests, errors, cancelled in rollup_rows(filters)
        .values("upstream_model", UNROUTED)
        .order_by()
        .annotate(n=Sum("requests"), e=Sum("errors"), c=Sum("cancelled"))
        .values_list("upstream_model", UNROUTED, "n", "e", "c")
    }
    result = []
    for model, unrouted in {(model, "") for model in histograms} | set(model_counts):
        per_metric = histograms.get(model, {}) if not unrouted else {}
        result.append(
            Speed(
                upstream_model=model,
                unrouted=unrouted,
                count=model_counts.get((model, unrouted), (0, 0))[0],
                percentiles={
                    metric: histogram_percentiles(per_metric.get(metric, [0] * LATENCY_BUCKETS), metric)
                    for metric in SPEED_COLUMNS
                },
                counts={metric: sum(per_metric.get(metric, [])) for metric in SPEED_COLUMNS},
                approximate=True,
                failed=model_counts.get((model, unrouted), (0, 0))[1],
            )
        )
    return sorted(result, key=lambda s: (-s.count, s.upstream_model, s.unrouted))


# ---------------------------------------------------------------------------------------------------------------
# Recent exchanges and the export


def recent(filters: Filters, limit: int = 50) -> list[LedgerEntry]:
    return list(
        rows(filters)
        .select_related("user", "key")
        .only(
            "id",
            "started_at",
            "user__username",
            "key__prefix",
            "key__label",
            "client_program",
            "requested_model",
            "alias",
            "upstream",
            "upstream_model",
            "stream",
            "outcome",
            "status",
            "error_type",
            "error_message",
            *_TOKENS,
            "cost_usd",
            "duration_ms",
            "ttft_ms",
            "tokens_per_second",
        )
        .order_by("-started_at", "-id")[:limit]
    )


# The export's columns: every ledger field (the user and key as names, never the key's hash, which the ledger
# does not hold anyway), with the field's verbose name as the header.
def export_columns() -> list[tuple[str, str]]:
    columns: list[tuple[str, str]] = []
    for model_field in LedgerEntry._meta.concrete_fields:
        name = model_field.name
        if name == "user":
            columns.append(("user__username", "user"))
        elif name == "key":
            columns += [("key__prefix", "key prefix"), ("key__label", "key label")]
        else:
            columns.append((name, str(model_field.verbose_name)))
    return columns


def export_rows(filters: Filters) -> QuerySet[LedgerEntry, tuple[Any, ...]]:
    return rows(filters).order_by("started_at", "id").values_list(*[name for name, _ in export_columns()])


# --- fallbacks (routing.dataplane.failover) ----------------------------------------------------------------------

# The most fallback rows read for the failed-target counts (the counts per alias and upstream are exact).
FALLBACK_SAMPLE_ROWS = 2000


@dataclass(frozen=True)
class FallbackRow:
    alias: str
    upstream: str
    exchanges: int
    last: datetime
    failed: list[tuple[str, int]]  # the targets that failed before it served, most often first


def fallbacks(filters: Filters) -> list[FallbackRow]:
    """Exchanges another target than the alias's first choice served, per alias and serving upstream, with the
    targets that failed before (from the latest FALLBACK_SAMPLE_ROWS of them)."""
    fell_back = rows(filters).filter(fallback=True)
    groups = list(
        fell_back.values("alias", "upstream").annotate(exchanges=Count("id"), last=Max("started_at")).order_by()
    )
    failed: dict[tuple[str, str], Counter[str]] = {}
    sample = fell_back.order_by("-started_at").values_list("alias", "upstream", "failed_attempts")
    for alias, upstream, attempts in sample[:FALLBACK_SAMPLE_ROWS]:
        counter = failed.setdefault((alias, upstream), Counter())
        counter.update(str(item.get("target", "?")) for item in attempts or () if isinstance(item, dict))
    found = [
        FallbackRow(
            g["alias"],
            g["upstream"],
            g["exchanges"],
            g["last"],
            failed.get((g["alias"], g["upstream"]), Counter()).most_common(5),
        )
        for g in groups
    ]
    return sorted(found, key=lambda row: (-row.exchanges, row.alias, row.upstream))


# --- errors ------------------------------------------------------------------------------------------------------

ERROR_GROUPS_SHOWN = 30


@dataclass(frozen=True)
class ErrorRow:
    upstream: str
    alias: str
    status: int
    error_type: str
    exchanges: int
    last: datetime
    message: str  # the latest one's


def errors(filters: Filters) -> list[ErrorRow]:
    """Failed exchanges (cancellations are not failures) per upstream, alias, status and error type, with the
    latest message of each: what an operator reads first when something breaks."""
    failed = rows(filters).exclude(outcome__in=sorted(NOT_ERRORS))  # the order of index ledger_failed_started
    groups = list(
        failed.values("upstream", "alias", "status", "error_type")
        .annotate(exchanges=Count("id"), last=Max("started_at"))
        .order_by("-exchanges", "-last")[:ERROR_GROUPS_SHOWN]
    )
    if not groups:
        return []
    latest = failed.filter(started_at__in={g["last"] for g in groups}).values_list(
        "upstream", "alias", "status", "error_type", "started_at", "error_message"
    )
    messages = {(u, a, s, t, at): m for u, a, s, t, at, m in latest}
    return [
        ErrorRow(
            g["upstream"],
            g["alias"],
            g["status"],
            g["error_type"],
            g["exchanges"],
            g["last"],
            messages.get((g["upstream"], g["alias"], g["status"], g["error_type"], g["last"]), ""),
        )
        for g in groups
    ]


# --- coding-agent sessions ------------------------------------------------------------------------------------

SESSIONS_SHOWN = 100


@dataclass(frozen=True)
class SessionRow:
    session: str
    username: str
    program: str
    exchanges: int
    errors: int
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cost: Decimal | None
    first: datetime
    last: datetime

    @property
    def duration(self) -> timedelta:
        return self.last - self.first


def sessions(filters: Filters, user_id: int | None = None) -> list[SessionRow]:
    """Spend, tokens, exchanges and duration per coding-agent session (the client's own session id: Claude Code's
    session, Codex's, …), most recent first; `user_id`: one person's only."""
    qs = rows(filters).exclude(client_session="")
    if user_id is not None:
        qs = qs.filter(user_id=user_id)
    grouped = (
        qs.values("client_session", "user__username", "client_program")
        .annotate(
            exchanges=Count("id"),
            errors=Count("id", filter=~Q(outcome__in=NOT_ERRORS)),
            input_tokens=Sum("input_tokens"),
            output_tokens=Sum("output_tokens"),
            cache_read_tokens=Sum("cache_read_tokens"),
            cost=Sum("cost_usd"),
            first=Min("started_at"),
            last=Max("finished_at"),
        )
        .order_by("-last")[:SESSIONS_SHOWN]
    )
    return [
        SessionRow(
            g["client_session"],
            g["user__username"] or "",
            g["client_program"],
            g["exchanges"],
            g["errors"],
            g["input_tokens"] or 0,
            g["output_tokens"] or 0,
            g["cache_read_tokens"] or 0,
            g["cost"],
            g["first"],
            g["last"],
        )
        for g in grouped
    ]
