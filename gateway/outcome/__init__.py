"""Outcomes from link-worker platforms: the outcome record and the status machine."""
