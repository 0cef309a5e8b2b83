"""The evidence API, report page and command line on a referral and outcomes stored through
the gateway's own endpoints."""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import fastjsonschema
import pytest
from click.testing import CliRunner
from support import FIXTURES, Gateway, build_gateway

from gateway.cli import main
from gateway.openapi import document
from gateway.services import services
from gateway.store import evidence
from gateway.store.audit import events
from gateway.store.keys import create_key

UK = FIXTURES / "uk-core" / "01-new-referral.json"
SECRET = "an evaluation secret of 32 bytes or more"
NOW = datetime.now(UTC).replace(microsecond=0)


def _at(days: float) -> str:
    return (NOW + timedelta(days=days)).isoformat()


#: Outcomes around the moment the referral arrives (now): an attended contact a day before
#: it (a slip, not counted), one not attended, then the first contact 2.25 days after.
OUTCOMES = [
    {
        "outcome_id": "a1",
        "status": "accepted",
        "occurred_at": _at(0.1),
        "contacts": [
            {"date": _at(-1), "mechanism": "telephone"},
            {"date": _at(1), "mechanism": "telephone", "outcome": "did not attend"},
            {"date": _at(2.25), "mechanism": "face-to-face"},
        ],
        "assessments": [{"instrument": "wemwbs", "score": 38, "date": _at(2.25)[:10]}],
    },
    {
        "outcome_id": "a2",
        "status": "in-progress",
        "occurred_at": _at(30),
        "assessments": [{"instrument": "wemwbs", "score": 45, "date": _at(30)[:10]}],
    },
]


@pytest.fixture
def gw(sqlite_url: str) -> Iterator[Gateway]:
    gateway = build_gateway(sqlite_url, EVIDENCE_SECRET=SECRET)
    yield gateway
    services(gateway.app).db.dispose()


def _keys(gw: Gateway) -> tuple[str, str]:
    db = services(gw.app).db
    return create_key(db, "admin", "ops"), create_key(db, "commissioner", "icb")


def _referral(gw: Gateway) -> str:
    stored = gw.post("/fhir/$process-message", UK.read_bytes(), "uk-core")
    assert stored.status_code == 200, stored.get_data(as_text=True)
    rid = str(stored.headers["X-Record-Id"])
    for outcome in OUTCOMES:
        posted = gw.client.post(
            f"/referrals/{rid}/outcomes",
            data=json.dumps(outcome),
            headers={
                "Authorization": f"Bearer {gw.platform_key}",
                "Content-Type": "application/json",
            },
        )
        assert posted.status_code == 201, posted.get_data(as_text=True)
    return rid


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_measures_count_what_the_endpoints_stored(gw: Gateway) -> None:
    _, commissioner = _keys(gw)
    _referral(gw)
    answer = gw.client.get("/evidence/measures?by=source", headers=_bearer(commissioner))
    assert answer.status_code == 200, answer.get_data(as_text=True)
    body = answer.get_json()
    spec = document()
    fastjsonschema.compile(
        {"$ref": "#/components/schemas/EvidenceMeasures", "components": spec["components"]}
    )(body)
    [row] = body["rows"]
    assert row["group"] == "uk-core" and row["received"] == "<5"  # one referral: suppressed
    assert row["days_to_first_contact_median"] is None
    # Unpublished, the facts are exact: the contact before receipt and the one not attended
    # do not count.
    [facts] = evidence.measures(services(gw.app).db, "source")
    assert (facts.received, facts.accepted, facts.declined, facts.contacted) == (1, 1, 0, 1)
    assert facts.wellbeing["wemwbs"].people == 1 and facts.wellbeing["wemwbs"].improved == 1
    assert facts.wellbeing["wemwbs"].mean_change == 7
    assert facts.days_to_first_contact_median is not None
    assert 2.2 < facts.days_to_first_contact_median < 2.3


@pytest.mark.parametrize(
    ("query", "where"),
    [("by=postcode", "by"), ("from=yesterday", "from"), ("from=2026-12-01&to=2026-11-01", "to")],
)
def test_a_bad_question_is_refused_naming_the_parameter(
    gw: Gateway, query: str, where: str
) -> None:
    admin, _ = _keys(gw)
    answer = gw.client.get(f"/evidence/measures?{query}", headers=_bearer(admin))
    assert answer.status_code == 400
    assert answer.get_json()["issue"][0]["expression"] == [where]


def test_keys_decide_who_reads_what(gw: Gateway) -> None:
    admin, commissioner = _keys(gw)
    assert gw.client.get("/evidence/measures").status_code == 401
    assert gw.client.get("/evidence/measures", headers=_bearer(gw.platform_key)).status_code == 403
    assert gw.client.get("/evidence/measures", headers=_bearer(admin)).status_code == 200
    assert gw.client.get("/evidence/export", headers=_bearer(commissioner)).status_code == 403
    assert gw.client.get("/evidence/report", headers=_bearer(gw.platform_key)).status_code == 403
    assert gw.client.get("/evidence/report", headers=_bearer(commissioner)).status_code == 200


def test_the_export_is_pseudonymised_and_audited(gw: Gateway) -> None:
    admin, _ = _keys(gw)
    rid = _referral(gw)
    answer = gw.client.get("/evidence/export?format=csv&from=2026-01-01", headers=_bearer(admin))
    assert answer.status_code == 200
    assert answer.mimetype == "text/csv"
    text = answer.get_data(as_text=True)
    [row] = list(csv.DictReader(io.StringIO(text)))
    assert row["accepted"] == "True" and row["wellbeing"] == "wemwbs:38>45"
    record = gw.get(f"/records/{rid}").get_json()["record"]
    for value in (rid, record["person"]["nhs_number"], record["person"]["family_name"]):
        assert value not in text
    assert record["person"]["date_of_birth"] not in text
    [event] = events(services(gw.app).db, action="export")
    assert event["actor"] == "ops" and event["detail"]["referrals"] == 1
    lines = gw.client.get("/evidence/export?format=ndjson", headers=_bearer(admin))
    assert [json.loads(line)["person"] for line in lines.get_data(as_text=True).splitlines()] == [
        row["person"]
    ]


def test_no_export_without_a_long_enough_secret(sqlite_url: str) -> None:
    gateway = build_gateway(sqlite_url, EVIDENCE_SECRET="short")
    admin = create_key(services(gateway.app).db, "admin", "ops")
    answer = gateway.client.get("/evidence/export", headers=_bearer(admin))
    assert answer.status_code == 409
    assert "GATEWAY_EVIDENCE_SECRET" in answer.get_data(as_text=True)
    services(gateway.app).db.dispose()


def _token(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found
    return found.group(1)


def test_the_report_signs_in_with_a_key_and_a_csrf_token(gw: Gateway) -> None:
    _, commissioner = _keys(gw)
    _referral(gw)
    away = gw.client.get("/evidence/report?by=hub")
    assert away.status_code == 302 and "/evidence/sign-in" in away.headers["Location"]
    form = gw.client.get("/evidence/sign-in?next=/evidence/report?by=hub").get_data(as_text=True)
    forged = gw.client.post("/evidence/sign-in", data={"key": commissioner, "csrf_token": "x"})
    assert forged.status_code == 401
    wrong = gw.client.post(
        "/evidence/sign-in", data={"key": gw.platform_key, "csrf_token": _token(form)}
    )
    assert wrong.status_code == 401 and "cannot open the report" in wrong.get_data(as_text=True)
    signed = gw.client.post(
        "/evidence/sign-in",
        data={"key": commissioner, "csrf_token": _token(form), "next": "/evidence/report?by=hub"},
    )
    assert signed.status_code == 302 and signed.headers["Location"].endswith("by=hub")
    page = gw.client.get("/evidence/report?by=hub")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    for part in ("referrals-chart", "contact-chart", "wellbeing-chart", "<table", "<desc"):
        assert part in html
    assert "every platform" in html  # the hub "*", named for people
    out = gw.client.post("/evidence/sign-out", data={"csrf_token": _token(html)})
    assert out.status_code == 302
    assert gw.client.get("/evidence/report").status_code == 302


def test_the_command_line_prints_measures_and_writes_the_export(
    gw: Gateway, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _referral(gw)
    monkeypatch.setenv("GATEWAY_DATABASE_URL", services(gw.app).db.url)
    monkeypatch.setenv("GATEWAY_EVIDENCE_SECRET", SECRET)
    runner = CliRunner()
    shown = runner.invoke(main, ["evidence", "measures", "--by", "source", "--from", "2026-01-01"])
    assert shown.exit_code == 0, shown.output
    assert "uk-core" in shown.output and "<5" in shown.output
    out = tmp_path / "export.ndjson"
    done = runner.invoke(
        main,
        ["evidence", "export", "--from", "2026-01-01", "--format", "ndjson", "--out", str(out)],
    )
    assert done.exit_code == 0, done.output
    assert "total" in done.output  # the summary table (standard error)
    [line] = out.read_text().splitlines()
    assert json.loads(line)["wellbeing"] == {"wemwbs": {"first": 38, "last": 45}}
    monkeypatch.setenv("GATEWAY_EVIDENCE_SECRET", "")
    refused = runner.invoke(main, ["evidence", "export"])
    assert refused.exit_code != 0 and "GATEWAY_EVIDENCE_SECRET" in refused.output
    key = runner.invoke(main, ["evidence", "key", "icb-west"])
    assert key.exit_code == 0 and key.output.startswith("spg_c_")
