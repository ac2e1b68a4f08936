"""`syncd run`'s Service serves the console on ops.listen, and honours a pause set there."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from pathlib import Path

import httpx

from syncd.runtime.metrics import SyncdMetrics
from syncd.runtime.service import Service
from syncd.runtime.wiring import build_runtime
from syncd.settings import Settings
from syncd.simulators.world import World, example_seed_path

TOKEN = "daemon-console-token-0123456789"
ALAN_PROSPECT = 1002
ALAN_LEAD = "00Q000000000001AAA"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def until(cond: Callable[[], object], what: str, timeout_s: float = 60.0) -> None:
    """Bounded wait for progress (not a timing assertion: it fails only when nothing happens)."""
    try:
        async with asyncio.timeout(timeout_s):
            while not cond():
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None


async def test_the_daemon_serves_the_console_and_a_pause_stops_its_writes(tmp_path: Path) -> None:
    world = World.from_file(example_seed_path())
    port = free_port()
    settings = Settings(
        database={"url": f"sqlite+aiosqlite:///{tmp_path}/syncd.db"},
        sync={"poll_interval_s": 0.3, "workers": 1, "shutdown_grace_s": 5},
        ops={"listen": f"127.0.0.1:{port}", "bearer_token": TOKEN},
        **world.settings_overrides(),
    )
    rt = await build_runtime(settings, transports=world.transports())
    metrics = SyncdMetrics()
    service = Service(rt, metrics=metrics)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    sf = world.salesforce

    def title() -> object:
        return next(r for r in sf.records("Lead") if r["Id"] == ALAN_LEAD).get("Title")

    task = asyncio.create_task(service.run())
    try:
        await until(lambda: metrics.items_processed.value() >= 3, "the first sync")
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", headers=auth) as c:
            status = (await c.get("/api/status")).json()
            assert status["processes"][0]["process_id"] == service.process_id
            overview = await c.get("/")
            assert "Login: <span" in overview.text and ">ok</span>" in overview.text

            r = await c.post("/api/control/salesforce/pause")
            assert r.json()["changed"] is True
            ready = await c.get("/readyz")
            assert ready.status_code == 503
            assert ready.json()["salesforce"] == "paused by admin"

            writes = sf.counters.writes
            world.pardot.edit_prospect(ALAN_PROSPECT, {"jobTitle": "Codebreaker"})
            # the Pardot feed still runs: the change is queued, and stays queued
            async with rt.store.read() as tx:
                before = await rt.store.cursors.get(tx, "pardot.prospects")
            assert before is not None

            async def queued() -> bool:
                async with rt.store.read() as tx:
                    items = await rt.store.console.queue_items_of(tx, ALAN_PROSPECT)
                    cur = await rt.store.cursors.get(tx, "pardot.prospects")
                assert cur is not None
                return bool(items) and cur.updated_at != before.updated_at

            for _ in range(600):
                if await queued():
                    break
                await asyncio.sleep(0.05)
            assert await queued(), "the Pardot change was not queued while Salesforce is paused"
            # the workers were woken by that poll; two more poll rounds and still no write
            for _ in range(2):
                async with rt.store.read() as tx:
                    before = await rt.store.cursors.get(tx, "pardot.prospects")
                assert before is not None
                for _ in range(600):
                    if await queued():
                        break
                    await asyncio.sleep(0.05)
            assert sf.counters.writes == writes
            assert title() != "Codebreaker"

            r = await c.post("/api/control/salesforce/resume")
            assert r.json()["changed"] is True
            await until(lambda: title() == "Codebreaker", "the change to sync after resume")
    finally:
        service.request_stop()
        assert await asyncio.wait_for(task, 60) == 0
        await rt.aclose()
