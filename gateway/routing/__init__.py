"""Routing: which link-worker platform (hub) gets each referral, decided by a rules file."""
