"""A spent API budget pauses the side and uses no attempt, at every stage that calls an API.

RULES 7: daily limits pause the affected side until the budget allows. The budget is spent for
real: when the request of the stage under test arrives, the simulator's usage counter is set to
its daily limit (as if the org's other integrations had used the rest), so the simulator itself
refuses that request with its own limit answer (Salesforce 403 `REQUEST_LIMIT_EXCEEDED`
"TotalRequests", Pardot code 122). Everything after that is the real path: the client's
classification, the budget hook, the pipeline, the queue and `syncd status`. The trap fires on
progress (the first matching request), never on time.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote_plus

import httpx
import pytest

from syncd.clients.http import Transports
from syncd.commands import status as status_cmd
from syncd.settings import Settings
from syncd.simulators.world import World
from syncd.store.models import QueueItem

from .conftest import DANA, Sync, base_seed

LEAD = "00Q000000000001AAA"

Match = Callable[[httpx.Request], bool]
MakeSync = Callable[..., Sync]


@pytest.fixture
def make_sync(tmp_path: Any, capsys: pytest.CaptureFixture[str]) -> MakeSync:
    """`Sync` (see conftest) whose simulators share syncd's clock: `s.later()` moves both, so
    each phase of a test happens in a second of its own (the simulators stamp whole seconds)."""

    def make(
        seed: dict[str, Any],
        *,
        sync: dict[str, Any] | None = None,
        pardot: dict[str, Any] | None = None,
    ) -> Sync:
        box: list[Sync] = []

        def clock() -> datetime:
            return box[0].clock() if box else datetime.now(UTC)

        world = World(seed, clock=clock)
        overrides = world.settings_overrides()
        overrides["pardot"].update(pardot or {})
        settings = Settings(
            database={"url": f"sqlite+aiosqlite:///{tmp_path}/syncd.db"},
            sync={"overlap_s": 300, **(sync or {})},
            **overrides,
        )
        box.append(Sync(world=world, settings=settings, capsys=capsys))
        return box[0]

    return make


def _text(request: httpx.Request) -> str:
    return unquote_plus(str(request.url)) + " " + unquote_plus(request.content.decode())


def sf_query(needle: str) -> Match:
    """A Salesforce query (GET /query or a /composite subrequest) whose SOQL holds `needle`."""
    return lambda r: "/services/data/" in r.url.path and needle in _text(r)


def sf_collection(method: str, sobject: str) -> Match:
    def match(r: httpx.Request) -> bool:
        if r.method != method or not r.url.path.endswith("/composite/sobjects"):
            return False
        records = json.loads(r.content).get("records") or []
        return any((rec.get("attributes") or {}).get("type") == sobject for rec in records)

    return match


def pardot(method: str, path_end: str) -> Match:
    return lambda r: r.method == method and r.url.path.endswith(path_end)


@dataclass
class Step:
    """What to do to the first request matching `when`: spend the budget, or lose the answer."""

    when: Match
    action: str  # "spend" | "lose"
    system: str


@dataclass
class Trap(httpx.AsyncBaseTransport):
    """Forwards to a simulator; applies the steps in order, each to its first matching request."""

    inner: httpx.AsyncBaseTransport
    sim: Any
    system: str
    steps: list[Step] = field(default_factory=list)
    fired: list[str] = field(default_factory=list)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        step = self.steps[0] if self.steps else None
        if step is None or step.system != self.system or not step.when(request):
            return await self.inner.handle_async_request(request)
        self.steps.pop(0)
        self.fired.append(f"{step.action} {request.method} {request.url.path}")
        if step.action == "spend":
            self.sim.api_usage = self.sim.daily_api_limit  # this request is the one refused
            return await self.inner.handle_async_request(request)
        response = await self.inner.handle_async_request(request)  # handled, answer lost
        await response.aread()
        raise httpx.ReadTimeout("the answer was lost", request=request)


def arm(s: Sync, monkeypatch: pytest.MonkeyPatch, *steps: Step) -> list[Step]:
    """Route syncd's calls through traps holding `steps` (shared, consumed in order)."""
    pending = list(steps)
    real = s.world.transports()
    sf = Trap(real.salesforce, s.sf, "salesforce", pending)  # type: ignore[arg-type]
    pd = Trap(real.pardot, s.pd, "pardot", pending)  # type: ignore[arg-type]
    monkeypatch.setattr(s.world, "transports", lambda: Transports(salesforce=sf, pardot=pd))
    return pending


def lift(s: Sync) -> None:
    """The next day: both APIs have budget again, and syncd's clock is past its pause."""
    s.sf.api_usage = 0
    s.pd.api_usage = 0
    s.later(minutes=20)


async def queued(s: Sync, key: str) -> list[QueueItem]:
    async with s.store() as (store, tx):
        return await store.queue.by_key(tx, key)


async def paused_sides(s: Sync) -> dict[str, str]:
    assert await s._cmd(status_cmd, argparse.Namespace(json=True)) == 0
    api = json.loads(s.last_out)["api"]
    return {side: api[side]["reason"] for side in api if api[side]["paused"]}


def seed_with(
    prospect: dict[str, Any] | None = None,
    lead: dict[str, Any] | None = None,
    emails: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    seed = base_seed()
    seed["pardot"]["prospects"] = [
        {"id": 1, "email": "p@example.com", "userId": 2, "lastName": "P", **(prospect or {})}
    ]
    if lead is not None:
        seed["salesforce"]["leads"] = [
            {"Id": LEAD, "Email": "p@example.com", "LastName": "L", "Company": "C",
             "OwnerId": DANA, **lead}
        ]  # fmt: skip
    seed["pardot"]["emails"] = emails or []
    return seed


WELCOME = [{"id": 5001, "prospectId": 1, "subject": "Welcome", "sentAt": "2026-01-05T10:00:00Z"}]
START = {"start_at": "2026-01-01T00:00:00Z"}


async def assert_paused_without_attempt(s: Sync, system: str, attempts: int = 0) -> None:
    assert f"paused for API budget: {system}" in s.last_out
    [item] = [i for i in await queued(s, "p:1") if i.state.value != "done"]
    assert item.state.value == "pending", item
    assert item.attempts == attempts  # the pause used none
    assert item.last_error_code in (None, "TIMEOUT")  # not the budget: it is no error
    assert (await paused_sides(s)).get(system) == "limit_exceeded"


# -- load ----------------------------------------------------------------------------------------


async def test_load_prospects(make_sync: MakeSync, monkeypatch: pytest.MonkeyPatch) -> None:
    s = make_sync(seed_with(lead={}))
    assert await s.once() == 0  # linked
    s.later(seconds=5)
    assert await s.once() == 0  # reads the echoes of its own writes
    s.later(seconds=5)
    s.sf.modify("Lead", LEAD, {"Title": "CTO"})  # the CRM feed queues p:1 without a snapshot
    pending = arm(s, monkeypatch, Step(pardot("GET", "/prospects/1"), "spend", "pardot"))
    assert await s.once() == 3  # stopped with work left: the spent budget
    assert pending == []
    await assert_paused_without_attempt(s, "pardot")
    assert s.prospect(1).get("jobTitle") != "CTO"
    lift(s)
    assert await s.once() == 0
    assert s.prospect(1)["jobTitle"] == "CTO"
    assert await queued(s, "p:1") == []


async def test_load_crm_lookup(make_sync: MakeSync, monkeypatch: pytest.MonkeyPatch) -> None:
    s = make_sync(seed_with())
    pending = arm(s, monkeypatch, Step(sf_query("Email IN ("), "spend", "salesforce"))
    assert await s.once() == 3  # stopped with work left: the spent budget
    assert pending == []
    await assert_paused_without_attempt(s, "salesforce")
    assert s.leads() == []
    lift(s)
    assert await s.once() == 0
    assert len(s.leads("p@example.com")) == 1


# -- apply ---------------------------------------------------------------------------------------


async def test_lead_create(make_sync: MakeSync, monkeypatch: pytest.MonkeyPatch) -> None:
    s = make_sync(seed_with())
    pending = arm(s, monkeypatch, Step(sf_collection("POST", "Lead"), "spend", "salesforce"))
    assert await s.once() == 3  # stopped with work left: the spent budget
    assert pending == []
    await assert_paused_without_attempt(s, "salesforce")
    assert s.leads() == []
    lift(s)
    assert await s.once() == 0
    assert len(s.leads("p@example.com")) == 1


async def test_lead_rematch_after_a_lost_create(
    make_sync: MakeSync, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The create's answer is lost; the re-match by email then meets the spent budget."""
    s = make_sync(seed_with())
    pending = arm(
        s,
        monkeypatch,
        Step(sf_collection("POST", "Lead"), "lose", "salesforce"),
        Step(sf_query("Email IN ("), "spend", "salesforce"),
    )
    assert await s.once() == 3  # stopped with work left: the spent budget
    assert pending == []
    await assert_paused_without_attempt(s, "salesforce")
    assert len(s.leads("p@example.com")) == 1  # created once, answer lost
    lift(s)
    assert await s.once() == 0
    assert len(s.leads("p@example.com")) == 1  # found by email, never created twice
    assert await queued(s, "p:1") == []


async def test_crm_update(make_sync: MakeSync, monkeypatch: pytest.MonkeyPatch) -> None:
    s = make_sync(seed_with(prospect={"jobTitle": "Engineer"}, lead={}))
    pending = arm(s, monkeypatch, Step(sf_collection("PATCH", "Lead"), "spend", "salesforce"))
    assert await s.once() == 3  # stopped with work left: the spent budget
    assert pending == []
    await assert_paused_without_attempt(s, "salesforce")
    assert not s.sf.get("Lead", LEAD).get("Title")
    lift(s)
    assert await s.once() == 0
    assert s.sf.get("Lead", LEAD)["Title"] == "Engineer"


async def test_task_create(make_sync: MakeSync, monkeypatch: pytest.MonkeyPatch) -> None:
    s = make_sync(seed_with(lead={}, emails=WELCOME), sync=START)
    pending = arm(s, monkeypatch, Step(sf_collection("POST", "Task"), "spend", "salesforce"))
    assert await s.once() == 3  # stopped with work left: the spent budget
    assert pending == []
    await assert_paused_without_attempt(s, "salesforce")
    assert s.tasks() == []
    lift(s)
    assert await s.once() == 0
    assert [t["Subject"] for t in s.tasks(LEAD)] == ["Email: Welcome"]


async def test_task_search(make_sync: MakeSync, monkeypatch: pytest.MonkeyPatch) -> None:
    """A Task whose create answer was lost is searched for by marker; the search meets the
    spent budget: the item keeps the one attempt the lost answer cost, no more."""
    s = make_sync(seed_with(lead={}, emails=WELCOME), sync=START)
    pending = arm(s, monkeypatch, Step(sf_collection("POST", "Task"), "lose", "salesforce"))
    assert await s.once() == 0
    assert pending == []
    [item] = await queued(s, "p:1")
    assert (item.attempts, item.last_error_code) == (1, "TIMEOUT")  # a real failure
    s.later(hours=2)  # its retry is due
    pending.append(Step(sf_query("FROM Task"), "spend", "salesforce"))
    assert await s.once() == 3  # stopped with work left: the spent budget
    assert pending == []
    await assert_paused_without_attempt(s, "salesforce", attempts=1)
    assert len(s.tasks(LEAD)) == 1
    lift(s)
    assert await s.once() == 0
    assert len(s.tasks(LEAD)) == 1  # found by its marker, not created again
    assert await queued(s, "p:1") == []


async def test_pardot_update(make_sync: MakeSync, monkeypatch: pytest.MonkeyPatch) -> None:
    s = make_sync(seed_with(lead={"Phone": "+1 555"}))
    pending = arm(s, monkeypatch, Step(pardot("PATCH", "/prospects/1"), "spend", "pardot"))
    assert await s.once() == 3  # stopped with work left: the spent budget
    assert pending == []
    await assert_paused_without_attempt(s, "pardot")
    assert not s.prospect(1).get("phone")
    lift(s)
    assert await s.once() == 0
    assert s.prospect(1)["phone"] == "+1 555"


# -- pollers -------------------------------------------------------------------------------------


async def test_pardot_poller(make_sync: MakeSync, monkeypatch: pytest.MonkeyPatch) -> None:
    s = make_sync(seed_with())
    pending = arm(s, monkeypatch, Step(pardot("GET", "/objects/prospects"), "spend", "pardot"))
    assert await s.once() == 3  # stopped with work left: the spent budget
    assert pending == []
    assert "paused for API budget: pardot" in s.last_out
    assert await queued(s, "p:1") == []  # nothing read, nothing queued, nothing lost
    assert (await paused_sides(s)).get("pardot") == "limit_exceeded"
    lift(s)
    assert await s.once() == 0
    assert len(s.leads("p@example.com")) == 1


async def test_salesforce_poller(make_sync: MakeSync, monkeypatch: pytest.MonkeyPatch) -> None:
    s = make_sync(seed_with())
    pending = arm(s, monkeypatch, Step(sf_query("SystemModstamp >="), "spend", "salesforce"))
    assert await s.once() == 3  # stopped with work left: the spent budget
    assert pending == []
    # The Pardot feed queued the prospect; the paused side keeps it waiting, unclaimed.
    await assert_paused_without_attempt(s, "salesforce")
    lift(s)
    assert await s.once() == 0
    assert len(s.leads("p@example.com")) == 1


# -- syncd's own share of the daily limit ----------------------------------------------------------


async def test_own_share_spent_mid_batch(make_sync: MakeSync) -> None:
    """`sync.api_budget_share` of `pardot.daily_api_limit`: 4 Pardot calls. The share runs out
    among the batch's Pardot updates (checked before each): the rest wait, using no attempt."""
    seed = base_seed()
    seed["pardot"]["prospects"] = [
        {"id": i, "email": f"b{i}@example.com", "userId": 2, "lastName": f"B{i}"}
        for i in range(1, 30)
    ]
    # Each Contact fills its prospect's blank first name: a Pardot update per prospect (the link
    # itself is never written back to Pardot).
    seed["salesforce"]["contacts"] = [
        {"Id": f"003{i:012d}AAA", "Email": f"b{i}@example.com", "FirstName": f"F{i}",
         "LastName": f"B{i}", "OwnerId": DANA}
        for i in range(1, 30)
    ]  # fmt: skip
    s = make_sync(seed, pardot={"daily_api_limit": 8}, sync={"api_budget_share": 0.5})
    assert await s.once() == 3  # stopped with work left: the spent share
    assert "paused for API budget: pardot" in s.last_out
    waiting = [i for p in range(1, 30) for i in await queued(s, f"p:{p}")]
    assert waiting, "the share ran out before every prospect was synced"
    assert {(i.state.value, i.attempts, i.last_error_code) for i in waiting} == {
        ("pending", 0, None)
    }
    assert await s.errors("list", as_json=True) == 0
    assert json.loads(s.last_out) == []
