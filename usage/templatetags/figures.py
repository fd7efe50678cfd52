"""Template filters that format figures the way the dashboards do (usage.formatting)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from django import template
from django.utils.html import format_html
from django.utils.safestring import mark_safe

from usage.formatting import fmt_int, fmt_usd

register = template.Library()


@register.filter
def count(value: int | None) -> str:
    """1,234,567; an unknown count as a dash."""
    return fmt_int(value)


@register.filter
def usd(value: Decimal | float | None) -> str:
    return "" if value is None else fmt_usd(value)


@register.filter
def when(value: datetime | None, style: str = "minutes") -> str:
    """A time as the pages show it: UTC (the server's rendering), which usage/static/usage/times.js turns into the
    reader's local time when they ask for it. `style`: "minutes", "seconds" (with the date either way)."""
    if value is None:
        return ""
    seconds = style == "seconds"
    text = value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M")
    return format_html(
        '<time datetime="{}" data-epoch="{}" data-date="1"{}>{}</time>',
        value.isoformat(),
        int(value.timestamp()),  # whole seconds, truncated as the UTC text is (never rounded up a minute)
        mark_safe(' data-seconds="1"') if seconds else "",
        text,
    )
