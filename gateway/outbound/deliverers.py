"""Deliverers: one per outbox kind, each sending an item to the destination it names."""

from __future__ import annotations

from gateway.outbound.destinations import Destinations
from gateway.outbound.worker import Deliverer


def build_deliverers(destinations: Destinations) -> dict[str, Deliverer]:
    """The deliverer for every outbox kind, configured from the destinations file."""
    from gateway.outbound.fhir.delivery import FhirWriteback
    from gateway.outbound.hl7v2.delivery import V2Writeback
    from gateway.outbound.webhook import WebhookDeliverer

    return {
        "webhook": WebhookDeliverer(destinations),
        "fhir-writeback": FhirWriteback(destinations),
        "v2-writeback": V2Writeback(destinations),
    }
