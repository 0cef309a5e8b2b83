"""SIGKILL of `gateway serve` under load: a gunicorn worker, the master, or both at once.

Three senders post new referrals (each resent until answered 2xx). At random points (from
the seed) one process is killed: a worker (the master starts another), the master alone
(its workers notice and leave; the test starts serve again, as a process manager would), or
the whole process group. Nothing acknowledged may be missing from the store, and no
message may become more than one referral or version, however often it was resent.

Each serve worker also runs its outbox thread (the default), delivering each new version's
webhook to a real target: every version must reach it under one delivery id, and repeats
are bounded by the processes killed (each holds at most one delivery in flight).
"""

from __future__ import annotations

import random
from pathlib import Path

from faults.deliveries import all_delivered, delivery_counts, outbox, receipts
from faults.ledger import fhir_referral, held, line
from faults.load import HttpSender, Load
from faults.procs import (
    Process,
    Processes,
    Store,
    at_least,
    destinations_file,
    report,
    wait_for,
)
from fhirserver import free_port

KINDS = ("worker", "master", "group")
SENDERS = 3
#: Processes each kind of kill ends, so outbox deliveries it may leave in flight.
IN_FLIGHT = {"worker": 1, "master": 2, "group": 2}


def kill_plan(rng: random.Random) -> list[tuple[str, int]]:
    """Each kind of kill once, shuffled, and one more worker kill (the cheapest to recover
    from) anywhere among them; each after 10-60 more answers."""
    kinds = list(KINDS)
    rng.shuffle(kinds)
    kinds.insert(rng.randint(0, len(kinds)), "worker")
    return [(kind, rng.randint(10, 60)) for kind in kinds]


def kill(serve: Process, kind: str, rng: random.Random, load: Load) -> str:
    """One SIGKILL of ``kind``, described; returns once serve is back (a worker: once the
    master has noticed, and is starting another)."""
    at = load.acknowledged
    if kind == "worker":
        workers = serve.children()
        victim = rng.choice(workers)
        serve.kill(victim)
        assert wait_for(lambda: victim not in serve.children(), 10)
        return f"worker {workers.index(victim) + 1} of {len(workers)} at {at} acknowledged"
    if kind == "master":
        serve.kill()
    else:
        serve.kill_group()
    serve.wait_group_gone()  # orphaned workers leave by themselves; the port is free again
    orphans = load.acknowledged - at
    serve.start()
    return f"{kind} at {at} acknowledged ({orphans} answered after it, by orphaned workers)"


def test_sigkill_of_serve_under_load_loses_and_duplicates_nothing(
    store: Store, processes: Processes, rng: random.Random, tmp_path: Path
) -> None:
    port, target_port = free_port(), free_port()
    log = tmp_path / "receipts.log"
    processes.receiver(target_port, log, delay=0.01)
    destinations = str(destinations_file(tmp_path, target_port))
    key = store.key("source", "emis-web")
    serve = processes.serve(store, port, OUTBOX_IN_SERVE="1", DESTINATIONS=destinations)
    run = rng.randrange(10**6)
    load = Load(lambda n: fhir_referral(n, run), lambda: HttpSender(port, key), SENDERS)
    load.start()
    points = []
    plan = kill_plan(rng)
    try:
        target = 0
        for kind, after in plan:
            target = max(target, load.acknowledged) + after
            assert wait_for(at_least(lambda: load.acknowledged, target), 60), serve.log_tail()
            points.append(kill(serve, kind, rng, load))
        settled = load.acknowledged + 30  # and it goes on taking referrals afterwards
        assert wait_for(at_least(lambda: load.acknowledged, settled), 60), serve.log_tail()
    finally:
        load.stop()
    counts = load.tally.counts(held(store.path, "emis-web"))
    report(f"serve kills: {'; '.join(points)}")
    report(f"serve: {line(counts)}")
    assert not load.tally.refused, load.tally.refused
    assert counts["acknowledged"] == counts["sent"], "a message was never acknowledged"
    assert counts["lost"] == 0
    assert counts["duplicated"] == 0
    assert counts["resent"] > 0, "no kill made a sender resend"
    assert wait_for(lambda: all_delivered(store.path, counts["stored"]), 30), outbox(store.path)
    webhooks = delivery_counts(store.path, receipts(log))
    report(f"serve webhooks: {line(webhooks)}")
    assert webhooks["accepted"] == webhooks["queued"] == counts["stored"]
    assert webhooks["lost"] == webhooks["duplicated"] == webhooks["unknown"] == 0
    assert webhooks["redelivered"] <= sum(IN_FLIGHT[kind] for kind, _ in plan)
