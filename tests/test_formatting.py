"""Figures read the same on every page (usage.formatting, and /me/'s template filters): a small cost never
reads as free, counts carry thousands separators, an unknown value is a dash."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.template import Context, Template

from usage.formatting import fmt_usd


@pytest.mark.parametrize(
    ("amount", "shown"),
    [
        (Decimal(0), "$0"),
        (Decimal("0.00004"), "< $0.0001"),  # was "$0.0000": read as free
        (Decimal("0.000456"), "$0.000456"),
        (Decimal("0.0123456"), "$0.0123"),
        (Decimal("0.5"), "$0.5"),
        (Decimal("12.346"), "$12.35"),
        (Decimal("1234.5"), "$1,234.50"),
    ],
)
def test_costs_show_enough_digits_and_never_read_as_free(amount, shown):
    assert fmt_usd(amount) == shown


def test_the_pages_template_filters_format_like_the_dashboards():
    rendered = Template(
        "{% load figures %}{{ requests|count }} | {{ missing|count }} | {{ cost|usd }} | {{ tiny|usd }}"
    ).render(Context({"requests": 1234567, "missing": None, "cost": Decimal("0.0123456"), "tiny": Decimal("1e-6")}))
    assert rendered == "1,234,567 | \N{EN DASH} | $0.0123 | &lt; $0.0001"
