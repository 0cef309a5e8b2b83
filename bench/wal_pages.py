"""How many bytes (and pages) one referral's commit writes to the SQLite WAL.

Every page a transaction changes is written whole to the WAL before the commit's fsync, so
this is what each durable referral costs the disk. Run it from the repository root:

    .venv/bin/python bench/wal_pages.py [--count 500] [--source emis-web|gp-v2]

It stores ``count`` new referrals one at a time through the real intake (FHIR or HL7 v2), with
the background checkpointer held off so the WAL only grows, and prints the growth per
referral. Indexes, row sizes and group commit all show up in this figure.
"""

from __future__ import annotations

import argparse
import itertools
import os
import tempfile
from pathlib import Path

from payload import LOAD_SOURCE, fill, referral_template
from v2_payload import V2_SOURCE, message_template
from v2_payload import fill as fill_v2

from gateway.intake.fhir import ReferralIntake
from gateway.intake.hl7v2 import V2Intake
from gateway.mapping.engine import load_mappings
from gateway.store.database import Database
from gateway.store.migrate import upgrade

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    """Store referrals and print the WAL's growth per referral."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=500)
    parser.add_argument("--source", choices=(LOAD_SOURCE, V2_SOURCE), default=LOAD_SOURCE)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as workdir:
        path = Path(workdir) / "wal.db"
        db = Database(f"sqlite:///{path}")
        upgrade(db)
        db._checkpointer_pid = os.getpid()  # no background checkpoints: the WAL only grows
        mappings = load_mappings(ROOT / "mappings")
        counter = itertools.count()
        if args.source == V2_SOURCE:
            v2, template = V2Intake(db, mappings), message_template()

            def store() -> None:
                ack = v2.handle(V2_SOURCE, fill_v2(template, 1, 0, next(counter)), "mllp")
                assert b"|AA|" in ack, ack

        else:
            fhir, template = ReferralIntake(db, mappings), referral_template()

            def store() -> None:
                body = fill(template, 1, 0, next(counter))
                fhir.receive(
                    LOAD_SOURCE,
                    body,
                    "application/fhir+json",
                    channel="fhir-message",
                    expected=("message",),
                )

        store()
        wal = path.with_name(path.name + "-wal")
        before = wal.stat().st_size
        for _ in range(args.count):
            store()
        grown = (wal.stat().st_size - before) / args.count
        page = 4096 + 24  # a WAL frame: the page and its header
        print(f"{args.source}: {grown:,.0f} WAL bytes per referral ({grown / page:.1f} pages)")
        db.dispose()


if __name__ == "__main__":
    main()
