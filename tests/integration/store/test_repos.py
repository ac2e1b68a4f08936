"""Links, email activities, audit, API usage, heartbeats, kv and cursors on both databases."""

from __future__ import annotations

from datetime import timedelta

from syncd.store import AuditLine, Cursor, Heartbeat, Link, Store

from .conftest import T0, at

LEAD = "00Q000000000001AAA"
CONTACT = "003000000000001AAA"


def link(pid: int, crm_id: str, email: str | None, **kw: object) -> Link:
    fields: dict[str, object] = {
        "prospect_id": pid,
        "crm_type": "Lead" if crm_id.startswith("00Q") else "Contact",
        "crm_id": crm_id,
        "email": email,
        "base": {"FirstName": "Ada", "score": 10, "optedOut": False},
        "synced_at": T0,
    }
    fields.update(kw)
    return Link(**fields)  # type: ignore[arg-type]


async def test_links_round_trip_and_lookups(store: Store) -> None:
    async with store.transaction() as tx:
        written = await store.links.upsert_many(
            tx,
            [
                link(1, LEAD, "Ada@Example.com"),
                link(2, CONTACT, "bob+x@example.com"),
                link(3, CONTACT, "bob+x@example.com"),  # two prospects, one CRM record
            ],
            now=T0,
        )
    assert written == 3
    async with store.read() as tx:
        by_pid = await store.links.by_prospect_ids(tx, [1, 2, 99])
        by_crm = await store.links.by_crm_ids(tx, [CONTACT])
        by_email = await store.links.by_emails(tx, ["ADA@example.com", "nobody@example.com"])
    assert set(by_pid) == {1, 2}
    assert by_pid[1] == link(1, LEAD, "ada@example.com")  # email stored lower-cased
    assert [lk.prospect_id for lk in by_crm[CONTACT]] == [2, 3]
    assert [lk.prospect_id for lk in by_email["ada@example.com"]] == [1]
    assert by_pid[1].synced_at == T0 and by_pid[1].synced_at.tzinfo is not None


async def test_link_upsert_replaces_the_merge_base(store: Store) -> None:
    async with store.transaction() as tx:
        await store.links.upsert_many(tx, [link(1, LEAD, "a@x.io")], now=T0)
        await store.links.upsert_many(
            tx, [link(1, LEAD, "a@x.io", base={"FirstName": "Grace"}, synced_at=at(5))], now=at(5)
        )
        [got] = (await store.links.by_prospect_ids(tx, [1])).values()
    assert got.base == {"FirstName": "Grace"} and got.synced_at == at(5)


async def test_converted_lead_moves_the_link_and_deleted_records_are_marked(store: Store) -> None:
    async with store.transaction() as tx:
        await store.links.upsert_many(
            tx, [link(1, LEAD, "a@x.io"), link(2, "00Q000000000002AAA", "b@x.io")], now=T0
        )
        assert await store.links.move(tx, LEAD, crm_type="Contact", crm_id=CONTACT, now=at(1)) == 1
        assert await store.links.mark_crm_deleted(
            tx, ["00Q000000000002AAA", "nope"], now=at(2)
        ) == [2]
        assert await store.links.mark_crm_deleted(tx, ["00Q000000000002AAA"], now=at(3)) == []
        links = await store.links.by_prospect_ids(tx, [1, 2])
    assert (links[1].crm_type, links[1].crm_id, links[1].crm_deleted) == ("Contact", CONTACT, False)
    assert links[2].crm_deleted is True


async def test_recycled_links_are_counted_and_a_plain_write_clears_the_mark(store: Store) -> None:
    async with store.transaction() as tx:
        await store.links.upsert_many(
            tx,
            [link(pid, LEAD, f"{pid}@x.io", recycled_at=at(pid)) for pid in (4, 2, 3)]
            + [link(1, CONTACT, "1@x.io")],
            now=T0,
        )
        assert await store.links.recycled(tx, limit=2) == (3, [2, 3])
        await store.links.upsert_many(tx, [link(2, LEAD, "2@x.io")], now=at(9))  # synced again
        assert await store.links.recycled(tx, limit=10) == (2, [3, 4])
        got = await store.links.by_prospect_ids(tx, [3])
    assert got[3].recycled_at == at(3)


async def test_email_activities_are_reserved_once(store: Store) -> None:
    async with store.transaction() as tx:
        new = await store.activities.reserve(
            tx, [(5001, CONTACT), (5002, CONTACT)], prospect_id=1, now=T0
        )
    assert new == [(5001, CONTACT), (5002, CONTACT)]
    async with store.transaction() as tx:
        # A retry after a crash: both are already known, nothing is reserved twice.
        assert await store.activities.reserve(tx, [(5001, CONTACT), (5003, LEAD)], now=at(1)) == [
            (5003, LEAD)
        ]
        assert (
            await store.activities.mark_done(
                tx, [((5001, CONTACT), "00T000000000001AAA")], now=at(2)
            )
            == 1
        )
        pending = await store.activities.pending_for(tx, [5001, 5002, 5003])
        known = await store.activities.get(tx, [(5001, CONTACT), (5009, CONTACT)])
    assert set(pending) == {(5002, CONTACT), (5003, LEAD)}
    assert set(known) == {(5001, CONTACT)}
    done = known[(5001, CONTACT)]
    assert (done.state, done.task_id, done.done_at, done.prospect_id) == (
        "done",
        "00T000000000001AAA",
        at(2),
        1,
    )
    async with store.transaction() as tx:
        assert await store.activities.release(tx, [(5003, LEAD), (5001, CONTACT)]) == 1
        assert set(await store.activities.for_emails(tx, [5001, 5003])) == {(5001, CONTACT)}


async def test_audit_history_newest_first(store: Store) -> None:
    lines = [
        AuditLine(
            at=at(i),
            action="field_update",
            prospect_id=1,
            crm_id=LEAD,
            field="Phone",
            old=f"{i}",
            new=f"{i + 1}",
            policy="crm",
            reason="crm changed",
            detail={"side": "pardot"},
        )
        for i in range(5)
    ]
    lines.append(AuditLine(at=at(9), action="link", prospect_id=2, old=None, new={"x": [1, True]}))
    async with store.transaction() as tx:
        assert await store.audit.append(tx, lines) == 6
    async with store.read() as tx:
        history = await store.audit.history(tx, 1, limit=3)
        other = await store.audit.history(tx, 2)
        by_crm = await store.audit.history_for_crm(tx, LEAD)
    assert [h.new for h in history] == ["5", "4", "3"]
    assert history[0].at == at(4) and history[0].detail == {"side": "pardot"}
    assert history[0].id is not None
    assert other[0].old is None and other[0].new == {"x": [1, True]}
    assert len(by_crm) == 5


async def test_api_usage_sums_the_last_24_hours(store: Store) -> None:
    async with store.transaction() as tx:
        await store.usage.add(tx, "salesforce", 10, at=T0 - timedelta(hours=30))  # too old
        await store.usage.add(tx, "salesforce", 1, at=T0 - timedelta(hours=24))  # 25 buckets ago
        await store.usage.add(tx, "salesforce", 5, at=T0 - timedelta(hours=23))
        await store.usage.add(tx, "salesforce", 3, at=T0)
        await store.usage.add(tx, "salesforce", 4, at=T0 + timedelta(minutes=59))
        await store.usage.add(tx, "pardot", 100, at=T0)
    async with store.read() as tx:
        assert await store.usage.last_24h(tx, "salesforce", now=T0 + timedelta(minutes=59)) == 12
        assert await store.usage.last_24h(tx, "pardot", now=T0) == 100
        assert await store.usage.last_24h(tx, "other", now=T0) == 0
    async with store.transaction() as tx:
        assert await store.usage.prune(tx, before=T0 - timedelta(hours=24)) == 1  # the 30h one


async def test_org_usage_keeps_the_newest_observation(store: Store) -> None:
    async with store.transaction() as tx:
        assert await store.usage.org(tx, "salesforce") is None
        await store.usage.record_org(tx, "salesforce", used=100, limit=15000, observed_at=at(10))
        await store.usage.record_org(tx, "salesforce", used=90, limit=15000, observed_at=at(5))
        org = await store.usage.org(tx, "salesforce")
    assert org is not None and (org.used, org.limit, org.observed_at) == (100, 15000, at(10))


async def test_heartbeats(store: Store) -> None:
    me = Heartbeat(
        process_id="host-1:123:ab",
        host="host-1",
        pid=123,
        role="worker",
        started_at=T0,
        last_beat_at=T0,
    )
    async with store.transaction() as tx:
        await store.heartbeats.beat(tx, me)
        await store.heartbeats.beat(
            tx,
            Heartbeat(
                process_id="old",
                host="h",
                pid=1,
                role="poller",
                started_at=T0,
                last_beat_at=at(-600),
            ),
        )
        assert await store.heartbeats.touch(tx, me.process_id, now=at(30)) is True
        assert await store.heartbeats.touch(tx, "unknown", now=at(30)) is False
    async with store.read() as tx:
        everyone = await store.heartbeats.all(tx)
        fresh = await store.heartbeats.fresh(tx, now=at(60), stale_s=120)
    assert [h.process_id for h in everyone] == [me.process_id, "old"]
    assert everyone[0].last_beat_at == at(30) and everyone[0].started_at == T0
    assert [h.process_id for h in fresh] == [me.process_id]
    async with store.transaction() as tx:
        assert await store.heartbeats.prune(tx, before=at(-300)) == 1
        await store.heartbeats.remove(tx, me.process_id)
        assert await store.heartbeats.all(tx) == []


async def test_kv(store: Store) -> None:
    async with store.transaction() as tx:
        assert await store.kv.get(tx, "salesforce.refresh_token") is None
        await store.kv.set(tx, "salesforce.refresh_token", "5Aep861...", now=T0)
        await store.kv.set(tx, "pardot.user_map", {"1": "005000000000001AAA"}, now=T0)
        await store.kv.set(tx, "pardot.user_map", {"2": "005000000000002AAA"}, now=at(1))
    async with store.transaction() as tx:
        assert await store.kv.get(tx, "salesforce.refresh_token") == "5Aep861..."
        assert await store.kv.get_with_time(tx, "pardot.user_map") == (
            {"2": "005000000000002AAA"},
            at(1),
        )
        assert await store.kv.delete(tx, "pardot.user_map") is True
        assert await store.kv.delete(tx, "pardot.user_map") is False


async def test_cursors(store: Store) -> None:
    async with store.transaction() as tx:
        await store.cursors.save(tx, "crm.leads", Cursor(position=T0, last_id="00Q1"), now=T0)
        await store.cursors.save(
            tx, "crm.leads", Cursor(position=at(60), last_id="00Q2", extra={"n": 1}), now=at(61)
        )
        await store.cursors.save(tx, "pardot.prospects", Cursor(position=T0), now=T0)
    async with store.read() as tx:
        everything = await store.cursors.all(tx)
    assert list(everything) == ["crm.leads", "pardot.prospects"]
    crm = everything["crm.leads"]
    assert (crm.position, crm.last_id, dict(crm.extra), crm.updated_at) == (
        at(60),
        "00Q2",
        {"n": 1},
        at(61),
    )
    assert everything["pardot.prospects"].last_id is None
