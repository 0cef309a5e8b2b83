"""SIGKILL of the MLLP listener (`gateway mllp`) under load.

Three senders, each on its own MLLP connection, send new REF^I12 referrals and wait for
each ACK. At three random points (from the seed) the listener is killed and started again
on the same port, as a process manager would. A sender whose connection breaks reconnects
and sends the same message again (same MSH-10), as a real sender does. Every message
answered AA must be stored, and none may become more than one referral or version.
"""

from __future__ import annotations

import random

from faults.ledger import held, line, v2_referral
from faults.load import Load, MllpSender
from faults.procs import Processes, Store, at_least, report, wait_for
from fhirserver import free_port

SOURCE = "gp-v2"
KILLS = 3
SENDERS = 3


def test_sigkill_of_the_mllp_listener_under_load_loses_and_duplicates_nothing(
    store: Store, processes: Processes, rng: random.Random
) -> None:
    port = free_port()
    listener = processes.mllp(store, SOURCE, port)
    run = rng.randrange(10**6)
    load = Load(lambda n: v2_referral(n, run), lambda: MllpSender(port), SENDERS)
    load.start()
    points = []
    try:
        target = 0
        for _ in range(KILLS):
            target = max(target, load.acknowledged) + rng.randint(20, 100)
            assert wait_for(at_least(lambda: load.acknowledged, target), 60), listener.log_tail()
            points.append(f"at {load.acknowledged} acknowledged")
            listener.kill()
            listener.start()
        settled = load.acknowledged + 50
        assert wait_for(at_least(lambda: load.acknowledged, settled), 60), listener.log_tail()
    finally:
        load.stop()
    counts = load.tally.counts(held(store.path, SOURCE))
    report(f"mllp kills: {'; '.join(points)}")
    report(f"mllp: {line(counts)}")
    assert not load.tally.refused, load.tally.refused
    assert counts["acknowledged"] == counts["sent"], "a message was never acknowledged"
    assert counts["lost"] == 0
    assert counts["duplicated"] == 0
    assert counts["resent"] > 0, "no kill made a sender resend"
