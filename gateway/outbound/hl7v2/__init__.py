"""Outbound to HL7 v2 systems: the REF^I12 (RRI) write-back and its delivery over MLLP."""
