"""Evidence for commissioners: outcome measures per period, source, practice, PCN and hub."""
