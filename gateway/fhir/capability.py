"""The gateway's FHIR CapabilityStatement."""

from __future__ import annotations

from typing import Any

from gateway import __version__


def capability_statement(base: str) -> dict[str, Any]:
    """What the FHIR endpoints accept, for senders' conformance tooling."""
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": "2026-11-22",
        "kind": "instance",
        "software": {"name": "sp-gateway", "version": __version__},
        "implementation": {
            "description": "Social prescribing referral gateway (PRSB record intake)",
            "url": base,
        },
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json", "application/fhir+xml"],
        "rest": [
            {
                "mode": "server",
                "security": {
                    "description": "An API key per source system: Authorization: Bearer <key>"
                },
                "resource": [
                    {
                        "type": "ServiceRequest",
                        "supportedProfile": [
                            "https://fhir.hl7.org.uk/StructureDefinition/UKCore-ServiceRequest"
                        ],
                        "interaction": [{"code": "create"}],
                    }
                ],
                "interaction": [{"code": "transaction"}, {"code": "batch"}],
                "operation": [
                    {
                        "name": "process-message",
                        "definition": "http://hl7.org/fhir/OperationDefinition/MessageHeader-process-message",
                    }
                ],
            }
        ],
    }
