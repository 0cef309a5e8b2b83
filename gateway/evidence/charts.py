"""The report's charts as server-side SVG: horizontal bars, one row per label, one bar per
series, each chart titled and described for screen readers (a data table follows it)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

#: Series colours, each at least 3:1 against white.
COLOURS = ("#1d70b8", "#003078", "#00703c", "#4c2c92")
WIDTH, LABEL_WIDTH, BAR, GAP, TOP = 760, 200, 16, 10, 24
WITHHELD = "withheld (fewer than 5)"


@dataclass(frozen=True)
class Row:
    """One label's values, one per series; None where the value is withheld (small count)."""

    label: str
    values: tuple[float | None, ...]


def _number(value: float) -> str:
    """A value as the chart prints it."""
    return f"{value:g}" if value == int(value) else f"{value:.2f}".rstrip("0")


def bars(
    chart_id: str,
    title: str,
    description: str,
    series: Sequence[str],
    rows: Sequence[Row],
    unit: str = "",
) -> Markup:
    """An SVG bar chart: for each row, one bar per series, scaled to the largest value."""
    shown = [v for row in rows for v in row.values if v is not None]
    top = max([*shown, 0.0]) or 1.0
    span = WIDTH - LABEL_WIDTH - 70
    per_row = len(series) * BAR + GAP
    height = TOP + per_row * max(len(rows), 1) + 10
    ident = escape(chart_id)
    parts = [
        f'<svg class="chart" id="{ident}" role="img" viewBox="0 0 {WIDTH} {height}"'
        f' width="{WIDTH}" height="{height}" aria-labelledby="{ident}-title {ident}-desc">',
        f'<title id="{ident}-title">{escape(title)}</title>',
        f'<desc id="{ident}-desc">{escape(description)}</desc>',
    ]
    x = LABEL_WIDTH + 10
    for index, name in enumerate(series):
        colour = COLOURS[index % len(COLOURS)]
        parts.append(f'<rect x="{x}" y="4" width="12" height="12" fill="{colour}"/>')
        parts.append(f'<text x="{x + 16}" y="15">{escape(name)}</text>')
        x += 24 + 8 * len(name)
    for position, row in enumerate(rows):
        y = TOP + position * per_row
        parts.append(
            f'<text x="{LABEL_WIDTH}" y="{y + per_row / 2:.1f}" text-anchor="end">'
            f"{escape(row.label)}</text>"
        )
        for index, value in enumerate(row.values):
            bar_y = y + index * BAR
            if value is None:
                parts.append(
                    f'<text x="{LABEL_WIDTH + 10}" y="{bar_y + BAR - 4}">{WITHHELD}</text>'
                )
                continue
            length = span * value / top
            colour = COLOURS[index % len(COLOURS)]
            parts.append(
                f'<rect x="{LABEL_WIDTH + 10}" y="{bar_y}" width="{length:.1f}"'
                f' height="{BAR - 2}" fill="{colour}"/>'
            )
            parts.append(
                f'<text x="{LABEL_WIDTH + 14 + length:.1f}" y="{bar_y + BAR - 4}">'
                f"{escape(_number(value))}{escape(unit)}</text>"
            )
    parts.append("</svg>")
    return Markup("".join(parts))
