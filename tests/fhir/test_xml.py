"""Tests for gateway.fhir.xml: hardened parsing and FHIR XML to JSON-shape conversion."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from lxml import etree

from gateway.errors import BrokenInvariant, InvalidMessage
from gateway.fhir.structure import check_resource
from gateway.fhir.xml import _parse_document, _parser, parse_fhir_xml

# A referral Bundle (ServiceRequest + Patient + Practitioner), written by hand twice:
# once as FHIR JSON and once as FHIR XML. Synthetic data only.
BUNDLE_JSON = r"""
{
  "resourceType": "Bundle",
  "id": "referral-1",
  "meta": {"lastUpdated": "2024-05-01T10:00:00Z", "profile": ["https://example.org/fhir/StructureDefinition/referral-bundle"]},
  "type": "transaction",
  "timestamp": "2024-05-01T10:00:00Z",
  "entry": [
    {
      "fullUrl": "urn:uuid:4f0a6a1e-6d2c-4c59-9a55-000000000001",
      "resource": {
        "resourceType": "ServiceRequest",
        "id": "sr1",
        "contained": [
          {
            "resourceType": "Organization", "id": "org1", "active": true,
            "name": "Example Community Hub"
          }
        ],
        "extension": [
          {
            "url": "https://example.org/fhir/StructureDefinition/referral-source",
            "valueCodeableConcept": {"text": "GP practice"}
          }
        ],
        "status": "active",
        "intent": "order",
        "category": [
          {
            "coding": [
              {
                "system": "http://snomed.info/sct", "code": "306206005",
                "display": "Referral to service"
              }
            ]
          }
        ],
        "priority": "routine",
        "doNotPerform": false,
        "code": {
          "coding": [
            {
              "system": "http://snomed.info/sct",
              "code": "871731000000106",
              "display": "Referral to social prescribing service"
            }
          ],
          "text": "Social prescribing"
        },
        "quantityQuantity": {"value": 1.5, "unit": "h"},
        "subject": {
          "reference": "urn:uuid:4f0a6a1e-6d2c-4c59-9a55-000000000002", "display": "Test Patient"
        },
        "authoredOn": "2024-05-01T09:30:00+01:00",
        "requester": {"reference": "urn:uuid:4f0a6a1e-6d2c-4c59-9a55-000000000003"},
        "performer": [{"reference": "#org1"}],
        "reasonCode": [{"text": "Social isolation"}],
        "note": [{"text": "Prefers morning appointments & a phone call first"}]
      },
      "request": {"method": "POST", "url": "ServiceRequest"}
    },
    {
      "fullUrl": "urn:uuid:4f0a6a1e-6d2c-4c59-9a55-000000000002",
      "resource": {
        "resourceType": "Patient",
        "id": "pat1",
        "text": {
          "status": "generated",
          "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\"><p><b>Test</b> Patient</p></div>"
        },
        "identifier": [{"system": "https://fhir.nhs.uk/Id/nhs-number", "value": "9990000018"}],
        "active": true,
        "name": [
          {
            "id": "n1",
            "use": "official",
            "family": "Patient",
            "given": ["Test", "Middle"],
            "_given": [
              null,
              {
                "extension": [
                  {
                    "url": "https://example.org/fhir/StructureDefinition/name-note",
                    "valueString": "preferred"
                  }
                ]
              }
            ]
          }
        ],
        "telecom": [{"system": "phone", "value": "01632 960000", "use": "mobile"}],
        "gender": "female",
        "birthDate": "1970-01-01",
        "_birthDate": {
          "id": "bd",
          "extension": [
            {
              "url": "http://hl7.org/fhir/StructureDefinition/patient-birthTime",
              "valueDateTime": "1970-01-01T08:30:00Z"
            }
          ]
        },
        "address": [
          {"line": ["1 Example Street", "Flat 2"], "city": "Leeds", "postalCode": "LS1 1AA"}
        ],
        "multipleBirthInteger": 2
      },
      "request": {"method": "POST", "url": "Patient"}
    },
    {
      "fullUrl": "urn:uuid:4f0a6a1e-6d2c-4c59-9a55-000000000003",
      "resource": {
        "resourceType": "Practitioner",
        "id": "prac1",
        "identifier": [{"system": "https://fhir.nhs.uk/Id/sds-user-id", "value": "999999999999"}],
        "name": [{"family": "Doctor", "given": ["Example"], "prefix": ["Dr"]}],
        "_gender": {
          "extension": [
            {
              "url": "http://hl7.org/fhir/StructureDefinition/data-absent-reason",
              "valueCode": "unknown"
            }
          ]
        }
      },
      "request": {"method": "POST", "url": "Practitioner"}
    }
  ]
}
"""

BUNDLE_XML = b"""<?xml version="1.0" encoding="UTF-8"?>
<Bundle xmlns="http://hl7.org/fhir" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
  <id value="referral-1"/>
  <meta>
    <lastUpdated value="2024-05-01T10:00:00Z"/>
    <profile value="https://example.org/fhir/StructureDefinition/referral-bundle"/>
  </meta>
  <type value="transaction"/>
  <timestamp value="2024-05-01T10:00:00Z"/>
  <entry>
    <fullUrl value="urn:uuid:4f0a6a1e-6d2c-4c59-9a55-000000000001"/>
    <resource>
      <ServiceRequest>
        <id value="sr1"/>
        <contained>
          <Organization>
            <id value="org1"/>
            <active value="true"/>
            <name value="Example Community Hub"/>
          </Organization>
        </contained>
        <extension url="https://example.org/fhir/StructureDefinition/referral-source">
          <valueCodeableConcept>
            <text value="GP practice"/>
          </valueCodeableConcept>
        </extension>
        <status value="active"/>
        <intent value="order"/>
        <category>
          <coding>
            <system value="http://snomed.info/sct"/>
            <code value="306206005"/>
            <display value="Referral to service"/>
          </coding>
        </category>
        <priority value="routine"/>
        <doNotPerform value="false"/>
        <code>
          <coding>
            <system value="http://snomed.info/sct"/>
            <code value="871731000000106"/>
            <display value="Referral to social prescribing service"/>
          </coding>
          <text value="Social prescribing"/>
        </code>
        <quantityQuantity>
          <value value="1.5"/>
          <unit value="h"/>
        </quantityQuantity>
        <subject>
          <reference value="urn:uuid:4f0a6a1e-6d2c-4c59-9a55-000000000002"/>
          <display value="Test Patient"/>
        </subject>
        <authoredOn value="2024-05-01T09:30:00+01:00"/>
        <requester>
          <reference value="urn:uuid:4f0a6a1e-6d2c-4c59-9a55-000000000003"/>
        </requester>
        <performer>
          <reference value="#org1"/>
        </performer>
        <reasonCode>
          <text value="Social isolation"/>
        </reasonCode>
        <note>
          <text value="Prefers morning appointments &amp; a phone call first"/>
        </note>
      </ServiceRequest>
    </resource>
    <request>
      <method value="POST"/>
      <url value="ServiceRequest"/>
    </request>
  </entry>
  <entry>
    <fullUrl value="urn:uuid:4f0a6a1e-6d2c-4c59-9a55-000000000002"/>
    <resource>
      <Patient>
        <id value="pat1"/>
        <text>
          <status value="generated"/>
          <div xmlns="http://www.w3.org/1999/xhtml"><p><b>Test</b> Patient</p></div>
        </text>
        <identifier>
          <system value="https://fhir.nhs.uk/Id/nhs-number"/>
          <value value="9990000018"/>
        </identifier>
        <active value="true"/>
        <name id="n1">
          <use value="official"/>
          <family value="Patient"/>
          <given value="Test"/>
          <given value="Middle">
            <extension url="https://example.org/fhir/StructureDefinition/name-note">
              <valueString value="preferred"/>
            </extension>
          </given>
        </name>
        <telecom>
          <system value="phone"/>
          <value value="01632 960000"/>
          <use value="mobile"/>
        </telecom>
        <gender value="female"/>
        <birthDate id="bd" value="1970-01-01">
          <extension url="http://hl7.org/fhir/StructureDefinition/patient-birthTime">
            <valueDateTime value="1970-01-01T08:30:00Z"/>
          </extension>
        </birthDate>
        <address>
          <line value="1 Example Street"/>
          <line value="Flat 2"/>
          <city value="Leeds"/>
          <postalCode value="LS1 1AA"/>
        </address>
        <multipleBirthInteger value="2"/>
      </Patient>
    </resource>
    <request>
      <method value="POST"/>
      <url value="Patient"/>
    </request>
  </entry>
  <entry>
    <fullUrl value="urn:uuid:4f0a6a1e-6d2c-4c59-9a55-000000000003"/>
    <resource>
      <Practitioner>
        <id value="prac1"/>
        <!-- comments are dropped -->
        <identifier>
          <system value="https://fhir.nhs.uk/Id/sds-user-id"/>
          <value value="999999999999"/>
        </identifier>
        <name>
          <family value="Doctor"/>
          <given value="Example"/>
          <prefix value="Dr"/>
        </name>
        <gender>
          <extension url="http://hl7.org/fhir/StructureDefinition/data-absent-reason">
            <valueCode value="unknown"/>
          </extension>
        </gender>
      </Practitioner>
    </resource>
    <request>
      <method value="POST"/>
      <url value="Practitioner"/>
    </request>
  </entry>
</Bundle>
"""

PATIENT_NS = 'xmlns="http://hl7.org/fhir"'


def _patient(inner: str) -> bytes:
    """Wrap child elements in a Patient root."""
    return f"<Patient {PATIENT_NS}>{inner}</Patient>".encode()


def _reject(raw: bytes) -> InvalidMessage:
    """Assert parse_fhir_xml refuses ``raw`` and return the error."""
    with pytest.raises(InvalidMessage) as info:
        parse_fhir_xml(raw)
    return info.value


# --- equivalence -----------------------------------------------------------------


def test_xml_bundle_converts_to_exactly_the_json_form() -> None:
    expected: dict[str, Any] = json.loads(BUNDLE_JSON)
    assert parse_fhir_xml(BUNDLE_XML) == expected


def test_converted_bundle_passes_the_structure_check() -> None:
    check_resource(parse_fhir_xml(BUNDLE_XML))
    check_resource(json.loads(BUNDLE_JSON))


def test_repeating_element_with_one_occurrence_is_still_a_list() -> None:
    result = parse_fhir_xml(_patient('<name><given value="Ann"/></name>'))
    assert result == {"resourceType": "Patient", "name": [{"given": ["Ann"]}]}


def test_primitive_types_are_coerced_like_json() -> None:
    result = parse_fhir_xml(
        b'<Observation xmlns="http://hl7.org/fhir"><status value="final"/>'
        b'<code><text value="x"/></code><valueQuantity><value value="3"/></valueQuantity>'
        b'<component><code><text value="y"/></code><valueBoolean value="true"/></component>'
        b'<component><code><text value="z"/></code><valueInteger value="-4"/></component>'
        b"</Observation>"
    )
    assert result["valueQuantity"] == {"value": 3}
    assert result["component"][0]["valueBoolean"] is True
    assert result["component"][1]["valueInteger"] == -4


@pytest.mark.parametrize(
    "inner",
    [
        '<active value="yes"/>',
        '<multipleBirthInteger value="2.0"/>',
    ],
)
def test_badly_typed_primitive_is_rejected(inner: str) -> None:
    error = _reject(_patient(inner))
    assert error.expression is not None and error.expression.startswith("Patient.")


def test_prefixed_xhtml_is_serialised_with_default_namespace() -> None:
    raw = (
        b'<f:Patient xmlns:f="http://hl7.org/fhir" xmlns:h="http://www.w3.org/1999/xhtml">'
        b'<f:text><f:status value="generated"/><h:div><h:p>Hi</h:p></h:div></f:text></f:Patient>'
    )
    result = parse_fhir_xml(raw)
    assert result["text"]["div"] == '<div xmlns="http://www.w3.org/1999/xhtml"><p>Hi</p></div>'


def test_unknown_resource_type_falls_back_to_lists() -> None:
    raw = (
        b'<FutureThing xmlns="http://hl7.org/fhir"><status value="x"/>'
        b'<wrapped><Patient><id value="p"/></Patient></wrapped></FutureThing>'
    )
    assert parse_fhir_xml(raw) == {
        "resourceType": "FutureThing",
        "status": ["x"],
        "wrapped": [{"resourceType": "Patient", "id": "p"}],
    }


def test_parameters_resource_and_outcome_containers() -> None:
    raw = (
        b'<Parameters xmlns="http://hl7.org/fhir"><parameter><name value="p"/>'
        b'<resource><Patient><id value="x"/></Patient></resource></parameter></Parameters>'
    )
    assert parse_fhir_xml(raw) == {
        "resourceType": "Parameters",
        "parameter": [{"name": "p", "resource": {"resourceType": "Patient", "id": "x"}}],
    }


# --- refusals: security ----------------------------------------------------------

XXE = b"""<?xml version="1.0"?>
<!DOCTYPE Patient [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<Patient xmlns="http://hl7.org/fhir"><id value="x"/><name><family value="&xxe;"/></name></Patient>
"""

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<Patient xmlns="http://hl7.org/fhir"><name><family value="&lol9;"/></name></Patient>
"""


@pytest.mark.parametrize("raw", [XXE, BILLION_LAUGHS], ids=["xxe", "billion-laughs"])
def test_entity_attacks_are_refused(raw: bytes) -> None:
    started = time.perf_counter()
    error = _reject(raw)
    assert "DTD" in error.message
    assert "root:" not in error.message
    assert time.perf_counter() - started < 1.0


# The same attacks with the entity references in element content (a narrative div),
# where libxml2 keeps them as unexpanded entity nodes when resolve_entities=False.
XXE_IN_TEXT = b"""<!DOCTYPE Patient [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<Patient xmlns="http://hl7.org/fhir"><text><status value="generated"/>
<div xmlns="http://www.w3.org/1999/xhtml">&xxe;</div></text></Patient>"""

LAUGHS_IN_TEXT = BILLION_LAUGHS.replace(
    b'<name><family value="&lol9;"/></name>',
    b'<text><status value="generated"/><div xmlns="http://www.w3.org/1999/xhtml">&lol9;</div></text>',
)

# Below libxml2's amplification limit, so the parse itself succeeds and only our
# doctype check stands between the document and the converter.
SMALL_LAUGHS_IN_TEXT = LAUGHS_IN_TEXT.replace(b">&lol9;</div>", b">&lol3;</div>")

ALL_ATTACKS = [XXE, BILLION_LAUGHS, XXE_IN_TEXT, LAUGHS_IN_TEXT, SMALL_LAUGHS_IN_TEXT]
ATTACK_IDS = ["xxe-attr", "laughs-attr", "xxe-text", "laughs-text", "small-laughs-text"]


@pytest.mark.parametrize("raw", ALL_ATTACKS, ids=ATTACK_IDS)
def test_parsed_tree_check_refuses_without_expanding(raw: bytes) -> None:
    # The byte-level pre-check is skipped here. In attributes libxml2 itself refuses the
    # external entity (well-formedness) and stops the amplification, as it does for the
    # full attack in element content; otherwise the entities stay unexpanded and the
    # doctype check on the parsed tree refuses.
    started = time.perf_counter()
    with pytest.raises(InvalidMessage) as info:
        _parse_document(raw)
    assert "root:" not in info.value.message
    assert "lollollol" not in info.value.message
    assert time.perf_counter() - started < 1.0
    if raw in (XXE_IN_TEXT, SMALL_LAUGHS_IN_TEXT):
        assert info.value.message == "DTDs are not allowed in FHIR XML"


@pytest.mark.parametrize("raw", [XXE_IN_TEXT, SMALL_LAUGHS_IN_TEXT], ids=["xxe", "laughs"])
def test_hardened_parser_leaves_entities_unexpanded(raw: bytes) -> None:
    root = etree.fromstring(raw, _parser())
    serialised = etree.tostring(root)
    assert b"root:" not in serialised
    assert b"lollollol" not in serialised
    assert len(serialised) < 2 * len(raw)


@pytest.mark.parametrize("raw", [XXE_IN_TEXT, SMALL_LAUGHS_IN_TEXT], ids=["xxe", "laughs"])
def test_utf16_doctype_is_refused(raw: bytes) -> None:
    # In UTF-16 the bytes b"<!DOCTYPE" never appear, so only the tree check can catch it.
    text = '<?xml version="1.0" encoding="UTF-16"?>\n' + raw.decode().split("?>", 1)[-1]
    encoded = text.encode("utf-16")
    assert b"<!DOCTYPE" not in encoded
    error = _reject(encoded)
    assert error.message == "DTDs are not allowed in FHIR XML"


def test_doctype_only_is_refused() -> None:
    error = _reject(b'<!DOCTYPE Patient>\n<Patient xmlns="http://hl7.org/fhir"/>')
    assert error.message == "DTDs are not allowed in FHIR XML"


def test_external_dtd_reference_is_refused() -> None:
    raw = b'<!DOCTYPE Patient SYSTEM "http://example.org/x.dtd"><Patient xmlns="http://hl7.org/fhir"/>'
    assert "DTD" in _reject(raw).message


def test_non_utf8_encoding_is_refused() -> None:
    raw = '<?xml version="1.0" encoding="ISO-8859-1"?><Patient xmlns="http://hl7.org/fhir"/>'
    assert "UTF-8" in _reject(raw.encode("latin-1")).message


def test_deep_nesting_is_refused() -> None:
    raw = _patient("<extension>" * 5000 + "</extension>" * 5000)
    _reject(raw)


# --- refusals: structure ---------------------------------------------------------


def test_malformed_xml_reports_line() -> None:
    error = _reject(b'<Patient xmlns="http://hl7.org/fhir">\n<id value="x">\n</Patient>')
    assert "line" in error.message
    assert "3" in error.message


@pytest.mark.parametrize(
    "raw",
    [
        b"<Patient><id value='x'/></Patient>",
        b'<Patient xmlns="http://hl7.org/fhir/r4"><id value="x"/></Patient>',
    ],
    ids=["no-namespace", "other-namespace"],
)
def test_wrong_namespace_is_refused(raw: bytes) -> None:
    assert "namespace" in _reject(raw).message


def test_child_in_other_namespace_is_refused() -> None:
    error = _reject(_patient('<x:id xmlns:x="urn:other" value="1"/>'))
    assert "namespace" in error.message


def test_unknown_element_is_refused_with_location() -> None:
    error = _reject(_patient('<name><nickname value="x"/></name>'))
    assert error.message == "Unknown element 'nickname'"
    assert error.expression == "Patient.name[0].nickname"


def test_error_inside_nested_resource_has_full_location() -> None:
    raw = BUNDLE_XML.replace(b'<family value="Doctor"/>', b'<surname value="Doctor"/>')
    error = _reject(raw)
    assert error.message == "Unknown element 'surname'"
    assert error.expression == "Bundle.entry[2].resource.name[0].surname"


def test_repeated_single_element_is_refused() -> None:
    error = _reject(_patient('<gender value="male"/><gender value="female"/>'))
    assert error.expression == "Patient.gender"


def test_text_content_is_refused() -> None:
    assert "text" in _reject(_patient("<active>true</active>")).message


def test_unexpected_attribute_is_refused() -> None:
    assert "attribute" in _reject(_patient('<active value="true" foo="bar"/>')).message


def test_empty_primitive_is_refused() -> None:
    _reject(_patient("<active/>"))


def test_container_must_hold_a_resource() -> None:
    raw = (
        b'<Bundle xmlns="http://hl7.org/fhir"><type value="collection"/>'
        b'<entry><resource><id value="x"/></resource></entry></Bundle>'
    )
    assert _reject(raw).expression == "Bundle.entry[0].resource"


def test_empty_document_is_refused() -> None:
    _reject(b"")


# --- extensions ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("inner", "where"),
    [
        ('<extension><valueString value="no url"/></extension>', "Patient.extension[0]"),
        (
            '<extension url="https://example.org/x"><valueString value="a"/>'
            '<valueCode value="b"/></extension>',
            "Patient.extension[0].valueCode",
        ),
        (
            '<extension url="https://example.org/x"><extension url="part">'
            '<valueCode value="a"/></extension><valueString value="b"/></extension>',
            "Patient.extension[0].extension",
        ),
    ],
)
def test_broken_xml_extensions_are_refused_naming_the_element(inner: str, where: str) -> None:
    resource = parse_fhir_xml(_patient(inner))
    with pytest.raises(BrokenInvariant) as info:
        check_resource(resource)
    assert info.value.expression == where
    assert info.value.status == 400
