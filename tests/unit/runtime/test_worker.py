"""The one worker loop in-process: the simulators via ASGI transports, a real SQLite store.

Seams a test may patch are pipeline stage methods (`Pipeline._load`, `Pipeline._apply`); the
worker, the store and the clients are the real ones.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from syncd import errors
from syncd.runtime.metrics import SyncdMetrics
from syncd.runtime.pipeline import Pipeline
from syncd.runtime.pollers import Pollers
from syncd.runtime.sdnotify import Notifier
from syncd.runtime.service import Service
from syncd.runtime.signals import Stop
from syncd.runtime.wiring import Runtime, build_runtime
from syncd.runtime.worker import Worker, run_workers
from syncd.settings import Settings
from syncd.simulators.world import World, example_seed_path
from syncd.store.tables import queue_items


def _settings(tmp_path: Path, world: World, **sync: Any) -> Settings:
    return Settings(
        database={"url": f"sqlite+aiosqlite:///{tmp_path}/syncd.db"},
        sync={"poll_interval_s": 0.5, "workers": 2, "shutdown_grace_s": 5, **sync},
        **world.settings_overrides(),
    )


@pytest.fixture
async def rt(tmp_path: Path) -> AsyncIterator[Runtime]:
    world = World.from_file(example_seed_path())
    runtime = await build_runtime(_settings(tmp_path, world), transports=world.transports())
    try:
        await Pollers(runtime).poll_all()
        yield runtime
    finally:
        await runtime.aclose()


async def _items(rt: Runtime) -> list[Any]:
    """Every queue row (asserting none is left claimed)."""
    async with rt.store.read() as tx:
        rows = (await tx.execute(select(queue_items))).all()
    assert rows
    assert "claimed" not in {r.state for r in rows}
    return list(rows)


async def _until(cond: Callable[[], Any], timeout_s: float = 30.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not await cond():
            await asyncio.sleep(0.02)


async def test_a_spent_budget_mid_batch_pauses_the_side_without_using_an_attempt(
    rt: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def spent(self: Pipeline, works: object, directory: object) -> None:
        raise errors.BudgetExhaustedError("pardot", None, "122", "daily limit reached")

    monkeypatch.setattr(Pipeline, "_load", spent)
    before = await _items(rt)
    assert before and {i.attempts for i in before} == {0}
    worker = Worker(rt, worker_id="w", stop=Stop(), burst=True)
    await run_workers([worker], worker.stop, grace_s=5)
    assert list(worker.paused) == ["pardot"]  # a burst returns, naming the side
    after = await _items(rt)
    assert len(after) == len(before)
    assert {i.attempts for i in after} == {0}  # released: the attempt was given back


async def test_a_forced_stop_releases_the_batch_in_flight(
    rt: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    entered = asyncio.Event()

    async def stuck(self: Pipeline, works: object, directory: object) -> None:
        entered.set()
        await asyncio.Event().wait()  # an API call that never answers

    monkeypatch.setattr(Pipeline, "_apply", stuck)
    stop = Stop()
    workers = [Worker(rt, worker_id=f"w{n}", stop=stop, burst=True) for n in range(2)]
    task = asyncio.create_task(run_workers(workers, stop, grace_s=600))
    await asyncio.wait_for(entered.wait(), 30)
    stop.request()  # graceful: the batch may finish within 600 s ...
    stop.force()  # ... but the second request abandons it now
    await asyncio.wait_for(task, 30)
    items = await _items(rt)  # asserts nothing is left claimed
    assert items and {i.attempts for i in items} == {0}


async def test_a_graceful_stop_lets_the_batch_in_flight_finish(
    rt: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    entered, go_on = asyncio.Event(), asyncio.Event()
    real_apply = Pipeline._apply

    async def slow(self: Pipeline, works: Any, directory: Any) -> None:
        entered.set()
        await go_on.wait()
        await real_apply(self, works, directory)

    monkeypatch.setattr(Pipeline, "_apply", slow)
    stop = Stop()
    worker = Worker(rt, worker_id="w", stop=stop, burst=True)
    task = asyncio.create_task(run_workers([worker], stop, grace_s=600))
    await asyncio.wait_for(entered.wait(), 30)
    stop.request()
    go_on.set()
    await asyncio.wait_for(task, 30)
    assert worker.stats.items > 0  # finished and settled, not released
    async with rt.store.read() as tx:
        counts = await rt.store.queue.counts(tx, now=rt.clock())
    assert counts.claimed == 0


async def test_run_marks_a_refused_login_failing_then_gives_up(tmp_path: Path) -> None:
    world = World.from_file(example_seed_path())
    overrides = world.settings_overrides()
    overrides["salesforce"]["client_secret"] = "wrong-secret"
    settings = Settings(
        database={"url": f"sqlite+aiosqlite:///{tmp_path}/syncd.db"},
        sync={"poll_interval_s": 0.5, "login_refusals_at_start": 2, "login_backoff_s": 0.5},
        **overrides,
    )
    rt = await build_runtime(settings, transports=world.transports())
    service = Service(rt, notifier=Notifier({}), metrics=SyncdMetrics())
    try:
        task = asyncio.create_task(service.run())

        async def failing() -> bool:
            return service.login.failing is not None

        await _until(failing)
        health = service.healthz()
        assert not health.ok
        assert health.reasons["login_refused"]["system"] == "salesforce"
        text = await service.render_metrics()
        assert 'syncd_login_failing{system="salesforce"} 1' in text
        with pytest.raises(errors.AuthError):  # the second refusal, after the back-off
            await asyncio.wait_for(task, 30)
        assert service.login.refusals == 2
        async with rt.store.read() as tx:
            assert await rt.store.heartbeats.all(tx) == []
    finally:
        await rt.aclose()


async def test_run_gives_up_after_three_refusals_in_a_row_once_it_had_logged_in(
    tmp_path: Path,
) -> None:
    world = World.from_file(example_seed_path())
    settings = _settings(tmp_path, world, login_backoff_s=0.2)
    rt = await build_runtime(settings, transports=world.transports())
    service = Service(rt, notifier=Notifier({}), metrics=SyncdMetrics())
    try:
        task = asyncio.create_task(service.run())

        async def synced() -> bool:
            return service.metrics.items_processed.value() >= 1

        await _until(synced)
        # the connected app's secret is rotated and every session ends
        world.salesforce.client_secret = "rotated-elsewhere"
        world.salesforce.tokens.expire_all()
        with pytest.raises(errors.AuthError):
            await asyncio.wait_for(task, 60)
        assert service.login.ever_ok
        assert service.login.refusals == 3  # sync.login_refusals_later
        async with rt.store.read() as tx:
            counts = await rt.store.queue.counts(tx, now=rt.clock())
        assert counts.error == 0 and counts.claimed == 0  # a refused login parks no item
    finally:
        await rt.aclose()
