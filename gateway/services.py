"""The gateway's services, attached to the Flask app once and read back typed."""

from __future__ import annotations

from collections.abc import Mapping as ReadOnly
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from flask import Flask, current_app

if TYPE_CHECKING:
    from gateway.intake.fhir import ReferralIntake
    from gateway.intake.hl7v2 import V2Intake
    from gateway.intake.journey import Journey
    from gateway.mapping.engine import Mapping
    from gateway.outbound.destinations import Destinations
    from gateway.outbound.supervisor import Supervisor
    from gateway.store.database import Database
    from gateway.store.keys import KeyRing

_KEY = "gateway"


@dataclass(frozen=True, slots=True)
class Services:
    """What the channels use: the store, the mappings, the destinations and the intakes."""

    db: Database
    mappings: ReadOnly[str, Mapping]
    destinations: Destinations
    keys: KeyRing
    intake: ReferralIntake
    v2intake: V2Intake
    #: Routing, consent and what a new version queues; every intake of this app shares it.
    journey: Journey
    #: The outbox worker running in this process, when ``gateway serve`` runs one.
    outbox_worker: Supervisor | None = None


def init_app(app: Flask, attached: Services) -> None:
    """Attach ``attached`` to ``app`` (replacing what was attached before)."""
    app.extensions[_KEY] = attached


def services(app: Flask) -> Services:
    """The services attached to ``app``."""
    attached = app.extensions[_KEY]
    if not isinstance(attached, Services):  # pragma: no cover - only init_app sets it
        raise TypeError("the app has no gateway services attached")
    return attached


def current_services() -> Services:
    """The services of the app handling the current request."""
    return services(current_app)


def attach_outbox_worker(app: Flask, supervisor: Supervisor) -> None:
    """Record the outbox worker started in this process (the health check watches it)."""
    init_app(app, replace(services(app), outbox_worker=supervisor))
