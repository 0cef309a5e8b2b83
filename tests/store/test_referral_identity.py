"""The store keeps one referral per (source, identifier system, value), about one person."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import pytest

from gateway import nhs_number
from gateway.errors import Conflict, NotFound
from gateway.store.database import Database
from gateway.store.identity import check_same_referral, content_digest, referral_key
from gateway.store.messages import InboundMessage
from gateway.store.migrate import upgrade
from gateway.store.records import get_record
from gateway.store.referrals import store_referral
from gateway.withdrawal import withdrawal

OTHER = nhs_number.synthetic(312)
PERSON = {
    "nhs_number": nhs_number.synthetic(313),
    "family_name": "Ellis",
    "given_name": "Margaret",
    "date_of_birth": "1948-03-14",
}


def _record(**referral: Any) -> dict[str, Any]:
    return {
        "person": dict(PERSON),
        "referral": {"identifier": "GPREF1001", "status": "active", **referral},
        "provenance": {"source_system": "gp-v2", "mapping_version": "1"},
    }


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    database = Database(db_url)
    upgrade(database)
    yield database
    database.dispose()


def _store(db: Database, n: int, record: dict[str, Any], apply: Any = None) -> Any:
    message = InboundMessage("hl7v2-http", "gp-v2", f"message {n}".encode(), "text/plain")
    return store_referral(db, message, record, content_digest(record), None, apply)


def test_identity_is_value_and_system_with_absent_as_empty() -> None:
    assert referral_key(_record()) == ("GPREF1001", "")
    assert referral_key(_record(identifier_system=None)) == ("GPREF1001", "")
    assert referral_key(_record(identifier_system="GPSYS")) == ("GPREF1001", "GPSYS")


def test_one_value_under_three_systems_is_three_referrals(db: Database) -> None:
    ids = {
        _store(db, n, _record(identifier_system=system)).referral_id
        for n, system in enumerate(("GPSYS", "OTHERSYS", None))
    }
    assert len(ids) == 3
    again = _store(db, 9, _record(identifier_system="GPSYS", reason="Isolated"))
    assert again.referral_id in ids and again.version == 2


@pytest.mark.parametrize(
    ("held", "new", "refused_at"),
    [
        ({}, {"nhs_number": OTHER}, "person.nhs_number"),
        # The NHS numbers agree: a corrected name is the same person.
        ({}, {"family_name": "Ellis-Hart"}, None),
        ({"nhs_number": None}, {"family_name": "Quayle"}, "person.family_name"),
        ({"nhs_number": None}, {"date_of_birth": "1948-03-15"}, "person.date_of_birth"),
        ({"nhs_number": None}, {"given_name": "MARGARET "}, None),  # case and spaces aside
        # Only one side has an NHS number: name and birth date decide.
        ({}, {"nhs_number": None, "given_name": "Joan"}, "person.given_name"),
        ({}, {"nhs_number": None}, None),
    ],
)
def test_another_person_is_refused_naming_the_senders_element(
    held: dict[str, Any], new: dict[str, Any], refused_at: str | None
) -> None:
    before, after = _record(), _record()
    before["person"].update(held)
    after["person"].update(new)
    after["provenance"]["elements"] = {refused_at or "x": "PID-3[1].1"}
    if refused_at is None:
        check_same_referral(before, after)
        return
    with pytest.raises(Conflict, match="held for another person") as raised:
        check_same_referral(before, after)
    assert raised.value.expression == "PID-3[1].1"
    del after["provenance"]["elements"]
    with pytest.raises(Conflict) as unlocated:
        check_same_referral(before, after)
    assert unlocated.value.expression == refused_at


def test_another_person_stores_nothing(db: Database) -> None:
    first = _store(db, 1, _record())
    other = _record(reason="Someone else")
    other["person"]["nhs_number"] = OTHER
    with pytest.raises(Conflict):
        _store(db, 2, other)
    assert get_record(db, first.referral_id)["version"] == 1


def _cancel(**referral: Any) -> dict[str, Any]:
    """A partial record: a cancellation that names the referral and nothing else."""
    return {
        "referral": {"identifier": "GPREF1001", "status": "revoked", **referral},
        "provenance": {"source_system": "gp-v2", "mapping_version": "1"},
    }


def test_a_withdrawal_applies_to_the_version_current_when_it_is_written(db: Database) -> None:
    first = _store(db, 1, _record(identifier_system="GPSYS"))
    cancel = _cancel(identifier_system="GPSYS")
    apply = withdrawal(cancel, complete=False)  # decided before the update below arrives
    _store(db, 2, _record(identifier_system="GPSYS", reason="Debt advice too"))
    stored = _store(db, 3, cancel, apply)
    assert (stored.referral_id, stored.version, stored.status) == (
        first.referral_id,
        3,
        "cancelled",
    )
    record = get_record(db, first.referral_id)["record"]
    assert record["referral"]["reason"] == "Debt advice too"  # the update is not lost
    assert record["referral"]["status"] == "revoked"
    assert record["person"] == PERSON
    # The same cancellation again is a repeat, not a fourth version.
    assert _store(db, 4, copy.deepcopy(cancel), withdrawal(cancel, complete=False)).version == 3


def test_a_withdrawal_of_nothing_held_or_of_another_person_stores_nothing(db: Database) -> None:
    with pytest.raises(NotFound, match="GPREF1001"):
        _store(db, 1, _cancel(), withdrawal(_cancel(), complete=False))
    first = _store(db, 2, _record())
    with pytest.raises(NotFound):  # held under no system, asked for under one
        elsewhere = _cancel(identifier_system="GPSYS")
        _store(db, 3, elsewhere, withdrawal(elsewhere, complete=False))
    other = _cancel()
    other["person"] = {"nhs_number": OTHER}
    with pytest.raises(Conflict):
        _store(db, 4, other, withdrawal(other, complete=False))
    assert get_record(db, first.referral_id)["status"] == "active"
