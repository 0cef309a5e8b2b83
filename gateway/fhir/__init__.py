"""FHIR body decoding, XML conversion and structural checks."""
