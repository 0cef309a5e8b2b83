"""Reference tables routing reads: practice to PCN (NHS ODS ePCN) and postcode to local authority.

Both are CSV files kept beside the routing file, in the layouts their publishers use, so an
operator replaces them with the month's download unchanged:

- practice to Primary Care Network: the NHS ODS ePCN "core partner details" sheet saved as
  CSV (columns ``Partner Organisation Code``, ``PCN Code``, and optionally ``Practice to PCN
  Relationship End Date``; a relationship that has ended is ignored);
- postcode to local authority: the ONS Postcode Directory (columns ``pcds``, the postcode
  with one space, and ``oslaua``, the local authority district's GSS code).
"""

from __future__ import annotations

import csv
from datetime import date
from pathlib import Path

from gateway.errors import MappingError

PCN_COLUMNS = ("Partner Organisation Code", "PCN Code")
END_COLUMN = "Practice to PCN Relationship End Date"
POSTCODE_COLUMNS = ("pcds", "oslaua")


def _rows(path: Path, needed: tuple[str, ...]) -> tuple[list[dict[str, str]], list[str]]:
    """The rows of a CSV file and its header, which must name every ``needed`` column."""
    try:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            reader = csv.DictReader(handle)
            header = [name.strip() for name in reader.fieldnames or []]
            missing = [c for c in needed if c not in header]
            if missing:
                raise MappingError(
                    f"header lacks column(s) {', '.join(missing)}", file=str(path), line=1
                )
            reader.fieldnames = header
            return list(reader), header
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise MappingError(f"cannot read: {exc}", file=str(path)) from None


def _ended(value: str | None, today: date) -> bool:
    """Whether an ODS end date (``YYYYMMDD`` or ``YYYY-MM-DD``, blank if open) has passed."""
    text = (value or "").strip().replace("-", "")
    if not text:
        return False
    try:
        return date(int(text[:4]), int(text[4:6]), int(text[6:8])) < today
    except ValueError:
        return False


def read_practice_pcns(path: Path, today: date | None = None) -> dict[str, str]:
    """Practice ODS code to PCN code, from an ePCN core partner CSV (current memberships)."""
    rows, _ = _rows(path, PCN_COLUMNS)
    today = today or date.today()
    out: dict[str, str] = {}
    for row in rows:
        practice = (row.get(PCN_COLUMNS[0]) or "").strip().upper()
        pcn = (row.get(PCN_COLUMNS[1]) or "").strip().upper()
        if practice and pcn and not _ended(row.get(END_COLUMN), today):
            out[practice] = pcn
    return out


def read_postcode_authorities(path: Path) -> dict[str, str]:
    """Postcode (upper case, single space) to local authority GSS code, from ONSPD columns."""
    rows, _ = _rows(path, POSTCODE_COLUMNS)
    out: dict[str, str] = {}
    for row in rows:
        postcode = normal_postcode(row.get("pcds"))
        authority = (row.get("oslaua") or "").strip().upper()
        if postcode and authority:
            out[postcode] = authority
    return out


def normal_postcode(value: str | None) -> str | None:
    """A UK postcode upper-cased with one space before the inward code, or None if too short."""
    if not value:
        return None
    compact = "".join(value.split()).upper()
    if len(compact) < 5 or len(compact) > 7:
        return None
    return f"{compact[:-3]} {compact[-3:]}"


def postcode_district(value: str | None) -> str | None:
    """The outward code (district) of a postcode: ``LS1`` of ``ls1 4ap``."""
    postcode = normal_postcode(value)
    return postcode.split(" ", 1)[0] if postcode else None
