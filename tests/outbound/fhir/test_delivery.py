"""FHIR write-back against HAPI's behaviour, reproduced with `responses`.

``FakeHapi`` keeps resources in memory and answers as HAPI does (peers.md): POST assigns the
id, 201 with Location ``…/_history/1`` and ETag ``W/"1"``; a conditional create with one
match answers 200 and changes nothing, with several 412; a PUT whose If-Match is not the
current version 409; errors are OperationOutcomes with HAPI-nnnn codes in diagnostics.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import orjson
import pytest
import requests
import responses
from support import FIXTURES

from gateway.errors import PermanentDeliveryError, TransientDeliveryError
from gateway.outbound.destinations import Destinations, Writeback
from gateway.outbound.fhir.delivery import KEEP_BYTES, FhirWriteback
from gateway.outbound.fhir.names import OBSERVATION_SYSTEM, TASK_SYSTEM
from gateway.outbound.retry import retry_after
from gateway.store.outbox import Claimed

BASE = "https://gp.example.org/fhir"
REFERRAL_ID = "9b2e4c1a-7d3f-4e5a-8b6c-0d1e2f3a4b5c"
RECORD = orjson.loads((FIXTURES / "emis-web" / "01-new-referral.record.json").read_bytes())
#: Patient data that must never reach a log line.
SECRETS = ("9990000018", "Margaret", "Ellis", "1948-03-14")


def payload(outcome_id: str = "o-1", status: str = "in-progress", **extra: Any) -> dict[str, Any]:
    """A write-back payload for the emis-web fixture referral."""
    outcome: dict[str, Any] = {
        "outcome_id": outcome_id,
        "status": status,
        "occurred_at": "2026-11-20T14:00:00+00:00",
        "contacts": [{"date": "2026-11-05T10:00:00+00:00", "mechanism": "telephone"}],
        "assessments": [
            {"instrument": "wemwbs", "score": 41, "date": "2026-11-05"},
            {"instrument": "ucla3", "score": 7, "date": "2026-11-05"},
        ],
        "clinical_summary": "Margaret Ellis has joined a walking group.",
        **extra,
    }
    return {
        "referral": {
            "id": REFERRAL_ID,
            "source": "emis-web",
            "identifier": "1001",
            "version": 1,
            "record": copy.deepcopy(RECORD),
        },
        "outcome": {k: v for k, v in outcome.items() if v is not None},
        "outcome_seq": 1,
    }


def claimed(body: dict[str, Any] | None = None, source: str = "emis-web") -> Claimed:
    return Claimed(1, REFERRAL_ID, f"writeback:{source}", "fhir-writeback", body or payload(), 1)


def operation_outcome(diagnostics: str, code: str = "processing") -> bytes:
    issue = {"severity": "error", "code": code, "diagnostics": diagnostics}
    return orjson.dumps({"resourceType": "OperationOutcome", "issue": [issue]})


class FakeHapi:
    """An in-memory FHIR server answering like HAPI FHIR, mounted on ``responses``."""

    def __init__(self, rsps: responses.RequestsMock) -> None:
        self.store: dict[str, dict[str, dict[str, Any]]] = {}
        self.next_id = 1
        self.transactions: list[dict[str, Any]] = []
        self.searches = 0
        self.include_meta = True
        # through the attributes, so a test can wrap a handler after the routes exist
        rsps.add_callback(responses.GET, f"{BASE}/Task", callback=lambda r: self.search(r))
        rsps.add_callback(responses.POST, BASE, callback=lambda r: self.transaction(r))

    def create(self, resource: dict[str, Any]) -> str:
        """Store a resource as version 1; returns its id."""
        new = copy.deepcopy(resource)
        new["id"] = str(self.next_id)
        self.next_id += 1
        new["meta"] = {"versionId": "1"}
        self.store.setdefault(new["resourceType"], {})[new["id"]] = new
        return str(new["id"])

    def bump(self, kind: str, rid: str) -> None:
        """Someone else updates the resource (its version goes up)."""
        meta = self.store[kind][rid]["meta"]
        meta["versionId"] = str(int(meta["versionId"]) + 1)

    def matching(self, kind: str, query: str) -> list[dict[str, Any]]:
        """Resources matching ``identifier=system|value``."""
        (token,) = parse_qs(query)["identifier"]
        system, _, value = token.partition("|")
        return [
            r
            for r in self.store.get(kind, {}).values()
            if {"system": system, "value": unquote(value)} in r.get("identifier", [])
        ]

    def search(self, request: Any) -> tuple[int, dict[str, str], bytes]:
        self.searches += 1
        found = self.matching("Task", urlsplit(request.url).query)
        entries = []
        for task in found:
            shown = copy.deepcopy(task)
            if not self.include_meta:
                shown.pop("meta")
            entries.append(
                {
                    "fullUrl": f"{BASE}/Task/{task['id']}",
                    "resource": shown,
                    "search": {"mode": "match"},
                }
            )
        body = {
            "resourceType": "Bundle",
            "type": "searchset",
            "total": len(found),
            "entry": entries,
        }
        return 200, {"Content-Type": "application/fhir+json"}, orjson.dumps(body)

    def transaction(self, request: Any) -> tuple[int, dict[str, str], bytes]:
        bundle = orjson.loads(request.body)
        self.transactions.append(bundle)
        plan: list[tuple[str, dict[str, Any], str | None]] = []
        for entry in bundle["entry"]:  # check everything first: a transaction is all or nothing
            resource, req = entry["resource"], entry["request"]
            kind = resource["resourceType"]
            if req["method"] == "POST":
                found = self.matching(kind, req["ifNoneExist"])
                if len(found) > 1:
                    diagnostics = (
                        f"HAPI-0958: Failed to CREATE resource with match URL "
                        f'"{req["ifNoneExist"]}" because this search matched {len(found)} resources'
                    )
                    return 412, {}, operation_outcome(diagnostics)
                plan.append(
                    ("match" if found else "create", entry, found[0]["id"] if found else None)
                )
            else:
                rid = req["url"].split("/")[1]
                current = self.store.get(kind, {}).get(rid)
                if current is None:
                    return (
                        404,
                        {},
                        operation_outcome(f"HAPI-2001: Resource {kind}/{rid} is not known"),
                    )
                if req.get("ifMatch") != f'W/"{current["meta"]["versionId"]}"':
                    diagnostics = (
                        f"HAPI-0989: Trying to update {kind}/{rid} but this is not the "
                        "current version"
                    )
                    return 409, {}, operation_outcome(diagnostics, "conflict")
                plan.append(("update", entry, rid))
        ids = {}
        for action, entry, rid in plan:
            if action == "create":
                ids[entry["fullUrl"]] = f"{entry['resource']['resourceType']}/{self.next_id}"
                self.next_id += 1
            else:
                ids[entry["fullUrl"]] = f"{entry['resource']['resourceType']}/{rid}"
        answers = []
        for action, entry, _ in plan:
            resource = copy.deepcopy(entry["resource"])
            for output in resource.get("output", []):
                ref = output["valueReference"]
                ref["reference"] = ids.get(ref["reference"], ref["reference"])
            kind, rid = ids[entry["fullUrl"]].split("/")
            resource["id"] = rid
            if action == "create":
                resource["meta"] = {"versionId": "1"}
                self.store.setdefault(kind, {})[rid] = resource
                status = "201 Created"
            elif action == "update":
                old = self.store[kind][rid]["meta"]["versionId"]
                resource["meta"] = {"versionId": str(int(old) + 1)}
                self.store[kind][rid] = resource
                status = "200 OK"
            else:
                status = "200 OK"  # a conditional create that matched: no change
            version = self.store[kind][rid]["meta"]["versionId"]
            answers.append(
                {
                    "response": {
                        "status": status,
                        "location": f"{kind}/{rid}/_history/{version}",
                        "etag": f'W/"{version}"',
                    }
                }
            )
        body = {"resourceType": "Bundle", "type": "transaction-response", "entry": answers}
        return 200, {"Content-Type": "application/fhir+json"}, orjson.dumps(body)

    def count(self, kind: str) -> int:
        return len(self.store.get(kind, {}))


@pytest.fixture
def rsps() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


@pytest.fixture
def hapi(rsps: responses.RequestsMock) -> FakeHapi:
    return FakeHapi(rsps)


@pytest.fixture
def deliver(monkeypatch: pytest.MonkeyPatch) -> FhirWriteback:
    monkeypatch.setenv("GP_FHIR_TOKEN", "s3cret-token")
    target = Writeback("emis-web", fhir=BASE, token_env="GP_FHIR_TOKEN", timeout=7.5)
    return FhirWriteback(Destinations(writeback={"emis-web": target}))


def posted(rsps: responses.RequestsMock) -> list[Any]:
    return [c for c in rsps.calls if c.request.method == "POST"]


def test_first_delivery_creates_everything_conditionally(
    hapi: FakeHapi, deliver: FhirWriteback, rsps: responses.RequestsMock
) -> None:
    summary = deliver(claimed())
    assert summary == (
        "200 transaction-response: Task 201, Observation 201, Observation 201, Procedure 201, "
        "DocumentReference 201"
    )
    search, post = rsps.calls[0], rsps.calls[1]
    assert search.request.method == "GET"
    assert search.request.headers["Cache-Control"] == "no-cache"
    query = parse_qs(urlsplit(search.request.url).query)
    assert query["identifier"] == [f"{TASK_SYSTEM}|{REFERRAL_ID}"]
    assert post.request.url == BASE
    assert post.request.headers["Content-Type"] == "application/fhir+json"
    assert post.request.headers["Authorization"] == "Bearer s3cret-token"
    assert post.request.req_kwargs["timeout"] == 7.5
    assert search.request.req_kwargs["timeout"] == 7.5
    (bundle,) = hapi.transactions
    assert bundle["type"] == "transaction"
    assert bundle["entry"][0]["request"]["ifNoneExist"] == f"identifier={TASK_SYSTEM}|{REFERRAL_ID}"
    assert (hapi.count("Task"), hapi.count("Observation"), hapi.count("Procedure")) == (1, 2, 1)
    (task,) = hapi.store["Task"].values()
    assert [o["valueReference"]["reference"].split("/")[0] for o in task["output"]] == [
        "Observation",
        "Observation",
        "Procedure",
    ]


def test_a_resend_of_the_same_outcome_makes_no_duplicate(
    hapi: FakeHapi, deliver: FhirWriteback
) -> None:
    deliver(claimed())
    summary = deliver(claimed())  # e.g. the first answer was lost to a timeout
    assert summary == (
        "200 transaction-response: Task 200, Observation 200, Observation 200, Procedure 200, "
        "DocumentReference 200"
    )
    first, second = hapi.transactions
    creates = [e["request"] for e in first["entry"][1:]]
    assert [e["request"] for e in second["entry"][1:]] == creates  # the same conditional creates
    assert second["entry"][0]["request"] == {"method": "PUT", "url": "Task/1", "ifMatch": 'W/"1"'}
    assert (hapi.count("Task"), hapi.count("Observation"), hapi.count("DocumentReference")) == (
        1,
        2,
        1,
    )
    (task,) = hapi.store["Task"].values()
    assert task["meta"]["versionId"] == "2"
    assert len(task["output"]) == 3  # not doubled


def test_a_later_outcome_updates_the_task_with_if_match_keeping_earlier_outputs(
    hapi: FakeHapi, deliver: FhirWriteback
) -> None:
    deliver(claimed(payload("o-1", "accepted", contacts=None, assessments=None)))
    deliver(claimed(payload("o-2", "in-progress")))
    second = hapi.transactions[1]
    task_entry = second["entry"][0]
    assert task_entry["request"] == {"method": "PUT", "url": "Task/1", "ifMatch": 'W/"1"'}
    assert task_entry["resource"]["id"] == "1"
    (task,) = hapi.store["Task"].values()
    assert task["status"] == "in-progress"
    kinds = [o["valueReference"]["reference"] for o in task["output"]]
    assert kinds[0].startswith("Procedure/")  # the accepted outcome's, kept
    assert len(kinds) == 4
    assert hapi.count("Procedure") == 2


def test_the_version_comes_from_the_etag_when_the_search_leaves_meta_out(
    hapi: FakeHapi, deliver: FhirWriteback, rsps: responses.RequestsMock
) -> None:
    deliver(claimed())
    hapi.include_meta = False
    rsps.add(
        responses.GET, f"{BASE}/Task/1", json={"resourceType": "Task"}, headers={"ETag": 'W/"1"'}
    )
    deliver(claimed(payload("o-2")))
    assert hapi.transactions[1]["entry"][0]["request"]["ifMatch"] == 'W/"1"'


@pytest.mark.parametrize("status", [409, 412])
def test_a_conflict_rereads_the_task_and_tries_once_more(
    status: int, hapi: FakeHapi, deliver: FhirWriteback, rsps: responses.RequestsMock
) -> None:
    deliver(claimed())
    rsps.replace(
        responses.POST,
        BASE,
        body=operation_outcome("HAPI-0989: not the current version"),
        status=status,
    )
    rsps.add_callback(responses.POST, BASE, callback=hapi.transaction)
    searches = hapi.searches
    summary = deliver(claimed(payload("o-2")))
    assert summary.startswith("200 transaction-response: Task 200")
    assert hapi.searches == searches + 2  # read, conflict, read again
    assert len(posted(rsps)) == 3


def test_a_version_conflict_from_a_concurrent_update_is_resolved_by_rereading(
    hapi: FakeHapi, deliver: FhirWriteback
) -> None:
    deliver(claimed())
    real = hapi.search

    def search_then_someone_updates(request: Any) -> tuple[int, dict[str, str], bytes]:
        answer = real(request)
        if hapi.searches == 2:  # between our read and our write
            hapi.bump("Task", "1")
        return answer

    hapi.search = search_then_someone_updates  # type: ignore[method-assign]
    summary = deliver(claimed(payload("o-2")))
    assert summary.startswith("200 transaction-response: Task 200")
    assert hapi.searches == 3
    _, conflicted, resent = hapi.transactions
    assert conflicted["entry"][0]["request"]["ifMatch"] == 'W/"1"'
    assert resent["entry"][0]["request"]["ifMatch"] == 'W/"2"'
    assert hapi.store["Task"]["1"]["meta"]["versionId"] == "3"


def test_conflict_twice_is_transient(
    hapi: FakeHapi, deliver: FhirWriteback, rsps: responses.RequestsMock
) -> None:
    rsps.replace(responses.POST, BASE, body=operation_outcome("HAPI-0989: conflict"), status=409)
    with pytest.raises(TransientDeliveryError, match=r"HTTP 409 twice") as caught:
        deliver(claimed())
    assert "HAPI-0989" in caught.value.reason
    assert len(posted(rsps)) == 2


def test_a_conditional_create_matching_several_is_412_then_transient(
    hapi: FakeHapi, deliver: FhirWriteback, rsps: responses.RequestsMock
) -> None:
    duplicate = {
        "resourceType": "Observation",
        "identifier": [{"system": OBSERVATION_SYSTEM, "value": f"{REFERRAL_ID}-o-1-wemwbs"}],
    }
    hapi.create(duplicate)
    hapi.create(duplicate)
    with pytest.raises(TransientDeliveryError, match=r"HTTP 412 twice") as caught:
        deliver(claimed())
    assert "HAPI-0958" in caught.value.reason
    assert hapi.count("Task") == 0  # all or nothing


def test_hapi_400_is_permanent_with_the_body_kept_truncated(
    hapi: FakeHapi, deliver: FhirWriteback, rsps: responses.RequestsMock
) -> None:
    diagnostics = "HAPI-0450: Failed to parse request body as JSON resource. " + "x" * 6000
    rsps.replace(responses.POST, BASE, body=operation_outcome(diagnostics), status=400)
    with pytest.raises(PermanentDeliveryError) as caught:
        deliver(claimed())
    assert caught.value.reason == "transaction: HTTP 400 (OperationOutcome processing, HAPI-0450)"
    assert caught.value.response is not None
    assert len(caught.value.response.encode()) == KEEP_BYTES
    assert caught.value.response.startswith('{"resourceType":"OperationOutcome"')


@pytest.mark.parametrize("status", [400, 401, 403, 404, 405, 410, 422])
def test_client_errors_are_permanent(
    status: int, hapi: FakeHapi, deliver: FhirWriteback, rsps: responses.RequestsMock
) -> None:
    rsps.replace(responses.POST, BASE, body=operation_outcome("HAPI-0001: no"), status=status)
    with pytest.raises(PermanentDeliveryError, match=f"HTTP {status}"):
        deliver(claimed())


def test_429_is_transient_with_retry_after_in_seconds(
    hapi: FakeHapi, deliver: FhirWriteback, rsps: responses.RequestsMock
) -> None:
    rsps.replace(responses.POST, BASE, status=429, headers={"Retry-After": "120"})
    with pytest.raises(TransientDeliveryError) as caught:
        deliver(claimed())
    assert caught.value.retry_after == 120.0


def test_429_retry_after_as_an_http_date(
    hapi: FakeHapi, deliver: FhirWriteback, rsps: responses.RequestsMock
) -> None:
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=90), usegmt=True)
    rsps.replace(responses.POST, BASE, status=429, headers={"Retry-After": when})
    with pytest.raises(TransientDeliveryError) as caught:
        deliver(claimed())
    assert caught.value.retry_after is not None
    assert 80 <= caught.value.retry_after <= 90


def test_retry_after_parsing() -> None:
    assert retry_after(None) is None
    assert retry_after("") is None
    assert retry_after("5") == 5.0
    assert retry_after("-3") == 0.0
    assert retry_after("inf") is None
    assert retry_after("9999999") == 86400.0
    assert retry_after("soon") is None
    assert retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # in the past


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_server_errors_are_transient(
    status: int, hapi: FakeHapi, deliver: FhirWriteback, rsps: responses.RequestsMock
) -> None:
    rsps.replace(
        responses.POST,
        BASE,
        body=b"<html>down</html>",
        status=status,
        headers={"Retry-After": "30"},
    )
    with pytest.raises(TransientDeliveryError, match=f"HTTP {status}") as caught:
        deliver(claimed())
    assert caught.value.retry_after == 30.0
    assert caught.value.response == "<html>down</html>"


@pytest.mark.parametrize(
    "error", [requests.exceptions.ReadTimeout(), requests.exceptions.ConnectionError()]
)
@pytest.mark.parametrize("where", ["search", "transaction"])
def test_timeouts_and_connection_failures_are_transient(
    error: Exception,
    where: str,
    hapi: FakeHapi,
    deliver: FhirWriteback,
    rsps: responses.RequestsMock,
) -> None:
    if where == "search":
        rsps.replace(responses.GET, f"{BASE}/Task", body=error)
    else:
        rsps.replace(responses.POST, BASE, body=error)
    with pytest.raises(TransientDeliveryError) as caught:
        deliver(claimed())
    expected = "no answer in 7.5 s" if isinstance(error, requests.Timeout) else "connection failed"
    assert expected in caught.value.reason


def test_a_search_error_is_classified_like_any_answer(
    hapi: FakeHapi, deliver: FhirWriteback, rsps: responses.RequestsMock
) -> None:
    rsps.replace(
        responses.GET,
        f"{BASE}/Task",
        body=operation_outcome('HAPI-0524: Unknown search parameter "identifier"'),
        status=400,
    )
    with pytest.raises(PermanentDeliveryError, match=r"Task search: HTTP 400 .*HAPI-0524"):
        deliver(claimed())
    assert posted(rsps) == []


def test_several_tasks_for_one_referral_need_a_person(
    hapi: FakeHapi, deliver: FhirWriteback, rsps: responses.RequestsMock
) -> None:
    task = {"resourceType": "Task", "identifier": [{"system": TASK_SYSTEM, "value": REFERRAL_ID}]}
    hapi.create(task)
    hapi.create(task)
    with pytest.raises(PermanentDeliveryError, match="2 Tasks carry this referral's identifier"):
        deliver(claimed())
    assert posted(rsps) == []


def test_a_4xx_entry_in_a_200_transaction_response_is_permanent(
    hapi: FakeHapi, deliver: FhirWriteback, rsps: responses.RequestsMock
) -> None:
    answer = {
        "resourceType": "Bundle",
        "type": "transaction-response",
        "entry": [
            {"response": {"status": "201 Created", "location": "Task/1/_history/1"}},
            {"response": {"status": "422 Unprocessable Entity"}},
        ],
    }
    rsps.replace(responses.POST, BASE, json=answer, status=200)
    with pytest.raises(PermanentDeliveryError, match=r"refused Observation 422") as caught:
        deliver(claimed())
    assert caught.value.response is not None


def test_a_redirect_is_not_followed(
    hapi: FakeHapi, deliver: FhirWriteback, rsps: responses.RequestsMock
) -> None:
    rsps.replace(
        responses.POST, BASE, status=302, headers={"Location": "https://elsewhere.example/"}
    )
    with pytest.raises(PermanentDeliveryError, match="redirect"):
        deliver(claimed())


def test_no_configured_target_is_permanent() -> None:
    deliver = FhirWriteback(Destinations())
    with pytest.raises(
        PermanentDeliveryError, match="no FHIR write-back is configured for emis-web"
    ):
        deliver(claimed())


def test_a_bundle_that_cannot_be_built_is_permanent_and_nothing_is_posted(
    hapi: FakeHapi, deliver: FhirWriteback, rsps: responses.RequestsMock
) -> None:
    body = payload()
    body["referral"]["record"]["person"]["nhs_number"] = None
    with pytest.raises(PermanentDeliveryError, match="no NHS number"):
        deliver(claimed(body))
    assert posted(rsps) == []


def test_no_token_no_authorization_header(hapi: FakeHapi, rsps: responses.RequestsMock) -> None:
    deliver = FhirWriteback(Destinations(writeback={"emis-web": Writeback("emis-web", fhir=BASE)}))
    deliver(claimed())
    assert all("Authorization" not in c.request.headers for c in rsps.calls)


def test_message_mode_posts_a_bars_message_to_process_message(
    rsps: responses.RequestsMock,
) -> None:
    target = Writeback("emis-web", fhir=BASE + "/", mode="message")
    deliver = FhirWriteback(Destinations(writeback={"emis-web": target}))
    answer = {
        "resourceType": "Bundle",
        "type": "message",
        "entry": [
            {
                "resource": {
                    "resourceType": "MessageHeader",
                    "response": {"identifier": "x", "code": "ok"},
                }
            }
        ],
    }
    rsps.add(responses.POST, f"{BASE}/$process-message", json=answer)
    assert deliver(claimed()) == "200 message response: ok"
    (call,) = rsps.calls  # no Task search in message mode
    bundle = orjson.loads(call.request.body)
    assert bundle["type"] == "message"
    assert bundle["entry"][0]["resource"]["destination"] == [{"endpoint": BASE}]
    assert call.request.headers["Content-Type"] == "application/fhir+json"
    first_request_id = call.request.headers["X-Request-Id"]
    correlation = call.request.headers["X-Correlation-Id"]
    deliver(claimed(payload("o-2")))
    again = rsps.calls[1].request.headers
    assert again["X-Correlation-Id"] == correlation  # an update keeps the correlation id
    assert again["X-Request-Id"] != first_request_id


@pytest.mark.parametrize(
    ("code", "error"),
    [("fatal-error", PermanentDeliveryError), ("transient-error", TransientDeliveryError)],
)
def test_message_mode_response_codes(
    code: str, error: type[Exception], rsps: responses.RequestsMock
) -> None:
    target = Writeback("emis-web", fhir=BASE, mode="message")
    deliver = FhirWriteback(Destinations(writeback={"emis-web": target}))
    header = {"resourceType": "MessageHeader", "response": {"identifier": "x", "code": code}}
    answer = {"resourceType": "Bundle", "type": "message", "entry": [{"resource": header}]}
    rsps.add(responses.POST, f"{BASE}/$process-message", json=answer)
    with pytest.raises(error, match=code):
        deliver(claimed())


def test_no_patient_data_in_any_log_line_or_failure_reason(
    hapi: FakeHapi,
    deliver: FhirWriteback,
    rsps: responses.RequestsMock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    reasons = []
    deliver(claimed())
    deliver(claimed())
    echo = operation_outcome("HAPI-0450: bad value 9990000018 for Margaret Ellis born 1948-03-14")
    for status in (400, 409, 503):
        rsps.replace(responses.POST, BASE, body=echo, status=status)
        with pytest.raises((PermanentDeliveryError, TransientDeliveryError)) as caught:
            deliver(claimed(payload("o-2")))
        reasons.append(caught.value.reason)
        assert caught.value.response is not None and "9990000018" in caught.value.response
    lines = [record.getMessage() for record in caplog.records] + reasons
    assert any("delivered" in line for line in lines)
    for line in lines:
        for secret in SECRETS:
            assert secret not in line, line
