"""The evaluation export holds no name, NHS number, date of birth, address or free text."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest

from gateway.evidence.export import COLUMNS, ExportInput, csv_lines, ndjson
from gateway.evidence.measures import ReferralFacts
from gateway.evidence.pseudonym import PseudonymKeyError, age_band, person_key

ROOT = Path(__file__).resolve().parents[2]
SECRET = b"s" * 32
ON = date(2026, 12, 3)
#: Keys whose values the export may carry (codes, names of systems, enumerations).
ALLOWED = {
    "system",
    "code",
    "ods_code",
    "source_system",
    "mapping_version",
    "method",
    "sex",
    "status",
    "information_sharing",
    "message_event",
    "hospital_ods_code",
    "severity",
    "state",
    "use",
    "priority",
    "kind",
    "language",
    "interpreter_language",
    "preferred",
}


def _identifying(node: Any, key: str = "") -> set[str]:
    """Every string in a record that could identify or describe the person."""
    out: set[str] = set()
    if isinstance(node, dict):
        for k, v in node.items():
            out |= _identifying(v, k)
    elif isinstance(node, list):
        for v in node:
            out |= _identifying(v, key)
    elif isinstance(node, str) and key not in ALLOWED and len(node) >= 4 and "://" not in node:
        out.add(node)
    return out


def _inputs() -> list[tuple[ExportInput, set[str]]]:
    items = []
    for n, path in enumerate(sorted(ROOT.glob("fixtures/*/*.record.json"))):
        record = json.loads(path.read_text())
        facts = ReferralFacts(
            referral_id=f"00000000-0000-4000-8000-{n:012d}",
            person=record["person"].get("nhs_number") or f"p{n}",
            received=datetime(2026, 11, 2, 9, 30, tzinfo=UTC),
            source=path.parent.name,
            practice=(record.get("gp_practice") or {}).get("ods_code"),
            statuses=frozenset({"accepted", "completed"}),
            first_contact=datetime(2026, 11, 4, 9, 30, tzinfo=UTC),
        )
        items.append((ExportInput(record, facts, {"wemwbs": (40, 47)}), _identifying(record)))
    return items


@pytest.mark.parametrize("form", ["ndjson", "csv"])
def test_no_identifying_value_reaches_the_export(form: str) -> None:
    items = _inputs()
    writer = ndjson if form == "ndjson" else csv_lines
    text = "".join(writer([i for i, _ in items], SECRET, ON))
    forbidden = set().union(*(f for _, f in items))
    assert len(forbidden) > 100  # names, NHS numbers, dates of birth, addresses, free text
    # As a whole token: a short identifier may occur by chance inside a pseudonym's hex.
    leaked = sorted(
        value
        for value in forbidden
        if re.search(rf"(?<![0-9A-Za-z]){re.escape(value)}(?![0-9A-Za-z])", text)
    )
    assert leaked == []


def test_the_csv_has_every_column_and_a_row_per_referral() -> None:
    items = [i for i, _ in _inputs()]
    rows = list(csv.DictReader(io.StringIO("".join(csv_lines(items, SECRET, ON)))))
    assert len(rows) == len(items)
    assert tuple(rows[0]) == COLUMNS
    assert rows[0]["wellbeing"] == "wemwbs:40>47"
    assert rows[0]["days_to_first_contact"] == "2.0"


def test_one_person_has_one_pseudonym_per_secret() -> None:
    assert person_key("999 000 0018", SECRET) == person_key("9990000018", SECRET)
    assert person_key("9990000018", SECRET) != person_key("9990000018", b"t" * 32)
    assert len(person_key("9990000018", SECRET)) == 32
    with pytest.raises(PseudonymKeyError):
        person_key("9990000018", b"short")


@pytest.mark.parametrize(
    ("born", "band"),
    [
        ("2010-12-04", "0-17"),
        ("2008-12-03", "18-24"),
        ("1971-06-30", "55-64"),
        ("1930-01-01", "85+"),
        (None, "not stated"),
        ("2030-01-01", "not stated"),
        ("1971", "not stated"),
    ],
)
def test_age_bands(born: str | None, band: str) -> None:
    assert age_band(born, ON) == band
