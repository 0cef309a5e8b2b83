"""HL7 v2: ER7 parsing, acknowledgements, the MLLP listener and v2 referral intake."""
