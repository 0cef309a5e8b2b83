"""The volumes page: messages per hour by source and status over the last day or week."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

from flask import Response, request

from gateway.console.blueprint import bp
from gateway.console.chart import bar_chart
from gateway.console.pages import audit, page
from gateway.services import current_services
from gateway.store.volumes import hourly

RANGES = {"day": timedelta(days=1), "week": timedelta(days=7)}
STATUSES = ("accepted", "rejected", "failed")


@bp.get("/volumes")
def volumes() -> Response:
    """A chart per source (stacked by status) with a data table and a written summary."""
    span = request.args.get("range", "day")
    if span not in RANGES:
        span = "day"
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    since = now - RANGES[span] + timedelta(hours=1)
    hours = [since + timedelta(hours=i) for i in range(int(RANGES[span] / timedelta(hours=1)))]
    rows = hourly(current_services().db, since)
    sources = sorted({source for _, source, _, _ in rows})
    charts: list[dict[str, Any]] = []
    for source in sources:
        counts = Counter({(h, st): n for h, src, st, n in rows if src == source})
        totals: Counter[str] = Counter()
        for (_, status), n in counts.items():
            totals[status] += n
        busiest = max(hours, key=lambda h: sum(counts.get((h, s), 0) for s in STATUSES))
        summary = (
            f"{source}: {sum(totals.values())} messages in the last {span}; "
            + ", ".join(f"{totals.get(s, 0)} {s}" for s in STATUSES)
            + f"; busiest hour {busiest.strftime('%d %b %H:00')} UTC"
        )
        chart = bar_chart(f"chart-{len(charts)}", summary, hours, counts, STATUSES)
        charts.append({"source": source, "summary": summary, "svg": chart})
    table = sorted(rows, key=lambda r: (r[0], r[1], r[2]), reverse=True)
    audit("read", "volumes", None, range=span)
    return page(
        "volumes.html", span=span, charts=charts, table=table, statuses=STATUSES, since=since
    )
