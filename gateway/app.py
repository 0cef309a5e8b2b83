"""The Flask application factory; errors become OperationOutcomes here, in one place."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flask import Flask, Response, g
from werkzeug.exceptions import HTTPException

from gateway import console
from gateway.channels import community, evidence, fhir, hl7v2, outcomes, records, refer, service
from gateway.channels.http import fhir_response
from gateway.config import load_config
from gateway.errors import GatewayError
from gateway.fhir.elements import preload as preload_elements
from gateway.fhir.outcome import from_error, from_http_status
from gateway.hl7v2.limits import Limits
from gateway.intake.fhir import ReferralIntake
from gateway.intake.hl7v2 import V2Intake
from gateway.intake.journey import load_journey
from gateway.mapping.engine import load_mappings
from gateway.outbound.destinations import load_destinations
from gateway.secret import secret_key
from gateway.services import Services, init_app
from gateway.store.database import Database
from gateway.store.keys import KeyRing

log = logging.getLogger(__name__)


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Build the gateway: check every mapping (a bad one stops start-up), open the store."""
    app = Flask(__name__)
    app.config.from_mapping(load_config(config))
    # The FHIR channels read the body themselves, within MAX_BODY_BYTES.
    app.config["MAX_CONTENT_LENGTH"] = None
    app.config["SECRET_KEY"] = secret_key(app.config["SECRET_KEY"], app.config["SECRET_KEY_FILE"])
    app.config.update(SESSION_COOKIE_HTTPONLY=True, SESSION_COOKIE_SAMESITE="Lax")
    logging.basicConfig(
        level=app.config["LOG_LEVEL"], format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    mappings = load_mappings(Path(app.config["MAPPINGS_DIR"]))
    preload_elements()  # about 60 ms: paid at start-up, not by the first referral
    destinations = load_destinations(app.config["DESTINATIONS"], set(mappings))
    db = Database(app.config["DATABASE_URL"])
    journey = load_journey(app.config["ROUTING"], destinations)
    init_app(
        app,
        Services(
            db=db,
            mappings=mappings,
            destinations=destinations,
            keys=KeyRing(db),
            intake=ReferralIntake(db, mappings, journey),
            v2intake=V2Intake(db, mappings, journey, Limits.from_config(app.config)),
            journey=journey,
        ),
    )
    for blueprint in (
        fhir.bp,
        hl7v2.bp,
        outcomes.bp,
        records.bp,
        service.bp,
        console.bp,
        community.bp,
        refer.bp,
        evidence.bp,
    ):
        app.register_blueprint(blueprint)
    _register_errors(app)
    app.after_request(_security_headers)
    return app


def _security_headers(response: Response) -> Response:
    """Every answer may carry patient data: no caching anywhere, no content sniffing."""
    response.headers.setdefault("Cache-Control", "no-store")
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    return response


def _register_errors(app: Flask) -> None:
    """Translate domain errors, HTTP errors and faults into OperationOutcomes."""

    @app.errorhandler(GatewayError)
    def domain_error(error: GatewayError) -> Response:
        headers = {"WWW-Authenticate": "Bearer"} if error.status == 401 else {}
        headers.update(g.get("echo_headers", {}))
        if error.status == 413:
            headers["Connection"] = "close"
        return fhir_response(from_error(error), error.status, headers)

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException) -> Response:
        status = error.code or 500
        # Keep the exception's own headers (a 405's Allow), not its HTML Content-Type.
        kept = {k: v for k, v in error.get_headers() if k.lower() != "content-type"}
        outcome = from_http_status(status, error.description or error.name)
        return fhir_response(outcome, status, kept)

    @app.errorhandler(Exception)
    def fault(error: Exception) -> Response:
        log.exception("unhandled fault")
        outcome = from_http_status(500, "internal error; nothing was acknowledged", "fatal")
        return fhir_response(outcome, 500, dict(g.get("echo_headers", {})))
