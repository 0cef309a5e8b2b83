"""The outbox page: pending, in flight and dead letters (with their answers); replay."""

from __future__ import annotations

from flask import Response, redirect, url_for

from gateway.console.blueprint import bp
from gateway.console.pages import audit, page, require_admin
from gateway.outbound import queue
from gateway.services import current_services
from gateway.store import outbox as outbox_store
from gateway.store.outbox_view import waiting


@bp.get("/outbox")
def outbox() -> Response:
    """Counts by state, the oldest waiting and in-flight items, and every dead letter."""
    db = current_services().db
    audit("read", "outbox", None)
    return page(
        "outbox.html",
        counts=outbox_store.counts(db),
        pending=waiting(db, "pending"),
        delivering=waiting(db, "delivering"),
        dead=outbox_store.dead_letters(db),
    )


@bp.post("/outbox/<int:item_id>/replay")
def replay(item_id: int) -> Response:
    """Send a dead letter again (admins); attempts start over."""
    refused = require_admin()
    if refused is not None:
        return refused
    queue.replay(current_services().db, item_id)
    audit("replay", "outbox-item", str(item_id))
    return redirect(url_for("console.outbox"))  # type: ignore[return-value]
