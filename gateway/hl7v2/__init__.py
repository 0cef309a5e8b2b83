"""HL7 v2, the protocol only: ER7 parsing, ACKs, batches, strict validation, MLLP framing."""
