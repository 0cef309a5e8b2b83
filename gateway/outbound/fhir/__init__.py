"""Outbound to FHIR servers: the write-back Bundle and its delivery."""
