"""The life-cycle pieces composed as the pipeline will compose them (issue 15), before the
pipeline is wired: reads through the real clients (`read_merged`, recycled reads), `reconcile`,
the plan's writes through the real clients, and the result checked through the APIs.

This is not the end-to-end test of `syncd once` (that needs the pipeline's load/apply/settle);
it proves the reads feed the rules and the plans' writes are what the simulators accept.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from syncd.domain.fieldmap import FieldMap
from syncd.domain.models import CrmType, Link, LinkAction, ProspectInput, SyncConfig
from syncd.domain.plan import Plan, reconcile
from syncd.runtime.lifecycle import read_merged
from syncd.runtime.pipeline import prospect_from, record_from
from syncd.simulators._base import ManualClock, TokenRegistry
from syncd.simulators.pardot import PardotSimulator
from tests.unit.clients.test_pardot_client import make as make_pardot
from tests.unit.domain import DIRECTORY
from tests.unit.runtime.test_lifecycle_reads import Org

BU = "0Uv000000000042AAA"
LOSER, MASTER = "00Q000000000001AAA", "00Q000000000002AAA"
FIELDS = FieldMap.default()
CONFIG = SyncConfig(field_map=FIELDS)
SELECT = ", ".join(FIELDS.crm_select_fields(CrmType.LEAD))
PARDOT_FIELDS = FIELDS.pardot_fields()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(datetime(2026, 1, 5, 9, 0, tzinfo=UTC))


def _lead(rid: str, created: str, **fields: Any) -> dict[str, Any]:
    return {
        "Id": rid,
        "LastName": "Doe",
        "Company": "Acme",
        "Email": "jane@acme.example",
        "CreatedDate": created,
        **fields,
    }


def _run(inp: ProspectInput, now: datetime) -> Plan:
    return reconcile(inp, config=CONFIG, directory=DIRECTORY, now=now)


async def test_merge_of_the_linked_lead_moves_the_link_and_the_score_reaches_the_survivor(
    clock: ManualClock,
) -> None:
    tokens = TokenRegistry(clock)
    o = Org(
        clock,
        tokens=tokens,
        leads=[
            _lead(LOSER, "2026-01-02T00:00:00.000+0000", pi__score__c=40),
            _lead(MASTER, "2026-01-01T00:00:00.000+0000", Title="CTO"),
        ],
    )
    pd = PardotSimulator(
        {
            "business_unit_id": BU,
            "prospects": [{"id": 1001, "email": "jane@acme.example", "score": 40}],
        },
        clock=clock,
        tokens=tokens,
    )
    pardot, _ = make_pardot(pd, business_unit_id=BU)
    try:
        # the first sync linked the prospect to the loser (as the link in the store says)
        raw_p = await pardot.get_prospect(1001, PARDOT_FIELDS)
        assert raw_p is not None
        first_rows = await o.client.query_all(f"SELECT {SELECT} FROM Lead WHERE Id = '{LOSER}'")
        loser = record_from(first_rows[0], CrmType.LEAD)
        prospect = prospect_from(raw_p)
        first = _run(
            ProspectInput(prospect=prospect, link=None, linked=None, candidates=(loser,)), clock()
        )
        assert first.new_base is not None
        link = Link(prospect_id=1001, crm_type=CrmType.LEAD, crm_id=LOSER, base=first.new_base)

        # a sales user merges the duplicates; Pardot raises the score meanwhile
        async with httpx.AsyncClient(  # the simulator's control route, not the REST API
            transport=httpx.ASGITransport(app=o.sim.app), base_url=o.sim.base_url
        ) as control:
            r = await control.post(
                "/__sim__/merge",
                json={"sobject": "Lead", "masterId": MASTER, "mergedIds": [LOSER]},
            )
        assert r.status_code == 200
        pd.edit_prospect(1001, {"score": 75})

        # load: the linked record is gone from query; queryAll says merged, into whom
        assert await o.client.query_all(f"SELECT Id FROM Lead WHERE Id = '{LOSER}'") == []
        reads = await read_merged(
            o.client, [LOSER], select_fields=FIELDS.crm_select_fields, to_record=record_from
        )
        merged = reads[LOSER[:15]]
        raw_p = await pardot.get_prospect(1001, PARDOT_FIELDS, include_deleted=True)
        assert raw_p is not None
        inp = ProspectInput(
            prospect=prospect_from(raw_p),
            link=link,
            linked=merged.record,
            survivor=merged.survivor,
        )
        plan = _run(inp, clock())
        assert plan.action is LinkAction.MOVE_TO_SURVIVOR
        assert (plan.crm_id, plan.from_crm_id) == (MASTER, LOSER)
        assert plan.create_lead is None and plan.error is None
        assert "merged into Lead" in plan.decisions[0].reason

        # apply: the plan's writes through the real clients
        if plan.crm_update:
            await o.client.update("Lead", MASTER, plan.crm_update)
        if plan.pardot_update:
            await pardot.update_prospect(1001, plan.pardot_update)

        # checked through the APIs: the score reached the survivor, no new Lead, nothing lost
        live = await o.client.query_all(
            "SELECT Id, pi__score__c, Title FROM Lead WHERE Email = 'jane@acme.example'"
        )
        assert [(x["Id"], x["pi__score__c"], x["Title"]) for x in live] == [(MASTER, 75.0, "CTO")]
        after = await pardot.get_prospect(1001, ["id", "score", "jobTitle"])
        assert after == {"id": 1001, "score": 75, "jobTitle": "CTO"}

        # the next sync of the survivor (the stored link moved, with the plan's base) is a no-op
        assert plan.new_base is not None
        moved = Link(prospect_id=1001, crm_type=CrmType.LEAD, crm_id=MASTER, base=plan.new_base)
        rows = await o.client.query_all(f"SELECT {SELECT} FROM Lead WHERE Id = '{MASTER}'")
        raw_p = await pardot.get_prospect(1001, PARDOT_FIELDS)
        assert raw_p is not None
        again = _run(
            ProspectInput(
                prospect=prospect_from(raw_p),
                link=moved,
                linked=record_from(rows[0], CrmType.LEAD),
            ),
            clock(),
        )
        assert again.action is LinkAction.KEEP and again.is_noop
    finally:
        await o.aclose()
        await pardot.aclose()


async def test_recycled_prospect_is_read_skipped_and_resumes_once_restored(
    clock: ManualClock,
) -> None:
    pd = PardotSimulator(
        {"business_unit_id": BU, "prospects": [{"id": 1001, "email": "jane@acme.example"}]},
        clock=clock,
        tokens=TokenRegistry(clock),
    )
    pardot, _ = make_pardot(pd, business_unit_id=BU)
    try:
        pd.recycle_prospect(1001)
        assert await pardot.get_prospect(1001, PARDOT_FIELDS) is None
        raw = await pardot.get_prospect(1001, PARDOT_FIELDS, include_deleted=True)
        assert raw is not None
        plan = _run(ProspectInput(prospect=prospect_from(raw), link=None, linked=None), clock())
        assert plan.action is LinkAction.SKIP and plan.create_lead is None
        assert "recycle bin" in (plan.skip_reason or "")
        clock.advance(minutes=1)
        restored = await pardot.undelete_prospect_by_email("jane@acme.example")
        assert restored is not None and restored["isDeleted"] is False
        raw = await pardot.get_prospect(1001, PARDOT_FIELDS)
        assert raw is not None
        plan = _run(ProspectInput(prospect=prospect_from(raw), link=None, linked=None), clock())
        assert plan.action is LinkAction.SKIP  # unassigned: the ordinary rule, not the bin
        assert "recycle bin" not in (plan.skip_reason or "")
    finally:
        await pardot.aclose()
