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
_Check = tuple[str, str | None, tuple[str, ...], str, str]


def _checks() -> tuple[_Check, ...]:
    """ITEMS as (item, listed parent or None, parts to read from it, severity, message): a
    child of a parent listed before it reads on from the parent's node, others from the
    record."""
    out: list[_Check] = []
    for item, severity, message in ITEMS:
        parts = tuple(item.split("."))
        parent = ".".join(parts[:-1])
        if any(parent == earlier[0] for earlier in out):
            out.append((item, parent, parts[-1:], severity, message))
        else:
            out.append((item, None, parts, severity, message))
    return tuple(out)


_CHECKS = _checks()


def not_stated(record: dict[str, Any]) -> list[dict[str, str]]:
    """The data_quality entries for ``record``: each M or R item its sender did not state."""
    out: list[dict[str, str]] = []
    # Each item's value (or _MISSING), so that a child reads its listed parent's node.
    found: dict[str, Any] = {}
    for item, parent, parts, severity, message in _CHECKS:
        node = record if parent is None else found[parent]
        if node is _MISSING:
            continue  # the parent is already reported
        for part in parts:  # _lookup, written out (this runs for every message)
            if type(node) is not dict:
                node = _MISSING
                break
            node = node.get(part, _MISSING)
            if node is _MISSING or node in _EMPTY:
                node = _MISSING
                break
        found[item] = node
        if node is _MISSING:
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
