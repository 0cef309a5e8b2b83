"""How fast the console's message search answers over 1,000,000 stored messages on SQLite.

Fills a fresh SQLite store (migrated to head) with synthetic messages, referrals and record
versions in one transaction (executemany), then times each search the console makes through
``gateway.store.message_search.search`` (the console's own statement, SQLAlchemy included):
with the indexes of migration 0010, then in the same run after dropping them (the baseline).

    .venv/bin/python bench/console_search.py [--messages 1000000] [--repeats 7] [--keep DIR]

Bodies and records are short (a few hundred bytes) so that the store stays a few hundred MB;
what the searches read are the indexes, plus one row per result, so the sizes matter little
except to the NHS number search, which reads every record.
"""

from __future__ import annotations

import argparse
import random
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gateway.store.database import Database  # noqa: E402
from gateway.store.message_search import MessageQuery, search  # noqa: E402
from gateway.store.migrate import upgrade  # noqa: E402
from gateway.store.refused_numbers import numbers_in  # noqa: E402

SOURCES = ("emis-web", "systmone", "vision", "uk-core", "gp-v2", "hospital-a", "hospital-b")
#: Migration 0010's indexes: dropped for the baseline.
CONSOLE_INDEXES = (
    "ix_messages_source_received",
    "ix_messages_refused_received",
    "ix_messages_sender_id",
    "ix_messages_reprocessed_from",
    "ix_referrals_identifier",
    "ix_referrals_held",
    "ix_record_versions_nhs_number",
    "ix_refused_nhs_numbers_number",
)
START = datetime(2026, 10, 1, tzinfo=UTC)
SPAN = timedelta(days=60)


def _stamp(when: datetime) -> str:
    """A time as SQLAlchemy keeps it in SQLite."""
    return when.strftime("%Y-%m-%d %H:%M:%S.%f")


def fill(path: Path, count: int) -> dict[str, str]:
    """Fill the store at ``path``; returns sample values to search for."""
    rng = random.Random(7)
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = OFF")
    messages, referrals, versions = [], [], []
    samples: dict[str, str] = {}
    referral_of: dict[int, tuple[str, str, int]] = {}
    opened: list[int] = []
    step = SPAN / count
    for n in range(1, count + 1):
        when = _stamp(START + step * n)
        source = SOURCES[n % len(SOURCES)]
        roll = rng.random()
        status = "accepted" if roll < 0.92 else "rejected" if roll < 0.99 else "failed"
        sender_id = str(uuid.UUID(int=rng.getrandbits(128)))
        nhs = f"999{n % 10_000_000:07d}"
        body = f'{{"resourceType":"Bundle","id":"{sender_id}","nhs":"{nhs}","pad":"{"x" * 200}"}}'
        referral_id = version = None
        if status == "accepted":
            # About three versions per referral: a new referral one time in three.
            if not opened or rng.random() < 0.34:
                key = len(opened)
                opened.append(key)
                referral_of[key] = (str(uuid.uuid4()), f"REF{n:08d}", 0)
                held = "consent refused" if rng.random() < 0.01 else None
                rid, ident, _ = referral_of[key]
                referrals.append((rid, source, ident, "", 1, "active", when, when, held))
            else:
                key = opened[rng.randrange(len(opened))]
            rid, ident, seen = referral_of[key]
            version = seen + 1
            referral_of[key] = (rid, ident, version)
            referral_id = rid
            record = f'{{"person":{{"nhs_number":"{nhs}"}},"referral":{{"identifier":"{ident}"}}}}'
            versions.append((rid, version, "c" * 64, "active", record, when, n, "*"))
            samples.setdefault("referral", ident)
            samples["nhs"] = nhs
        if n == count // 2:
            samples["message_id"] = sender_id
        messages.append(
            (
                n,
                when,
                "fhir-message",
                source,
                "application/fhir+json",
                body.encode(),
                0,
                "s" * 64,
                sender_id,
                status,
                200 if status == "accepted" else 422,
                referral_id,
                version,
            )
        )
    conn.execute("BEGIN")
    conn.executemany(
        "INSERT INTO referrals (id, source, referral_identifier, referral_identifier_system,"
        " current_version, status, created_at, updated_at, held_reason, workflow_status,"
        " cancellation_requested, hub) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'requested', 0, '*')",
        referrals,
    )
    conn.executemany(
        "INSERT INTO messages (id, received_at, channel, source, content_type, body,"
        " body_truncated, body_sha256, source_message_id, status, http_status, referral_id,"
        " record_version) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        messages,
    )
    conn.executemany(
        "INSERT INTO record_versions (referral_id, version, content_sha256, status, record,"
        " received_at, message_id, hub) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        versions,
    )
    conn.executemany(
        "INSERT INTO refused_nhs_numbers (message_id, nhs_number) VALUES (?, ?)",
        [
            (row[0], number)
            for row in messages
            if row[9] != "accepted"
            for number in numbers_in(row[5])
        ],
    )
    conn.execute("COMMIT")
    conn.execute("ANALYZE")
    conn.close()
    return samples


def _queries(samples: dict[str, str]) -> dict[str, MessageQuery]:
    """The searches the console makes, by name."""
    end = START + SPAN
    day = (end - timedelta(days=1), end)
    old_week = (START + timedelta(days=10), START + timedelta(days=17))
    return {
        "newest first, no filter": MessageQuery(),
        "by sender's message id": MessageQuery(message_id=samples["message_id"]),
        "by gateway message number": MessageQuery(message_id="500000"),
        "by referral identifier": MessageQuery(referral=samples["referral"]),
        "source + rejected + last day": MessageQuery(
            source="gp-v2", status="rejected", received_from=day[0], received_to=day[1]
        ),
        "source + rejected + a week 7 weeks ago": MessageQuery(
            source="vision", status="rejected", received_from=old_week[0], received_to=old_week[1]
        ),
        "source + accepted + a week 7 weeks ago": MessageQuery(
            source="vision", status="accepted", received_from=old_week[0], received_to=old_week[1]
        ),
        "rejected, any source": MessageQuery(status="rejected"),
        "failed + a week 7 weeks ago": MessageQuery(
            status="failed", received_from=old_week[0], received_to=old_week[1]
        ),
        "source only": MessageQuery(source="hospital-b"),
        "held": MessageQuery(status="held"),
        "NHS number (admin)": MessageQuery(nhs_number=samples["nhs"]),
    }


def _timed(call: Callable[[], Any], repeats: int) -> tuple[float, float]:
    """(median, max) milliseconds of ``repeats`` calls after one warm-up."""
    call()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times), max(times)


def _measure(db: Database, queries: dict[str, MessageQuery], repeats: int) -> dict[str, Any]:
    """Each query's (median, max, rows on the first page), and the second page's timing."""
    out: dict[str, Any] = {}
    for name, query in queries.items():
        rows = len(search(db, query).messages)
        median, worst = _timed(partial(search, db, query), repeats)
        out[name] = (median, worst, rows)
    first = search(db, queries["source + rejected + a week 7 weeks ago"])
    if first.next is not None:
        second = replace(queries["source + rejected + a week 7 weeks ago"], before=first.next)
        out["... its second page (keyset)"] = (*_timed(lambda: search(db, second), repeats), 50)
    return out


def main() -> None:
    """Fill, measure with the console's indexes, drop them, measure again; print a table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--keep", default=None, help="Keep the store in this folder.")
    args = parser.parse_args()
    folder = Path(args.keep or tempfile.mkdtemp(prefix="console-search-"))
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "gateway.db"
    path.unlink(missing_ok=True)
    db = Database(f"sqlite:///{path}")
    upgrade(db)
    db.dispose()
    start = time.perf_counter()
    samples = fill(path, args.messages)
    filled = time.perf_counter() - start
    size = path.stat().st_size / 1e6
    print(f"filled {args.messages:,} messages in {filled:.1f} s ({size:,.0f} MB) at {path}")
    db = Database(f"sqlite:///{path}")
    queries = _queries(samples)
    indexed = _measure(db, queries, args.repeats)
    db.dispose()
    conn = sqlite3.connect(path)
    for name in CONSOLE_INDEXES:
        conn.execute(f"DROP INDEX {name}")
    conn.execute("ANALYZE")
    conn.close()
    db = Database(f"sqlite:///{path}")
    baseline = _measure(db, queries, max(1, args.repeats // 3))
    db.dispose()
    width = max(len(n) for n in indexed)
    print(f"{'search (first page, 50 rows)':<{width}}  rows  with 0010 median/max ms  without")
    for name, (median, worst, rows) in indexed.items():
        base = baseline.get(name, (float("nan"), float("nan"), 0))
        print(f"{name:<{width}}  {rows:>4}  {median:>9.1f} / {worst:>7.1f}  {base[0]:>9.1f}")


if __name__ == "__main__":
    main()
