"""Service endpoints: health, and the record's JSON Schema."""

from __future__ import annotations

import orjson
from flask import Blueprint, Response, current_app, request

from gateway.auth import presented_key
from gateway.errors import Forbidden, NotFound, StoreUnavailable, Unauthenticated
from gateway.outbound.supervisor import delivery_stalled
from gateway.record.schema import record_json_schema
from gateway.services import current_services
from gateway.store import outbox as outbox_store

bp = Blueprint("service", __name__)


#: Keys that may see the outbox counts in /healthz.
_SEE_OUTBOX = ("platform", "admin")


@bp.get("/healthz")
def healthz() -> Response:
    """200 when the store answers and delivery is not stuck, else 503; no key needed, but
    only a platform or admin key sees the outbox counts."""
    attached = current_services()
    db = attached.db
    status = "ok" if db.ping() else "store unavailable"
    if status == "ok":
        try:
            stalled = delivery_stalled(
                db,
                float(current_app.config["OUTBOX_STALL_SECONDS"]),
                attached.outbox_worker,
            )
        except StoreUnavailable:
            status = "store unavailable"
        else:
            status = "outbox stalled" if stalled else "ok"
    body: dict[str, object] = {
        "status": status,
        "sources": sorted(attached.mappings),
    }
    if status != "store unavailable" and _may_see_outbox():
        # Queue depth and dead letters, for dashboards and alerts.
        body["outbox"] = outbox_store.counts(db)
    return Response(
        orjson.dumps(body), status=200 if status == "ok" else 503, mimetype="application/json"
    )


def _may_see_outbox() -> bool:
    """True when the caller presented a live platform or admin key (no key is no error)."""
    key = presented_key()
    if key is None:
        return False
    try:
        principal = current_services().keys.lookup(key)
    except StoreUnavailable:
        return False
    return principal is not None and principal.kind in _SEE_OUTBOX


@bp.get("/schema/referral-record")
def referral_record_schema() -> Response:
    """The JSON Schema of the social prescribing record, generated from the record schema."""
    return Response(orjson.dumps(record_json_schema()), mimetype="application/schema+json")


@bp.get("/openapi.json")
def openapi_document() -> Response:
    """The OpenAPI 3.1 document of the non-FHIR API (no key needed)."""
    from gateway.openapi import document

    return Response(
        orjson.dumps(document(int(current_app.config["MAX_PAGE"]))), mimetype="application/json"
    )


@bp.get("/readyz")
def readyz() -> Response:
    """200 when the gateway can take traffic: store reachable, schema current, mappings
    loaded and delivery not stuck; else 503 naming each check that failed."""
    from gateway.store.migrate import schema_current

    attached = current_services()
    db = attached.db
    checks = {"store": db.ping(), "mappings": bool(attached.mappings)}
    checks["migrations"] = checks["store"] and schema_current(db)
    try:
        stalled = checks["store"] and delivery_stalled(
            db, float(current_app.config["OUTBOX_STALL_SECONDS"]), attached.outbox_worker
        )
    except StoreUnavailable:
        checks["store"] = False
        stalled = False
    checks["outbox"] = checks["store"] and not stalled
    ready = all(checks.values())
    body = {"status": "ready" if ready else "not ready", "checks": checks}
    return Response(orjson.dumps(body), status=200 if ready else 503, mimetype="application/json")


@bp.get("/metrics")
def metrics_page() -> Response:
    """Prometheus text: every process's counts and the outbox by state (docs/operations.md,
    "Metrics"); open to METRICS_SCRAPERS, else the metrics token or an admin key."""
    from gateway import metrics
    from gateway.metrics_access import may_scrape
    from gateway.store.outbox_ages import state_ages

    config = current_app.config
    if not int(config["METRICS"]):
        raise NotFound("metrics are turned off (GATEWAY_METRICS=0)")
    attached = current_services()

    def is_admin(key: str) -> bool:
        principal = attached.keys.lookup(key)
        return principal is not None and principal.kind == "admin"

    settings = (str(config["METRICS_SCRAPERS"]), str(config["METRICS_TOKEN"]))
    allowed = may_scrape(request.remote_addr, presented_key(), settings, is_admin)
    if allowed is None:
        raise Unauthenticated("the metrics token or an admin key is required")
    if not allowed:
        raise Forbidden("this key may not read the metrics")

    def outbox() -> list[tuple[str, int, float | None]]:
        try:
            return state_ages(attached.db)
        except StoreUnavailable:
            return []  # the rest of the page still answers; /readyz says the store is away

    body, kind = metrics.exposition(metrics.OutboxCollector(outbox), config["METRICS_DIR"])
    return Response(body, mimetype=None, content_type=kind)
