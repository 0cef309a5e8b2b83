"""Pull mode against a FHIR server that behaves like HAPI (emulated with ``responses``).

HAPI pages a cached search through ``[base]?_getpages=...`` next links, returns _include'd
resources with search mode "include", caches search results unless asked not to
(Cache-Control: no-cache), and answers an unknown search parameter with 400 and a
HAPI-nnnn OperationOutcome.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
import requests
import responses
from click.testing import CliRunner
from sqlalchemy import func, select
from support import FIXTURES, Gateway, stored_messages

from gateway.cli import main
from gateway.intake.pull import Poller, fhir_instant, parse_instant
from gateway.outbound.destinations import Pull
from gateway.services import services
from gateway.store.database import Database
from gateway.store.models import RecordVersion, Referral
from gateway.store.records import get_record
from gateway.store.watermarks import read_watermark, save_watermark

BASE = "http://127.0.0.1:8099/baseR4"
SOURCE = "uk-core"
FIXTURE = FIXTURES / "uk-core" / "07-interpreter-no-known-risks.json"
GOLDEN = FIXTURES / "uk-core" / "07-interpreter-no-known-risks.record.json"
#: What the search returns with the ServiceRequest, as HAPI would with the poller's _includes.
INCLUDED = ("Patient", "PractitionerRole", "HealthcareService", "Practitioner", "Organization")


def server_copy(ubrn: str, first_id: int, updated: str) -> dict[str, dict[str, Any]]:
    """The 07 fixture as a server holds it: numeric ids, Type/id references, meta set."""
    bundle = json.loads(FIXTURE.read_text(encoding="utf-8"))
    ids: dict[str, str] = {}
    for n, entry in enumerate(bundle["entry"]):
        ids[entry["fullUrl"]] = f"{entry['resource']['resourceType']}/{first_id + n}"
    text = json.dumps([e["resource"] for e in bundle["entry"]])
    for urn, key in ids.items():
        text = text.replace(f'"{urn}"', f'"{key}"')
    out: dict[str, dict[str, Any]] = {}
    for resource in json.loads(text):
        key = ids[f"urn:uuid:{resource['id']}"]
        resource["id"] = key.split("/")[1]
        resource["meta"] = {**resource.get("meta", {}), "versionId": "1", "lastUpdated": updated}
        if resource["resourceType"] == "ServiceRequest":
            resource["identifier"][0]["value"] = ubrn
        out[key] = resource
    return out


def request_of(resources: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The ServiceRequest among a server copy's resources."""
    return next(r for r in resources.values() if r["resourceType"] == "ServiceRequest")


class FakeHapi:
    """Answers the poller's requests as HAPI would, from ``pages`` of ServiceRequests."""

    def __init__(self, rsps: responses.RequestsMock) -> None:
        self.store: dict[str, dict[str, Any]] = {}
        self.pages: list[list[str]] = []
        self.include = True
        self.failures: list[tuple[int, dict[str, Any] | str]] = []
        self.page_failures: dict[int, int] = {}
        self.next_link: str | None = None
        self.searches: list[requests.PreparedRequest] = []
        self.calls = rsps.calls
        rsps.add_callback(responses.GET, re.compile(re.escape(BASE) + r".*"), self._answer)

    def add(self, resources: dict[str, dict[str, Any]], page: int = 0) -> str:
        """Put resources on the server, their ServiceRequest on search page ``page``."""
        self.store.update(resources)
        key = f"ServiceRequest/{request_of(resources)['id']}"
        while len(self.pages) <= page:
            self.pages.append([])
        self.pages[page].append(key)
        return key

    def _bundle(self, page: int) -> dict[str, Any]:
        entries = []
        for key in self.pages[page] if page < len(self.pages) else []:
            request = self.store[key]
            entries.append(self._entry(key, "match"))
            if self.include:
                for included in self._included(request):
                    entries.append(self._entry(included, "include"))
        links = [{"relation": "self", "url": f"{BASE}/ServiceRequest"}]
        if page + 1 < len(self.pages):
            url = self.next_link or (
                f"{BASE}?_getpages=5f3c2b&_getpagesoffset={page + 1}&_count=1"
                "&_pretty=true&_bundletype=searchset"
            )
            links.append({"relation": "next", "url": url})
        return {
            "resourceType": "Bundle",
            "id": "2b0e7c1a",
            "meta": {"lastUpdated": "2026-11-22T12:00:00.000+00:00"},
            "type": "searchset",
            "link": links,
            "entry": entries,
        }

    def _included(self, request: dict[str, Any]) -> list[str]:
        """subject, requester, performer, and (iterate) the role's practitioner and org."""
        keys = [request["subject"]["reference"], request["requester"]["reference"]]
        keys += [p["reference"] for p in request.get("performer", [])]
        role = self.store[request["requester"]["reference"]]
        keys += [role["practitioner"]["reference"], role["organization"]["reference"]]
        return [k for k in dict.fromkeys(keys) if k.split("/")[0] in INCLUDED]

    def _entry(self, key: str, mode: str) -> dict[str, Any]:
        return {"fullUrl": f"{BASE}/{key}", "resource": self.store[key], "search": {"mode": mode}}

    def _answer(self, request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
        url = urlsplit(str(request.url))
        path = url.path.removeprefix(urlsplit(BASE).path).strip("/")
        query = dict(parse_qsl(url.query))
        headers = {"Content-Type": "application/fhir+json;charset=utf-8"}
        if path == "ServiceRequest" or "_getpages" in query:
            self.searches.append(request)
            if self.failures:
                status, body = self.failures.pop(0)
                text = body if isinstance(body, str) else json.dumps(body)
                return status, headers, text
            page = int(query.get("_getpagesoffset", 0))
            if self.page_failures.get(page):
                self.page_failures[page] -= 1
                return 503, headers, json.dumps(hapi_outcome("HAPI-1918: try again"))
            return 200, headers, json.dumps(self._bundle(page))
        if path in self.store:
            return 200, headers, json.dumps(self.store[path])
        outcome = hapi_outcome(f"HAPI-2001: Resource {path} is not known")
        return 404, headers, json.dumps(outcome)


def hapi_outcome(diagnostics: str) -> dict[str, Any]:
    """An OperationOutcome the way HAPI writes one."""
    return {
        "resourceType": "OperationOutcome",
        "text": {"status": "generated", "div": "<div xmlns='http://www.w3.org/1999/xhtml'/>"},
        "issue": [{"severity": "error", "code": "processing", "diagnostics": diagnostics}],
    }


@pytest.fixture
def hapi() -> Iterator[FakeHapi]:
    """A HAPI-like server at BASE; any other URL is a connection error."""
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        yield FakeHapi(rsps)


def poller(gw: Gateway, **settings: Any) -> Poller:
    """A poller for the uk-core source on the gateway's intake."""
    return Poller(services(gw.app).intake, Pull(SOURCE, BASE, **settings))


def db_of(gw: Gateway) -> Database:
    """The gateway's store."""
    db: Database = services(gw.app).db
    return db


def referrals(gw: Gateway) -> dict[str, int]:
    """referral identifier → current version, for every stored referral."""
    with db_of(gw).reading() as session:
        rows = session.execute(select(Referral.referral_identifier, Referral.current_version))
        return {identifier: version for identifier, version in rows}


def record_of(gw: Gateway, identifier: str) -> dict[str, Any]:
    """The current record of the referral with this identifier."""
    with db_of(gw).reading() as session:
        referral_id = session.scalars(
            select(Referral.id).where(Referral.referral_identifier == identifier)
        ).one()
    record: dict[str, Any] = get_record(db_of(gw), referral_id)["record"]
    return record


def query_of(request: requests.PreparedRequest) -> list[tuple[str, str]]:
    """The query parameters of a request, in order."""
    return parse_qsl(urlsplit(str(request.url)).query)


def test_two_pages_with_includes_make_two_records(gateway: Gateway, hapi: FakeHapi) -> None:
    hapi.add(server_copy("2001", 100, "2026-11-02T10:16:00.120+00:00"), page=0)
    hapi.add(server_copy("2002", 200, "2026-11-02T10:17:30.450+00:00"), page=1)

    assert poller(gateway, page_size=1).poll_once() == 2

    assert referrals(gateway) == {"2001": 1, "2002": 1}
    # The record is the one the same referral makes when pushed (07's golden file).
    golden = json.loads(GOLDEN.read_text(encoding="utf-8"))
    del golden["provenance"]
    for identifier in ("2001", "2002"):
        record = record_of(gateway, identifier)
        assert record["person"]["nhs_number"] == "9990000069"
        del record["provenance"]
        golden["referral"]["identifier"] = identifier
        assert record == golden
    first = query_of(hapi.searches[0])
    assert ("_count", "1") in first
    assert ("_sort", "_lastUpdated") in first
    for include in ("subject", "requester", "performer"):
        assert ("_include", f"ServiceRequest:{include}") in first
    assert not any(k == "_lastUpdated" for k, _ in first)  # first round: everything
    assert dict(query_of(hapi.searches[1]))["_getpagesoffset"] == "1"  # next link followed
    assert read_watermark(db_of(gateway), SOURCE) == datetime(
        2026, 11, 2, 10, 17, 30, 450000, tzinfo=UTC
    )


def test_every_request_asks_for_fresh_fhir_json(gateway: Gateway, hapi: FakeHapi) -> None:
    hapi.add(server_copy("2001", 100, "2026-11-02T10:16:00.120Z"))
    hapi.add(server_copy("2002", 200, "2026-11-02T10:17:00.120Z"), page=1)

    poller(gateway, page_size=1).poll_once()

    assert len(hapi.searches) == 2
    for request in hapi.searches:
        assert request.headers["Cache-Control"] == "no-cache"
        assert request.headers["Accept"] == "application/fhir+json"
        assert "Authorization" not in request.headers


def test_the_bearer_token_goes_with_every_request(
    gateway: Gateway, hapi: FakeHapi, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PULL_TOKEN", "s3cret")
    hapi.add(server_copy("2001", 100, "2026-11-02T10:16:00.120Z"))
    hapi.include = False  # so that resources are read one by one too

    assert poller(gateway, token_env="PULL_TOKEN").poll_once() == 1

    assert len(hapi.calls) > 1  # the search, then each referenced resource
    assert {c.request.headers["Authorization"] for c in hapi.calls} == {"Bearer s3cret"}


def test_the_bundle_holds_the_request_and_what_it_references(
    gateway: Gateway, hapi: FakeHapi
) -> None:
    resources = server_copy("2001", 100, "2026-11-02T10:16:00.120Z")
    hapi.add(resources)

    poller(gateway).poll_once()

    (message,) = stored_messages(gateway)
    assert (message.channel, message.status, message.content_type) == (
        "fhir-pull",
        "accepted",
        "application/fhir+json",
    )
    bundle = json.loads(message.body)
    assert bundle["type"] == "transaction"
    full_urls = [e["fullUrl"] for e in bundle["entry"]]
    # Every resource of the referral (the fixture's 11), by the server's absolute URL.
    assert sorted(full_urls) == sorted(f"{BASE}/{key}" for key in resources)
    assert full_urls[0].startswith(f"{BASE}/ServiceRequest/")
    assert all(e["request"]["method"] == "PUT" for e in bundle["entry"])


def test_without_includes_each_referenced_resource_is_read(
    gateway: Gateway, hapi: FakeHapi
) -> None:
    resources = server_copy("2001", 100, "2026-11-02T10:16:00.120Z")
    hapi.add(resources)
    hapi.include = False  # a server that ignores _include

    assert poller(gateway).poll_once() == 1

    read = {str(urlsplit(c.request.url).path).split("/baseR4/")[1] for c in hapi.calls[1:]}
    assert read == {k for k in resources if not k.startswith("ServiceRequest/")}
    assert record_of(gateway, "2001")["gp_practice"]["ods_code"] == "B99002"


def test_the_watermark_query_uses_gt_less_the_overlap(gateway: Gateway, hapi: FakeHapi) -> None:
    db = db_of(gateway)
    save_watermark(db, SOURCE, datetime(2026, 11, 2, 10, 20, 0, 250000, UTC), datetime.now(UTC))
    hapi.add(server_copy("2001", 100, "2026-11-02T10:25:00.500Z"))

    assert poller(gateway, overlap=120).poll_once() == 1

    assert ("_lastUpdated", "gt2026-11-02T10:18:00.250Z") in query_of(hapi.searches[0])
    assert read_watermark(db, SOURCE) == datetime(2026, 11, 2, 10, 25, 0, 500000, UTC)
    # A restarted poller resumes from the stored watermark.
    poller(gateway, overlap=30).poll_once()
    assert ("_lastUpdated", "gt2026-11-02T10:24:30.500Z") in query_of(hapi.searches[1])


def test_the_overlap_sees_referrals_again_harmlessly(gateway: Gateway, hapi: FakeHapi) -> None:
    resources = server_copy("2001", 100, "2026-11-02T10:16:00.120Z")
    hapi.add(resources)
    pull = poller(gateway)

    assert pull.poll_once() == 1
    assert pull.poll_once() == 0  # seen again within the overlap
    assert pull.poll_once() == 0

    assert referrals(gateway) == {"2001": 1}
    assert len(stored_messages(gateway)) == 1  # a repeat stores nothing, not even the message
    with db_of(gateway).reading() as session:
        assert session.scalar(select(func.count()).select_from(RecordVersion)) == 1

    # The referrer changes the reason: a new lastUpdated, a new version of the record.
    request = request_of(resources)
    request["reasonCode"][0]["text"] = "Loneliness since moving house"
    request["meta"] = {"versionId": "2", "lastUpdated": "2026-11-02T11:00:00.000Z"}
    assert pull.poll_once() == 1
    assert referrals(gateway) == {"2001": 2}
    assert record_of(gateway, "2001")["referral"]["reason"] == "Loneliness since moving house"
    assert read_watermark(db_of(gateway), SOURCE) == datetime(2026, 11, 2, 11, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (
            400,
            hapi_outcome(
                'HAPI-0524: Unknown search parameter "_lastUpdatd" for resource type '
                '"ServiceRequest". Valid search parameters for this search are: [_id, ...]'
            ),
            "HAPI-0524",
        ),
        (503, hapi_outcome("HAPI-1918: the server is busy"), "503"),
        (503, "<html><body>Service Unavailable</body></html>", "503"),
    ],
    ids=["400-unknown-parameter", "503-outcome", "503-html"],
)
def test_a_failed_search_keeps_the_watermark_and_is_tried_again(
    gateway: Gateway,
    hapi: FakeHapi,
    caplog: pytest.LogCaptureFixture,
    status: int,
    body: dict[str, Any] | str,
    expected: str,
) -> None:
    db = db_of(gateway)
    mark = datetime(2026, 11, 2, 10, 0, tzinfo=UTC)
    save_watermark(db, SOURCE, mark, datetime.now(UTC))
    hapi.add(server_copy("2001", 100, "2026-11-02T10:16:00.120Z"))
    hapi.failures.append((status, body))
    pull = poller(gateway)

    with caplog.at_level(logging.WARNING, logger="gateway.intake.pull"):
        assert pull.poll_once() == 0
    assert pull.last_error is not None and expected in pull.last_error
    assert expected in caplog.text
    assert read_watermark(db, SOURCE) == mark
    assert referrals(gateway) == {}

    assert pull.poll_once() == 1  # next round: the same query again, and it works
    assert query_of(hapi.searches[0]) == query_of(hapi.searches[1])
    assert pull.last_error is None
    assert read_watermark(db, SOURCE) == datetime(2026, 11, 2, 10, 16, 0, 120000, UTC)


def test_a_failure_on_a_later_page_keeps_the_watermark(gateway: Gateway, hapi: FakeHapi) -> None:
    hapi.add(server_copy("2001", 100, "2026-11-02T10:16:00.120Z"), page=0)
    hapi.add(server_copy("2002", 200, "2026-11-02T10:17:00.120Z"), page=1)
    hapi.page_failures[1] = 1
    pull = poller(gateway, page_size=1)

    assert pull.poll_once() == 1  # page one was taken before page two failed
    assert read_watermark(db_of(gateway), SOURCE) is None
    assert pull.poll_once() == 1  # page one again (nothing new), then page two

    assert referrals(gateway) == {"2001": 1, "2002": 1}
    assert read_watermark(db_of(gateway), SOURCE) == datetime(2026, 11, 2, 10, 17, 0, 120000, UTC)


def test_a_referral_the_mapping_rejects_is_kept_and_the_round_goes_on(
    gateway: Gateway, hapi: FakeHapi, caplog: pytest.LogCaptureFixture
) -> None:
    bad = server_copy("2001", 100, "2026-11-02T10:16:00.120Z")
    patient = next(r for r in bad.values() if r["resourceType"] == "Patient")
    del patient["birthDate"]  # mandatory in the PRSB standard
    hapi.add(bad)
    hapi.add(server_copy("2002", 200, "2026-11-02T10:15:00.000Z"))

    with caplog.at_level(logging.WARNING, logger="gateway.intake.pull"):
        assert poller(gateway).poll_once() == 1

    assert referrals(gateway) == {"2002": 1}
    statuses = sorted((m.channel, m.status) for m in stored_messages(gateway))
    assert statuses == [("fhir-pull", "accepted"), ("fhir-pull", "rejected")]
    rejected = next(m for m in stored_messages(gateway) if m.status == "rejected")
    assert "date_of_birth" in (rejected.diagnostics or "")
    assert f"ServiceRequest/{request_of(bad)['id']} not taken" in caplog.text
    # The watermark passes the rejected referral: it is kept, and a fix comes back newer.
    assert read_watermark(db_of(gateway), SOURCE) == datetime(2026, 11, 2, 10, 16, 0, 120000, UTC)


def test_a_dangling_reference_is_read_once_then_left_to_the_mapping(
    gateway: Gateway, hapi: FakeHapi
) -> None:
    resources = server_copy("2001", 100, "2026-11-02T10:16:00.120Z")
    request = request_of(resources)
    request["supportingInfo"].append({"reference": "Observation/999999"})
    hapi.add(resources)

    assert poller(gateway).poll_once() == 1
    asked = [c.request.url for c in hapi.calls if str(c.request.url).endswith("/999999")]
    assert asked == [f"{BASE}/Observation/999999"]


def test_a_next_link_to_another_host_is_not_followed(gateway: Gateway, hapi: FakeHapi) -> None:
    hapi.add(server_copy("2001", 100, "2026-11-02T10:16:00.120Z"), page=0)
    hapi.add(server_copy("2002", 200, "2026-11-02T10:17:00.120Z"), page=1)
    hapi.next_link = "http://elsewhere.example/fhir?_getpages=1"
    pull = poller(gateway, page_size=1)

    assert pull.poll_once() == 1
    assert pull.last_error is not None and "elsewhere.example" in pull.last_error
    assert all("elsewhere" not in str(c.request.url) for c in hapi.calls)
    assert read_watermark(db_of(gateway), SOURCE) is None


def test_a_next_link_with_another_scheme_is_followed_on_the_configured_one(
    gateway: Gateway, hapi: FakeHapi
) -> None:
    hapi.add(server_copy("2001", 100, "2026-11-02T10:16:00.120Z"), page=0)
    hapi.add(server_copy("2002", 200, "2026-11-02T10:17:00.120Z"), page=1)
    # HAPI behind a TLS proxy writes http:// links; here the base is http, the link https.
    hapi.next_link = BASE.replace("http://", "https://") + "?_getpages=5f3c2b&_getpagesoffset=1"

    assert poller(gateway, page_size=1).poll_once() == 2
    assert str(hapi.searches[1].url).startswith(f"{BASE}?_getpages=5f3c2b")


def test_an_unreachable_server_is_tried_again_next_round(gateway: Gateway) -> None:
    with responses.RequestsMock() as rsps:
        rsps.add(responses.GET, f"{BASE}/ServiceRequest", body=requests.ConnectionError("down"))
        pull = poller(gateway)
        assert pull.poll_once() == 0
    assert pull.last_error == "GET /baseR4/ServiceRequest: ConnectionError"
    assert read_watermark(db_of(gateway), SOURCE) is None


def test_run_forever_polls_until_stopped(gateway: Gateway, hapi: FakeHapi) -> None:
    import threading

    hapi.add(server_copy("2001", 100, "2026-11-02T10:16:00.120Z"))
    stop = threading.Event()
    pull = poller(gateway, interval=1)
    rounds: list[int] = []
    once = pull.poll_once

    def counted() -> int:
        rounds.append(once())
        if len(rounds) == 2:
            stop.set()
        return rounds[-1]

    pull.poll_once = counted  # type: ignore[method-assign]
    clock = iter(range(0, 1000, 1))
    pull.clock = lambda: float(next(clock))
    thread = threading.Thread(target=pull.run_forever, args=(stop,), daemon=True)
    thread.start()
    thread.join(timeout=10)
    assert not thread.is_alive()
    assert rounds == [1, 0]


def test_instants_round_trip() -> None:
    value = parse_instant("2026-11-02T10:16:00.1234567+01:00")
    assert value == datetime(2026, 11, 2, 9, 16, 0, 123456, UTC)
    assert fhir_instant(value) == "2026-11-02T09:16:00.123Z"
    assert parse_instant("2026-11-02") is None
    assert parse_instant(None) is None


def test_cli_pull_once(
    hapi: FakeHapi, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sqlite_url: str
) -> None:
    hapi.add(server_copy("2001", 100, "2026-11-02T10:16:00.120Z"))
    destinations = tmp_path / "destinations.yaml"
    destinations.write_text(f"pull:\n  uk-core:\n    fhir: {BASE}\n    overlap: 60\n")
    monkeypatch.setenv("GATEWAY_DATABASE_URL", sqlite_url)
    monkeypatch.setenv("GATEWAY_DESTINATIONS", str(destinations))

    result = CliRunner().invoke(main, ["pull", "--source", "uk-core", "--once"])
    assert result.exit_code == 0, result.output
    assert "uk-core: 1 new referral(s)" in result.output
    result = CliRunner().invoke(main, ["pull", "--source", "uk-core", "--once"])
    assert "uk-core: 0 new referral(s)" in result.output

    db = Database(sqlite_url)
    assert read_watermark(db, SOURCE) == datetime(2026, 11, 2, 10, 16, 0, 120000, UTC)
    db.dispose()

    result = CliRunner().invoke(main, ["pull", "--source", "emis-web", "--once"])
    assert result.exit_code == 1
    assert "no pull configured for 'emis-web'" in result.output


def test_cli_pull_once_fails_when_the_round_stops(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sqlite_url: str
) -> None:
    destinations = tmp_path / "destinations.yaml"
    destinations.write_text(f"pull:\n  uk-core:\n    fhir: {BASE}\n")
    monkeypatch.setenv("GATEWAY_DATABASE_URL", sqlite_url)
    monkeypatch.setenv("GATEWAY_DESTINATIONS", str(destinations))
    with responses.RequestsMock() as rsps:
        rsps.add(
            responses.GET,
            f"{BASE}/ServiceRequest",
            json=hapi_outcome("HAPI-0524: Unknown search parameter"),
            status=400,
        )
        result = CliRunner().invoke(main, ["pull", "--source", "uk-core", "--once"])
    assert result.exit_code == 1
    assert "HAPI-0524" in result.output
