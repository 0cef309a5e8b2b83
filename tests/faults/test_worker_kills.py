"""SIGKILL of outbox workers (`gateway worker`) while they deliver webhooks to a real target.

Two workers drain a queue of webhooks to the target (receiver.py, answering after a short
pause so a delivery is usually in flight). At three random points (from the seed) one of
them is killed and started again. Every item must reach the target, no record version may
go out under two deliveries, and the only repeats allowed are of an item a killed worker
had in flight: at most one per kill, each within 10 s of its kill (the lease, 6 s, plus a
poll). A second test holds one delivery in flight on purpose and times its takeover.
"""

from __future__ import annotations

import random
from pathlib import Path

from faults.deliveries import (
    all_delivered,
    delivery_counts,
    outbox,
    queue_webhooks,
    receipts,
)
from faults.ledger import line
from faults.procs import (
    Processes,
    Store,
    at_least,
    connected_to,
    destinations_file,
    report,
    wait_for,
)
from fhirserver import free_port

ITEMS = 300
KILLS = 3
#: The bound on taking over a dead worker's item: the 6 s lease, a poll, and slack.
TAKEOVER = 10.0
#: How far from a kill the first copy of a repeated item may have reached the target.
IN_FLIGHT = 1.0


def test_sigkill_of_outbox_workers_under_load_loses_and_duplicates_nothing(
    store: Store, processes: Processes, rng: random.Random, tmp_path: Path
) -> None:
    port = free_port()
    log = tmp_path / "receipts.log"
    destinations = destinations_file(tmp_path, port)
    queue_webhooks(store, destinations, ITEMS, rng.randrange(10**6))
    processes.receiver(port, log, delay=0.05)
    workers = [processes.worker(store, destinations, f"worker-{n}", wait=False) for n in (1, 2)]
    for worker in workers:
        worker.wait_ready()
    kills: list[float] = []
    points = []
    # Kill points among the first receipts, so the queue outlasts three restarts (a point is
    # passed at once when the survivor delivered beyond it while the victim restarted).
    for point in sorted(rng.sample(range(20, 90), KILLS)):
        assert wait_for(at_least(lambda: len(receipts(log)), point), 60), workers[0].log_tail()
        victim = rng.choice(workers)
        points.append(f"{victim.name} at {len(receipts(log))} received")
        kills.append(victim.kill())
        victim.start()
    assert wait_for(lambda: all_delivered(store.path, ITEMS), 60), outbox(store.path)
    got = receipts(log)
    counts = delivery_counts(store.path, got)
    first_seen: dict[int, float] = {}
    takeovers = []
    for receipt in got:
        if receipt.delivery not in first_seen:
            first_seen[receipt.delivery] = receipt.at
            continue
        # A repeat: of an item in flight at a kill (the target may log a request a moment
        # after its sender died), taken over after that kill.
        first = first_seen[receipt.delivery]
        kill = min(kills, key=lambda k: abs(k - first))
        assert abs(kill - first) <= IN_FLIGHT, f"item {receipt.delivery} sent again, no kill"
        takeovers.append(receipt.at - kill)
    report(f"worker kills: {'; '.join(points)}")
    report(f"worker: {line(counts)} takeovers={[round(t, 1) for t in takeovers]}s")
    assert counts["queued"] == counts["delivered"] == counts["accepted"] == ITEMS
    assert counts["lost"] == 0
    assert counts["duplicated"] == 0
    assert counts["unknown"] == 0
    assert counts["redelivered"] <= KILLS
    assert all(t <= TAKEOVER for t in takeovers), takeovers
    assert all(w.alive for w in workers)


def test_a_killed_workers_in_flight_item_is_redelivered_within_ten_seconds(
    store: Store, processes: Processes, rng: random.Random, tmp_path: Path
) -> None:
    port = free_port()
    log, hold = tmp_path / "receipts.log", tmp_path / "hold"
    destinations = destinations_file(tmp_path, port)
    queue_webhooks(store, destinations, 1, rng.randrange(10**6))
    hold.touch()  # the target keeps its answer back: the delivery stays in flight
    processes.receiver(port, log, hold=hold)
    workers = [processes.worker(store, destinations, f"worker-{n}", wait=False) for n in (1, 2)]
    for worker in workers:
        worker.wait_ready()
    assert wait_for(lambda: len(receipts(log)) == 1, 30), workers[0].log_tail()
    (state,) = outbox(store.path).values()
    assert state[:2] == ("delivering", 1), state  # still waiting for the target's answer
    # The one with the connection to the target delivers; the other is idle, polling.
    first, second = sorted(workers, key=lambda w: not connected_to(w.pid, port))
    assert connected_to(first.pid, port) and not connected_to(second.pid, port)
    killed = first.kill()
    hold.unlink()  # from now on the target answers at once
    assert wait_for(lambda: len(receipts(log)) == 2, 2 * TAKEOVER), second.log_tail()
    taken_over = receipts(log)[1].at - killed
    assert wait_for(lambda: all_delivered(store.path, 1), 10), outbox(store.path)
    counts = delivery_counts(store.path, receipts(log))
    (state,) = outbox(store.path).values()
    report(f"in-flight item redelivered {taken_over:.1f} s after SIGKILL; {line(counts)}")
    assert taken_over <= TAKEOVER
    assert state[:2] == ("delivered", 2)  # the dead worker's attempt, then the takeover
    assert counts["accepted"] == 1 and counts["redelivered"] == 1 and counts["duplicated"] == 0
    assert second.alive
