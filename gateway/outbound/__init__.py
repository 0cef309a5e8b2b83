"""Everything the gateway sends: the outbox, its worker, and one deliverer per destination kind."""
