"""The durable store: raw inbound messages, referral records and their versions, outcomes,
the outbox, pull watermarks, API keys and the audit trail.

The store owns the tables: only modules of this package import the table models
(``models.py``); everything else calls the store's functions, named after the domain
(``referrals``, ``records``, ``messages``, ``outcomes``, ``outbox``, ``watermarks``, ``keys``,
``audit``; the migrations read them through ``migrate.METADATA``). One SQL style per purpose:

- the intake hot path (``referrals.store_referral``: look for a repeat, insert the referral
  or its next version, the message and the record version) runs SQL written out in
  ``intake_sql.py`` on the driver's own cursor (``direct.Direct``), inside the SQLAlchemy
  transaction, because SQLAlchemy Core costs over ten times the driver's Python per
  statement (bench/README.md, "The intake SQL");
- every other statement the gateway runs per message, outcome or outbox item is SQLAlchemy
  Core on a connection (``Database.writing``, ``Database.snapshot``):
  rejected messages and kept answers, outcomes, the outbox, watermarks;
- ORM sessions (``Database.transaction``, ``Database.reading``) only where whole rows are read
  or written as objects at a low rate: API keys, the audit trail, and the records a platform
  reads (``records``).
"""
