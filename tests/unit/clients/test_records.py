"""CrmRecords (named Salesforce reads) against the Salesforce simulator: the runtime's questions
answered in domain values, with one IN-chunker under the URI limit."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from syncd import errors
from syncd.clients.records import CrmRecords, in_queries, readable_record, record_from
from syncd.domain.models import CrmType, sf_id_key
from syncd.domain.plan import task_marker
from syncd.simulators._base import ManualClock
from tests.unit.clients.test_salesforce_client import Org, lead, make_org

SELECT = {
    CrmType.LEAD: ("Id", "Email", "OwnerId", "CreatedDate", "IsConverted", "ConvertedContactId"),
    CrmType.CONTACT: ("Id", "Email", "OwnerId", "CreatedDate"),
}


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(datetime(2026, 1, 5, 9, 0, tzinfo=UTC))


def records(o: Org) -> CrmRecords:
    return CrmRecords(o.client, SELECT.__getitem__)


async def test_lookup_reads_by_id_and_email_the_same_with_or_without_composite(
    clock: ManualClock,
) -> None:
    o = await make_org(clock, leads=[lead(i) for i in range(6)])
    try:
        contact = o.sim.insert("Contact", {"LastName": "C", "Email": "p1@example.com"})
        ids = [r["Id"] async for r in o.client.query("SELECT Id FROM Lead ORDER BY Email")][:2]
        crm = records(o)
        batched = await crm.lookup([*ids, contact], ["P3@example.com", "p1@example.com", None])
        assert o.requests("POST", "/composite") == 1
        gets_before = o.requests("GET", "/query")
        plain = await crm.lookup([*ids, contact], ["P3@example.com", "p1@example.com", None],
                                 composite=False)  # fmt: skip
        assert o.requests("POST", "/composite") == 1  # GETs only
        assert o.requests("GET", "/query") > gets_before
        for found in (batched, plain):
            assert set(found.by_id) == {sf_id_key(i) for i in [*ids, contact]}
            assert found.by_id[sf_id_key(contact)].type is CrmType.CONTACT
            assert sorted((r.type.value, (r.email or "").lower()) for r in found.by_email) == [
                ("Contact", "p1@example.com"),
                ("Lead", "p1@example.com"),
                ("Lead", "p3@example.com"),
            ]
            assert found.mirrored == ()  # no mirror field configured
    finally:
        await o.aclose()


async def test_a_long_email_list_is_split_under_the_uri_limit_and_nothing_is_lost(
    clock: ManualClock,
) -> None:
    long = [f"{'x' * 60}.{i}@example.com" for i in range(400)]
    o = await make_org(clock, leads=[lead(i, Email=e) for i, e in enumerate(long)])
    try:
        queries = in_queries(SELECT[CrmType.LEAD], "Lead", "Email", long)
        assert len(queries) > 1  # one IN list would pass the URI limit
        found = await records(o).records_by_email(long, types=(CrmType.LEAD,))
        assert sorted(r.email or "" for r in found) == sorted(long)
    finally:
        await o.aclose()


async def test_email_tasks_are_found_by_their_marker(clock: ManualClock) -> None:
    o = await make_org(clock, leads=[lead(1), lead(2)])
    try:
        who = [r["Id"] async for r in o.client.query("SELECT Id FROM Lead ORDER BY Email")]
        task = o.sim.insert(
            "Task",
            {"WhoId": who[0], "Subject": "Email: hi", "TaskSubtype": "Email",
             "Status": "Completed", "Description": f"sent {task_marker(5001)}"},
        )  # fmt: skip
        o.sim.insert("Task", {"WhoId": who[1], "Subject": "Call", "Status": "Completed"})
        found = await records(o).email_tasks(who)
        assert found == {(5001, sf_id_key(who[0])): task}
        assert await records(o).email_tasks([]) == {}
    finally:
        await o.aclose()


async def test_existing_ids_and_known_emails(clock: ManualClock) -> None:
    o = await make_org(clock, leads=[lead(1)])
    try:
        lead_id = (await o.client.query_all("SELECT Id FROM Lead"))[0]["Id"]
        crm = records(o)
        assert await crm.existing_ids([lead_id, "00Q000000000009AAA"]) == {lead_id[:15]}
        assert await crm.email_known("p1@example.com") is True
        assert await crm.email_known("nobody@example.com") is False
    finally:
        await o.aclose()


def test_record_from_maps_the_wire_and_refuses_types_the_api_never_sends() -> None:
    raw = {
        "attributes": {"type": "Contact"},
        "Id": "003000000000001AAA",
        "Email": "a@x.example",
        "CreatedDate": "2026-01-05T09:00:00.000+0000",
    }
    rec = record_from(raw)
    assert rec.type is CrmType.CONTACT and "attributes" not in rec.fields
    assert rec.created_date == datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
    with pytest.raises(ValueError, match="Email"):
        record_from({**raw, "Email": 42})
    with pytest.raises(errors.RetriableAPIError) as info:
        readable_record({**raw, "Email": 42}, CrmType.CONTACT)
    assert info.value.code == "BAD_RESPONSE"
