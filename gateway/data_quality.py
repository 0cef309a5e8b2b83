"""What the sender did not state: PRSB mandatory and required items missing from a record.

PRSB's M ("cannot send without it") binds the system that writes the referral; a gateway
cannot create what the sender never held. So the record is accepted, the item is left out,
and ``data_quality`` tells the link worker what to ask.
"""

from __future__ import annotations

from typing import Any

#: (record item, PRSB severity, what the link worker reads). A child is only listed when its
#: parent is present: a referral with no referrer says so once, not five times.
ITEMS: tuple[tuple[str, str, str], ...] = (
    ("person.nhs_number", "R", "NHS number not stated by the referrer"),
    ("person.sex", "R", "sex not stated by the referrer"),
    ("gp_practice", "M", "GP practice not stated by the referrer: ask the person"),
    ("gp_practice.ods_code", "M", "GP practice ODS code not stated by the referrer"),
    ("about_me", "R", "'what matters to me' not stated by the referrer: ask the person"),
    ("safeguarding", "R", "safeguarding not stated by the referrer: ask"),
    ("consent", "R", "consent to share information not stated by the referrer: ask"),
    ("referral.date", "R", "referral date not stated by the referrer"),
    ("referral.referrer", "M", "who referred is not stated: ask the sending organisation"),
    ("referral.referrer.name", "M", "referrer's name not stated"),
    ("referral.referrer.service", "M", "referrer's service not stated"),
    ("referral.referrer.ods_code", "M", "referrer's organisation ODS code not stated"),
    ("referral.referrer.contact", "M", "referrer's contact details not stated"),
    ("referral.reason", "R", "reason for referral not stated by the referrer: ask"),
    ("referral.referral_to", "M", "the service referred to is not stated"),
    ("risks", "M", "risks not stated by the referrer: ask before the first contact"),
)

_MISSING = object()
_EMPTY: tuple[Any, ...] = (None, [], {})
#: ITEMS with each path split once, and the parent that silences a child when missing.
_CHECKS = tuple(
    (item, tuple(item.split(".")), item.rsplit(".", 1)[0] if "." in item else None, sev, text)
    for item, sev, text in ITEMS
)


def _lookup(record: dict[str, Any], parts: tuple[str, ...]) -> Any:
    """The value at a split path, or _MISSING when it or a parent is absent or empty."""
    node: Any = record
    for part in parts:
        if type(node) is not dict:
            return _MISSING
        node = node.get(part, _MISSING)
        if node is _MISSING or node in _EMPTY:
            return _MISSING
    return node


def not_stated(record: dict[str, Any]) -> list[dict[str, str]]:
    """The data_quality entries for ``record``: each M or R item its sender did not state."""
    out: list[dict[str, str]] = []
    # Each item's value (or _MISSING), so that a child reads its listed parent's node.
    found: dict[str, Any] = {}
    for item, parts, parent, severity, message in _CHECKS:
        node = found.get(parent, record) if parent is not None else record
        if node is _MISSING:
            continue  # the parent is already reported
        value = _lookup(node, parts[-1:] if parent in found else parts)
        found[item] = value
        if value is _MISSING:
            out.append(
                {"item": item, "state": "not-stated", "severity": severity, "message": message}
            )
    return out


def settle_risks(record: dict[str, Any]) -> None:
    """Give stated risks both parts; a section with neither risks nor "none known" is left out.

    Listed risks win over a "no known risks" statement beside them: the person's safety
    does not rest on the sender having been consistent.
    """
    risks = record.get("risks")
    if not isinstance(risks, dict):
        record.pop("risks", None)
        return
    items = risks.get("items") or []
    if not items and not risks.get("no_known_risks"):
        del record["risks"]
        return
    record["risks"] = {"no_known_risks": not items, "items": items}
