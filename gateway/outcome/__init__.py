"""Outcomes from link-worker platforms: the outcome record, the status machine, intake."""
