"""What the fault tests send, and the count of what became of it.

Each message is a new referral with its own ids, built from a fixture. After a run the
store is read with the sqlite3 module: for every message, how many referrals and record
versions hold its referral identifier. "Lost" is acknowledged but not stored; "duplicated"
is more than one referral or version for one message, however often it was resent.
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import orjson
from support import FIXTURES


def fhir_referral(n: int, run: int, fixture: str = "01-new-referral.json") -> tuple[str, bytes]:
    """(referral identifier, body) of an emis-web fixture made the ``n``-th referral of
    ``run``: its own Bundle and MessageHeader ids, and its own referral identifier (the same
    for every fixture, so ``02-update-reason.json`` is a new version of the ``n``-th)."""
    bundle = orjson.loads((FIXTURES / "emis-web" / fixture).read_bytes())
    uid = f"{run:08d}-{fixture[:2]}00-4000-8000-{n:012d}"
    identifier = f"fault-{run}-{n}"
    bundle["id"] = uid
    bundle["identifier"]["value"] = uid
    bundle["entry"][0]["fullUrl"] = f"urn:uuid:{uid}"
    bundle["entry"][0]["resource"]["id"] = uid
    for entry in bundle["entry"]:
        if entry["resource"]["resourceType"] == "ServiceRequest":
            entry["resource"]["identifier"][0]["value"] = identifier
    return identifier, orjson.dumps(bundle)


def v2_referral(n: int, run: int) -> tuple[str, bytes]:
    """(referral identifier, message) of gp-v2's REF^I12 with its own MSH-10 and RF1-6."""
    raw = (FIXTURES / "gp-v2" / "01-new-referral.hl7").read_bytes()
    identifier = f"F{run}-{n}"
    for old, new in ((b"|GP0001|", f"|C{run}-{n}|"), (b"|GPREF1001^", f"|{identifier}^")):
        assert raw.count(old) == 1, old
        raw = raw.replace(old, new.encode())
    return identifier, raw


def held(db_path: Path, source: str) -> dict[str, tuple[int, int]]:
    """Referral identifier -> (referrals, record versions) held for ``source``."""
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=30)
    try:
        rows = conn.execute(
            "SELECT r.referral_identifier, count(DISTINCT r.id), count(v.seq) "
            "FROM referrals r LEFT JOIN record_versions v ON v.referral_id = r.id "
            "WHERE r.source = ? GROUP BY r.referral_identifier",
            (source,),
        ).fetchall()
    finally:
        conn.close()
    return {identifier: (int(refs), int(versions)) for identifier, refs, versions in rows}


@dataclass
class Tally:
    """Messages sent, how often each was sent, and which were acknowledged."""

    attempts: Counter[str] = field(default_factory=Counter)
    acked: set[str] = field(default_factory=set)
    refused: dict[str, str] = field(default_factory=dict)
    #: Resent messages answered "already held": stored on an attempt whose answer was lost.
    held_on_resend: set[str] = field(default_factory=set)

    def counts(self, stored: dict[str, tuple[int, int]]) -> dict[str, int]:
        """sent, acknowledged, stored, lost, duplicated; resent (messages sent more than
        once), attempts (all sends) and held_on_resend."""
        sent = set(self.attempts)
        return {
            "sent": len(sent),
            "acknowledged": len(self.acked),
            "stored": len(sent & set(stored)),
            "lost": len(self.acked - set(stored)),
            "duplicated": sum(1 for m in sent if _many(stored, m)),
            "resent": sum(1 for n in self.attempts.values() if n > 1),
            "attempts": sum(self.attempts.values()),
            "held_on_resend": len(self.held_on_resend),
        }


def _many(stored: dict[str, tuple[int, int]], message: str) -> bool:
    """True when more than one referral or more than one version holds ``message``."""
    referrals, versions = stored.get(message, (0, 0))
    return referrals > 1 or versions > 1


def line(counts: dict[str, int]) -> str:
    """The counts as ``name=value`` pairs."""
    return " ".join(f"{k}={v}" for k, v in counts.items())
