"""Console fixtures: a real migrated store with errors, links and audit lines, and the app."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from syncd.runtime.ops import Check, OpsHandlers
from syncd.settings import Settings
from syncd.store import AuditLine, Link, NewItem, Reason, Store
from syncd.web.app import build_app
from syncd.web.views import ConsoleContext

NOW = datetime(2026, 3, 10, 15, 30, 0, tzinfo=UTC)
ADMIN = "admin-token-for-tests-1234567890"
VIEWER = "viewer-token-for-tests-0987654321"


async def seed(store: Store, now: datetime = NOW) -> None:
    """Three error items (two codes), two linked prospects with history, one pending item."""
    async with store.transaction() as tx:
        await store.queue.enqueue(
            tx,
            [NewItem.for_prospect(p, Reason.PARDOT_CHANGE) for p in (1001, 1002, 1003, 1004)],
            now=now - timedelta(hours=2),
        )
    items = await store.run(
        lambda tx: store.queue.claim(
            tx, worker_id="w", limit=3, lease_s=60, now=now - timedelta(hours=2)
        )
    )
    by_pid = {i.prospect_id: i.id for i in items}
    async with store.transaction() as tx:
        await store.queue.fail(
            tx,
            [by_pid[1001], by_pid[1002]],
            worker_id="w",
            code="FIELD_CUSTOM_VALIDATION_EXCEPTION",
            message="Phone must have 10 digits",
            now=now - timedelta(hours=1),
        )
        await store.queue.fail(
            tx,
            [by_pid[1003]],
            worker_id="w",
            code="INVALID_EMAIL_ADDRESS",
            message="invalid email address: =cmd|' /C calc'!A0",
            now=now - timedelta(minutes=30),
        )
        await store.links.upsert_many(
            tx,
            [
                Link(
                    prospect_id=1001,
                    crm_type="Lead",
                    crm_id="00Q000000000001AAA",
                    email="Ann@Example.com",
                    base={"jobTitle": "CEO"},
                    synced_at=now - timedelta(days=1),
                ),
                Link(
                    prospect_id=1002,
                    crm_type="Contact",
                    crm_id="003000000000002AAA",
                    email="bob@example.com",
                    base={},
                    synced_at=now - timedelta(days=1),
                ),
            ],
            now=now - timedelta(days=1),
        )
        await store.audit.append(
            tx,
            [
                AuditLine(
                    at=now - timedelta(days=1),
                    action="link",
                    prospect_id=1001,
                    crm_id="00Q000000000001AAA",
                    reason="matched a Lead by email",
                ),
                AuditLine(
                    at=now - timedelta(days=1),
                    action="update_crm",
                    prospect_id=1001,
                    crm_id="00Q000000000001AAA",
                    field="jobTitle",
                    old="CTO",
                    new="CEO",
                    policy="recent",
                    reason="Pardot changed it most recently",
                ),
                AuditLine(
                    at=now - timedelta(minutes=20),
                    action="update_pardot",
                    prospect_id=1002,
                    crm_id="003000000000002AAA",
                    field="phone",
                    old=None,
                    new="+1 555 0100",
                    policy="crm",
                    reason="a value beats a blank",
                ),
                AuditLine(at=now - timedelta(days=3), action="create_lead", prospect_id=1003),
                AuditLine(at=now - timedelta(days=12), action="create_task", prospect_id=1001),
            ],
        )


def settings_with(**ops: Any) -> Settings:
    return Settings.model_validate({"ops": ops, "database": {"url": "sqlite+aiosqlite:///x.db"}})


@dataclass
class Console:
    store: Store
    client: httpx.AsyncClient
    ctx: ConsoleContext

    async def sign_in(self, token: str) -> httpx.Response:
        page = await self.client.get("/login")
        nonce = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert nonce is not None
        return await self.client.post(
            "/login", data={"csrf": nonce.group(1), "token": token, "next": "/"}
        )

    async def csrf(self, path: str = "/") -> str:
        page = await self.client.get(path)
        found = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert found is not None, page.text[:500]
        return found.group(1)


def handlers() -> OpsHandlers:
    async def readyz() -> Check:
        return Check(True, {"store": "ok"})

    async def metrics() -> str:
        return "syncd_up 1\n"

    return OpsHandlers(lambda: Check(True, {"mode": "test"}), readyz, metrics)


ConsoleFactory = Callable[..., Any]


@pytest.fixture
async def seeded_store(db_url: str) -> AsyncIterator[Store]:
    store = await Store.open(db_url, busy_timeout_ms=5_000, migrate=True)
    await seed(store)
    yield store
    await store.aclose()


@pytest.fixture
async def console(seeded_store: Store) -> AsyncIterator[Callable[..., Any]]:
    """`await console(bearer_token=..., viewer_token=...)` -> a `Console` over the real store
    (`clock=`: the console's clock, `NOW` by default)."""
    clients: list[httpx.AsyncClient] = []

    async def make(clock: Callable[[], datetime] | None = None, **ops: Any) -> Console:
        ctx = ConsoleContext(
            store=seeded_store,
            settings=settings_with(**ops),
            clock=clock or (lambda: NOW),
            handlers=handlers(),
        )
        client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=build_app(ctx)), base_url="http://console.test"
        )
        clients.append(client)
        return Console(seeded_store, client, ctx)

    yield make
    for c in clients:
        await c.aclose()
