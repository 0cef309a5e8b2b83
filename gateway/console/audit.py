"""The audit trail page: events filtered by actor, action, target and time, newest last."""

from __future__ import annotations

from flask import Response, request

from gateway.console.blueprint import bp
from gateway.console.forms import read_form
from gateway.console.pages import audit as audited
from gateway.console.pages import page
from gateway.services import current_services
from gateway.store.audit import events

PAGE = 100


@bp.get("/audit")
def audit_trail() -> Response:
    """One page of audit events matching the filters; ``after`` pages on."""
    args = request.args
    values, times, errors = read_form(args, ("actor", "action", "target"))
    after = args.get("after", "0")
    found = []
    if not errors:
        found = events(
            current_services().db,
            since=times.get("from"),
            until=times.get("to"),
            actor=values["actor"] or None,
            action=values["action"] or None,
            target_id=values["target"] or None,
            after_id=int(after) if after.isascii() and after.isdigit() else 0,
            limit=PAGE + 1,
        )
        audited("search", "audit", None, filters={k: v for k, v in values.items() if v})
    following = None
    if len(found) > PAGE:
        found = found[:PAGE]
        following = {**{k: v for k, v in values.items() if v}, "after": found[-1]["id"]}
    return page(
        "audit.html",
        400 if errors else 200,
        values=values,
        errors=errors,
        events=found,
        following=following,
    )
