"""The message browser: search filters, keyset pages, the message page, audited reads."""

from __future__ import annotations

import re

from console.helpers import Console
from sqlalchemy import text
from support import FIXTURES, HL7_V2

from gateway.services import services
from gateway.store.audit import events

EMIS = FIXTURES / "emis-web"
GP = FIXTURES / "gp-v2"


def _numbers(html: str) -> list[int]:
    """The message numbers a result page lists, in order."""
    return [int(n) for n in re.findall(r">Message (\d+)</a>", html)]


def _seed(console: Console) -> None:
    """Two accepted FHIR referrals, one refused FHIR message, one accepted and one refused v2."""
    gw = console.gateway
    assert (
        gw.post(
            "/fhir/$process-message", (EMIS / "01-new-referral.json").read_bytes(), "emis-web"
        ).status_code
        == 200
    )
    assert (
        gw.post(
            "/fhir/$process-message",
            (EMIS / "04-missing-date-of-birth.json").read_bytes(),
            "emis-web",
        ).status_code
        >= 400
    )
    assert (
        gw.post(
            "/fhir/$process-message", (EMIS / "06-non-ascii-names.json").read_bytes(), "emis-web"
        ).status_code
        == 200
    )
    assert (
        gw.post(
            "/hl7v2", (GP / "01-new-referral.hl7").read_bytes(), "gp-v2", Content_Type=HL7_V2
        ).status_code
        == 200
    )
    assert (
        gw.post(
            "/hl7v2", (GP / "10-bad-nhs-number.hl7").read_bytes(), "gp-v2", Content_Type=HL7_V2
        ).status_code
        == 200
    )


def test_search_filters(console: Console) -> None:
    _seed(console)
    client = console.client(console.viewer_key)

    def found(query: str) -> list[int]:
        answer = client.get(f"/console/messages?{query}")
        assert answer.status_code == 200, answer.get_data(as_text=True)
        return _numbers(answer.get_data(as_text=True))

    assert found("") == [5, 4, 3, 2, 1]
    assert found("source=emis-web") == [3, 2, 1]
    assert found("status=rejected") == [5, 2]
    assert found("source=gp-v2&status=accepted") == [4]
    assert found("channel=hl7v2-http") == [5, 4]
    assert found("message_id=GP0001") == [4]
    assert found("message_id=3") == [3]
    assert found("referral=1001") == [1]
    assert found("from=2000-01-01T00:00&to=2000-01-02T00:00") == []
    assert found("from=2000-01-01T00:00") == [5, 4, 3, 2, 1]
    assert found("status=held") == []
    db = services(console.gateway.app).db
    with db.writing() as conn:
        conn.execute(
            text(
                "UPDATE referrals SET held_reason = 'consent refused'"
                " WHERE referral_identifier = '1001'"
            )
        )
    assert found("status=held") == [1]
    assert "held" in client.get("/console/messages?status=held").get_data(as_text=True)


def test_a_bad_filter_is_an_error_summary_not_a_fault(console: Console) -> None:
    client = console.client(console.viewer_key)
    answer = client.get("/console/messages?from=yesterday&status=lost")
    assert answer.status_code == 400
    page = answer.get_data(as_text=True)
    assert "There is a problem" in page and 'href="#from"' in page and 'href="#status"' in page


def test_pages_are_keyset_pages_newest_first(console: Console) -> None:
    gw = console.gateway
    body = (EMIS / "04-missing-date-of-birth.json").read_bytes()
    for n in range(60):
        gw.post(
            "/fhir/$process-message",
            body.replace(b'"id"', f'"x{n}":1,"id"'.encode(), 1),
            "emis-web",
        )
    client = console.client(console.viewer_key)
    first = client.get("/console/messages?status=rejected").get_data(as_text=True)
    assert _numbers(first) == list(range(60, 10, -1))
    more = re.search(r'href="([^"]+)">Older messages', first)
    assert more is not None
    second = client.get(more.group(1).replace("&amp;", "&")).get_data(as_text=True)
    assert _numbers(second) == list(range(10, 0, -1))
    assert "Older messages" not in second


def test_nhs_number_search_is_for_admins_and_audited(console: Console) -> None:
    _seed(console)
    client = console.client(console.admin_key)
    page = client.get("/console/messages?nhs=999 000 0018").get_data(as_text=True)
    assert _numbers(page) == [4, 1]  # the same person's FHIR and v2 referrals
    refused = client.get("/console/messages?nhs=9990000264").get_data(as_text=True)
    assert _numbers(refused) == [5]  # found in the raw body of a refused message
    assert _numbers(client.get("/console/messages?nhs=9990000034").get_data(as_text=True)) == [2]
    searched = events(services(console.gateway.app).db, action="search")
    assert searched[0]["detail"]["filters"] == {"nhs": "999 000 0018"}
    assert searched[0]["detail"]["shown"] == [4, 1]
    assert (
        console.client(console.viewer_key).get("/console/messages?nhs=9990000018").status_code
        == 400
    )


def test_the_message_page_shows_the_raw_message_escaped_and_the_answer(console: Console) -> None:
    _seed(console)
    client = console.client(console.viewer_key)
    v2 = client.get("/console/messages/5").get_data(as_text=True)
    assert "MSH|^~\\&amp;|" in v2  # escaped, one segment a line
    assert "\nPID|" in v2
    assert "MSA|AE" in v2 or "MSA|AR" in v2  # the ACK it was answered with
    refused = client.get("/console/messages/2").get_data(as_text=True)
    assert "Why it was refused" in refused and "Reprocess" not in refused  # a viewer
    admin = console.client(console.admin_key).get("/console/messages/2").get_data(as_text=True)
    assert "Reprocess with today" in admin
    accepted = client.get("/console/messages/1").get_data(as_text=True)
    link = re.search(r'href="(/console/records/[^"]+)"', accepted)
    assert link is not None
    record = client.get(link.group(1).replace("&amp;", "&"))
    assert record.status_code == 200 and "9990000018" in record.get_data(as_text=True)
    assert client.get("/console/messages/999").status_code == 404
    assert client.get("/console/records/nope").status_code == 404


def test_every_message_and_record_read_is_audited(console: Console) -> None:
    _seed(console)
    client = console.client(console.viewer_key)
    client.get("/console/messages/1")
    accepted = client.get("/console/messages/1").get_data(as_text=True)
    link = re.search(r'href="(/console/records/([^"?]+)[^"]*)"', accepted)
    assert link is not None
    client.get(link.group(1).replace("&amp;", "&"))
    reads = events(services(console.gateway.app).db, action="read")
    assert [(e["actor"], e["target_kind"], e["target_id"]) for e in reads] == [
        ("victor", "message", "1"),
        ("victor", "message", "1"),
        ("victor", "record", link.group(2)),
    ]
    assert reads[2]["detail"] == {"role": "viewer", "version": 1}
