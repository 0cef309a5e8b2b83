"""Deliverers: one per outbox kind, each sending an item to the destination it names."""

from __future__ import annotations

from gateway.destinations import Destinations
from gateway.outbox.worker import Deliverer


def build_deliverers(destinations: Destinations) -> dict[str, Deliverer]:
    """The deliverer for every outbox kind, configured from the destinations file."""
    from gateway.delivery.fhir import FhirWriteback
    from gateway.delivery.hl7v2 import V2Writeback
    from gateway.delivery.webhook import WebhookDeliverer

    return {
        "webhook": WebhookDeliverer(destinations),
        "fhir-writeback": FhirWriteback(destinations),
        "v2-writeback": V2Writeback(destinations),
    }
