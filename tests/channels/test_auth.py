"""API keys: 401 without a known key, 403 for a key of the wrong kind or another source."""

from __future__ import annotations

from typing import Any

import pytest
from support import FHIR_JSON, FIXTURES, Gateway, fhir_valid, stored_messages

from gateway.app import create_app
from gateway.services import services
from gateway.store.keys import revoke_keys

REFERRAL = (FIXTURES / "uk-core" / "01-new-referral.json").read_bytes()
MESSAGE = "/fhir/$process-message"


def refused(response: Any, status: int, code: str) -> dict[str, Any]:
    """The single error issue of a valid OperationOutcome with ``status``."""
    assert response.status_code == status, response.get_data(as_text=True)
    fhir_valid(response.json)
    [issue] = response.json["issue"]
    assert (issue["severity"], issue["code"]) == ("error", code)
    return issue  # type: ignore[no-any-return]


def send(gw: Gateway, headers: dict[str, str]) -> Any:
    """POST the uk-core referral with exactly ``headers`` (plus the content type)."""
    return gw.client.post(MESSAGE, data=REFERRAL, headers={"Content-Type": FHIR_JSON, **headers})


def test_no_key_is_401_with_challenge_and_keeps_nothing(gateway: Gateway) -> None:
    response = send(gateway, {})
    refused(response, 401, "login")
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert stored_messages(gateway) == []


@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": "Bearer spg_s_not-a-key-we-issued"},
        {"X-API-Key": "spg_s_not-a-key-we-issued"},
        {"Authorization": "Bearer "},
        {"Authorization": "Basic dXNlcjpwYXNz"},
    ],
    ids=["unknown-bearer", "unknown-x-api-key", "empty-bearer", "basic"],
)
def test_unknown_key_is_401(gateway: Gateway, headers: dict[str, str]) -> None:
    response = send(gateway, headers)
    refused(response, 401, "login")
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert stored_messages(gateway) == []


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER"])
def test_source_key_is_accepted_in_either_header(gateway: Gateway, scheme: str) -> None:
    key = gateway.source_keys["uk-core"]
    assert send(gateway, {"Authorization": f"{scheme} {key}"}).status_code == 200
    assert send(gateway, {"X-API-Key": key}).status_code == 200


def test_source_naming_another_source_is_403(gateway: Gateway) -> None:
    response = gateway.post(MESSAGE, REFERRAL, "uk-core", X_Source_System="emis-web")
    issue = refused(response, 403, "forbidden")
    assert issue["expression"] == ["X-Source-System"]
    assert stored_messages(gateway) == []
    own = gateway.post(MESSAGE, REFERRAL, "uk-core", X_Source_System="uk-core")
    assert own.status_code == 200


@pytest.mark.parametrize(
    "path", ["/fhir/$process-message", "/fhir", "/fhir/ServiceRequest"], ids=lambda p: p
)
def test_platform_key_cannot_post_referrals(gateway: Gateway, path: str) -> None:
    response = gateway.client.post(
        path,
        data=REFERRAL,
        headers={"Authorization": f"Bearer {gateway.platform_key}", "Content-Type": FHIR_JSON},
    )
    refused(response, 403, "forbidden")
    assert stored_messages(gateway) == []


def test_source_key_cannot_read_records(gateway: Gateway) -> None:
    stored = gateway.post(MESSAGE, REFERRAL, "uk-core")
    assert stored.status_code == 200
    key = gateway.source_keys["uk-core"]
    for path in ("/records", "/records?since=0", stored.headers["Location"]):
        response = gateway.client.get(path, headers={"Authorization": f"Bearer {key}"})
        refused(response, 403, "forbidden")
        refused(gateway.client.get(path), 401, "login")
        assert gateway.get(path).status_code == 200


def test_revoked_key_is_401(gateway: Gateway) -> None:
    assert gateway.post(MESSAGE, REFERRAL, "uk-core").status_code == 200
    db = services(gateway.app).db
    assert revoke_keys(db, "source", "uk-core") == 1
    assert revoke_keys(db, "source", "uk-core") == 0
    # The key ring caches answers for up to 30 s: a running app still knows the key...
    assert gateway.post(MESSAGE, REFERRAL, "uk-core").status_code == 200
    # ...until its cache entry goes, and a freshly started app never does.
    services(gateway.app).keys._cache.clear()
    refused(gateway.post(MESSAGE, REFERRAL, "uk-core"), 401, "login")
    fresh = create_app({"DATABASE_URL": db.url}).test_client()
    response = fresh.post(
        MESSAGE,
        data=REFERRAL,
        headers={
            "Authorization": f"Bearer {gateway.source_keys['uk-core']}",
            "Content-Type": FHIR_JSON,
        },
    )
    refused(response, 401, "login")
    services(fresh.application).db.dispose()
    # Other sources' keys are untouched.
    emis = (FIXTURES / "emis-web" / "01-new-referral.json").read_bytes()
    assert gateway.post(MESSAGE, emis, "emis-web").status_code == 200
