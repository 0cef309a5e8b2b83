"""The durable store: raw inbound messages, referral records and their versions, API keys."""
