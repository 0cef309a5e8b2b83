"""The message browser: search inbound messages, open one, read a record version it made."""

from __future__ import annotations

from typing import Any

import orjson
from flask import Response, request

from gateway.console.blueprint import bp
from gateway.console.forms import (
    Errors,
    decode_cursor,
    encode_cursor,
    nhs_number,
    read_form,
)
from gateway.console.pages import audit, page, plain, user
from gateway.services import current_services
from gateway.store import message_search
from gateway.store.message_search import STATUSES, MessageQuery
from gateway.store.records import get_record

#: The channels a message arrives on (and "reprocess", an operator's attempt).
CHANNELS = (
    "fhir-message",
    "fhir-bundle",
    "fhir-servicerequest",
    "fhir-pull",
    "hl7v2-http",
    "mllp",
    "reprocess",
)
_TEXT = ("source", "channel", "status", "message_id", "referral")


def _query() -> tuple[MessageQuery, dict[str, str], Errors]:
    """The search from the query string, the form's values, and (field, error) pairs."""
    args = request.args
    values, times, errors = read_form(args, (*_TEXT, "nhs"))
    person = None
    if values["nhs"]:
        if not user().is_admin:
            errors.append(("nhs", "Only an admin can search by NHS number"))
        else:
            try:
                person = nhs_number(values["nhs"])
            except ValueError as exc:
                errors.append(("nhs", f"Enter an NHS number: {exc}"))
    if values["status"] and values["status"] not in STATUSES:
        errors.append(("status", "Choose a status from the list"))
    query = MessageQuery(
        source=values["source"] or None,
        channel=values["channel"] or None,
        status=values["status"] if values["status"] in STATUSES else None,
        received_from=times["from"],
        received_to=times["to"],
        message_id=values["message_id"] or None,
        referral=values["referral"] or None,
        nhs_number=person,
        before=decode_cursor(args.get("before")),
    )
    return query, values, errors


@bp.get("/messages")
def messages() -> Response:
    """The search form and one page of matching messages, newest first."""
    query, values, errors = _query()
    services = current_services()
    found = None if errors else message_search.search(services.db, query)
    if found is not None:
        filters = {k: v for k, v in values.items() if v}
        audit("search", "messages", None, filters=filters, shown=[m["id"] for m in found.messages])
    following = None
    if found is not None and found.next is not None:
        following = {**{k: v for k, v in values.items() if v}, "before": encode_cursor(found.next)}
    return page(
        "messages.html",
        400 if errors else 200,
        values=values,
        errors=errors,
        found=found,
        following=following,
        sources=sorted(services.mappings),
        channels=CHANNELS,
        statuses=STATUSES,
    )


def _shown(body: bytes | None, hl7: bool) -> str:
    """A body as text for the page: HL7 v2 with a line per segment (escaped by the template)."""
    if body is None:
        return ""
    text = bytes(body).decode("utf-8", errors="replace")
    if hl7:
        text = text.replace("\r\n", "\n").replace("\r", "\n").strip("\x0b\x1c\n")
    return text


@bp.get("/messages/<int:message_id>")
def message(message_id: int) -> Response:
    """One stored message: raw body, the answer sent, diagnostics, status, versions made."""
    found = message_search.message(current_services().db, message_id)
    if found is None:
        return plain(404, "Message not found", f"There is no stored message {message_id}.")
    hl7 = "hl7" in (found["content_type"] or "") or bytes(found["body"][:3]) == b"MSH"
    audit(
        "read",
        "message",
        str(message_id),
        referral_id=found["referral_id"],
        version=found["record_version"],
    )
    return page(
        "message.html",
        message=found,
        body=_shown(found["body"], hl7),
        answer=_shown(found["response"], True),
        reprocessable=found["status"] in ("rejected", "failed") and not found["body_truncated"],
    )


@bp.get("/records/<referral_id>")
def record(referral_id: str) -> Response:
    """One version of a referral's record (the current one unless ?version=N)."""
    raw = request.args.get("version", "")
    version = int(raw) if raw.isascii() and raw.isdigit() and 0 < int(raw) < 10**6 else None
    found: dict[str, Any] = get_record(current_services().db, referral_id, version)
    audit("read", "record", referral_id, version=found["version"])
    shown = orjson.dumps(found["record"], option=orjson.OPT_INDENT_2).decode()
    return page("record.html", record=found, record_json=shown)
