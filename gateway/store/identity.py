"""What makes a referral one referral: its key, its content digest, the same person held.

A referral is known within its source by its identifier value and system; two versions have
the same content when they differ only in provenance; and a new version must be about the
person the held one is about.
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

from gateway.errors import Conflict


def record_status(record: dict[str, Any]) -> str:
    """The record's lifecycle status: cancelled when the referral was revoked."""
    status = str(record["referral"]["status"])
    return "cancelled" if status == "revoked" else status


def content_digest(record: dict[str, Any]) -> str:
    """The hash that decides "same content": the record without its provenance."""
    content = {k: v for k, v in record.items() if k != "provenance"}
    return hashlib.sha256(orjson.dumps(content, option=orjson.OPT_SORT_KEYS)).hexdigest()


def _differs(held: Any, new: Any) -> bool:
    """Whether two stated values differ (case and outer spaces aside); unstated never differs."""
    if held in (None, "") or new in (None, ""):
        return False
    return str(held).strip().casefold() != str(new).strip().casefold()


def check_same_referral(held: dict[str, Any], record: dict[str, Any]) -> None:
    """Refuse a new version of a held referral that is about another person or referral.

    The NHS numbers decide when both versions carry one; otherwise family name, given name
    and date of birth must not change. (An identifier under another system is another
    referral: ``referral_key`` never finds this one for it.)
    Nothing is applied, so no webhook and no write-back can follow.
    """
    person, held_person = record.get("person") or {}, held.get("person") or {}
    elements = (record.get("provenance") or {}).get("elements") or {}
    if held_person.get("nhs_number") and person.get("nhs_number"):
        changed = (
            ["nhs_number"] if _differs(held_person["nhs_number"], person["nhs_number"]) else []
        )
    else:
        changed = [
            item
            for item in ("family_name", "given_name", "date_of_birth")
            if _differs(held_person.get(item), person.get(item))
        ]
    if changed:
        item = f"person.{changed[0]}"
        raise Conflict(
            f"this referral identifier is held for another person ({item.split('.')[1]} differs);"
            " nothing was changed: send a new referral identifier for this person",
            expression=elements.get(item, item),
        )


def referral_key(record: dict[str, Any]) -> tuple[str, str]:
    """A referral's identity within its source: (identifier value, system, "" when none)."""
    referral = record["referral"]
    return str(referral["identifier"]), str(referral.get("identifier_system") or "")
