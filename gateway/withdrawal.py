"""Cancelling and deleting a held referral with a message that carries little else.

A BaRS cancellation (reason ``update``, ServiceRequest.status ``revoked``), a BaRS delete
(reason ``delete``, ``entered-in-error``) and the HL7 v2 equivalents often name only the
referral and the patient. Such a message is applied to the referral already held: the new
version is the held record with the new status. One for a referral the gateway does not
hold is refused with 404 naming the identifier, never stored as a new referral.
"""

from __future__ import annotations

import copy
from typing import Any

from gateway.errors import NotFound
from gateway.store.database import Database
from gateway.store.referrals import check_same_referral, held_record

WITHDRAWN = ("revoked", "entered-in-error")


def is_withdrawal(record: dict[str, Any]) -> bool:
    """Whether a (possibly partial) record cancels or deletes its referral."""
    event = (record.get("provenance") or {}).get("message_event")
    status = (record.get("referral") or {}).get("status")
    return event == "delete" or status in WITHDRAWN


def _identifier(record: dict[str, Any]) -> str | None:
    identifier = (record.get("referral") or {}).get("identifier")
    return identifier if isinstance(identifier, str) and identifier else None


def withdrawn_record(db: Database, source: str, record: dict[str, Any]) -> dict[str, Any]:
    """The held referral's record with this message's withdrawal applied, or NotFound.

    ``record`` may be partial (it failed validation); the person it names, if any, must be
    the held referral's person.
    """
    identifier = _identifier(record)
    elements = (record.get("provenance") or {}).get("elements") or {}
    where = elements.get("referral.identifier", "referral.identifier")
    held = held_record(db, source, identifier) if identifier else None
    if held is None:
        raise NotFound(
            f"no referral {identifier!r} is held from this source to cancel or delete",
            expression=where,
        )
    check_same_referral(held, record)
    event = (record.get("provenance") or {}).get("message_event")
    status = "entered-in-error" if event == "delete" else record["referral"]["status"]
    merged = copy.deepcopy(held)
    merged["referral"]["status"] = status
    provenance = dict(record.get("provenance") or {})
    provenance.pop("received_at", None)
    merged["provenance"] = provenance
    merged["diagnostics"] = record.get("diagnostics") or []
    return merged


def check_held(db: Database, source: str, record: dict[str, Any]) -> None:
    """Refuse a complete cancellation or delete for a referral that is not held."""
    identifier = _identifier(record)
    if identifier is not None and held_record(db, source, identifier) is None:
        elements = (record.get("provenance") or {}).get("elements") or {}
        raise NotFound(
            f"no referral {identifier!r} is held from this source to cancel or delete",
            expression=elements.get("referral.identifier", "referral.identifier"),
        )
