"""Service endpoints: health, and the record's JSON Schema."""

from __future__ import annotations

import orjson
from flask import Blueprint, Response, current_app

from gateway.outbox import queue
from gateway.record_schema import record_json_schema
from gateway.store.database import Database

bp = Blueprint("service", __name__)


@bp.get("/healthz")
def healthz() -> Response:
    """200 when the store answers, else 503; no authentication."""
    db: Database = current_app.extensions["gateway.db"]
    healthy = db.ping()
    body: dict[str, object] = {
        "status": "ok" if healthy else "store unavailable",
        "sources": sorted(current_app.extensions["gateway.mappings"]),
    }
    if healthy:
        # Queue depth and dead letters, for dashboards and alerts.
        body["outbox"] = queue.counts(db)
    return Response(orjson.dumps(body), status=200 if healthy else 503, mimetype="application/json")


@bp.get("/schema/referral-record")
def referral_record_schema() -> Response:
    """The JSON Schema of the social prescribing record, generated from the record schema."""
    return Response(orjson.dumps(record_json_schema()), mimetype="application/schema+json")
