"""Inbound and outbound HTTP channels, one blueprint each."""
