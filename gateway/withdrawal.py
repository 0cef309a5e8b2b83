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
from gateway.store.identity import check_same_referral
from gateway.store.referrals import Apply

WITHDRAWN = ("revoked", "entered-in-error")


def is_withdrawal(record: dict[str, Any]) -> bool:
    """Whether a (possibly partial) record cancels or deletes its referral."""
    event = (record.get("provenance") or {}).get("message_event")
    status = (record.get("referral") or {}).get("status")
    return event == "delete" or status in WITHDRAWN


def _identifier(record: dict[str, Any]) -> str | None:
    identifier = (record.get("referral") or {}).get("identifier")
    return identifier if isinstance(identifier, str) and identifier else None


def not_held(record: dict[str, Any]) -> NotFound:
    """The refusal of a cancellation or delete for a referral that is not held."""
    elements = (record.get("provenance") or {}).get("elements") or {}
    return NotFound(
        f"no referral {_identifier(record)!r} is held from this source to cancel or delete",
        expression=elements.get("referral.identifier", "referral.identifier"),
    )


def names_held_referral(record: dict[str, Any]) -> bool:
    """Whether a (possibly partial) record cancels or deletes a referral it identifies."""
    return is_withdrawal(record) and _identifier(record) is not None


def withdrawal(record: dict[str, Any], *, complete: bool) -> Apply:
    """What this cancellation or delete does to the held referral's current record.

    Run by the store inside its write transaction. ``record`` may be partial (it failed
    validation): the new version is then the held record with the new status and this
    message's provenance. A complete record is stored as it is. Either way the person it
    names, if any, must be the held referral's person, and nothing is held -> NotFound.
    """

    def apply(held: dict[str, Any] | None) -> dict[str, Any]:
        if held is None:
            raise not_held(record)
        check_same_referral(held, record)
        return record if complete else withdrawn_record(held, record)

    return apply


def withdrawn_record(held: dict[str, Any], record: dict[str, Any]) -> dict[str, Any]:
    """The held record with the withdrawal in (partial) ``record`` applied."""
    # The status the message states wins (a REF^I14 cancel is "revoked" though its event is
    # a delete); a delete that states no withdrawn status is an entry made in error.
    status = record["referral"].get("status")
    if status not in WITHDRAWN:
        status = "entered-in-error"
    merged = copy.deepcopy(held)
    merged["referral"]["status"] = status
    provenance = dict(record.get("provenance") or {})
    provenance.pop("received_at", None)
    merged["provenance"] = provenance
    merged["diagnostics"] = record.get("diagnostics") or []
    return merged
