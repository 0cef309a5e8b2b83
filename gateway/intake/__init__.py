"""Intake: every way a referral or an outcome comes in, through one pipeline.

``pipeline`` receives, keeps, translates, stores and answers a referral, and holds the one
refusal path; ``fhir`` and ``hl7v2`` are its adapters for FHIR and HL7 v2 messages, ``pull``
(with ``pull_server``) polls a source's FHIR server into the FHIR adapter, ``outcomes`` takes a
platform's outcomes, and ``webhooks`` is what a new record version queues.
"""
