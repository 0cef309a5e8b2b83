"""Reprocess from the console (admins): one stored message, or a filtered batch."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict

from flask import Response, current_app, redirect, request, url_for

from gateway.console.blueprint import bp
from gateway.console.forms import read_form
from gateway.console.fresh_mappings import mappings_on_disk
from gateway.console.pages import audit, page, plain, require_admin
from gateway.errors import GatewayError, MappingError
from gateway.intake.reprocess import REPROCESSABLE, Attempt, Reprocessor
from gateway.services import current_services
from gateway.store.message_search import matching_ids

#: The most messages one batch form submission runs (the CLI has no limit).
BATCH_LIMIT = 500


def _reprocessor() -> Reprocessor:
    """A reprocessor with the mappings on disk now; MappingError when they do not load."""
    mappings = mappings_on_disk(current_app.config["MAPPINGS_DIR"]).current()
    services = current_services()
    return Reprocessor(services.intake, services.v2intake, mappings)


def _mapping_problem(error: MappingError) -> Response:
    """The page for mappings that do not load: nothing was run."""
    return plain(
        409,
        "The mappings do not load",
        f"Nothing was reprocessed. Fix the mapping and try again: {error}",
    )


def _run(reprocessor: Reprocessor, message_id: int) -> Attempt:
    """Run one message again and audit it."""
    attempt = reprocessor.run(message_id)
    detail = {k: v for k, v in asdict(attempt).items() if v is not None and k != "original_id"}
    audit("reprocess", "message", str(message_id), **detail)
    return attempt


@bp.post("/messages/<int:message_id>/reprocess")
def reprocess_one(message_id: int) -> Response:
    """Run one stored message again; the answer is the new attempt's page."""
    refused = require_admin()
    if refused is not None:
        return refused
    try:
        attempt = _run(_reprocessor(), message_id)
    except MappingError as exc:
        return _mapping_problem(exc)
    if attempt.message_id is None:
        return page("reprocessed.html", attempts=[attempt], counts=Counter([attempt.outcome]))
    return redirect(url_for("console.message", message_id=attempt.message_id))  # type: ignore[return-value]


@bp.route("/reprocess", methods=["GET", "POST"])
def reprocess_batch() -> Response:
    """The batch form (status, source, time range) and, posted, what each message did."""
    refused = require_admin()
    if refused is not None:
        return refused
    form = request.form if request.method == "POST" else request.args
    values, times, errors = read_form(form, ("status", "source"))
    status = values["status"] or "rejected"
    if status not in REPROCESSABLE:
        errors.append(("status", "Choose rejected or failed"))
    sources = sorted(current_services().mappings)
    if request.method == "GET" or errors:
        return page(
            "reprocess.html",
            400 if errors else 200,
            values={**values, "status": status},
            errors=errors,
            sources=sources,
            statuses=REPROCESSABLE,
            limit=BATCH_LIMIT,
        )
    try:
        reprocessor = _reprocessor()
    except MappingError as exc:
        return _mapping_problem(exc)
    ids = matching_ids(
        current_services().db,
        statuses=(status,),
        source=values["source"] or None,
        received_from=times.get("from"),
        received_to=times.get("to"),
        limit=BATCH_LIMIT,
    )
    attempts = []
    for message_id in ids:
        try:
            attempts.append(_run(reprocessor, message_id))
        except GatewayError as exc:
            attempts.append(Attempt(message_id, "not-run", problem=exc.message))
    counts = Counter(a.outcome for a in attempts)
    audit("reprocess-batch", "messages", None, filters=values, counts=dict(counts))
    return page("reprocessed.html", attempts=attempts, counts=counts)
