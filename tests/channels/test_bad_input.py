"""Bad input to the FHIR endpoints: a clear 4xx OperationOutcome; the raw message kept."""

from __future__ import annotations

import copy
import io
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from support import (
    FHIR_JSON,
    FHIR_XML,
    FIXTURES,
    Gateway,
    build_gateway,
    fhir_valid,
    stored_messages,
)

from gateway import nhs_number
from gateway.services import services
from gateway.store.messages import KEPT_PREFIX
from gateway.store.models import Referral

MESSAGE = "/fhir/$process-message"
BUNDLE = "/fhir"
SERVICE_REQUEST = "/fhir/ServiceRequest"
XML_FIXTURE = FIXTURES / "uk-core" / "08-xml-message.xml"
MIB = 1024 * 1024


def fixture_doc(source: str) -> dict[str, Any]:
    """The parsed 01-new-referral fixture of ``source`` (a fresh copy to edit)."""
    path = FIXTURES / source / "01-new-referral.json"
    return json.loads(path.read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def fixture_bytes(source: str) -> bytes:
    """The raw 01-new-referral fixture of ``source``."""
    return (FIXTURES / source / "01-new-referral.json").read_bytes()


def dumps(doc: Any) -> bytes:
    """FHIR JSON bytes, UTF-8 kept."""
    return json.dumps(doc, ensure_ascii=False, indent=1).encode("utf-8")


def entry(bundle: dict[str, Any], rtype: str) -> tuple[int, dict[str, Any]]:
    """(position, resource) of the only entry of type ``rtype`` in a Bundle."""
    found = [
        (i, e["resource"])
        for i, e in enumerate(bundle["entry"])
        if e["resource"]["resourceType"] == rtype
    ]
    assert len(found) == 1, rtype
    return found[0]


def patient_of(doc: dict[str, Any]) -> dict[str, Any]:
    """The Patient of a fixture: a Bundle entry or a contained resource."""
    if doc["resourceType"] == "Bundle":
        return entry(doc, "Patient")[1]
    return next(r for r in doc["contained"] if r["resourceType"] == "Patient")


def referral_of(doc: dict[str, Any]) -> dict[str, Any]:
    """The ServiceRequest of a fixture."""
    return doc if doc["resourceType"] == "ServiceRequest" else entry(doc, "ServiceRequest")[1]


def endpoint_of(source: str) -> str:
    """The endpoint each source's fixtures go to."""
    return {"emis-web": MESSAGE, "systmone": BUNDLE, "uk-core": MESSAGE, "vision": SERVICE_REQUEST}[
        source
    ]


def xml_text() -> str:
    """The FHIR XML form of the uk-core referral (fixture 08)."""
    return XML_FIXTURE.read_text(encoding="utf-8")


def with_doctype(doctype: str, family: str) -> str:
    """The XML fixture with a DOCTYPE added and the family name replaced."""
    text = xml_text()
    declaration, rest = text.split("\n", 1)
    assert rest.count('<family value="Ellis"/>') == 1
    return declaration + "\n" + doctype + "\n" + rest.replace("Ellis", family, 1)


@dataclass(frozen=True)
class Case:
    """One bad request and the refusal it must get."""

    id: str
    source: str
    path: str
    body: bytes
    status: int
    code: str
    #: The element the outcome must name (it or something inside it); None: the whole message.
    expression: str | None
    content_type: str = FHIR_JSON


def _patient_location(source: str) -> str:
    """Where a fixture's Patient is, as a FHIRPath into the message as sent."""
    doc = fixture_doc(source)
    if doc["resourceType"] == "Bundle":
        position, _ = entry(doc, "Patient")
        return f"Bundle.entry[{position}].resource"
    kinds = [r["resourceType"] for r in doc.get("contained", [])]
    return f"{doc['resourceType']}.contained[{kinds.index('Patient')}]"


def _edited(source: str, edit: Callable[[dict[str, Any]], Any]) -> bytes:
    doc = fixture_doc(source)
    edit(doc)
    return dumps(doc)


def _without_subject(doc: dict[str, Any]) -> None:
    del referral_of(doc)["subject"]


def _anonymous(doc: dict[str, Any]) -> None:
    patient = patient_of(doc)
    del patient["identifier"], patient["name"]


def _bad_check_digit(doc: dict[str, Any]) -> None:
    identifier = patient_of(doc)["identifier"][0]
    good = identifier["value"]
    assert nhs_number.is_valid(good) and good.startswith("999")
    identifier["value"] = good[:9] + str((int(good[9]) + 1) % 10)
    assert not nhs_number.is_valid(identifier["value"])


def _misspelt_element(doc: dict[str, Any]) -> None:
    referral = referral_of(doc)
    referral["authoredDate"] = referral.pop("authoredOn")


def _header_last(doc: dict[str, Any]) -> None:
    doc["entry"].append(doc["entry"].pop(0))


def _wrong_event(doc: dict[str, Any]) -> None:
    doc["entry"][0]["resource"]["eventCoding"]["code"] = "servicerequest-response"


def _second_referral(doc: dict[str, Any]) -> None:
    position, _ = entry(doc, "ServiceRequest")
    twin = copy.deepcopy(doc["entry"][position])
    new_id = str(uuid.uuid5(uuid.NAMESPACE_URL, "test_bad_input/second-referral"))
    twin["fullUrl"] = f"urn:uuid:{new_id}"
    twin["resource"]["id"] = new_id
    twin["resource"]["identifier"][0]["value"] = "1999"
    doc["entry"].append(twin)


def _searchset(doc: dict[str, Any]) -> None:
    doc["type"] = "searchset"


def _event(system: str | None = None, code: str | None = None) -> Callable[[dict[str, Any]], None]:
    def edit(doc: dict[str, Any]) -> None:
        coding = doc["entry"][0]["resource"]["eventCoding"]
        coding.update({k: v for k, v in (("system", system), ("code", code)) if v is not None})

    return edit


REPEAT = "@@REPEATED-KEY@@"


def _repeated(
    source: str, pick: Callable[[dict[str, Any]], dict[str, Any]], key: str, second: Any
) -> bytes:
    """The fixture with ``key`` given twice in the object ``pick`` finds: as sent, then
    ``second`` (the one a last-wins reader keeps)."""
    doc = fixture_doc(source)
    target = pick(doc)
    assert key in target
    target[REPEAT] = second
    body = dumps(doc)
    assert body.count(REPEAT.encode()) == 1
    return body.replace(f'"{REPEAT}"'.encode(), f'"{key}"'.encode())


def _other_patient_identifier() -> list[dict[str, str]]:
    """A second, valid NHS number: the one a last-wins reader would file the referral under."""
    other = nhs_number.synthetic(201)
    assert nhs_number.is_valid(other)
    return [{"system": "https://fhir.nhs.uk/Id/nhs-number", "value": other}]


def _extension_on_referral(extension: dict[str, Any]) -> Callable[[dict[str, Any]], None]:
    def edit(doc: dict[str, Any]) -> None:
        referral_of(doc)["extension"] = [extension]

    return edit


EXT = "https://example.org/fhir/StructureDefinition/test-extension"


def _deep_json(source: str, depth: int = 10_000) -> bytes:
    """The fixture with an extension nested ``depth`` deep on the ServiceRequest."""
    doc = fixture_doc(source)
    referral_of(doc)["extension"] = "@@DEEP@@"
    level = '[{"url": "https://example.org/fhir/StructureDefinition/nested", "extension": '
    deep = level * depth + "[]" + "}]" * depth
    return dumps(doc).replace(b'"@@DEEP@@"', deep.encode())


def _deep_xml(depth: int = 10_000) -> bytes:
    """The XML fixture with an extension nested ``depth`` deep on the Patient."""
    text = xml_text()
    opening = '<extension url="https://example.org/fhir/StructureDefinition/nested">'
    deep = opening * depth + "</extension>" * depth
    marker = "<Patient>\n"
    assert text.count(marker) == 1
    return text.replace(marker, marker + deep, 1).encode()


def _patient_body(source: str) -> bytes:
    return dumps(patient_of(fixture_doc(source)))


XXE = '<!DOCTYPE Bundle [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
XXE_PARAMETER = (
    '<!DOCTYPE Bundle [<!ENTITY % remote SYSTEM "file:///etc/passwd"> %remote; '
    '<!ENTITY xxe "&#x25;remote;">]>'
)
LAUGHS = (
    "<!DOCTYPE Bundle [\n"
    '<!ENTITY lol0 "lol">\n'
    + "".join(f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10}">\n' for i in range(1, 10))
    + "]>"
)


def _cases() -> list[Case]:
    uk = fixture_bytes("uk-core")
    sr_position, _ = entry(fixture_doc("uk-core"), "ServiceRequest")
    patient_at, _ = entry(fixture_doc("uk-core"), "Patient")
    cases = [
        Case("malformed-json", "uk-core", MESSAGE, uk[: len(uk) // 2], 400, "structure", None),
        Case("empty-body", "uk-core", MESSAGE, b"", 400, "structure", None),
        Case("json-array", "vision", SERVICE_REQUEST, b"[]", 400, "structure", "resourceType"),
        Case(
            "patient-to-servicerequest",
            "vision",
            SERVICE_REQUEST,
            _patient_body("vision"),
            400,
            "structure",
            "resourceType",
        ),
        Case(
            "patient-to-process-message",
            "uk-core",
            MESSAGE,
            _patient_body("uk-core"),
            400,
            "structure",
            "resourceType",
        ),
        Case(
            "servicerequest-without-subject",
            "vision",
            SERVICE_REQUEST,
            _edited("vision", _without_subject),
            400,
            "required",
            "ServiceRequest.subject",
        ),
        Case(
            "message-referral-without-subject",
            "uk-core",
            MESSAGE,
            _edited("uk-core", _without_subject),
            400,
            "required",
            f"Bundle.entry[{sr_position}].resource.subject",
        ),
        Case(
            "patient-without-nhs-number-or-name",
            "uk-core",
            MESSAGE,
            _edited("uk-core", _anonymous),
            400,
            "required",
            f"{_patient_location('uk-core')}.name",
        ),
        *(
            Case(
                f"nhs-number-check-digit-{source}",
                source,
                endpoint_of(source),
                _edited(source, _bad_check_digit),
                400,
                "invalid",
                f"{_patient_location(source)}.identifier[0].value",
            )
            for source in ("emis-web", "systmone", "uk-core", "vision")
        ),
        Case("json-10000-deep", "uk-core", MESSAGE, _deep_json("uk-core"), 400, "structure", None),
        Case(
            "invalid-utf-8",
            "uk-core",
            MESSAGE,
            uk.replace(b'"Ellis"', b'"Ell\xe9s"', 1),  # Latin-1, not UTF-8
            400,
            "structure",
            None,
        ),
        Case(
            "unknown-element-in-message",
            "uk-core",
            MESSAGE,
            _edited("uk-core", _misspelt_element),
            400,
            "structure",
            f"Bundle.entry[{sr_position}].resource.authoredDate",
        ),
        Case(
            "unknown-element-in-servicerequest",
            "vision",
            SERVICE_REQUEST,
            _edited("vision", _misspelt_element),
            400,
            "structure",
            "ServiceRequest.authoredDate",
        ),
        Case("text-plain", "uk-core", MESSAGE, uk, 415, "not-supported", None, "text/plain"),
        Case(
            "latin-1-charset",
            "uk-core",
            MESSAGE,
            uk,
            415,
            "not-supported",
            None,
            "application/fhir+json; charset=iso-8859-1",
        ),
        Case(
            "message-header-not-first",
            "uk-core",
            MESSAGE,
            _edited("uk-core", _header_last),
            400,
            "structure",
            "Bundle.entry[0]",
        ),
        Case(
            "wrong-bars-event",
            "emis-web",
            MESSAGE,
            _edited("emis-web", _wrong_event),
            422,
            "not-supported",
            "Bundle.entry[0].resource.eventCoding.code",
        ),
        *(
            Case(
                f"bars-event-{name}",
                "uk-core",
                MESSAGE,
                _edited("uk-core", edit),
                422,
                "not-supported",
                f"Bundle.entry[0].resource.eventCoding.{element}",
            )
            for name, edit, element in (
                ("response", _event(code="servicerequest-response"), "code"),
                ("booking-request", _event(code="booking-request"), "code"),
                ("booking-response", _event(code="booking-response"), "code"),
                ("wrong-system", _event(system="https://example.org/message-events"), "system"),
                ("fhir-core-system", _event(system="http://hl7.org/fhir/message-events"), "system"),
            )
        ),
        *(
            Case(
                f"patient-identifier-twice-{source}",
                source,
                endpoint_of(source),
                _repeated(source, patient_of, "identifier", _other_patient_identifier()),
                400,
                "structure",
                where,
            )
            for source, where in (
                ("uk-core", f"Bundle.entry[{patient_at}].resource.identifier"),
                (
                    "emis-web",
                    f"Bundle.entry[{entry(fixture_doc('emis-web'), 'Patient')[0]}]"
                    ".resource.identifier",
                ),
                (
                    "systmone",
                    f"Bundle.entry[{entry(fixture_doc('systmone'), 'Patient')[0]}]"
                    ".resource.identifier",
                ),
                ("vision", "ServiceRequest.contained[0].identifier"),
            )
        ),
        Case(
            "identifier-system-twice-deep",
            "uk-core",
            MESSAGE,
            _repeated(
                "uk-core",
                lambda d: referral_of(d)["identifier"][0],
                "system",
                "https://example.org/another-system",
            ),
            400,
            "structure",
            f"Bundle.entry[{sr_position}].resource.identifier[0].system",
        ),
        Case(
            "coding-code-twice-deep-in-extension",
            "uk-core",
            MESSAGE,
            _repeated(
                "uk-core",
                lambda d: patient_of(d)["identifier"][0]["extension"][0]["valueCodeableConcept"][
                    "coding"
                ][0],
                "code",
                "02",
            ),
            400,
            "structure",
            f"Bundle.entry[{patient_at}].resource.identifier[0].extension[0]"
            ".valueCodeableConcept.coding[0].code",
        ),
        Case(
            "bundle-type-twice",
            "uk-core",
            MESSAGE,
            _repeated("uk-core", lambda d: d, "type", "message"),
            400,
            "structure",
            "Bundle.type",
        ),
        Case(
            "extension-without-url",
            "uk-core",
            MESSAGE,
            _edited("uk-core", _extension_on_referral({"valueString": "no url"})),
            400,
            "invariant",
            f"Bundle.entry[{sr_position}].resource.extension[0]",
        ),
        Case(
            "extension-with-two-values",
            "vision",
            SERVICE_REQUEST,
            _edited(
                "vision",
                _extension_on_referral({"url": EXT, "valueString": "a", "valueBoolean": True}),
            ),
            400,
            "invariant",
            "ServiceRequest.extension[0].valueBoolean",
        ),
        Case(
            "extension-with-value-and-extensions",
            "uk-core",
            MESSAGE,
            _edited(
                "uk-core",
                _extension_on_referral(
                    {"url": EXT, "valueString": "a", "extension": [{"url": "x", "valueCode": "b"}]}
                ),
            ),
            400,
            "invariant",
            f"Bundle.entry[{sr_position}].resource.extension[0].extension",
        ),
        Case(
            "nested-extension-without-url",
            "uk-core",
            MESSAGE,
            _edited(
                "uk-core", _extension_on_referral({"url": EXT, "extension": [{"valueCode": "b"}]})
            ),
            400,
            "invariant",
            f"Bundle.entry[{sr_position}].resource.extension[0].extension[0]",
        ),
        Case(
            "two-servicerequests",
            "uk-core",
            MESSAGE,
            _edited("uk-core", _second_referral),
            422,
            "not-supported",
            f"Bundle.entry[{len(fixture_doc('uk-core')['entry'])}]",
        ),
        Case(
            "transaction-from-message-only-source",
            "emis-web",
            BUNDLE,
            fixture_bytes("systmone"),
            422,
            "not-supported",
            "Bundle.type",
        ),
        Case(
            "searchset-to-bundle-endpoint",
            "uk-core",
            BUNDLE,
            _edited("uk-core", _searchset),
            422,
            "not-supported",
            "Bundle.type",
        ),
        Case(
            "searchset-to-process-message",
            "uk-core",
            MESSAGE,
            _edited("uk-core", _searchset),
            422,
            "not-supported",
            "Bundle.type",
        ),
        Case("message-to-bundle-endpoint", "uk-core", BUNDLE, uk, 400, "structure", "Bundle.type"),
        Case(
            "xml-external-entity",
            "uk-core",
            MESSAGE,
            with_doctype(XXE, "&xxe;").encode(),
            400,
            "structure",
            None,
            FHIR_XML,
        ),
        Case(
            "xml-external-entity-utf-16",
            "uk-core",
            MESSAGE,
            with_doctype(XXE, "&xxe;")
            .replace('encoding="UTF-8"', 'encoding="UTF-16"')
            # The byte search for "<!DOCTYPE" cannot see UTF-16; the parsed tree check must.
            .encode("utf-16"),
            400,
            "structure",
            None,
            FHIR_XML,
        ),
        Case(
            "xml-parameter-entity",
            "uk-core",
            MESSAGE,
            with_doctype(XXE_PARAMETER, "&xxe;").encode(),
            400,
            "structure",
            None,
            FHIR_XML,
        ),
        Case(
            "xml-billion-laughs",
            "uk-core",
            MESSAGE,
            with_doctype(LAUGHS, "&lol9;").encode(),
            400,
            "structure",
            None,
            FHIR_XML,
        ),
        Case("xml-10000-deep", "uk-core", MESSAGE, _deep_xml(), 400, "structure", None, FHIR_XML),
        Case(
            "xml-invalid-utf-8",
            "uk-core",
            MESSAGE,
            xml_text().encode().replace(b'"Ellis"', b'"Ell\xe9s"', 1),
            400,
            "structure",
            None,
            FHIR_XML,
        ),
        Case(
            "xml-unknown-element",
            "uk-core",
            MESSAGE,
            xml_text().replace("<authoredOn ", "<authoredDate ").encode(),
            400,
            "structure",
            f"Bundle.entry[{sr_position}].resource.authoredDate",
            FHIR_XML,
        ),
    ]
    assert len({c.id for c in cases}) == len(cases)
    return cases


CASES = _cases()


def post(gw: Gateway, case: Case, request_id: str | None = None) -> Any:
    """Send one case as its source."""
    headers = {"Content_Type": case.content_type}
    if request_id:
        headers["X_Request_Id"] = request_id
    return gw.post(case.path, case.body, case.source, **headers)


def assert_refused(response: Any, status: int, code: str, expression: str | None) -> dict[str, Any]:
    """A valid OperationOutcome with one error issue of ``code`` naming ``expression``."""
    assert response.status_code == status, response.get_data(as_text=True)[:500]
    assert response.mimetype == FHIR_JSON
    outcome = response.json
    fhir_valid(outcome)
    [issue] = outcome["issue"]
    assert issue["severity"] == "error"
    assert issue["code"] == code
    assert issue["details"]["text"].strip()
    # The BaRS error shape: an http-error code beside the text, agreeing with the status.
    [coding] = issue["details"]["coding"]
    assert coding == {"system": HTTP_ERROR_CODES, "code": BARS_CODES[status]}
    if expression is None:
        assert "expression" not in issue
    else:
        [named] = issue["expression"]
        assert named == expression or named.startswith(expression + "."), named
    return issue  # type: ignore[no-any-return]


HTTP_ERROR_CODES = "https://fhir.nhs.uk/Codesystem/http-error-codes"
#: The BaRS http-error code each refusal status carries (413 and 415 have none of their own).
BARS_CODES = {
    400: "REC_BAD_REQUEST",
    413: "REC_UNPROCESSABLE_ENTITY",
    415: "REC_BAD_REQUEST",
    422: "REC_UNPROCESSABLE_ENTITY",
}


def referral_count(gw: Gateway) -> int:
    """How many referrals the store holds."""
    with services(gw.app).db.transaction() as session:
        return int(session.scalar(select(func.count()).select_from(Referral)) or 0)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_bad_input_is_refused_with_outcome_and_kept(gateway: Gateway, case: Case) -> None:
    response = post(gateway, case, request_id=f"bad-{case.id}")
    issue = assert_refused(response, case.status, case.code, case.expression)
    assert response.headers["X-Request-Id"] == f"bad-{case.id}"
    [row] = stored_messages(gateway)
    assert row.status == "rejected"
    assert row.http_status == case.status
    assert row.body == case.body
    assert not row.body_truncated
    assert row.source == case.source
    assert row.content_type == case.content_type
    assert row.request_id == f"bad-{case.id}"
    assert row.referral_id is None
    assert json.loads(row.diagnostics or "null") == [
        {
            "code": case.code,
            "location": (issue.get("expression") or [""])[0],
            "message": issue["details"]["text"],
        }
    ]
    assert referral_count(gateway) == 0


@pytest.mark.parametrize("case", [c for c in CASES if "entity" in c.id], ids=lambda c: c.id)
def test_external_entities_are_never_read(gateway: Gateway, case: Case) -> None:
    response = post(gateway, case)
    text = response.get_data(as_text=True)
    assert "root:" not in text
    passwd = Path("/etc/passwd")
    if passwd.exists():
        for line in passwd.read_text(encoding="utf-8", errors="replace").splitlines()[:5]:
            assert line not in text


def padded(source: str, size: int) -> bytes:
    """The source's 01 fixture, its ServiceRequest given a note so the body is ``size`` bytes."""
    doc = fixture_doc(source)
    referral_of(doc)["note"] = [{"text": ""}]
    base = len(dumps(doc))
    assert size >= base
    sentence = "Carer says she manages the stairs slowly but does not go out alone. "
    referral_of(doc)["note"][0]["text"] = (sentence * (1 + (size - base) // len(sentence)))[
        : size - base
    ]
    body = dumps(doc)
    assert len(body) == size
    return body


def assert_kept_truncated(gw: Gateway, body: bytes) -> None:
    """The only stored message is the body's first 64 KiB, flagged truncated and rejected."""
    [row] = stored_messages(gw)
    assert row.status == "rejected"
    assert row.http_status == 413
    assert row.body_truncated
    assert row.body == body[:KEPT_PREFIX]


@pytest.mark.parametrize("limit, size", [(1024, None), (100_000, 200_000)])
def test_body_over_configured_limit(sqlite_url: str, limit: int, size: int | None) -> None:
    gw = build_gateway(sqlite_url, MAX_BODY_BYTES=limit)
    body = fixture_bytes("uk-core") if size is None else padded("uk-core", size)
    assert len(body) > limit
    response = gw.post(MESSAGE, body, "uk-core")
    assert_refused(response, 413, "too-costly", None)
    assert response.headers["Connection"] == "close"
    assert_kept_truncated(gw, body)
    services(gw.app).db.dispose()


def test_body_exactly_at_limit_is_accepted(sqlite_url: str) -> None:
    body = fixture_bytes("vision")
    gw = build_gateway(sqlite_url, MAX_BODY_BYTES=len(body))
    assert gw.post(SERVICE_REQUEST, body, "vision").status_code == 201
    assert gw.post(SERVICE_REQUEST, body + b" ", "vision").status_code == 413
    services(gw.app).db.dispose()


def test_default_limit_refuses_5_mib_plus_one(gateway: Gateway) -> None:
    assert gateway.app.config["MAX_BODY_BYTES"] == 5 * MIB
    body = padded("uk-core", 5 * MIB + 1)
    assert_refused(gateway.post(MESSAGE, body, "uk-core"), 413, "too-costly", None)
    assert_kept_truncated(gateway, body)


def test_streamed_body_over_limit_keeps_first_64_kib(sqlite_url: str) -> None:
    gw = build_gateway(sqlite_url, MAX_BODY_BYTES=1024)
    body = padded("uk-core", 100_000)
    response = gw.client.post(
        MESSAGE,
        input_stream=io.BytesIO(body),
        headers={
            "Authorization": f"Bearer {gw.source_keys['uk-core']}",
            "Content-Type": FHIR_JSON,
            "Transfer-Encoding": "chunked",
        },
        # What a WSGI server sets for a chunked body: no Content-Length, read to the end.
        environ_overrides={"wsgi.input_terminated": True},
    )
    assert_refused(response, 413, "too-costly", None)
    assert_kept_truncated(gw, body)
    services(gw.app).db.dispose()


@pytest.mark.parametrize("where", ["identifier", "header-id"])
def test_nul_character_is_refused_on_every_store(any_gateway: Gateway, where: str) -> None:
    """PostgreSQL text cannot hold U+0000: the message must be refused, not crash the store."""
    doc = fixture_doc("uk-core")
    if where == "identifier":
        referral_of(doc)["identifier"][0]["value"] = "10\u000001"
        position, _ = entry(doc, "ServiceRequest")
        expression = f"Bundle.entry[{position}].resource.identifier[0].value"
    else:
        doc["entry"][0]["resource"]["id"] += "\u0000"
        expression = "Bundle.entry[0].resource.id"
    body = json.dumps(doc).encode()
    assert b"\\u0000" in body
    assert_refused(any_gateway.post(MESSAGE, body, "uk-core"), 400, "structure", expression)
    [row] = stored_messages(any_gateway)
    assert (row.status, row.body) == ("rejected", body)
    assert referral_count(any_gateway) == 0


def test_every_refusal_is_kept_on_every_store(any_gateway: Gateway) -> None:
    sent = []
    for case in CASES:
        assert post(any_gateway, case).status_code == case.status, case.id
        sent.append((case.body, case.status, False))
    big = padded("uk-core", 5 * MIB + 1)
    assert any_gateway.post(MESSAGE, big, "uk-core").status_code == 413
    sent.append((big[:KEPT_PREFIX], 413, True))
    rows = stored_messages(any_gateway)
    assert [(r.body, r.http_status, r.body_truncated) for r in rows] == sent
    assert {r.status for r in rows} == {"rejected"}
    assert referral_count(any_gateway) == 0


def test_a_refused_duplicate_patient_identifier_files_nothing_under_either_number(
    gateway: Gateway,
) -> None:
    body = _repeated("uk-core", patient_of, "identifier", _other_patient_identifier())
    response = gateway.post(MESSAGE, body, "uk-core")
    patient_at, _ = entry(fixture_doc("uk-core"), "Patient")
    issue = assert_refused(
        response, 400, "structure", f"Bundle.entry[{patient_at}].resource.identifier"
    )
    assert "identifier" in issue["details"]["text"]
    assert referral_count(gateway) == 0
    # The same message without the repeat is accepted: only the repeat was refused.
    assert gateway.post(MESSAGE, fixture_bytes("uk-core"), "uk-core").status_code == 200


@pytest.mark.parametrize("query", ["since=\u00b2", "since=1\u00b2", "limit=\u0663", "since=\uff11"])
def test_non_ascii_digits_in_the_feed_query_are_refused_not_a_fault(
    gateway: Gateway, query: str
) -> None:
    name, _, value = query.partition("=")
    value = value.encode().decode("unicode_escape")
    response = gateway.client.get(
        "/records",
        query_string={name: value},
        headers={"Authorization": f"Bearer {gateway.platform_key}"},
    )
    assert_refused(response, 400, "structure", name)


def test_non_ascii_digit_in_a_record_version_is_refused(gateway: Gateway) -> None:
    response = gateway.client.get(
        "/records/some-record",
        query_string={"version": "\u00b9"},
        headers={"Authorization": f"Bearer {gateway.platform_key}"},
    )
    assert_refused(response, 400, "structure", "version")


@pytest.mark.parametrize(
    ("method", "path", "status", "bars"),
    [
        ("GET", "/no/such/path", 404, "REC_NOT_FOUND"),
        ("DELETE", "/healthz", 405, "REC_METHOD_NOT_ALLOWED"),
    ],
)
def test_an_unknown_route_or_method_carries_its_bars_code(
    gateway: Gateway, method: str, path: str, status: int, bars: str
) -> None:
    answer = gateway.client.open(path, method=method)
    assert answer.status_code == status
    [issue] = answer.get_json()["issue"]
    assert issue["details"]["coding"] == [{"system": HTTP_ERROR_CODES, "code": bars}]
