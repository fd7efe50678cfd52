"""The ledger (read-only: rows are written by `usage.ledger` alone), the operator's price overrides, and the alerts
sent (read-only: routing.runtime.alerts writes them).

The ledger grows by one row per exchange, so its pages avoid whole-table work: no full result count, no
facet counts, no date hierarchy (a DISTINCT over every row's date), and the alias and upstream filters offer
the names seen in the latest rows instead of a DISTINCT over the whole table.
"""

from __future__ import annotations

import json
from decimal import Decimal
from functools import cached_property
from typing import Any, cast

from django.contrib import admin
from django.core.paginator import Paginator
from django.db.models import Exists, OuterRef, QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from usage.models import Alert, Capture, LedgerEntry, ModelPrice

# How many of the latest rows the alias and upstream filters take their names from.
RECENT_ROWS = 10_000


class _RecentValuesFilter(admin.SimpleListFilter):
    """The values of one name column among the latest rows (any other value still works in the URL)."""

    field_name = ""

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin[Any]) -> list[tuple[str, str]]:
        recent = LedgerEntry.objects.order_by("-started_at").values_list(self.field_name, flat=True)[:RECENT_ROWS]
        values = set(recent) - {""}
        selected = self.value()
        if selected:
            values.add(selected)
        return [(value, value) for value in sorted(values)]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        return queryset if value is None else queryset.filter(**{self.field_name: value})


class AliasFilter(_RecentValuesFilter):
    title = "alias"
    parameter_name = field_name = "alias"


class UpstreamFilter(_RecentValuesFilter):
    title = "upstream"
    parameter_name = field_name = "upstream"


def _ms(value: int | None) -> str:
    if value is None:
        return "-"
    return f"{value} ms" if value < 1000 else f"{value / 1000:.2f} s"


def _compact(count: int) -> str:
    """Below 10,000 in full; above, three significant digits (12.3k, 4.57M): a list column stays narrow."""
    if count < 10_000:
        return f"{count:,}"
    for limit, suffix in ((10**9, "B"), (10**6, "M"), (10**3, "k")):
        if count >= limit:
            return f"{count / limit:.3g}{suffix}"
    return str(count)


def _label(label: str) -> str:
    return f" {label[:24]}…" if len(label) > 25 else f" {label}" if label else ""


def _usd(value: Decimal) -> str:
    return f"${value.normalize():f}"


# --- captures (usage.captures) ----------------------------------------------------------------------------

CAPTURE_PERMISSION = "usage.view_capture"
# The four bodies of a capture, in the order the exchange went, and the headers kept with each.
CAPTURE_PARTS = (
    ("client_request", "Request from the client", "client_request"),
    ("upstream_request", "Request sent upstream", "upstream_request"),
    ("upstream_response", "Answer from the upstream", "upstream_response"),
    ("client_response", "Answer to the client", None),
)


def _pretty(text: str) -> str:
    """A JSON body indented; anything else (an event stream, a body cut at the cap) as it was kept."""
    try:
        return json.dumps(json.loads(text), indent=2, ensure_ascii=False)
    except ValueError:
        return text


def capture_html(capture: Capture) -> SafeString:
    """A capture, read-only: each body pretty-printed with its allow-listed headers and a mark if it was cut."""
    sections = []
    for field, title, headers_key in CAPTURE_PARTS:
        notes = []
        if field == "upstream_request" and capture.upstream_url:
            notes.append(capture.upstream_url)
        if field == "upstream_response" and capture.upstream_status is not None:
            notes.append(f"status {capture.upstream_status}")
        if field == "client_response" and capture.client_status is not None:
            notes.append(f"status {capture.client_status}")
        if field in capture.truncated:
            notes.append("truncated at CAPTURE_MAX_BYTES")
        headers = (capture.headers or {}).get(headers_key or "", {})
        header_lines = format_html_join("", "{}: {}\n", sorted(headers.items())) if headers else ""
        body = getattr(capture, field)
        sections.append(
            format_html(
                '<div class="capture-part" data-part="{}"><h3>{} <span class="quiet">{}</span></h3>'
                '{}<pre class="capture-body">{}</pre></div>',
                field,
                title,
                " · ".join(notes),
                format_html('<pre class="capture-headers quiet">{}</pre>', header_lines) if header_lines else "",
                _pretty(body) if body else "(nothing)",
            )
        )
    return format_html('<div class="capture">{}</div>', format_html_join("", "{}", ((part,) for part in sections)))


class NewestRowsPaginator(Paginator[LedgerEntry]):
    """Counts at most COUNT_CAP rows of the list: a COUNT(*) reads every row it counts, which took 730 ms on a
    10-million-row ledger for the unfiltered list, while the newest COUNT_CAP + 1 rows by the `started_at` index
    take about 10 ms. Past the cap the list says "more than 10,000"; filters narrow it to what one reads."""

    COUNT_CAP = 10_000

    @cached_property
    def count(self) -> int:
        rows = cast(QuerySet[LedgerEntry], self.object_list)  # the admin's queryset
        return rows[: self.COUNT_CAP + 1].count()

    @property
    def capped(self) -> bool:
        return self.count > self.COUNT_CAP

    @property
    def capped_label(self) -> str:
        return f"more than {self.COUNT_CAP:,}"


@admin.register(LedgerEntry)
class LedgerEntryAdmin(admin.ModelAdmin[LedgerEntry]):
    # Few, narrow columns (names folded together, token counts compact) so that outcome, cost and tokens stay in
    # view beside the filter sidebar at a laptop's width; a row's page has everything.
    list_display = ("time", "who", "route", "scenario", "outcome_status", "cost", "tokens", "duration")
    list_filter = (("started_at", admin.DateFieldListFilter), "outcome", "user", "key", AliasFilter, UpstreamFilter)
    list_select_related = ("user", "key")
    search_fields = ("requested_model", "upstream_model", "client_session", "upstream_request_id")
    search_help_text = "Requested or upstream model, client session id, upstream request id."
    show_full_result_count = False
    paginator = NewestRowsPaginator
    show_facets = admin.ShowFacets.NEVER
    readonly_fields = ("cost", "capture")
    fieldsets = (
        (None, {"fields": ("started_at", "finished_at", "outcome", "status", "error_type", "error_message")}),
        ("Who", {"fields": ("user", "key", "client_program", "client_version", "client_session")}),
        (
            "Request",
            {
                "fields": (
                    "dialect",
                    "endpoint",
                    "operation",
                    "stream",
                    "requested_model",
                    "alias",
                    "upstream",
                    "upstream_model",
                    "scenario",
                    "upstream_request_id",
                    "warnings",
                )
            },
        ),
        ("Attempts", {"fields": ("attempts", "fallback", "failed_attempts")}),
        (
            "Usage",
            {
                "fields": (
                    "input_tokens",
                    "cache_read_tokens",
                    "cache_write_tokens",
                    "output_tokens",
                    "reasoning_tokens",
                    "usage_partial",
                )
            },
        ),
        (
            "Cost",
            {
                "fields": (
                    "cost",
                    "price_source",
                    "price_input",
                    "price_output",
                    "price_cache_read",
                    "price_cache_write",
                )
            },
        ),
        ("Speed", {"fields": ("ttft_ms", "duration_ms", "tokens_per_second")}),
    )

    # The ledger is a record: nobody adds, edits or deletes rows here.
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: LedgerEntry | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: LedgerEntry | None = None) -> bool:
        return False

    def get_queryset(self, request: HttpRequest) -> QuerySet[LedgerEntry]:
        queryset = super().get_queryset(request)
        if not request.user.has_perm(CAPTURE_PERMISSION):
            return queryset
        # One lookup on the captures' unique exchange id per listed row.
        return queryset.annotate(has_capture=Exists(Capture.objects.filter(exchange_id=OuterRef("exchange_id"))))

    def get_fieldsets(self, request: HttpRequest, obj: LedgerEntry | None = None) -> Any:
        fieldsets = super().get_fieldsets(request, obj)
        if obj is None or not request.user.has_perm(CAPTURE_PERMISSION) or not getattr(obj, "has_capture", False):
            return fieldsets
        return [*fieldsets, ("Captured bodies", {"fields": ("capture",)})]

    @admin.display(description="time", ordering="started_at")
    def time(self, obj: LedgerEntry) -> str:
        at = f"{timezone.localtime(obj.started_at):%Y-%m-%d %H:%M:%S}"
        if getattr(obj, "has_capture", False):
            return format_html('{}<br><span class="quiet capture-mark">captured</span>', at)
        return at

    @admin.display(description="captured bodies")
    def capture(self, obj: LedgerEntry) -> str:
        capture = Capture.objects.filter(exchange_id=obj.exchange_id).first() if obj.exchange_id else None
        return capture_html(capture) if capture is not None else "-"

    @admin.display(description="who", ordering="user__username")
    def who(self, obj: LedgerEntry) -> str:
        user = obj.user.get_username() if obj.user else "-"
        if obj.key is None:
            return user
        return format_html('{}<br><span class="quiet">{}…{}</span>', user, obj.key.prefix, _label(obj.key.label))

    @admin.display(description="model", ordering="requested_model")
    def route(self, obj: LedgerEntry) -> str:
        asked = obj.requested_model or "-"
        if not obj.upstream_model:
            return format_html('{}<br><span class="quiet">no route</span>', asked) if asked != "-" else asked
        via = f" via {obj.alias}" if obj.alias else ""
        target = f"{obj.upstream}/{obj.upstream_model}" if obj.upstream else obj.upstream_model
        return format_html('{}<br><span class="quiet">→ {}{}</span>', asked, target, via)

    @admin.display(description="outcome", ordering="outcome")
    def outcome_status(self, obj: LedgerEntry) -> str:
        return format_html('{} <span class="quiet">{}</span>', obj.get_outcome_display(), obj.status)

    @admin.display(description="tokens")
    def tokens(self, obj: LedgerEntry) -> str:
        counts = (
            (obj.input_tokens, "in"),
            (obj.cache_read_tokens, "cache read"),
            (obj.cache_write_tokens, "cache write"),
            (obj.output_tokens, "out"),
        )
        shown = [(count, label) for count, label in counts if count is not None]
        if not shown:
            return "not reported"
        partial = " (partial)" if obj.usage_partial else ""
        exact = " · ".join(f"{count:,} {label}" for count, label in shown) + partial
        short = " · ".join(f"{_compact(count)} {label}" for count, label in shown) + partial
        return format_html('<span title="{}">{}</span>', exact, short)

    @admin.display(description="cost", ordering="cost_usd")
    def cost(self, obj: LedgerEntry) -> str:
        if obj.cost_usd is None:
            # Never shown as $0: a missing price or a missing token count is not "free".
            return "unpriced (no usage reported)" if obj.price_source else "unpriced"
        return _usd(obj.cost_usd)

    @admin.display(description="duration (TTFT)", ordering="duration_ms")
    def duration(self, obj: LedgerEntry) -> str:
        if obj.ttft_ms is None:
            return _ms(obj.duration_ms)
        return format_html('{} <span class="quiet">({})</span>', _ms(obj.duration_ms), _ms(obj.ttft_ms))


@admin.register(ModelPrice)
class ModelPriceAdmin(admin.ModelAdmin[ModelPrice]):
    list_display = (
        "model_pattern",
        "upstream",
        "input_per_mtok",
        "output_per_mtok",
        "cache_read_per_mtok",
        "cache_write_per_mtok",
        "note",
        "updated_at",
    )
    list_filter = ("upstream",)
    search_fields = ("model_pattern", "upstream", "note")
    fieldsets = (
        (
            None,
            {
                "description": (
                    "Prices in US dollars per million tokens for the models the bundled genai-prices catalogue "
                    "does not know (local, fine-tuned) or that you pay differently for. An override always wins "
                    "over the catalogue. The upstream's model name is matched, ignoring case: first the "
                    "overrides limited to that upstream (exact name, then patterns), then those for every "
                    "upstream (exact name, then patterns); among patterns the most specific wins. A model with "
                    "no price at all is shown as unpriced, never as free. Changes apply to exchanges recorded "
                    "from now on; rows already in the ledger keep their cost."
                ),
                "fields": ("model_pattern", "upstream", "note"),
            },
        ),
        (
            "Prices ($ per million tokens)",
            {"fields": ("input_per_mtok", "output_per_mtok", "cache_read_per_mtok", "cache_write_per_mtok")},
        ),
    )


@admin.register(Capture)
class CaptureAdmin(admin.ModelAdmin[Capture]):
    """Captured bodies (usage.captures): written by the proxy alone; deletable, never editable."""

    list_display = ("captured_at", "requested_model", "client_status", "upstream_status", "cut", "exchange_id")
    search_fields = ("exchange_id", "requested_model")
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER
    fields = ("captured_at", "ledger_row", "requested_model", "bodies")
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Capture | None = None) -> bool:
        return False

    @admin.display(description="truncated")
    def cut(self, obj: Capture) -> str:
        return ", ".join(obj.truncated) or "-"

    @admin.display(description="ledger row")
    def ledger_row(self, obj: Capture) -> str:
        row = LedgerEntry.objects.filter(exchange_id=obj.exchange_id).values_list("pk", flat=True).first()
        if row is None:
            return f"{obj.exchange_id} (not written yet, or pruned)"
        url = reverse("admin:usage_ledgerentry_change", args=[row])
        return format_html('<a href="{}">{}</a>', url, obj.exchange_id)

    @admin.display(description="bodies")
    def bodies(self, obj: Capture) -> str:
        return capture_html(obj)


@admin.register(Alert)
class AlertAdmin(admin.ModelAdmin[Alert]):
    """What was sent to the operators, and whether it arrived (an audit, not a setting)."""

    list_display = ("raised_at", "kind", "subject", "text", "times", "delivery")
    list_filter = ("kind",)
    search_fields = ("subject", "text")
    show_full_result_count = False
    readonly_fields = ("key", "kind", "subject", "text", "payload", "raised_at", "times", "delivery", "delivered_at")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Alert | None = None) -> bool:
        return False
