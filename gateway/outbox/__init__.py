"""The durable outbox: deliveries queued in the store and sent by workers after commit."""
