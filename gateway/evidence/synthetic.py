"""A generated data set for the evidence tests and benchmark: referrals, record versions and
outcomes written straight into the store's tables, as intake and outcome posting leave them.

The same rows the store functions write (a message per version, a referral with its current
version, outcomes whose bodies are outcome records), minus the per-request work, so 100,000
referrals load in seconds. ``Generated`` keeps the truth in plain values, for a test to
count from without the gateway's code.
"""

from __future__ import annotations

import hashlib
import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import func, select

from gateway.store.database import Database
from gateway.store.migrate import METADATA

START = datetime(2026, 1, 1, tzinfo=UTC)
SOURCES = ("emis-web", "gp-v2", "hospital-a", "community")
PRACTICES = ("B99001", "B99002", "B99003", "Y99004", None)
#: practice -> PCN, as an ePCN table would give it (Y99004 belongs to none).
PCNS = {"B99001": "U99001", "B99002": "U99001", "B99003": "U99002"}
HUBS = ("leeds", "pennine", "*", None)
#: Ways a referral's outcomes run, each a valid walk of the status machine.
PATHS = (
    (),
    ("accepted",),
    ("rejected",),
    ("accepted", "in-progress"),
    ("accepted", "in-progress", "completed"),
    ("accepted", "in-progress", "in-progress", "completed"),
    ("accepted", "on-hold", "completed"),
    ("accepted", "cancelled"),
    ("cancelled",),
    ("accepted", "in-progress", "failed"),
)
RANGES = {
    "wemwbs": (14, 70),
    "swemwbs": (7, 35),
    "ons4-life-satisfaction": (0, 10),
    "ons4-anxiety": (0, 10),
    "ucla3": (3, 9),
}
ATTENDANCE = (None, "attended", "attended", "did not attend", "cancelled by person")


@dataclass
class GeneratedOutcome:
    """One outcome as posted: status, contacts (time, attendance) and scores."""

    status: str
    contacts: list[tuple[datetime, str | None]]
    scores: list[tuple[str, date, float]]


@dataclass
class GeneratedReferral:
    """One referral's truth: where it came from, where it went, what happened."""

    id: str
    source: str
    received: datetime
    practice: str | None
    hub: str | None
    nhs_number: str
    outcomes: list[GeneratedOutcome] = field(default_factory=list)


def _nhs_number(n: int) -> str:
    """A valid (mod 11) NHS number in the 999 test range."""
    while True:
        digits = f"999{n % 10_000_000:07d}"[:9]
        total = sum(int(d) * (10 - i) for i, d in enumerate(digits))
        check = 11 - total % 11
        if check == 11:
            check = 0
        if check != 10:
            return digits + str(check)
        n += 1


def _record(ref: GeneratedReferral, n: int, rng: random.Random) -> dict[str, Any]:
    """A record in the gateway's format, with a name, address and free text to keep out."""
    born = date(1930, 1, 1) + timedelta(days=rng.randrange(0, 365 * 85))
    practice = (
        {"ods_code": ref.practice, "name": f"Practice {ref.practice}"} if ref.practice else {}
    )
    return {
        "person": {
            "nhs_number": ref.nhs_number,
            "given_name": f"Given{n}",
            "family_name": f"Family{n}",
            "date_of_birth": born.isoformat(),
            "sex": rng.choice(("female", "male", "unknown")),
            "address": {"lines": [f"{n} Long Street"], "city": "Leeds", "postcode": "LS1 4AP"},
        },
        "gp_practice": practice,
        "referral": {
            "identifier": f"R{n}",
            "status": "active",
            "date": ref.received.isoformat(),
            "method": "secure messaging",
            "reason": f"Free text about person {n}",
            "reason_codes": [{"system": "http://snomed.info/sct", "code": "422650009"}],
        },
        "provenance": {"source_system": ref.source},
    }


def _outcomes(
    ref: GeneratedReferral, rng: random.Random, person_scores: dict[str, float]
) -> list[GeneratedOutcome]:
    """The outcomes of one referral: a status walk, contacts and scores along it."""
    out = []
    moment = ref.received
    for status in rng.choice(PATHS):
        moment += timedelta(hours=rng.randrange(1, 24 * 20))
        contacts = []
        if status in ("accepted", "in-progress") and rng.random() < 0.8:
            contacts.append((moment, rng.choice(ATTENDANCE)))
        scores = []
        for _ in range(rng.randrange(0, 3)):
            instrument = rng.choice(tuple(RANGES))
            low, high = RANGES[instrument]
            base = person_scores.setdefault(instrument, rng.randint(low, high))
            value = min(high, max(low, base + rng.randint(-4, 6)))
            taken = moment.date() - timedelta(days=rng.randrange(0, 3))
            scores.append((instrument, taken, float(value)))
        out.append(GeneratedOutcome(status, contacts, scores))
    if out and rng.random() < 0.05:  # a contact recorded as before receipt: not counted
        out[0].contacts.append((ref.received - timedelta(hours=2), "attended"))
    return out


def generate(
    n: int, seed: int = 20261203, first: int = 0
) -> Iterator[tuple[GeneratedReferral, dict[str, Any]]]:
    """``n`` referrals (with their records) received over 2026, about one person in three
    referred twice."""
    rng = random.Random(seed)
    people: dict[str, dict[str, float]] = {}
    for i in range(n):
        person = rng.randrange(max(1, n * 2 // 3))
        ref = GeneratedReferral(
            id=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            source=rng.choice(SOURCES),
            received=START + timedelta(seconds=rng.randrange(0, 330 * 86400)),
            practice=rng.choice(PRACTICES),
            hub=rng.choice(HUBS),
            nhs_number=_nhs_number(person),
        )
        ref.outcomes = _outcomes(ref, rng, people.setdefault(ref.nhs_number, {}))
        yield ref, _record(ref, first + i, rng)


def _outcome_body(ref: GeneratedReferral, k: int, item: GeneratedOutcome) -> dict[str, Any]:
    """The outcome record a platform would have posted."""
    body: dict[str, Any] = {
        "outcome_id": f"o{k}",
        "status": item.status,
        "occurred_at": ref.received.isoformat(),
        "link_worker": "Sam Link-Worker",
    }
    if item.status in ("rejected", "cancelled", "on-hold", "failed"):
        body["status_reason"] = "a reason in free text"
    if item.contacts:
        body["contacts"] = [
            {"date": when.isoformat(), "mechanism": "telephone", **({"outcome": a} if a else {})}
            for when, a in item.contacts
        ]
    if item.scores:
        body["assessments"] = [
            {"instrument": i, "score": s, "date": d.isoformat()} for i, d, s in item.scores
        ]
    return body


def load(
    db: Database, n: int, seed: int = 20261203, first: int = 0, chunk: int = 5000
) -> list[GeneratedReferral]:
    """Write ``n`` generated referrals with their outcomes into the store; their truth back.
    ``first`` numbers their identifiers, so that a second load adds to the first.

    One referral in ten has a second version whose practice differs: the measures must
    follow the current version.
    """
    tables = METADATA.tables
    made: list[GeneratedReferral] = []
    rows: dict[str, list[dict[str, Any]]] = {
        t: [] for t in ("referrals", "messages", "versions", "outcomes")
    }
    rng = random.Random(seed + 1)
    with db.snapshot() as conn:
        message_id = conn.execute(select(func.max(tables["messages"].c.id))).scalar() or 0

    def flush() -> None:
        with db.writing() as conn:
            conn.execute(tables["referrals"].insert(), rows["referrals"])
            conn.execute(tables["messages"].insert(), rows["messages"])
            conn.execute(tables["record_versions"].insert(), rows["versions"])
            if rows["outcomes"]:
                conn.execute(tables["outcomes"].insert(), rows["outcomes"])
        for kept in rows.values():
            kept.clear()

    for number, (ref, record) in enumerate(generate(n, seed, first), start=first):
        versions = [record]
        if rng.random() < 0.1:
            earlier = orjson.loads(orjson.dumps(record))
            earlier["gp_practice"] = {"ods_code": "Z99999", "name": "A practice left"}
            versions = [earlier, record]
        final = ref.outcomes[-1].status if ref.outcomes else "requested"
        rows["referrals"].append(
            {
                "id": ref.id,
                "source": ref.source,
                "referral_identifier": f"R{number}",
                "referral_identifier_system": "",
                "current_version": len(versions),
                "status": "active",
                "created_at": ref.received,
                "updated_at": ref.received,
                "workflow_status": final,
                "cancellation_requested": False,
                "hub": ref.hub,
                "held_reason": None if ref.hub else "no route",
            }
        )
        for version, content in enumerate(versions, start=1):
            text = orjson.dumps(content)
            message_id += 1
            rows["messages"].append(
                {
                    "id": message_id,
                    "received_at": ref.received,
                    "channel": "fhir-message",
                    "source": ref.source,
                    "content_type": "application/fhir+json",
                    "body": b"{}",
                    "body_truncated": False,
                    "body_sha256": hashlib.sha256(b"{}").hexdigest(),
                    "status": "accepted",
                    "http_status": 200,
                    "referral_id": ref.id,
                    "record_version": version,
                }
            )
            rows["versions"].append(
                {
                    "referral_id": ref.id,
                    "version": version,
                    "content_sha256": hashlib.sha256(text).hexdigest(),
                    "status": "active",
                    "record": text.decode(),
                    "received_at": ref.received,
                    "message_id": message_id,
                    "hub": ref.hub,
                }
            )
        for k, item in enumerate(ref.outcomes):
            posted = orjson.dumps(_outcome_body(ref, k, item))
            rows["outcomes"].append(
                {
                    "referral_id": ref.id,
                    "outcome_id": f"o{k}",
                    "platform": ref.hub if ref.hub not in (None, "*") else "test-platform",
                    "status": item.status,
                    "body": posted.decode(),
                    "body_sha256": hashlib.sha256(posted).hexdigest(),
                    "received_at": ref.received + timedelta(days=k + 1),
                }
            )
        made.append(ref)
        if len(rows["referrals"]) >= chunk:
            flush()
    if rows["referrals"]:
        flush()
    return made
