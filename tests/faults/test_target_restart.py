"""The webhook target goes away twice while a worker drains a queue, and comes back.

First it is stopped cleanly (SIGTERM: the request in hand is answered first), then killed
(SIGKILL: a request in hand gets no answer); each time it stays down 1.5-3 s (from the
seed) and is started again on the same port. Delivery must resume within seconds of each
restart (the backoff is 1-2 s after a first failure, and a success wakes every item
waiting for that destination). Every record version must reach the target under one
delivery id, exactly once, except the one request a SIGKILL may have cut off, which the
worker cannot know arrived and so sends again.
"""

from __future__ import annotations

import random
import time
from pathlib import Path

from faults.deliveries import all_delivered, delivery_counts, outbox, queue_webhooks, receipts
from faults.ledger import line
from faults.procs import Processes, Store, at_least, destinations_file, report, wait_for
from fhirserver import free_port

ITEMS = 120
#: Seconds within which delivery must resume after the target is back.
RESUME = 8.0


def test_delivery_resumes_after_the_target_restarts_and_sends_each_version_once(
    store: Store, processes: Processes, rng: random.Random, tmp_path: Path
) -> None:
    port = free_port()
    log = tmp_path / "receipts.log"
    destinations = destinations_file(tmp_path, port)
    queue_webhooks(store, destinations, ITEMS, rng.randrange(10**6))
    target = processes.receiver(port, log, delay=0.02)
    worker = processes.worker(store, destinations)
    outages = []
    killed_at = 0.0
    for how in ("SIGTERM", "SIGKILL"):
        after = len(receipts(log)) + rng.randint(15, 35)
        assert wait_for(at_least(lambda: len(receipts(log)), after), 60), worker.log_tail()
        if how == "SIGTERM":
            target.stop()
        else:
            killed_at = target.kill()
        down = rng.uniform(1.5, 3.0)
        time.sleep(down)
        before = len(receipts(log))
        back = time.time()
        target.start()
        assert wait_for(at_least(lambda: len(receipts(log)), before + 1), 2 * RESUME), (
            worker.log_tail()
        )
        resumed = receipts(log)[before].at - back
        outages.append(f"{how} at {before} received, down {down:.1f} s, resumed in {resumed:.1f} s")
        assert resumed <= RESUME, outages
    assert wait_for(lambda: all_delivered(store.path, ITEMS), 60), outbox(store.path)
    got = receipts(log)
    counts = delivery_counts(store.path, got)
    report(f"target outages: {'; '.join(outages)}")
    report(f"target restart: {line(counts)}")
    assert counts["queued"] == counts["delivered"] == counts["accepted"] == ITEMS
    assert counts["lost"] == counts["duplicated"] == counts["unknown"] == 0
    assert counts["redelivered"] <= 1
    seen: set[int] = set()
    for receipt in got:  # a repeat only of the request in hand at the SIGKILL
        if receipt.delivery in seen:
            assert receipt.at >= killed_at, f"item {receipt.delivery} sent twice before the kill"
        seen.add(receipt.delivery)
    assert worker.alive
