"""Evidence for commissioners over HTTP: the measures (JSON), the pseudonymised export and
the report page.

- ``GET /evidence/measures``: an admin or commissioner key (Authorization: Bearer).
- ``GET /evidence/export``: an admin key only (row-level, if pseudonymised); every export is
  appended to the audit trail.
- ``GET /evidence/report``: the page, for a key in the Authorization header, or a session
  started on ``/evidence/sign-in`` with an admin or commissioner key (CSRF-checked form).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from flask import (
    Blueprint,
    Response,
    current_app,
    redirect,
    render_template,
    request,
    session,
    stream_with_context,
    url_for,
)

from gateway.auth import presented_key
from gateway.channels.http import json_response
from gateway.console.session import csrf_token, csrf_valid
from gateway.errors import Conflict, Forbidden, InvalidMessage, Unauthenticated
from gateway.evidence import publish
from gateway.evidence.measures import GROUPINGS, Measures
from gateway.evidence.pseudonym import PseudonymKeyError
from gateway.evidence.report import report_context
from gateway.evidence.service import (
    FORMATS,
    BadPeriod,
    current_measures,
    export_inputs,
    export_secret,
    export_text,
    period,
)
from gateway.services import current_services
from gateway.store import evidence as facts
from gateway.store.audit import Actor, record_event
from gateway.store.keys import Principal

log = logging.getLogger(__name__)
bp = Blueprint("evidence", __name__, url_prefix="/evidence")

#: Who may read the measures and the report; the export is for admins alone.
READERS = ("admin", "commissioner")
SESSION_SECONDS = 8 * 3600
_USER = "evidence_user"
MEDIA = {"csv": "text/csv", "ndjson": "application/x-ndjson"}


def _key_principal(kinds: tuple[str, ...]) -> Principal:
    """The principal of the presented key, which must be one of ``kinds``: 401, else 403."""
    key = presented_key()
    if key is None:
        raise Unauthenticated("an API key is required (Authorization: Bearer <key>)")
    principal = current_services().keys.lookup(key)
    if principal is None:
        raise Unauthenticated("the API key is not recognised or has been revoked")
    if principal.kind not in kinds:
        raise Forbidden(f"a {principal.kind} key cannot be used here; {' or '.join(kinds)}")
    return principal


def _session_principal() -> Principal | None:
    """The principal signed in to the report, or None (never, signed out, or expired)."""
    held = session.get(_USER)
    if not isinstance(held, dict) or held.get("kind") not in READERS:
        return None
    if int(held.get("until", 0)) < time.time():
        return None
    return Principal(str(held["kind"]), str(held["name"]))


def _asked() -> tuple[str, Any, Any]:
    """The grouping and period the query asks for (400 naming the parameter otherwise)."""
    grouping = request.args.get("by") or "period"
    if grouping not in GROUPINGS:
        raise InvalidMessage(f"by must be one of {', '.join(GROUPINGS)}", expression="by")
    try:
        since, until = period(request.args.get("from"), request.args.get("to"))
    except BadPeriod as exc:
        raise InvalidMessage(str(exc), expression=str(exc).split()[0]) from None
    return grouping, since, until


def _measures(grouping: str, since: Any, until: Any) -> list[Measures]:
    """The measure table, the facts brought up to date first."""
    attached = current_services()
    routing = attached.journey.routing
    pcns = routing.practice_pcns if routing is not None else None
    return current_measures(attached.db, grouping, since, until, pcns)


@bp.get("/measures")
def measures() -> Response:
    """The measure table for ``by`` over ``from`` to ``to`` (dates, both included)."""
    _key_principal(READERS)
    grouping, since, until = _asked()
    rows = _measures(grouping, since, until)
    return json_response(
        {
            "grouping": grouping,
            "from": request.args.get("from") or None,
            "to": request.args.get("to") or None,
            "suppressed_below": 5,
            "rows": publish.table(rows),
        }
    )


@bp.get("/export")
def export() -> Response:
    """The pseudonymised export of the period as CSV or NDJSON (admin key; audited)."""
    admin = _key_principal(("admin",))
    _, since, until = _asked()
    form = request.args.get("format") or "csv"
    if form not in FORMATS:
        raise InvalidMessage("format must be csv or ndjson", expression="format")
    try:
        secret = export_secret(current_app.config.get("EVIDENCE_SECRET"))
    except PseudonymKeyError as exc:
        raise Conflict(str(exc)) from None
    db = current_services().db
    facts.refresh(db)
    count = facts.export_count(db, since, until)
    detail = {"from": request.args.get("from"), "to": request.args.get("to"), "format": form}
    record_event(
        db,
        Actor(admin.kind, admin.name, request.remote_addr),
        "export",
        "evidence",
        None,
        {**detail, "referrals": count},
    )
    body = export_text(export_inputs(db, since, until), secret, form)
    return Response(
        stream_with_context(body),
        mimetype=MEDIA[form],
        headers={"Content-Disposition": f'attachment; filename="evidence.{form}"'},
    )


@bp.get("/report")
def report() -> Response | Any:
    """The report page: measures, charts and tables for the period and grouping asked."""
    reader = _session_principal()
    if reader is None and presented_key() is not None:
        reader = _key_principal(READERS)
    if reader is None:
        return redirect(url_for("evidence.sign_in", next=request.full_path))
    try:
        grouping, since, until = _asked()
        problem = None
    except InvalidMessage as exc:
        grouping, since, until, problem = "period", None, None, exc.message
    months = _measures("period", since, until)
    rows = months if grouping == "period" else _measures(grouping, since, until)
    context = report_context(grouping, months, rows, request.args)
    return render_template(
        "evidence/report.html",
        problem=problem,
        signed_in=_session_principal() is not None,
        csrf_token=csrf_token(),
        **context,
    )


def _next_page() -> str:
    """Where to go after signing in: the report, never another site."""
    wanted = request.values.get("next") or ""
    if wanted.startswith("/evidence/report") and not wanted.startswith("//"):
        return wanted
    return url_for("evidence.report")


@bp.route("/sign-in", methods=["GET", "POST"])
def sign_in() -> Response | Any:
    """The sign-in form: an admin or commissioner key starts an 8-hour session."""
    if request.method == "GET":
        return render_template(
            "evidence/sign_in.html", error=None, next=_next_page(), csrf_token=csrf_token()
        )
    error = None
    key = (request.form.get("key") or "").strip()
    if not csrf_valid(request.form.get("csrf_token")):
        error = "The form had expired: enter your key again"
    else:
        principal = current_services().keys.lookup(key) if key else None
        if principal is not None and principal.kind in READERS:
            session.clear()
            session[_USER] = {
                "kind": principal.kind,
                "name": principal.name,
                "until": int(time.time()) + SESSION_SECONDS,
            }
            csrf_token()  # a fresh token for the new session
            return redirect(_next_page())
        log.warning("evidence report sign-in refused from %s", request.remote_addr)
        error = "Enter your report key" if not key else "That key cannot open the report"
    page = render_template(
        "evidence/sign_in.html", error=error, next=_next_page(), csrf_token=csrf_token()
    )
    return Response(page, status=401 if key else 400, mimetype="text/html")


@bp.post("/sign-out")
def sign_out() -> Response | Any:
    """End the report session."""
    if csrf_valid(request.form.get("csrf_token")):
        session.pop(_USER, None)
    return redirect(url_for("evidence.sign_in"))
