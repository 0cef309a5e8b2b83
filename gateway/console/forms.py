"""Reading the console's query strings and forms: times, cursors, NHS numbers."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime

#: A form's problems: (the field's id, what to do), for the error summary.
Errors = list[tuple[str, str]]


def parse_time(raw: str | None) -> datetime | None:
    """A time from a form (``2026-12-03T10:00``, ``2026-12-03 10:00`` or ``2026-12-03``), UTC;
    ValueError when it is none of those."""
    text = (raw or "").strip()
    if not text:
        return None
    when = datetime.fromisoformat(text.replace(" ", "T"))
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def encode_cursor(cursor: tuple[datetime, int] | None) -> str | None:
    """The next page's cursor for a link."""
    if cursor is None:
        return None
    return f"{cursor[0].astimezone(UTC).isoformat()}~{cursor[1]}"


def decode_cursor(raw: str | None) -> tuple[datetime, int] | None:
    """A cursor from a link; None when absent or damaged (the first page)."""
    if not raw or "~" not in raw:
        return None
    at, _, last = raw.rpartition("~")
    try:
        return datetime.fromisoformat(at), int(last)
    except ValueError:
        return None


def nhs_number(raw: str | None) -> str | None:
    """Ten digits (spaces ignored); ValueError otherwise. The check digit is not checked:
    a refused message may carry a mistyped number, and that is what is looked for."""
    digits = "".join((raw or "").split())
    if not digits:
        return None
    if not (digits.isascii() and digits.isdigit() and len(digits) == 10):
        raise ValueError("an NHS number is 10 digits")
    return digits


def read_form(
    form: Mapping[str, str], names: tuple[str, ...]
) -> tuple[dict[str, str], dict[str, datetime | None], Errors]:
    """The named fields (stripped), the "from" and "to" times among them, and any errors."""
    values = {name: (form.get(name) or "").strip() for name in (*names, "from", "to")}
    times: dict[str, datetime | None] = {}
    errors: Errors = []
    for name in ("from", "to"):
        try:
            times[name] = parse_time(values[name])
        except ValueError:
            times[name] = None
            errors.append((name, "Enter a date and time like 2026-12-03T09:30"))
    return values, times, errors
