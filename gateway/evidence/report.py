"""The report page's content: published (suppressed) tables and the three charts drawn from
them, so a chart never shows what its table withholds."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from typing import Any

from gateway.evidence.charts import Row, bars
from gateway.evidence.measures import Measures
from gateway.evidence.publish import table

GROUPING_LABELS = {
    "period": "Month received",
    "source": "Referring system",
    "practice": "GP practice",
    "pcn": "Primary care network",
    "hub": "Link-worker hub",
}
INSTRUMENT_LABELS = {
    "wemwbs": "WEMWBS",
    "swemwbs": "SWEMWBS",
    "ons4-life-satisfaction": "ONS4 life satisfaction",
    "ons4-worthwhile": "ONS4 worthwhile",
    "ons4-happiness": "ONS4 happiness",
    "ons4-anxiety": "ONS4 anxiety",
    "ucla3": "UCLA-3 loneliness",
}


def group_label(grouping: str, key: str) -> str:
    """How a group is named on the page (``2026-11`` as ``November 2026``)."""
    if grouping == "period" and len(key) == 7:
        return date(int(key[:4]), int(key[5:]), 1).strftime("%B %Y")
    if grouping == "hub" and key == "*":
        return "every platform"
    return key


def _count(value: int | str) -> float | None:
    """A published count as a bar (None where it is withheld)."""
    return float(value) if isinstance(value, int) else None


def report_context(
    grouping: str, months: list[Measures], rows: list[Measures], asked: Mapping[str, str]
) -> dict[str, Any]:
    """Everything the report template shows: the form's values, the tables and the charts."""
    by_month, by_group = table(months), table(rows)
    for row in by_month:
        row["label"] = group_label("period", row["group"])
    for row in by_group:
        row["label"] = group_label(grouping, row["group"])
    wellbeing = [
        {"label": row["label"], "instrument": INSTRUMENT_LABELS.get(name, name), **change}
        for row in by_group
        for name, change in row["wellbeing"].items()
    ]
    noun = GROUPING_LABELS[grouping].lower()
    return {
        "grouping": grouping,
        "groupings": GROUPING_LABELS,
        "asked": {k: asked.get(k, "") for k in ("from", "to")},
        "months": by_month,
        "rows": by_group,
        "wellbeing": wellbeing,
        "referrals_chart": bars(
            "referrals-chart",
            "Referrals received each month",
            f"Bar chart of referrals received in each of {len(by_month)} months; "
            "the table below gives the numbers.",
            ["referrals"],
            [Row(r["label"], (_count(r["received"]),)) for r in by_month],
        ),
        "contact_chart": bars(
            "contact-chart",
            f"Days from referral to first contact, by {noun}",
            f"Bar chart of the median and 90th percentile days to first contact for each "
            f"{noun}; the table below gives the numbers.",
            ["median", "90th percentile"],
            [
                Row(
                    r["label"],
                    (r["days_to_first_contact_median"], r["days_to_first_contact_p90"]),
                )
                for r in by_group
            ],
            " days",
        ),
        "wellbeing_chart": bars(
            "wellbeing-chart",
            f"People whose wellbeing changed meaningfully, by {noun} and measure",
            "Bar chart of the percentage of people with a meaningful improvement between "
            "their first and last score, for each measure; the table below gives the numbers.",
            ["improved"],
            [
                Row(
                    f"{w['label']}, {w['instrument']}",
                    (None if w["improved_share"] is None else round(100 * w["improved_share"], 1),),
                )
                for w in wellbeing
            ],
            "%",
        ),
    }
