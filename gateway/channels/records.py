"""The pull API for link-worker platforms: one record, or the feed of record versions.

Every read is appended to the audit trail (who, from where, which record or which page of
the feed) before the record is answered.
"""

from __future__ import annotations

from flask import Blueprint, Response, current_app

from gateway.auth import authenticate
from gateway.channels.http import actor, int_arg
from gateway.channels.http import json_response as _json
from gateway.services import current_services
from gateway.store.audit import record_event
from gateway.store.database import Database
from gateway.store.records import get_record as load_record
from gateway.store.records import records_since

bp = Blueprint("records", __name__, url_prefix="/records")


def _db() -> Database:
    return current_services().db


@bp.get("/<record_id>")
def get_record(record_id: str) -> Response:
    """The current version of a record (or ?version=N)."""
    reader = authenticate("platform")
    version = int_arg("version", 0, 1, 1_000_000) or None
    found = load_record(_db(), record_id, version, reader.name)
    detail = {"version": found["version"]}
    record_event(_db(), actor(reader), "read", "record", record_id, detail)
    return _json(found)


@bp.get("")
def feed() -> Response:
    """Record versions after ``since`` in commit order: poll with the returned next cursor."""
    reader = authenticate("platform")
    since = int_arg("since", 0, 0, 2**62)
    limit = int_arg("limit", 100, 1, int(current_app.config["MAX_PAGE"]))
    items, cursor = records_since(_db(), since, limit, reader.name)
    if items:  # an empty page shows nobody's record
        detail = {"since": since, "next": cursor, "records": sorted({i["id"] for i in items})}
        record_event(_db(), actor(reader), "read", "feed", None, detail)
    return _json({"items": items, "next": str(cursor), "more": len(items) == limit})
