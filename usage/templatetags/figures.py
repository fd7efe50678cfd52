"""Template filters that format figures the way the dashboards do (usage.formatting)."""

from __future__ import annotations

from decimal import Decimal

from django import template

from usage.formatting import fmt_int, fmt_usd

register = template.Library()


@register.filter
def count(value: int | None) -> str:
    """1,234,567; an unknown count as a dash."""
    return fmt_int(value)


@register.filter
def usd(value: Decimal | float | None) -> str:
    return "" if value is None else fmt_usd(value)
