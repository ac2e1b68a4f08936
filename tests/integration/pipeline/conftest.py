"""End-to-end harness: both simulators in-process, the real runtime on a SQLite file.

`Sync` runs the real commands (`once`, `reprocess`, `errors`, `history`) against a `World`;
tests check results through the simulators (what a Salesforce or Pardot user would see).
"""

from __future__ import annotations

import argparse
import copy
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncConnection

from syncd.commands import errors as errors_cmd
from syncd.commands import history as history_cmd
from syncd.commands import once as once_cmd
from syncd.commands import relink as relink_cmd
from syncd.commands import reprocess as reprocess_cmd
from syncd.runtime.wiring import open_store
from syncd.settings import Settings
from syncd.simulators._base import Faults
from syncd.simulators.world import World
from syncd.store import QueueCounts, Store

CONNECTOR = "005000000000001AAA"
DANA = "005000000000002AAA"  # has a Pardot user (2)
OMAR = "005000000000003AAA"  # has a Pardot user (3)
SAM = "005000000000004AAA"  # CRM only: no Pardot user
INACTIVE = "005000000000005AAA"  # inactive CRM user, Pardot user 5 maps to it
QUEUE = "00G000000000001AAA"


def base_seed() -> dict[str, Any]:
    """Users on both sides; tests add prospects, leads, contacts and emails."""
    return {
        "salesforce": {
            "oauth": {
                "client_id": "test-client",
                "client_secret": "test-secret",
                "username": "connector@acme.example",
            },
            "users": [
                {"Id": CONNECTOR, "Username": "connector@acme.example", "IsActive": True},
                {"Id": DANA, "Username": "dana@acme.example", "IsActive": True},
                {"Id": OMAR, "Username": "omar@acme.example", "IsActive": True},
                {"Id": SAM, "Username": "sam@acme.example", "IsActive": True},
                {"Id": INACTIVE, "Username": "gone@acme.example", "IsActive": False},
            ],
            "queues": [{"Id": QUEUE, "Name": "Inbound"}],
            "leads": [],
            "contacts": [],
            "assignment_rule": None,
            "duplicate_rule": False,
            "daily_api_limit": 100000,
        },
        "pardot": {
            "business_unit_id": "0Uv000000000001AAA",
            "users": [
                {"id": 1, "email": "connector@acme.example", "username": "c@acme.example",
                 "salesforceId": CONNECTOR},
                {"id": 2, "email": "dana@acme.example", "username": "dana@acme.example",
                 "salesforceId": DANA},
                {"id": 3, "email": "omar@acme.example", "username": "omar@acme.example",
                 "salesforceId": OMAR},
                {"id": 4, "email": "pat@acme.example", "username": "pat@acme.example",
                 "salesforceId": None},
                {"id": 5, "email": "gone@acme.example", "username": "gone@acme.example",
                 "salesforceId": INACTIVE},
            ],
            "prospects": [],
            "emails": [],
        },
    }  # fmt: skip


@dataclass
class Sync:
    """One simulated world and the syncd commands run against it."""

    world: World
    settings: Settings
    capsys: pytest.CaptureFixture[str]
    offset: timedelta = field(default_factory=timedelta)
    last_out: str = ""

    def clock(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def later(self, **delta: float) -> None:
        """Move syncd's clock forward (retries become due); the simulators keep real time."""
        self.offset += timedelta(**delta)

    @property
    def sf(self) -> Any:
        return self.world.salesforce

    @property
    def pd(self) -> Any:
        return self.world.pardot

    async def _cmd(self, module: Any, args: argparse.Namespace, **kw: Any) -> int:
        self.capsys.readouterr()
        if module in (once_cmd, reprocess_cmd, relink_cmd):
            rc = await module.run(
                args, self.settings, transports=self.world.transports(), clock=self.clock
            )
        else:
            rc = await module.run(args, self.settings)
        captured = self.capsys.readouterr()
        self.last_out = captured.out + captured.err
        return int(rc)

    async def once(self, *, dry_run: bool = False) -> int:
        return await self._cmd(once_cmd, argparse.Namespace(dry_run=dry_run))

    async def reprocess(
        self, *ids: str, crm_ids: tuple[str, ...] = (), emails: tuple[str, ...] = ()
    ) -> int:
        args = argparse.Namespace(ids=list(ids), crm_id=list(crm_ids), email=list(emails))
        return await self._cmd(reprocess_cmd, args)

    async def errors(
        self, action: str, *ids: str, all_: bool = False, as_json: bool = False
    ) -> int:
        args = argparse.Namespace(action=action, ids=list(ids), all=all_, json=as_json)
        return await self._cmd(errors_cmd, args)

    async def history(self, ident: str, *, as_json: bool = False) -> int:
        return await self._cmd(history_cmd, argparse.Namespace(id=ident, json=as_json))

    async def error_items(self) -> list[dict[str, Any]]:
        """The error queue as `syncd errors list --json` prints it."""
        assert await self.errors("list", as_json=True) == 0
        return list(json.loads(self.last_out))

    @asynccontextmanager
    async def store(self, *, write: bool = False) -> AsyncIterator[tuple[Store, AsyncConnection]]:
        """syncd's store, opened as the commands open it, and one read (or write) transaction."""
        store = await open_store(self.settings, migrate=False)
        try:
            async with store.transaction() if write else store.read() as tx:
                yield store, tx
        finally:
            await store.aclose()

    async def queue_counts(self, *, now: datetime | None = None) -> QueueCounts:
        """The queue by state; due items counted as of `now` (default: syncd's clock)."""
        async with self.store() as (store, tx):
            return await store.queue.counts(tx, now=now or self.clock())

    async def history_lines(self, prospect_id: int) -> list[dict[str, Any]]:
        assert await self.history(str(prospect_id), as_json=True) == 0
        return list(json.loads(self.last_out))

    # -- what a user sees ---------------------------------------------------------------------

    def prospect(self, prospect_id: int) -> dict[str, Any]:
        found = self.pd.get_prospect(prospect_id)
        assert found is not None, f"prospect {prospect_id} is gone"
        return dict(found)

    async def crm_id_of(self, prospect_id: int) -> str | None:
        """The CRM record syncd's store links the prospect to (RULES.md 2a: the store owns the
        link; Pardot's own link fields are read-only and never written), or None."""
        async with self.store() as (store, tx):
            links = await store.links.by_prospect_ids(tx, [prospect_id])
        link = links.get(prospect_id)
        return None if link is None or link.crm_deleted else link.crm_id

    def leads(self, email: str | None = None) -> list[dict[str, Any]]:
        rows = self.sf.records("Lead")
        if email is not None:
            rows = [r for r in rows if (r.get("Email") or "").lower() == email.lower()]
        return rows

    def contacts(self, email: str | None = None) -> list[dict[str, Any]]:
        rows = self.sf.records("Contact")
        if email is not None:
            rows = [r for r in rows if (r.get("Email") or "").lower() == email.lower()]
        return rows

    def tasks(self, who_id: str | None = None) -> list[dict[str, Any]]:
        rows = self.sf.records("Task")
        if who_id is not None:
            rows = [r for r in rows if r.get("WhoId") == who_id]
        return rows

    def api_writes(self) -> tuple[int, int]:
        """Writes to each API, not counting logins (the token endpoint is a POST)."""
        sf = self.sf.counters
        logins = sf.count("POST", "/services/oauth2/token")
        return sf.writes - logins, self.pd.counters.writes


MakeSync = Callable[..., Sync]


@pytest.fixture
def make_sync(tmp_path: Any, capsys: pytest.CaptureFixture[str]) -> MakeSync:
    """`make_sync(seed, sync={...}, fields={...}, salesforce_faults=..., pardot={...})`."""

    def make(
        seed: dict[str, Any] | None = None,
        *,
        sync: dict[str, Any] | None = None,
        fields: dict[str, Any] | None = None,
        pardot: dict[str, Any] | None = None,
        salesforce_faults: Faults | None = None,
        pardot_faults: Faults | None = None,
    ) -> Sync:
        world = World(
            copy.deepcopy(seed or base_seed()),
            salesforce_faults=salesforce_faults,
            pardot_faults=pardot_faults,
        )
        overrides = world.settings_overrides()
        overrides["pardot"].update(pardot or {})
        settings = Settings(
            database={"url": f"sqlite+aiosqlite:///{tmp_path}/syncd.db"},
            sync={"overlap_s": 300, **(sync or {})},
            fields=fields or {},
            **overrides,
        )
        return Sync(world=world, settings=settings, capsys=capsys)

    return make
