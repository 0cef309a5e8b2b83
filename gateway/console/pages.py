"""What every console page shares: the sign-in guard, CSRF check, roles, errors, audit."""

from __future__ import annotations

import logging
from typing import Any

from flask import Response, g, make_response, redirect, render_template, request, url_for
from werkzeug.exceptions import HTTPException

from gateway.console.blueprint import bp
from gateway.console.session import User, csrf_token, csrf_valid, current_user
from gateway.errors import GatewayError
from gateway.services import current_services
from gateway.store.audit import record_event

log = logging.getLogger(__name__)
#: Pages open without a session.
OPEN = frozenset({"console.sign_in"})


def user() -> User:
    """The signed-in user of this request (the guard has checked there is one)."""
    found: User = g.console_user
    return found


def page(template: str, status: int = 200, **context: Any) -> Response:
    """A rendered console page."""
    return make_response(render_template(f"console/{template}", **context), status)


def plain(status: int, title: str, text: str) -> Response:
    """A plain page for a refusal (bad CSRF token, not allowed, not found)."""
    return page("problem.html", status, title=title, text=text)


def audit(action: str, target_kind: str, target_id: str | None, **detail: Any) -> None:
    """Append the signed-in user's read or action to the audit trail."""
    who = user()
    record_event(
        current_services().db,
        who.actor(),
        action,
        target_kind,
        target_id,
        {"role": who.role, **detail},
    )


def require_admin() -> Response | None:
    """A 403 page unless the user is an admin."""
    if user().is_admin:
        return None
    return plain(403, "Not allowed", "Only an admin can do this; a viewer key can only look.")


@bp.before_request
def _guard() -> Response | None:
    """Refuse a POST without the session's CSRF token; send the signed-out to sign in."""
    if request.method == "POST" and not csrf_valid(request.form.get("csrf_token")):
        return plain(400, "The form has expired", "Go back, reload the page and try again.")
    found = current_user()
    if found is None and request.endpoint not in OPEN:
        wanted = request.full_path if request.method == "GET" else url_for("console.messages")
        return redirect(url_for("console.sign_in", next=wanted.rstrip("?")))  # type: ignore[return-value]
    g.console_user = found
    return None


@bp.after_request
def _not_framed(response: Response) -> Response:
    """No other site may frame a console page (and trick a click on Reprocess)."""
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("Content-Security-Policy", "frame-ancestors 'none'")
    return response


@bp.context_processor
def _shared() -> dict[str, Any]:
    """What every console template may use: the user and the CSRF token."""
    return {
        "console_user": g.get("console_user"),
        "csrf_token": csrf_token,
        "service_name": "Referral gateway operator console",
    }


@bp.errorhandler(GatewayError)
def _refused(error: GatewayError) -> Response:
    """A domain refusal (not found, invalid) as a plain page."""
    return plain(error.status, "That could not be done", error.message)


@bp.errorhandler(HTTPException)
def _http(error: HTTPException) -> Response:
    """An HTTP error as a plain page."""
    return plain(error.code or 500, error.name, error.description or error.name)


@bp.errorhandler(Exception)
def _fault(error: Exception) -> Response:
    """A fault of ours: logged, and a plain page."""
    log.exception("console fault")
    return plain(500, "Something went wrong", "The fault has been logged; try again later.")
