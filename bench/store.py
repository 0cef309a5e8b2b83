"""The cost of one intake statement: SQLAlchemy Core against the driver cursor (Direct).

    .venv/bin/python bench/store.py [--count 20000]

Both run the same SELECT of the intake path (a referral by source and identifier) on the same
SQLite connection, inside one open transaction, so only the Python on the way differs. The
figures behind gateway/store/direct.py.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import bindparam, select

from gateway.store.database import Database
from gateway.store.direct import Direct, Sql
from gateway.store.migrate import upgrade
from gateway.store.models import Referral

CORE = select(Referral.id, Referral.current_version).where(
    Referral.source == bindparam("source"),
    Referral.referral_identifier == bindparam("identifier"),
)
DIRECT = Sql(
    "SELECT id, current_version FROM referrals"
    " WHERE source = :source AND referral_identifier = :identifier"
)
PARAMS = {"source": "emis-web", "identifier": "1001"}


def per_call_us(func: Callable[[], object], count: int) -> float:
    """CPU microseconds per call, after a warm-up."""
    for _ in range(200):
        func()
    start = time.process_time()
    for _ in range(count):
        func()
    return (time.process_time() - start) / count * 1e6


def main() -> None:
    """Print µs per statement for each path."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=20000)
    count = parser.parse_args().count
    with tempfile.TemporaryDirectory() as workdir:
        db = Database(f"sqlite:///{Path(workdir) / 'store.db'}")
        upgrade(db)
        with db.writing() as conn:
            direct = Direct(conn)
            core = per_call_us(lambda: conn.execute(CORE, PARAMS).first(), count)
            raw = per_call_us(lambda: direct.first(DIRECT, PARAMS), count)
        db.dispose()
    print(f"SQLAlchemy Core execute + first: {core:6.1f} µs per statement")
    print(f"Direct (driver cursor):          {raw:6.1f} µs per statement ({core / raw:.1f}x)")


if __name__ == "__main__":
    main()
