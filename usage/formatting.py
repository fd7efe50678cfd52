"""How figures read, in one place for every page (the dashboards format in Python, `/me/` through the
template filters in usage/templatetags/figures.py)."""

from __future__ import annotations

from decimal import Decimal

BLANK = "\N{EN DASH}"  # where a value is unknown

# Below this a cost is shown as a bound, not as a row of zeros that reads as free.
SMALLEST_SHOWN_USD = Decimal("0.0001")


def fmt_int(value: int | None) -> str:
    return BLANK if value is None else f"{value:,}"


def fmt_usd(value: Decimal | float) -> str:
    """Whole cents from $1 up; below, three significant digits ($0.0123, $0.000456); under $0.0001 a bound."""
    amount = Decimal(value)
    if amount == 0:
        return "$0"
    if abs(amount) < SMALLEST_SHOWN_USD:
        return f"< ${SMALLEST_SHOWN_USD}"
    if abs(amount) < 1:
        return f"${float(amount):.3g}"
    return f"${amount:,.2f}"
