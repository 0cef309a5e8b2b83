"""The needs a record states as codes: its presenting issues and the referral's reason codes."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any


def coded_needs(record: dict[str, Any]) -> Iterator[tuple[str | None, str]]:
    """(system, code) of every coded presenting issue and reason for referral, in order."""
    referral = record.get("referral")
    reasons = referral.get("reason_codes") if isinstance(referral, dict) else None
    for coding in [*(record.get("presenting_issues") or ()), *(reasons or ())]:
        code = coding.get("code") if isinstance(coding, dict) else None
        if isinstance(code, str) and code:
            system = coding.get("system")
            yield (system if isinstance(system, str) else None), code
