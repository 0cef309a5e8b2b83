"""Outbox drain: how long a webhook backlog takes to clear once its target comes back.

Run alone (``.venv/bin/python bench/outbox_drain.py --before HEAD``) or from bench/run.py
(section 10, ``--skip-outbox-drain`` to leave it out). Each side is a real ``gateway serve``
(no outbox thread) and one ``gateway worker`` process of its tree, PYTHONPATH set to it, on a
fresh SQLite store, with one link-worker platform configured whose webhook is a real HTTP
server in this process: the working tree ("after") and, with ``--before REF``, the tree of
commit REF from ``git archive`` ("before"), alternately in the same run. The target answers
503 from the first referral on; ``--items`` new referrals (emis-web, that tree's fixture) are
POSTed, so as many webhooks are queued and fail while the worker retries them. After
``--outage`` seconds the target answers 200, and the drain is the time from then until the
target has received every item (first 200 per ``X-Gateway-Delivery``). The store is then
read with sqlite3: every item must be delivered and none dead.
"""

from __future__ import annotations

import argparse
import http.client
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from load import headers
from payload import LOAD_SOURCE, fill, referral_template
from servers import BIN, HOST, log_tail, stop_process
from slow_clients import INTAKE, ROOT, start, tree_env, tree_of

ITEMS = 200
OUTAGE_SECONDS = 20.0
DRAIN_TIMEOUT = 180.0
ROUNDS = 1
PLATFORM = "bench"
SECRET_ENV = "BENCH_WEBHOOK_SECRET"


class Target:
    """A platform's webhook endpoint: 503 while down, then 200; when each delivery arrived."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.down = True
        self.refused = 0  # 503 answers
        self.requests = 0
        self.back_at: float | None = None
        self.first_try_after: float | None = None
        self.delivered: dict[str, float] = {}  # X-Gateway-Delivery -> first 200 (monotonic)
        self.redelivered = 0
        self.server = ThreadingHTTPServer((HOST, 0), self._handler())
        self.server.daemon_threads = True
        self.port = int(self.server.server_address[1])
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        target = self

        class Hook(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                delivery = self.headers.get("X-Gateway-Delivery", "")
                status = target.answer(delivery)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass  # counted in Target

        return Hook

    def answer(self, delivery: str) -> int:
        """The status for one request, recorded."""
        now = time.monotonic()
        with self.lock:
            self.requests += 1
            if self.down:
                self.refused += 1
                return 503
            if self.first_try_after is None:
                self.first_try_after = now
            if delivery in self.delivered:
                self.redelivered += 1
            else:
                self.delivered[delivery] = now
            return 200

    def come_back(self) -> float:
        """From now on answer 200; the moment (monotonic)."""
        with self.lock:
            self.down = False
            self.back_at = time.monotonic()
            return self.back_at

    def __enter__(self) -> Target:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def _destinations(workdir: Path, name: str, port: int) -> Path:
    """A destinations file with one platform whose webhook is the target."""
    path = workdir / f"{name}-destinations.yaml"
    path.write_text(
        f"platforms:\n  {PLATFORM}:\n    webhook: http://{HOST}:{port}/hook\n"
        f"    secret_env: {SECRET_ENV}\n    timeout: 5\n"
    )
    return path


def _post_referrals(port: int, key: str, template: bytes, count: int, tag: int) -> None:
    """``count`` new referrals, one connection each; any non-2xx stops the benchmark."""
    for n in range(1, count + 1):
        conn = http.client.HTTPConnection(HOST, port, timeout=30)
        try:
            conn.request("POST", INTAKE, fill(template, tag, 1, n), headers(key))
            response = conn.getresponse()
            body = response.read()
        finally:
            conn.close()
        if response.status != 200:
            raise SystemExit(f"FAILED: referral {n} answered {response.status}: {body[:300]!r}")


def _outbox(db: Path) -> dict[str, int]:
    """Outbox items per status, and the most attempts any item took."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        rows = conn.execute("SELECT status, count(*) FROM outbox GROUP BY status").fetchall()
        most = conn.execute("SELECT coalesce(max(attempts), 0) FROM outbox").fetchone()[0]
    finally:
        conn.close()
    return {**{str(s): int(n) for s, n in rows}, "max_attempts": int(most)}


def measure(
    tree: Path, workdir: Path, name: str, items: int, outage: float, timeout: float, tag: int
) -> dict[str, Any]:
    """One side: queue ``items`` webhooks during an outage of ``outage`` s, then time the
    drain once the target is back (at most ``timeout`` s)."""
    with Target() as target:
        extra = {
            "GATEWAY_DESTINATIONS": str(_destinations(workdir, name, target.port)),
            SECRET_ENV: "bench-webhook-secret",
        }
        server, key = start(tree, workdir, name, extra)
        db = server.db_path
        log_path = workdir / f"{name}-worker.log"
        log_file = log_path.open("ab")
        worker = subprocess.Popen(
            [str(BIN / "gateway"), "worker", "--no-migrate"],
            env=tree_env(tree, workdir, db, extra),
            cwd=tree,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
        try:
            template = referral_template(tree / "fixtures" / LOAD_SOURCE / "01-new-referral.json")
            down_at = time.monotonic()
            _post_referrals(server.port, key, template, items, tag)
            posted_s = time.monotonic() - down_at
            time.sleep(max(0.0, down_at + outage - time.monotonic()))
            if worker.poll() is not None:
                raise SystemExit(f"{name} worker exited:\n{log_tail(log_path)}")
            refused = target.refused
            back = target.come_back()
            deadline = back + timeout
            while len(target.delivered) < items and time.monotonic() < deadline:
                time.sleep(0.05)
            got = len(target.delivered)
            last = max(target.delivered.values(), default=back)
            # The worker records an item after its answer: give it a moment to write the last.
            settle = time.monotonic() + 10
            counts = _outbox(db)
            while counts.get("delivered", 0) < got and time.monotonic() < settle:
                time.sleep(0.05)
                counts = _outbox(db)
        finally:
            exit_status = stop_process(worker, log_file)
            server.stop()
    first = target.first_try_after
    return {
        "items": items,
        "outage_s": back - down_at,
        "posted_s": posted_s,
        "refused_during_outage": refused,
        "requests": target.requests,
        "received": got,
        "redelivered": target.redelivered,
        "drained": got == items,
        "drain_s": last - back if got == items else None,
        "first_try_after_s": first - back if first is not None else None,
        "outbox": counts,
        "worker_exit": exit_status,
        "ok": got == items and counts.get("delivered", 0) == items and not counts.get("dead"),
    }


def run(
    before: str | None,
    items: int = ITEMS,
    outage: float = OUTAGE_SECONDS,
    timeout: float = DRAIN_TIMEOUT,
    rounds: int = ROUNDS,
    before_tree: Path | None = None,
) -> dict[str, Any]:
    """Before (commit ``before``, or its extracted ``before_tree``) and after (the working
    tree), alternately, ``rounds`` each; the median drain per side."""
    out: dict[str, Any] = {
        "before_ref": before,
        "items": items,
        "outage_s": outage,
        "timeout_s": timeout,
        "rounds": rounds,
    }
    with tempfile.TemporaryDirectory(prefix="gateway-drain-") as tmp, ExitStack() as stack:
        workdir = Path(tmp)
        trees = {"after": ROOT}
        if before is not None:
            tree = before_tree or stack.enter_context(tree_of(before))
            trees = {"before": tree, **trees}
        tag = 0
        for round_no in range(rounds):
            for side, tree in trees.items():
                tag += 1
                got = measure(
                    tree, workdir, f"drain-{side}-{round_no}", items, outage, timeout, tag
                )
                out.setdefault(side, {"runs": []})["runs"].append(got)
                drain = got["drain_s"]
                shown = f"{drain:.1f} s" if drain is not None else "NOT DRAINED"
                print(f"  ... outbox drain {side:<6}: {shown}", file=sys.stderr, flush=True)
    for side in trees:
        drains = [r["drain_s"] for r in out[side]["runs"]]
        done = [d for d in drains if d is not None]
        out[side]["drain_s"] = statistics.median(done) if len(done) == len(drains) else None
    out["ok"] = all(r["ok"] for side in trees for r in out[side]["runs"])
    return out


def report(data: dict[str, Any]) -> None:
    """Print section 10: drain seconds per side and run, and the store check."""
    print(
        f"10. Outbox drain: {data['items']} webhooks queued while the target answers 503 for"
        f" {data['outage_s']:g} s, then 200"
    )
    print("    (gateway serve + one gateway worker per side, SQLite; drain: from the target's")
    print("    return until it has received every item)")
    print(
        f"    {'side':<7}{'drain s':>8}{'1st try s':>10}{'503s':>6}{'requests':>9}"
        f"{'received':>9}{'redeliv':>8}{'max att':>8}  store"
    )
    for side in ("before", "after"):
        if side not in data:
            continue
        for r in data[side]["runs"]:
            drain = f"{r['drain_s']:.2f}" if r["drain_s"] is not None else "-"
            first = f"{r['first_try_after_s']:.2f}" if r["first_try_after_s"] is not None else "-"
            counts = r["outbox"]
            store = " ".join(f"{k}={v}" for k, v in counts.items() if k != "max_attempts")
            print(
                f"    {side:<7}{drain:>8}{first:>10}{r['refused_during_outage']:>6}"
                f"{r['requests']:>9}{r['received']:>9}{r['redelivered']:>8}"
                f"{counts['max_attempts']:>8}  {store} {'ok' if r['ok'] else 'FAIL'}"
            )
    for side in ("before", "after"):
        if side in data:
            drain = data[side]["drain_s"]
            shown = (
                f"{drain:.2f} s" if drain is not None else f"not drained in {data['timeout_s']:g} s"
            )
            ref = f" ({data['before_ref']})" if side == "before" else " (working tree)"
            print(f"    {side}{ref}: drain {shown} (median)")
    print(f"    {'PASS' if data['ok'] else 'FAIL'}: every item delivered, none dead")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", metavar="REF", help="also run the gateway of commit REF")
    parser.add_argument("--items", type=int, default=ITEMS, help="webhooks queued in the outage")
    parser.add_argument("--outage", type=float, default=OUTAGE_SECONDS, help="seconds of 503")
    parser.add_argument("--timeout", type=float, default=DRAIN_TIMEOUT, help="longest drain")
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    args = parser.parse_args(argv)
    data = run(args.before, args.items, args.outage, args.timeout, args.rounds)
    report(data)
    return 0 if data["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
