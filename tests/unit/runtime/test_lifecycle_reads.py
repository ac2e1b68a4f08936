"""`read_merged`: the load stage's queryAll reads of merge losers and their survivors, with the
real SalesforceClient against the Salesforce simulator."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from syncd.clients.auth import SalesforceAuth
from syncd.clients.http import RetryPolicy
from syncd.clients.salesforce import SalesforceClient
from syncd.domain.fieldmap import FieldMap
from syncd.domain.models import CrmType
from syncd.runtime.lifecycle import (
    count_life_cycle,
    email_keys_to_check,
    email_owners,
    read_losers,
    read_merged,
    read_recycled,
)
from syncd.runtime.pipeline import prospect_from, record_from
from syncd.settings import SalesforceSettings
from syncd.simulators._base import ManualClock, TokenRegistry
from syncd.simulators.generate import Shape, generate_seed
from syncd.simulators.pardot import PardotSimulator
from syncd.simulators.salesforce import SalesforceSimulator
from syncd.store import Store
from syncd.store.models import Link as StoredLink
from tests.unit.clients.test_pardot_client import make as make_pardot

FAST = RetryPolicy(max_attempts=2, base_delay_s=0.001, max_delay_s=0.002)


class Org:
    """The Salesforce simulator and a real client logged in to it."""

    def __init__(
        self, clock: ManualClock, *, tokens: TokenRegistry | None = None, **seed: Any
    ) -> None:
        full = {
            "oauth": {"client_id": "cid", "client_secret": "cs", "username": "c@acme.example"},
            "users": [{"Id": "005000000000001AAA", "Username": "c@acme.example"}],
            **seed,
        }
        self.sim = SalesforceSimulator(full, tokens=tokens or TokenRegistry(clock), clock=clock)
        oauth = full["oauth"]
        settings = SalesforceSettings(
            client_id=oauth["client_id"], client_secret=oauth["client_secret"]
        )
        transport = httpx.ASGITransport(app=self.sim.app)
        self.auth = SalesforceAuth(settings, transport=transport, retry=FAST, clock=clock)
        self.client = SalesforceClient(self.auth, transport=transport, retry=FAST)

    def requests(self, method: str, contains: str) -> int:
        return self.sim.counters.count(method, contains)

    async def aclose(self) -> None:
        await self.client.aclose()
        await self.auth.aclose()


async def make_org(clock: ManualClock, **seed: Any) -> Org:
    return Org(clock, **seed)


A, B, C = "00Q000000000001AAA", "00Q000000000002AAA", "00Q000000000003AAA"
GONE, NEVER = "00Q000000000004AAA", "00Q000000000009AAA"
K1, K2 = "003000000000001AAA", "003000000000002AAA"
FIELDS = FieldMap.default()


def _lead(rid: str) -> dict[str, str]:
    return {"Id": rid, "LastName": "Doe", "Company": "Acme", "Email": "jane@acme.example"}


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(datetime(2026, 1, 5, 9, 0, tzinfo=UTC))


async def test_read_merged_follows_chains_and_tells_deletes_apart(clock: ManualClock) -> None:
    o = await make_org(
        clock,
        leads=[_lead(A), _lead(B), _lead(C), _lead(GONE)],
        contacts=[{"Id": K1, "LastName": "K"}, {"Id": K2, "LastName": "K"}],
    )
    try:
        o.sim.merge("Lead", B, [A])  # A -> B
        o.sim.merge("Lead", C, [B])  # then B -> C: A's survivor is C
        o.sim.merge("Contact", K2, [K1])
        o.sim.remove("Lead", GONE)
        got = await read_merged(
            o.client,
            [A, A[:15], GONE, NEVER, K1],
            select_fields=FIELDS.crm_select_fields,
            to_record=record_from,
        )
        assert set(got) == {A[:15], GONE[:15], NEVER[:15], K1[:15]}
        a = got[A[:15]]
        assert a.merged and a.record is not None and a.record.master_record_id == B
        assert a.survivor is not None and (a.survivor.id, a.survivor.is_deleted) == (C, False)
        k = got[K1[:15]]
        assert k.survivor is not None and k.survivor.type is CrmType.CONTACT
        assert k.survivor.id == K2
        gone = got[GONE[:15]]
        assert gone.record is not None and gone.record.is_deleted
        assert not gone.merged and gone.survivor is None
        assert got[NEVER[:15]].record is None and not got[NEVER[:15]].merged
        # hop 1: Lead (A, GONE, NEVER) + Contact (K1); hop 2: Lead B, Contact K2; hop 3: Lead C
        assert o.requests("GET", "/queryAll") == 5
    finally:
        await o.aclose()


async def test_a_chain_longer_than_the_hops_has_no_survivor(clock: ManualClock) -> None:
    o = await make_org(clock, leads=[_lead(A), _lead(B), _lead(C)])
    try:
        o.sim.merge("Lead", B, [A])
        o.sim.merge("Lead", C, [B])
        got = await read_merged(
            o.client,
            [A],
            select_fields=FIELDS.crm_select_fields,
            to_record=record_from,
            max_hops=1,
        )
        assert got[A[:15]].merged and got[A[:15]].survivor is None
    finally:
        await o.aclose()


async def test_read_losers_names_what_was_merged_into_a_record(clock: ManualClock) -> None:
    o = await make_org(clock, leads=[_lead(A), _lead(B), _lead(C), _lead(GONE)])
    try:
        o.sim.merge("Lead", C, [A, B])
        o.sim.remove("Lead", GONE)
        got = await read_losers(o.client, [C, GONE, K1])
        assert {k: sorted(v) for k, v in got.items()} == {C[:15]: [A, B]}
    finally:
        await o.aclose()


async def test_email_owners_from_the_real_store(tmp_path: Path) -> None:
    """`email_keys_to_check` -> `LinkRepo.by_emails` -> `email_owners`, on a SQLite file."""
    t0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)

    def link(pid: int, crm_id: str, email: str, **kw: Any) -> StoredLink:
        return StoredLink(
            prospect_id=pid,
            crm_type="Lead",
            crm_id=crm_id,
            email=email,
            base={},
            synced_at=t0,
            **kw,
        )

    store = await Store.open(f"sqlite+aiosqlite:///{tmp_path}/syncd.db", migrate=True)
    try:
        async with store.transaction() as tx:
            await store.links.upsert_many(
                tx,
                [
                    link(1001, A, "jane@acme.example"),
                    link(2002, B, "Jane.Doe@NewCo.example"),
                    link(3003, C, "old@acme.example", crm_deleted=True),
                ],
                now=t0,
            )
        me = prospect_from({"id": 1001, "email": "jane@acme.example", "updatedAt": t0.isoformat()})
        moved = record_from(_lead(A) | {"Email": " jane.doe@newco.EXAMPLE "}, CrmType.LEAD)
        keys = email_keys_to_check(me, moved)
        assert keys == {"jane@acme.example", "jane.doe@newco.example"}
        async with store.read() as tx:
            found = await store.links.by_emails(tx, [*keys, "old@acme.example"])
        assert email_owners(1001, found) == {"jane.doe@newco.example": 2002}
        assert email_owners(2002, found) == {"jane@acme.example": 1001}
    finally:
        await store.aclose()


async def test_read_recycled_asks_once_per_email_and_keeps_only_the_recycle_bin(
    clock: ManualClock,
) -> None:
    pd = PardotSimulator(
        {
            "business_unit_id": "0Uv000000000001AAA",
            "prospects": [
                {"id": 1, "email": "gone@acme.example", "isDeleted": True},
                {"id": 2, "email": "gone@acme.example", "isDeleted": True},
                {"id": 3, "email": "live@acme.example"},
                {"id": 4, "email": "both@acme.example"},
                {"id": 5, "email": "both@acme.example", "isDeleted": True},
            ],
        },
        clock=clock,
        tokens=TokenRegistry(clock),
    )
    pardot, _ = make_pardot(pd, business_unit_id="0Uv000000000001AAA")
    try:
        emails = ["Gone@acme.example", "gone@acme.example ", "live@acme.example", ""]
        emails += ["both@acme.example", "new@acme.example"]
        got = await read_recycled(pardot, emails)
    finally:
        await pardot.aclose()
    assert got == {"gone@acme.example": {1, 2}, "both@acme.example": {5}}
    assert pd.counters.count("GET", "/api/v5/objects/prospects") == 4  # one per distinct email


async def test_count_life_cycle_for_preflight(clock: ManualClock) -> None:
    world = generate_seed(300, shape=Shape.life_cycle(0.2))
    tokens = TokenRegistry(clock)
    o = Org(clock, tokens=tokens, **world["salesforce"])
    pd = PardotSimulator(world["pardot"], clock=clock, tokens=tokens)
    pardot, _ = make_pardot(pd, business_unit_id=world["pardot"]["business_unit_id"])
    try:
        counts = await count_life_cycle(o.client, pardot)
    finally:
        await o.aclose()
        await pardot.aclose()
    losers = [r for r in world["salesforce"]["leads"] if r.get("IsDeleted")]
    recycled = [p for p in world["pardot"]["prospects"] if p.get("isDeleted")]
    assert losers and recycled
    assert counts.merge_losers == {"Lead": len(losers), "Contact": 0}
    assert counts.recycled_prospects == len(recycled)
