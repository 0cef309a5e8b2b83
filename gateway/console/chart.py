"""Server-side SVG bar charts: messages per hour, stacked by status, with a text alternative."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from markupsafe import Markup, escape

#: Status colours, each at least 3:1 against white (the table gives the numbers as text).
COLOURS = {"accepted": "#00703c", "rejected": "#d4351c", "failed": "#4c2c92"}
WIDTH, HEIGHT, LEFT, BOTTOM, TOP = 880, 220, 40, 30, 10


def bar_chart(
    chart_id: str,
    title: str,
    hours: Sequence[datetime],
    counts: dict[tuple[datetime, str], int],
    statuses: Sequence[str],
) -> Markup:
    """An SVG of one bar per hour, stacked by status, labelled by its title and a summary."""
    top = max([sum(counts.get((h, s), 0) for s in statuses) for h in hours] + [1])
    plot_w, plot_h = WIDTH - LEFT - 10, HEIGHT - BOTTOM - TOP
    step = plot_w / max(len(hours), 1)
    parts = [
        f'<svg class="chart" id="{escape(chart_id)}" role="img" viewBox="0 0 {WIDTH} {HEIGHT}"'
        f' aria-labelledby="{escape(chart_id)}-title" width="{WIDTH}" height="{HEIGHT}">',
        f'<title id="{escape(chart_id)}-title">{escape(title)}</title>',
        f'<line x1="{LEFT}" y1="{TOP + plot_h}" x2="{WIDTH - 10}" y2="{TOP + plot_h}"'
        ' stroke="#0b0c0c"/>',
        f'<text x="{LEFT - 6}" y="{TOP + 10}" text-anchor="end">{top}</text>',
        f'<text x="{LEFT - 6}" y="{TOP + plot_h}" text-anchor="end">0</text>',
    ]
    label_every = max(1, len(hours) // 12)
    for index, hour in enumerate(hours):
        x = LEFT + index * step
        y = float(TOP + plot_h)
        for status in statuses:
            n = counts.get((hour, status), 0)
            if not n:
                continue
            h = plot_h * n / top
            y -= h
            parts.append(
                f'<rect x="{x + 1:.1f}" y="{y:.1f}" width="{max(step - 2, 1):.1f}"'
                f' height="{h:.1f}" fill="{COLOURS.get(status, "#505a5f")}"/>'
            )
        if index % label_every == 0:
            label = hour.strftime("%H:%M") if len(hours) <= 24 else hour.strftime("%d %b")
            parts.append(
                f'<text x="{x + step / 2:.1f}" y="{HEIGHT - 10}" text-anchor="middle">'
                f"{escape(label)}</text>"
            )
    parts.append("</svg>")
    return Markup("".join(parts))
