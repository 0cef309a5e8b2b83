"""The pull API for link-worker platforms: one record, or the feed of record versions.

Every read is appended to the audit trail (who, from where, which record or which page of
the feed) before the record is answered.
"""

from __future__ import annotations

from flask import Blueprint, Response, current_app, request

from gateway.auth import authenticate
from gateway.channels.http import json_response as _json
from gateway.errors import InvalidMessage
from gateway.services import current_services
from gateway.store.audit import Actor, record_event
from gateway.store.database import Database
from gateway.store.keys import Principal
from gateway.store.records import get_record as load_record
from gateway.store.records import records_since

bp = Blueprint("records", __name__, url_prefix="/records")


def _db() -> Database:
    return current_services().db


def _actor(principal: Principal) -> Actor:
    """The audit trail's actor for a key's principal, with the caller's address."""
    return Actor(principal.kind, principal.name, request.remote_addr)


def _int_arg(name: str, default: int, low: int, high: int) -> int:
    """An integer query parameter within bounds, else a 400 naming it."""
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    if not (raw.isascii() and raw.isdigit()) or not low <= int(raw) <= high:
        raise InvalidMessage(f"{name} must be a whole number from {low} to {high}", expression=name)
    return int(raw)


@bp.get("/<record_id>")
def get_record(record_id: str) -> Response:
    """The current version of a record (or ?version=N)."""
    reader = authenticate("platform")
    version = _int_arg("version", 0, 1, 1_000_000) or None
    found = load_record(_db(), record_id, version)
    detail = {"version": found["version"]}
    record_event(_db(), _actor(reader), "read", "record", record_id, detail)
    return _json(found)


@bp.get("")
def feed() -> Response:
    """Record versions after ``since`` in commit order: poll with the returned next cursor."""
    reader = authenticate("platform")
    since = _int_arg("since", 0, 0, 2**62)
    limit = _int_arg("limit", 100, 1, int(current_app.config["MAX_PAGE"]))
    items, cursor = records_since(_db(), since, limit)
    if items:  # an empty page shows nobody's record
        detail = {"since": since, "next": cursor, "records": sorted({i["id"] for i in items})}
        record_event(_db(), _actor(reader), "read", "feed", None, detail)
    return _json({"items": items, "next": str(cursor), "more": len(items) == limit})
