"""What a link worker must see before anything else: may the person be contacted, and how."""

from __future__ import annotations

from typing import Any

#: Words a platform can show as they are, for each state of "may be contacted".
_MAY_CONTACT = {True: "yes", False: "no", None: "not stated"}


def _section(record: dict[str, Any], *keys: str) -> dict[str, Any]:
    """A nested object of the record, or {} where any level is absent."""
    node: Any = record
    for key in keys:
        node = node.get(key) if isinstance(node, dict) else None
    return node if isinstance(node, dict) else {}


def may_contact(record: dict[str, Any]) -> bool | None:
    """What the record says about contacting the person: False, True, or None (not stated)."""
    value = _section(record, "safeguarding").get("may_contact")
    return value if isinstance(value, bool) else None


def contact_summary(record: dict[str, Any]) -> dict[str, Any]:
    """May the person be contacted (yes, no, not stated), how they prefer, and consent.

    Carried at the top of every envelope (webhook, feed, GET /records/{id}) so a platform
    that reads nothing else still sees a "do not contact".
    """
    contact = _section(record, "person", "contact")
    preferred = contact.get("preferred")
    methods = [m for m in ("phone", "mobile", "email", "sms") if contact.get(m)]
    consent = _section(record, "consent").get("information_sharing")
    return {
        "may_contact": _MAY_CONTACT[may_contact(record)],
        "preferred_method": preferred if isinstance(preferred, str) else None,
        "methods_given": methods,
        "consent": consent if isinstance(consent, str) else "not stated",
        "interpreter_needed": _section(record, "individual_requirements").get("interpreter_needed"),
    }
