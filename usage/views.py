"""Pages for people (not the data plane): the landing redirect, the staff dashboard and its CSV export."""

from __future__ import annotations

import csv
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from functools import wraps
from typing import Any

from asgiref.sync import sync_to_async
from django.contrib.auth.decorators import login_required
from django.core.handlers.asgi import ASGIRequest
from django.http import HttpRequest, HttpResponse, HttpResponseBase, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.urls import NoReverseMatch, reverse

from routing.access.overview import BudgetRow, BudgetState, every_budget
from usage import charts, queries
from usage.formatting import BLANK, fmt_int, fmt_usd
from usage.models import LedgerEntry
from usage.queries import Figures, Filters

View = Callable[..., HttpResponseBase]


@login_required
def home(request: HttpRequest) -> HttpResponse:
    """Staff land on the dashboard, everyone else on their own usage and keys."""
    return redirect("/dashboard/" if request.user.is_staff else "/me/")


def staff_required(view: View) -> View:
    """Anonymous visitors go to the login page; signed-in people who are not staff get the 403 page, with a way
    back to their own page (rendered here rather than raised: an expected refusal logs no traceback)."""

    @wraps(view)
    @login_required
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        if not request.user.is_staff:
            return forbidden(request, "This page is for staff.")
        return view(request, *args, **kwargs)

    return wrapped


def forbidden(request: HttpRequest, reason: str = "") -> HttpResponse:
    return render(request, "403.html", {"reason": reason}, status=403)


def permission_denied(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """handler403: any other refusal gets the same page."""
    return forbidden(request, str(exception or ""))


# ---------------------------------------------------------------------------------------------------------------
# Formatting (numbers are formatted here, so that templates only place them)


def fmt_compact(value: float) -> str:
    for limit, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= limit:
            return f"{value / limit:.3g}{suffix}"
    return f"{value:g}" if value != int(value) else f"{int(value)}"


def fmt_usd_axis(value: float) -> str:
    """A cost axis's ticks: short enough for the axis's margin ($25k, not a clipped $25,000.00)."""
    if value >= 1000:
        return f"${fmt_compact(value)}"
    return f"${value:,.2f}" if value >= 0.1 else f"${value:.3g}"


def fmt_ms(value: float | None) -> str:
    if value is None:
        return BLANK
    if value < 1000:
        return f"{value:.0f} ms"
    if value < 60_000:
        return f"{value / 1000:.2f} s"
    minutes, seconds = divmod(value / 1000, 60)
    return f"{minutes:.0f} min {seconds:.0f} s"


def fmt_tps(value: float | None) -> str:
    return BLANK if value is None else f"{value:.1f} tok/s"


def fmt_share(value: float | None) -> str:
    return BLANK if value is None else f"{value * 100:.1f} %"


def cost_text(figures: Figures) -> str:
    """A cost is never shown as $0 when nothing in it had a price."""
    if figures.requests and not figures.priced:
        return "unpriced"
    return fmt_usd(figures.cost_usd)


def _figure_cells(figures: Figures) -> dict[str, Any]:
    return {
        "requests": fmt_int(figures.requests),
        "errors": fmt_int(figures.errors),
        "input": fmt_compact(figures.input_tokens),
        "output": fmt_compact(figures.output_tokens),
        "cache_read": fmt_compact(figures.cache_read_tokens),
        "cache_write": fmt_compact(figures.cache_write_tokens),
        "cache_share": fmt_share(figures.cache_hit_share),
        "error_share": fmt_share(figures.error_share) if figures.errors else "",
        "cost": cost_text(figures),
        "unpriced": figures.unpriced,
        "figures": figures,
    }


# ---------------------------------------------------------------------------------------------------------------
# Charts


def _bucket_labels(filters: Filters, starts: list[datetime]) -> tuple[list[str], list[str]]:
    """Short labels under the bars, and long ones for the tooltips (UTC, as the buckets are)."""
    short: list[str] = []
    long: list[str] = []
    for start in starts:
        if filters.bucket == "hour":
            short.append(f"{start:%H:00}\n{start:%b %d}")  # the date: a second line where it changes (charts)
            end = start + timedelta(hours=1)
            long.append(f"{start:%a %Y-%m-%d %H:00} to {end:%H:00} UTC")
        elif filters.bucket == "day":
            short.append(start.strftime("%b %d"))
            long.append(start.strftime("%a %Y-%m-%d"))
        else:
            short.append(start.strftime("%b %Y"))
            long.append(start.strftime("%B %Y"))
    return short, long


def _charts(filters: Filters, series: list[tuple[datetime, Figures]]) -> dict[str, Any]:
    starts = [start for start, _ in series]
    short, long = _bucket_labels(filters, starts)
    figures = [f for _, f in series]
    cost_texts = [
        (cost_text(f) + (f" + {f.unpriced:,} unpriced" if f.unpriced and f.priced else ""))
        if f.requests
        else "no exchanges"
        for f in figures
    ]
    return {
        "requests": charts.bar_chart(
            "chart-requests",
            "Requests",
            short,
            [charts.Series("requests", [f.requests for f in figures])],
            fmt=fmt_compact,
            tooltips=long,
        ),
        "errors": charts.bar_chart(
            "chart-errors",
            "Errors",
            short,
            [charts.Series("errors", [f.errors for f in figures], css="bad")],
            fmt=fmt_compact,
            tooltips=long,
        ),
        "tokens": charts.bar_chart(
            "chart-tokens",
            "Tokens",
            short,
            [
                charts.Series("input", [f.input_tokens for f in figures]),
                charts.Series("cache read", [f.cache_read_tokens for f in figures]),
                charts.Series("cache write", [f.cache_write_tokens for f in figures]),
                charts.Series("output", [f.output_tokens for f in figures]),
            ],
            fmt=fmt_compact,
            tooltips=long,
        ),
        "cost": charts.line_chart(
            "chart-cost",
            "Cost (USD)",
            short,
            [float(f.cost_usd) for f in figures],
            fmt=fmt_usd_axis,
            tooltips=long,
            value_texts=cost_texts,
            empty_text="Nothing priced in this range" if any(f.requests for f in figures) else "",
        ),
        "buckets": len(starts),
    }


# ---------------------------------------------------------------------------------------------------------------
# The dashboard


def admin_change_url(entry_id: int) -> str:
    try:
        return reverse("admin:usage_ledgerentry_change", args=[entry_id])
    except NoReverseMatch:
        return f"/admin/usage/ledgerentry/{entry_id}/change/"


def _speed_rows(speeds: list[queries.Speed]) -> list[dict[str, Any]]:
    rows = []
    for item in speeds:
        cells: dict[str, list[str]] = {}
        for metric, name in queries.SPEED_COLUMNS.items():
            found = item.percentiles.get(metric)
            fmt = fmt_tps if name == "tokens_per_second" else fmt_ms
            cells[name] = [fmt(value) for value in found] if found else [BLANK] * len(queries.PERCENTILES)
        rows.append(
            {
                "model": item.label,
                "count": fmt_int(item.count),
                "failed": fmt_int(item.failed),
                "cells": cells,
            }
        )
    return rows


@staff_required
def dashboard(request: HttpRequest) -> HttpResponse:
    filters = Filters.from_params(request.GET)
    figures = queries.totals(filters)
    series = queries.series(filters)
    speeds = queries.speed(filters, requests=figures.requests)
    recent = queries.recent(filters)
    choices = queries.filter_choices(filters)
    context = {
        "filters": filters,
        "presets": [
            (
                key,
                label,
                queries.PRESET_SHORT.get(key, key),
                filters.querystring(range=key, **{"from": None, "to": None}),
            )
            for key, label in queries.PRESETS.items()
        ],
        "bucket_choices": [("", "auto"), *[(b, b) for b in queries.BUCKETS]],
        "choices": choices,
        "shown_filters": _shown_filters(filters, choices),
        "range_text": f"{filters.start:%Y-%m-%d %H:%M} to {filters.end:%Y-%m-%d %H:%M} UTC",
        "from_value": filters.start.strftime("%Y-%m-%dT%H:%M"),
        "to_value": filters.end.strftime("%Y-%m-%dT%H:%M"),
        "figures": figures,
        "totals": _figure_cells(figures),
        "charts": _charts(filters, series),
        "breakdowns": [
            (b, [(row, _figure_cells(row.figures), filters.querystring(**row.filter_params)) for row in b.rows])
            for b in (queries.breakdown(filters, dimension) for dimension in queries.DIMENSIONS)
        ],
        "sort": filters.sort or queries.DEFAULT_SORT,
        "sort_headers": [
            (key, label, filters.querystring(sort=None if key == queries.DEFAULT_SORT else key))
            for key, label in queries.SORTS.items()
        ],
        "speeds": _speed_rows(speeds),
        "speed_approximate": any(s.approximate for s in speeds),
        "percentile_labels": [f"p{round(p * 100)}" for p in queries.PERCENTILES],
        "recent": [_recent_row(entry) for entry in recent],
        "errors": [
            (row, filters.querystring(upstream=row.upstream or None, alias=row.alias or None, outcome=None))
            for row in queries.errors(filters)
        ],
        "fallbacks": [
            (row, filters.querystring(alias=row.alias or None, upstream=row.upstream))
            for row in queries.fallbacks(filters)
        ],
        "budgets": _budget_rows(filters),
        "budget_sort": filters.budget_sort or queries.DEFAULT_BUDGET_SORT,
        "budget_sort_headers": [
            (key, label, filters.querystring(budget_sort=None if key == queries.DEFAULT_BUDGET_SORT else key))
            for key, label in queries.BUDGET_SORTS.items()
        ],
        "export_query": filters.querystring(),
        "clear_query": filters.querystring(**filters.cleared()),
        "exact_limit": fmt_int(queries.EXACT_PERCENTILE_ROWS),
    }
    return render(request, "usage/dashboard.html", context)


# ---------------------------------------------------------------------------------------------------------------
# Budgets: each key, user and group that has one, against its spend this period (routing.access.overview counts
# it as the hot path does)

BUDGET_STATE_WORDS = {
    BudgetState.OK: "ok",
    BudgetState.WARN: "over 80 %",
    BudgetState.EXHAUSTED: "exhausted",
}


def _budget_sort_key(sort: str) -> Callable[[BudgetRow], tuple[Any, ...]]:
    """The name A to Z, the soonest reset first (budgets that never reset last), else largest first."""

    def key(row: BudgetRow) -> tuple[Any, ...]:
        name = (row.name.casefold(), row.scope)
        if sort == "name":
            return name
        if sort == "resets":
            return (row.resets_at is None, row.resets_at or datetime.max.replace(tzinfo=UTC), *name)
        value = {"spent": row.spent, "amount": row.amount}.get(sort, row.share)
        return (-value, -row.share, *name)

    return key


def _budget_view(filters: Filters, row: BudgetRow) -> str:
    """The dashboard narrowed to the budget's key, user or group over its current period (what it counts)."""
    own = {**filters.cleared(), row.scope: str(row.subject_id)}
    if row.starts_at is None or row.resets_at is None:  # no period: all time is more than a range shows
        return filters.querystring(**own)
    if (row.starts_at, row.resets_at) == Filters.preset_range("month", row.starts_at):
        return filters.querystring(**own, range="month", **{"from": None, "to": None})
    period = {"from": row.starts_at.strftime("%Y-%m-%dT%H:%M"), "to": row.resets_at.strftime("%Y-%m-%dT%H:%M")}
    return filters.querystring(**own, range=None, **period)


def _budget_rows(filters: Filters) -> list[dict[str, Any]]:
    rows = sorted(
        every_budget(datetime.now(UTC)), key=_budget_sort_key(filters.budget_sort or queries.DEFAULT_BUDGET_SORT)
    )
    return [
        {
            "row": row,
            "query": _budget_view(filters, row),
            "amount": fmt_usd(row.amount),
            "spent": fmt_usd(row.spent),
            "percent": f"{row.percent_spent:,} %",
            "state": BUDGET_STATE_WORDS[row.state],
        }
        for row in rows
    ]


def _shown_filters(filters: Filters, choices: queries.FilterChoices) -> list[tuple[str, str]]:
    """The dimension filters in force, in words, for the line under the title."""
    shown: list[tuple[str, str]] = []
    for name, options, chosen in (
        ("user", dict(choices.users), filters.user_id),
        ("key", dict(choices.keys), filters.key_id),
        ("group", dict(choices.groups), filters.group_id),
    ):
        if chosen is not None:
            shown.append((name, options.get(chosen, f"#{chosen}")))
    for name, text in (
        ("outcome", dict(choices.outcomes).get(filters.outcome or "", filters.outcome)),
        ("alias", filters.alias),
        ("upstream", filters.upstream),
        ("upstream model", filters.upstream_model),
        ("client", filters.client_program),
        ("asked for, no route", filters.unrouted),
    ):
        if text is not None:
            shown.append((name, text))
    return shown


def _recent_row(entry: LedgerEntry) -> dict[str, Any]:
    tokens = {
        "input": entry.input_tokens,
        "output": entry.output_tokens,
        "cache_read": entry.cache_read_tokens,
        "cache_write": entry.cache_write_tokens,
    }
    return {
        "entry": entry,
        "url": admin_change_url(entry.pk),
        "user": entry.user.get_username() if entry.user else BLANK,
        "key": queries.key_label(entry.key.prefix, entry.key.label) if entry.key else BLANK,
        "model": entry.upstream_model or entry.requested_model or BLANK,
        "tokens": {name: BLANK if value is None else fmt_int(value) for name, value in tokens.items()},
        "cost": "unpriced" if entry.cost_usd is None else fmt_usd(entry.cost_usd),
        "duration": fmt_ms(entry.duration_ms),
        "ttft": fmt_ms(entry.ttft_ms),
        "tps": fmt_tps(entry.tokens_per_second),
    }


# ---------------------------------------------------------------------------------------------------------------
# CSV export

EXPORT_CHUNK = 2000
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


class _Line:
    """A file-like sink for csv.writer that hands back what was written."""

    def write(self, text: str) -> str:
        return text


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str) and value.startswith(_FORMULA_STARTS):
        return "'" + value  # a spreadsheet must not run a cell it opens as a formula
    return value


def _csv_lines(rows: Iterator[tuple[Any, ...]]) -> Iterator[bytes]:
    writer = csv.writer(_Line())
    yield writer.writerow([header for _, header in queries.export_columns()]).encode()
    chunk: list[str] = []
    for row in rows:
        chunk.append(writer.writerow([_cell(value) for value in row]))
        if len(chunk) == EXPORT_CHUNK:
            yield "".join(chunk).encode()
            chunk = []
    if chunk:
        yield "".join(chunk).encode()


async def _acsv_lines(filters: Filters) -> AsyncIterator[bytes]:
    """The ASGI flavour. Under ASGI Django would consume a synchronous iterator whole before sending it, so the
    synchronous generator is advanced here one chunk at a time, on the request's database thread
    (thread-sensitive), and each chunk is sent as it comes. (QuerySet.aiterator would do this, but for
    values_list it runs the query in the event loop's thread, which Django refuses.)"""
    lines = _csv_lines(queries.export_rows(filters).iterator(chunk_size=EXPORT_CHUNK))  # lazy: no query yet

    def advance() -> bytes | None:
        return next(lines, None)

    while (chunk := await sync_to_async(advance, thread_sensitive=True)()) is not None:
        yield chunk


@staff_required
def export_csv(request: HttpRequest) -> StreamingHttpResponse:
    filters = Filters.from_params(request.GET)
    content: Iterator[bytes] | AsyncIterator[bytes]
    if isinstance(request, ASGIRequest):
        content = _acsv_lines(filters)
    else:
        content = _csv_lines(queries.export_rows(filters).iterator(chunk_size=EXPORT_CHUNK))
    response = StreamingHttpResponse(content, content_type="text/csv; charset=utf-8")
    name = f"ledger-{filters.start:%Y%m%d-%H%M}-{filters.end:%Y%m%d-%H%M}.csv"
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    return response


def _session_rows(found: list[queries.SessionRow]) -> list[dict[str, Any]]:
    return [
        {
            "row": row,
            "cost": fmt_usd(row.cost) if row.cost is not None else "unpriced",
            "duration": fmt_ms(row.duration.total_seconds() * 1000),
        }
        for row in found
    ]


@staff_required
def sessions(request: HttpRequest) -> HttpResponse:
    """Every coding-agent session in the range, for a team lead after a long Claude Code or Codex run."""
    filters = Filters.from_params(request.GET)
    return _sessions_page(request, filters, queries.sessions(filters), mine=False)


@login_required
def my_sessions(request: HttpRequest) -> HttpResponse:
    """The signed-in person's own sessions (linked from /me/)."""
    filters = Filters.from_params(request.GET)
    return _sessions_page(request, filters, queries.sessions(filters, user_id=request.user.pk), mine=True)


def _sessions_page(
    request: HttpRequest, filters: Filters, found: list[queries.SessionRow], *, mine: bool
) -> HttpResponse:
    presets = [
        (label, filters.querystring(range=key, **{"from": None, "to": None})) for key, label in queries.PRESETS.items()
    ]
    context = {"filters": filters, "rows": _session_rows(found), "mine": mine, "presets": presets}
    return render(request, "usage/sessions.html", context)
