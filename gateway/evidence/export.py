"""The pseudonymised evaluation export: one row per referral, no names, identifiers,
dates of birth, addresses or free text; as CSV or NDJSON."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date
from typing import Any

from gateway.evidence.measures import ACCEPTED, ReferralFacts
from gateway.evidence.pseudonym import age_band, district, person_key
from gateway.record.needs import coded_needs

#: Every column, in order; nothing else is ever written.
COLUMNS = (
    "person",
    "referral",
    "received_month",
    "source",
    "practice",
    "pcn",
    "hub",
    "age_band",
    "sex",
    "postcode_district",
    "referral_method",
    "needs",
    "accepted",
    "declined",
    "completed",
    "days_to_first_contact",
    "wellbeing",
)


@dataclass(frozen=True)
class ExportInput:
    """One referral's record, its measured facts, and its scores by instrument (first, last)."""

    record: dict[str, Any]
    facts: ReferralFacts
    wellbeing: dict[str, tuple[float, float]]


def _codes(record: dict[str, Any]) -> list[str]:
    """Coded needs only (system|code): a display or free text could name someone."""
    return sorted({f"{system or ''}|{code}" for system, code in coded_needs(record)})


def row(item: ExportInput, secret: bytes, on: date) -> dict[str, Any]:
    """One export row: pseudonyms, bands and codes (``on`` is the day ages are taken)."""
    record, facts = item.record, item.facts
    person = record.get("person") or {}
    address = person.get("address") or {}
    referral = record.get("referral") or {}
    days = None
    if facts.first_contact is not None and facts.first_contact >= facts.received:
        days = round((facts.first_contact - facts.received).total_seconds() / 86400, 2)
    return {
        "person": person_key(str(person.get("nhs_number") or facts.person), secret),
        "referral": person_key(f"referral:{facts.referral_id}", secret),
        "received_month": facts.received.strftime("%Y-%m"),
        "source": facts.source,
        "practice": facts.practice or "not stated",
        "pcn": facts.pcn or "not stated",
        "hub": facts.hub or "not stated",
        "age_band": age_band(person.get("date_of_birth"), on),
        "sex": person.get("sex") or "not stated",
        "postcode_district": district(address.get("postcode")),
        "referral_method": referral.get("method") or "not stated",
        "needs": _codes(record),
        "accepted": bool(facts.statuses & ACCEPTED),
        "declined": "rejected" in facts.statuses,
        "completed": "completed" in facts.statuses,
        "days_to_first_contact": days,
        "wellbeing": {k: {"first": v[0], "last": v[1]} for k, v in sorted(item.wellbeing.items())},
    }


def ndjson(items: Iterable[ExportInput], secret: bytes, on: date) -> Iterator[str]:
    """The export as NDJSON lines."""
    for item in items:
        yield json.dumps(row(item, secret, on), sort_keys=False, separators=(",", ":")) + "\n"


def csv_lines(items: Iterable[ExportInput], secret: bytes, on: date) -> Iterator[str]:
    """The export as CSV: lists joined by spaces, wellbeing as ``instrument:first>last``."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(COLUMNS)
    for item in items:
        values = row(item, secret, on)
        values["needs"] = " ".join(values["needs"])
        values["wellbeing"] = " ".join(
            f"{k}:{v['first']:g}>{v['last']:g}" for k, v in values["wellbeing"].items()
        )
        writer.writerow(["" if values[c] is None else values[c] for c in COLUMNS])
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
    if buffer.tell():
        yield buffer.getvalue()
