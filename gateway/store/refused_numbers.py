"""The ten-digit numbers in a refused message's raw body: what an NHS number search finds.

A refused message may not parse, so nothing says which number is the NHS number: every run
of ten digits (written together or 3-3-4 with spaces or hyphens) is kept, check digit or
not, so a mistyped number is found too. Kept only for refused and failed messages.
"""

from __future__ import annotations

import re
from typing import cast

from sqlalchemy import Connection, Table, insert

from gateway.store.models import RefusedNhsNumber

_TABLE = cast(Table, RefusedNhsNumber.__table__)
_RUN = re.compile(rb"(?<![0-9])([0-9]{3})[ -]?([0-9]{3})[ -]?([0-9]{4})(?![0-9])")
#: More than this many in one body is not a referral's NHS number list; the rest are skipped.
MOST = 50


def numbers_in(body: bytes) -> list[str]:
    """The distinct ten-digit numbers in ``body``, in order of first appearance."""
    seen: dict[str, None] = {}
    for match in _RUN.finditer(body):
        seen.setdefault(b"".join(match.groups()).decode("ascii"))
        if len(seen) >= MOST:
            break
    return list(seen)


def keep_numbers(conn: Connection, message_id: int, body: bytes) -> None:
    """Inside the refusal's write: one row per number in the body."""
    rows = [{"message_id": message_id, "nhs_number": n} for n in numbers_in(body)]
    if rows:
        conn.execute(insert(_TABLE), rows)
