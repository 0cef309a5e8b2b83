"""Pull mode: poll a source's FHIR server for new or changed ServiceRequests.

Each round asks for ServiceRequests updated after the watermark less the overlap, sorted by
``_lastUpdated``, with the resources they reference ``_include``d, and follows ``next``
links to the end. Every ServiceRequest becomes one transaction Bundle holding it and the
resources it references (fullUrl = the server's absolute URL, so ``Patient/123`` resolves),
taken through the same intake as a pushed referral. A referenced resource the server did not
include is read by its relative reference.

The watermark is the newest ``meta.lastUpdated`` taken (the server's clock, never ours) and
is kept in the store, so a restart resumes where the last complete round ended. It moves
only when a whole round succeeds: after an error (4xx/5xx, a timeout, the store away) the
next round asks again from the same point. Seeing a referral again (the overlap, a repeated
round) is harmless: the intake stores nothing for a repeat.

Limitation: a server that pages by live offset (rather than a snapshot of the search, as
HAPI does) can shift a result past a page boundary when resources change mid-round; the
overlap only covers what changed within it.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import requests

from gateway.errors import GatewayError, StoreUnavailable
from gateway.intake.fhir import ReferralIntake
from gateway.intake.pull_server import (
    FHIR_JSON,
    PullError,
    SourceServer,
    fhir_instant,
    outcome_text,
    parse_instant,
    references,
)
from gateway.outbound.destinations import Pull
from gateway.store.watermarks import read_watermark, save_watermark

__all__ = ["Poller", "PullError", "fhir_instant", "parse_instant"]

log = logging.getLogger(__name__)

CHANNEL = "fhir-pull"
#: What a UK Core referral needs beside the ServiceRequest, in one search where the server can.
INCLUDES = (
    ("_include", "ServiceRequest:subject"),
    ("_include", "ServiceRequest:requester"),
    ("_include", "ServiceRequest:performer"),
    ("_include:iterate", "PractitionerRole:practitioner"),
    ("_include:iterate", "PractitionerRole:organization"),
    ("_include:iterate", "Patient:general-practitioner"),
)
#: References are followed this many steps from the ServiceRequest (requester, then its
#: practitioner and organisation; subject, then the GP practice).
MAX_DEPTH = 2
#: At most this many resources go into one referral's Bundle.
MAX_RESOURCES = 100
#: A round stops (without moving the watermark) after this many pages.
MAX_PAGES = 1000
#: Types never put in a referral's Bundle: one referral per Bundle, and no message headers.
SKIPPED_TYPES = frozenset({"ServiceRequest", "MessageHeader", "Bundle"})


@dataclass
class _Round:
    """What one round has done so far."""

    taken: int = 0
    newest: datetime | None = None


class Poller:
    """Polls one source's FHIR server and hands each ServiceRequest to the intake."""

    def __init__(
        self,
        intake: ReferralIntake,
        pull: Pull,
        *,
        session: requests.Session | None = None,
        clock: Callable[[], float] = time.time,
        timeout: float = 30.0,
    ) -> None:
        self.intake = intake
        self.pull = pull
        self.session = session or requests.Session()
        self.clock = clock
        self.server = SourceServer(pull.fhir, pull.token, self.session, timeout)
        self.base = self.server.base
        #: Why the last round stopped early, or None when it completed.
        self.last_error: str | None = None

    # ---- the round ----

    def poll_once(self) -> int:
        """One round: returns how many new referrals (or new versions) were stored."""
        source = self.pull.source
        db = self.intake.db
        progress = _Round()
        try:
            watermark = read_watermark(db, source)
            self._round(watermark, progress)
            if progress.newest is not None and (watermark is None or progress.newest > watermark):
                save_watermark(db, source, progress.newest, self._now())
        except (PullError, StoreUnavailable) as exc:
            self.last_error = str(exc)
            log.warning(
                "pull %s: round stopped after %d new referral(s), watermark kept: %s",
                source,
                progress.taken,
                exc,
            )
            return progress.taken
        self.last_error = None
        log.info("pull %s: %d new referral(s)", source, progress.taken)
        return progress.taken

    def run_forever(self, stop_event: threading.Event) -> None:
        """Poll every ``interval`` seconds until ``stop_event`` is set."""
        while not stop_event.is_set():
            due = self.clock() + self.pull.interval
            try:
                self.poll_once()
            except Exception:  # a fault of ours: keep polling, the watermark has not moved
                log.exception("pull %s: round failed", self.pull.source)
            stop_event.wait(min(self.pull.interval, max(0.0, due - self.clock())))

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), UTC)

    def _round(self, watermark: datetime | None, progress: _Round) -> None:
        params: list[tuple[str, str]] = []
        if watermark is not None:
            since = watermark - timedelta(seconds=self.pull.overlap)
            params.append(("_lastUpdated", f"gt{fhir_instant(since)}"))
        params += [("_count", str(self.pull.page_size)), *INCLUDES, ("_sort", "_lastUpdated")]
        url: str | None = f"{self.base}/ServiceRequest"
        seen: set[str] = set()
        while url is not None:
            if len(seen) >= MAX_PAGES:
                raise PullError(f"more than {MAX_PAGES} pages in one round")
            seen.add(url)
            page = self.server.get(url, params if len(seen) == 1 else None)
            if page.get("resourceType") != "Bundle":
                raise PullError(f"the search answered a {page.get('resourceType')}, not a Bundle")
            self._page(page, progress)
            url = self.server.next_page(page, seen)

    def _page(self, page: dict[str, Any], progress: _Round) -> None:
        entries = [e for e in page.get("entry") or [] if isinstance(e, dict)]
        found: dict[str, tuple[str, dict[str, Any]]] = {}
        matches: list[tuple[str, dict[str, Any]]] = []
        for entry in entries:
            resource = entry.get("resource")
            if not isinstance(resource, dict):
                continue
            rtype, rid = resource.get("resourceType"), resource.get("id")
            mode = (entry.get("search") or {}).get("mode")
            if rtype == "OperationOutcome":
                log.warning(
                    "pull %s: the server says: %s", self.pull.source, outcome_text(resource)
                )
                continue
            if not isinstance(rtype, str) or not isinstance(rid, str):
                continue
            full_url = entry.get("fullUrl")
            where = full_url if isinstance(full_url, str) else f"{self.base}/{rtype}/{rid}"
            found[f"{rtype}/{rid}"] = (where, resource)
            if rtype == "ServiceRequest" and mode in (None, "match"):
                matches.append((where, resource))
        for where, request in matches:
            progress.taken += self._take(where, request, found)
            updated = parse_instant((request.get("meta") or {}).get("lastUpdated"))
            if updated is not None and (progress.newest is None or updated > progress.newest):
                progress.newest = updated

    # ---- one referral ----

    def _take(
        self,
        where: str,
        request: dict[str, Any],
        found: dict[str, tuple[str, dict[str, Any]]],
    ) -> int:
        """Hand one referral to the intake: 1 when it stored something new, else 0."""
        key = f"ServiceRequest/{request['id']}"
        body = orjson.dumps(self.bundle_for(where, request, found))
        try:
            received = self.intake.receive(
                self.pull.source, body, FHIR_JSON, channel=CHANNEL, expected=("transaction",)
            )
        except StoreUnavailable as exc:
            raise PullError(f"the store is unavailable ({key})") from exc
        except GatewayError as exc:
            # Kept by the intake as rejected (or failed); the sender fixes it at source, and
            # a fixed ServiceRequest comes back with a newer lastUpdated.
            log.warning(
                "pull %s: %s not taken (%s at %s): kept as %s",
                self.pull.source,
                key,
                exc.issue_code,
                exc.expression,
                "failed" if exc.status >= 500 else "rejected",
            )
            return 0
        return 1 if received.stored.created else 0

    def bundle_for(
        self,
        where: str,
        request: dict[str, Any],
        found: dict[str, tuple[str, dict[str, Any]]],
    ) -> dict[str, Any]:
        """A transaction Bundle: the ServiceRequest and what it references, as the server has
        them. Resources the search did not include are read one by one."""
        key = f"ServiceRequest/{request['id']}"
        held: dict[str, tuple[str, dict[str, Any]]] = {key: (where, request)}
        missing: set[str] = set()
        frontier = [request]
        for _ in range(MAX_DEPTH):
            following: list[dict[str, Any]] = []
            for resource in frontier:
                for reference in references(resource):
                    wanted = self.server.local_key(reference)
                    if wanted is None or wanted in held or wanted in missing:
                        continue
                    if wanted.split("/")[0] in SKIPPED_TYPES or len(held) >= MAX_RESOURCES:
                        continue
                    got = found.get(wanted) or self.server.read(wanted)
                    if got is None:
                        missing.add(wanted)
                        continue
                    held[wanted] = got
                    following.append(got[1])
            frontier = following
        if missing:
            log.warning(
                "pull %s: %s references %s, which the server does not have",
                self.pull.source,
                key,
                ", ".join(sorted(missing)),
            )
        version = (request.get("meta") or {}).get("versionId") or (request.get("meta") or {}).get(
            "lastUpdated"
        )
        return {
            "resourceType": "Bundle",
            # The same ServiceRequest version always makes the same Bundle id.
            "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{where}/_history/{version}")),
            "type": "transaction",
            "entry": [
                {"fullUrl": url, "resource": resource, "request": {"method": "PUT", "url": k}}
                for k, (url, resource) in held.items()
            ],
        }
