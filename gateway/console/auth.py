"""Signing in to the console with an admin or viewer key, and signing out."""

from __future__ import annotations

import logging

from flask import Response, g, redirect, request, url_for

from gateway.console.blueprint import bp
from gateway.console.pages import audit, page
from gateway.console.session import ROLES, current_user
from gateway.console.session import sign_in as start_session
from gateway.console.session import sign_out as end_session
from gateway.services import current_services

log = logging.getLogger(__name__)


def _next_page() -> str:
    """Where to go after signing in: a console page, never another site."""
    wanted = request.values.get("next") or ""
    if wanted.startswith("/console") and not wanted.startswith("//"):
        return wanted
    return url_for("console.messages")


@bp.route("/sign-in", methods=["GET", "POST"])
def sign_in() -> Response:
    """The sign-in form; a known admin or viewer key starts a session."""
    if request.method == "GET":
        return page("sign_in.html", next=_next_page(), error=None)
    key = (request.form.get("key") or "").strip()
    principal = current_services().keys.lookup(key) if key else None
    if principal is None or principal.kind not in ROLES:
        log.warning("console sign-in refused from %s", request.remote_addr)
        error = "Enter an admin or viewer key" if not key else "That key is not a console key"
        return page("sign_in.html", 401, next=_next_page(), error=error)
    start_session(principal.name, principal.kind)
    g.console_user = current_user()
    audit("sign-in", "console", None)
    return redirect(_next_page())  # type: ignore[return-value]


@bp.post("/sign-out")
def sign_out() -> Response:
    """End the session."""
    audit("sign-out", "console", None)
    end_session()
    return redirect(url_for("console.sign_in"))  # type: ignore[return-value]


@bp.get("/")
def home() -> Response:
    """The console opens on the message search."""
    return redirect(url_for("console.messages"))  # type: ignore[return-value]
