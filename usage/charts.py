"""Small charts drawn on the server as inline SVG: bars (stacked when there are several series) and lines.

No JavaScript and no library: axes with rounded tick values, a label under every few bars, and a tooltip
(`<title>`) on every bar, point and column. Every bucket gets its bar or point even when its value is 0, so a
chart of N buckets has exactly N bars per series (the tests count them).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

WIDTH = 760
HEIGHT = 220
LEFT = 64
RIGHT = 12
TOP = 12
BOTTOM = 38  # room for two lines of labels under the bars: an hour, and its date where it changes
MAX_X_LABELS = 8


@dataclass(frozen=True)
class Series:
    name: str
    values: Sequence[float]
    css: str = ""


def nice_ceiling(value: float) -> float:
    """The smallest 1, 2, 2.5 or 5 times 10^n at or above the value."""
    if value <= 0:
        return 1.0
    exponent = math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        candidate = step * 10**exponent
        if candidate >= value * (1 - 1e-12):
            return float(candidate)
    return float(10 ** (exponent + 1))


def _ticks(top: float) -> list[float]:
    """Ticks at round steps: 1 -> 0.2 steps, 2 -> 0.5, 2.5 -> 0.5, 5 -> 1 (times a power of ten)."""
    mantissa = top / 10 ** math.floor(math.log10(top))
    count = 4 if round(mantissa, 6) == 2 else 5
    return [top * i / count for i in range(count + 1)]


def _top(values: Sequence[float], integer: bool) -> float:
    """The axis' top: a round number at or above the largest value (whole steps for counts)."""
    top = nice_ceiling(max(values, default=0))
    return max(top, 5.0) if integer else top


def _fmt(value: float) -> str:
    return f"{value:g}"


def _frame(chart_id: str, title: str, top: float, fmt: Callable[[float], str], labels: Sequence[str]) -> list[str]:
    """The SVG's start, the horizontal grid with its tick labels (0 is written 0 in any unit), the axes."""
    plot_w = WIDTH - LEFT - RIGHT
    plot_h = HEIGHT - TOP - BOTTOM
    parts = [
        f'<svg id="{escape(chart_id)}" class="chart-svg" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg" preserveAspectRatio="xMidYMid meet">',
        f"<title>{escape(title)}</title>",
    ]
    for tick in _ticks(top):
        y = TOP + plot_h - tick / top * plot_h
        parts.append(f'<line class="grid" x1="{LEFT}" x2="{LEFT + plot_w}" y1="{y:.1f}" y2="{y:.1f}"/>')
        text = fmt(tick) if tick else "0"
        parts.append(f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{escape(text)}</text>')
    parts.append(f'<line class="axis" x1="{LEFT}" x2="{LEFT}" y1="{TOP}" y2="{TOP + plot_h}"/>')
    parts.append(f'<line class="axis" x1="{LEFT}" x2="{LEFT + plot_w}" y1="{TOP + plot_h}" y2="{TOP + plot_h}"/>')
    n = len(labels)
    if n:
        step = max(1, math.ceil(n / MAX_X_LABELS))
        slot = plot_w / n
        shown_second = None
        for index in range(0, n, step):
            x = LEFT + slot * (index + 0.5)
            first, _, second = labels[index].partition("\n")
            text = escape(first)
            # A second line (an hour's date) is written where it changes from the last label shown: a day that
            # begins between two labels still gets its date, under the first label of that day.
            if second and second != shown_second:
                text += f'<tspan x="{x:.1f}" dy="13">{escape(second)}</tspan>'
                shown_second = second
            parts.append(f'<text class="xlabel" x="{x:.1f}" y="{HEIGHT - 22}" text-anchor="middle">{text}</text>')
    return parts


def bar_chart(
    chart_id: str,
    title: str,
    labels: Sequence[str],
    series: Sequence[Series],
    fmt: Callable[[float], str] = _fmt,
    tooltips: Sequence[str] | None = None,
    integer: bool = True,
) -> SafeString:
    """Bars per bucket, the series stacked; `labels` name the buckets (short), `tooltips` describe them (long).
    `integer`: the values are counts, so the axis never shows fractions."""
    n = len(labels)
    totals = [sum(s.values[i] for s in series) for i in range(n)]
    top = _top(totals, integer)
    parts = _frame(chart_id, title, top, fmt, labels)
    plot_w = WIDTH - LEFT - RIGHT
    plot_h = HEIGHT - TOP - BOTTOM
    slot = plot_w / n if n else plot_w
    bar_w = max(1.0, slot * 0.78)
    for index in range(n):
        x = LEFT + slot * index + (slot - bar_w) / 2
        summary = tooltips[index] if tooltips else labels[index]
        detail = "; ".join(f"{s.name}: {fmt(s.values[index])}" for s in series)
        parts.append(f'<g class="col" data-index="{index}">')
        parts.append(
            f'<rect class="hit" x="{LEFT + slot * index:.2f}" y="{TOP}" width="{slot:.2f}" height="{plot_h}" '
            f'fill="transparent"><title>{escape(summary)}: {escape(detail)}</title></rect>'
        )
        base = 0.0
        for number, s in enumerate(series):
            value = s.values[index]
            height = value / top * plot_h
            y = TOP + plot_h - (base + value) / top * plot_h
            css = f"bar s{number} {s.css}".strip()
            parts.append(
                f'<rect class="{css}" data-value="{value:g}" x="{x:.2f}" y="{y:.2f}" width="{bar_w:.2f}" '
                f'height="{height:.2f}"><title>{escape(summary)}: {escape(s.name)} {escape(fmt(value))}</title></rect>'
            )
            base += value
        parts.append("</g>")
    if not any(totals):
        parts.append(_empty_note())
    parts.append("</svg>")
    return mark_safe("".join(parts))  # every text in it is escaped


def line_chart(
    chart_id: str,
    title: str,
    labels: Sequence[str],
    values: Sequence[float],
    fmt: Callable[[float], str] = _fmt,
    tooltips: Sequence[str] | None = None,
    value_texts: Sequence[str] | None = None,
    empty_text: str = "",
) -> SafeString:
    """One line with a point per bucket; each point's tooltip is `tooltips[i]` (or the label) and the value
    (`value_texts[i]` instead of the formatted value when given)."""
    n = len(labels)
    top = _top(values, integer=False)
    parts = _frame(chart_id, title, top, fmt, labels)
    plot_w = WIDTH - LEFT - RIGHT
    plot_h = HEIGHT - TOP - BOTTOM
    slot = plot_w / n if n else plot_w
    points = [(LEFT + slot * (i + 0.5), TOP + plot_h - values[i] / top * plot_h) for i in range(n)]
    if points:
        path = " ".join(f"{x:.2f},{y:.2f}" for x, y in points)
        parts.append(f'<polyline class="line" points="{path}"/>')
    radius = 3 if n <= 60 else 1.5
    for index, (x, y) in enumerate(points):
        summary = tooltips[index] if tooltips else labels[index]
        parts.append(
            f'<circle class="point" data-value="{values[index]:g}" cx="{x:.2f}" cy="{y:.2f}" r="{radius}">'
            f"<title>{escape(summary)}: {escape(value_texts[index] if value_texts else fmt(values[index]))}</title>"
            "</circle>"
        )
    if not any(values):
        parts.append(_empty_note(empty_text))
    parts.append("</svg>")
    return mark_safe("".join(parts))  # every text in it is escaped


def _empty_note(text: str = "") -> str:
    x = LEFT + (WIDTH - LEFT - RIGHT) / 2
    y = TOP + (HEIGHT - TOP - BOTTOM) / 2
    text = escape(text or "Nothing in this range")
    return f'<text class="empty" x="{x:.0f}" y="{y:.0f}" text-anchor="middle">{text}</text>'
