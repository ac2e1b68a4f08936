"""Alerts reach a Slack-compatible webhook (a local receiver over real HTTP) once per incident."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from syncd.runtime.alerts import Alerter, incidents
from syncd.runtime.budget import SideFigures
from syncd.runtime.ops import OpsServer
from syncd.store import Store

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


class Receiver:
    """A webhook endpoint that keeps what it was sent; `down` makes it answer 500."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.down = False

    async def hook(self, request: Request) -> Response:
        if self.down:
            return Response("unavailable", status_code=500)
        self.received.append(await request.json())
        return JSONResponse({"ok": True})

    def texts(self) -> list[str]:
        return [str(m["text"]) for m in self.received]


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[Receiver, str]]:
    rec = Receiver()
    app = Starlette(routes=[Route("/hooks/T000/B000/secret", rec.hook, methods=["POST"])])
    server = OpsServer(app=app, port=0)
    await server.start()
    yield rec, f"http://127.0.0.1:{server.port}/hooks/T000/B000/secret"
    await server.aclose()


@pytest.fixture
async def store(sqlite_url: str) -> AsyncIterator[Store]:
    s = await Store.open(sqlite_url, migrate=True)
    yield s
    await s.aclose()


def figures(paused: bool) -> list[SideFigures]:
    return [
        SideFigures(
            system="pardot",
            own_calls_24h=12_500,
            daily_limit=25_000,
            own_cap=12_500,
            remaining=0,
            org_used=None,
            paused=paused,
            reason="own_share" if paused else "ok",
            resume_at=None,
        )
    ]


async def test_each_incident_is_sent_once_and_resolved_once(
    store: Store, receiver: tuple[Receiver, str]
) -> None:
    rec, url = receiver
    alerter = Alerter(store, url)
    now = incidents(login={"salesforce": "refused"}, figures=figures(True), error_items=150,
                    threshold=100)  # fmt: skip
    assert set(now) == {"login.salesforce", "budget.pardot", "errors"}
    sent = await alerter.check(now, now=NOW)
    assert len(sent) == 3
    assert any("cannot log in to salesforce" in t for t in rec.texts())
    assert any("150 items" in t for t in rec.texts())
    # the same incidents again: nothing new, even from a new Alerter (state is in the store)
    assert await Alerter(store, url).check(now, now=NOW) == []
    assert len(rec.received) == 3
    # the error queue shrinks below the threshold: one "resolved" message
    later = incidents(login={"salesforce": "refused"}, figures=figures(True), error_items=20,
                      threshold=100)  # fmt: skip
    await alerter.check(later, now=NOW)
    assert len(rec.received) == 4
    assert rec.texts()[-1].startswith("Resolved:")
    assert "error queue" in rec.texts()[-1]


async def test_a_message_that_cannot_be_sent_is_tried_again(
    store: Store, receiver: tuple[Receiver, str]
) -> None:
    rec, url = receiver
    alerter = Alerter(store, url)
    now = incidents(login={}, figures=figures(False), error_items=101, threshold=100)
    rec.down = True
    assert await alerter.check(now, now=NOW) == []
    rec.down = False
    assert [m.key for m in await alerter.check(now, now=NOW)] == ["errors"]
    assert len(rec.received) == 1


def test_no_incident_when_all_is_well() -> None:
    assert incidents(login={"salesforce": "ok", "pardot": "ok"}, figures=figures(False),
                     error_items=100, threshold=100) == {}  # fmt: skip


async def test_the_daemon_alerts_on_a_growing_error_queue(
    tmp_path: Any, receiver: tuple[Receiver, str]
) -> None:
    from syncd.runtime.service import Service
    from syncd.runtime.wiring import build_runtime
    from syncd.settings import Settings
    from syncd.simulators.world import World, example_seed_path
    from syncd.store import NewItem, Reason

    rec, url = receiver
    world = World.from_file(example_seed_path())
    settings = Settings(
        database={"url": f"sqlite+aiosqlite:///{tmp_path}/syncd.db"},
        alerts={"webhook_url": url, "error_queue_threshold": 1},
        **world.settings_overrides(),
    )
    rt = await build_runtime(settings, transports=world.transports())
    try:
        service = Service(rt)
        alerter = Alerter(rt.store, url)
        now = rt.clock()
        async with rt.store.transaction() as tx:
            await rt.store.queue.enqueue(
                tx, [NewItem.for_prospect(p, Reason.PARDOT_CHANGE) for p in (1, 2)], now=now
            )
        items = await rt.store.run(
            lambda tx: rt.store.queue.claim(tx, worker_id="w", limit=2, lease_s=60, now=now)
        )
        async with rt.store.transaction() as tx:
            await rt.store.queue.fail(
                tx, [i.id for i in items], worker_id="w", code="X", message="bad", now=now
            )
        await service.check_alerts(alerter)
        await service.check_alerts(alerter)
        assert len(rec.received) == 1
        assert "2 items (threshold 1)" in rec.texts()[0]
        async with rt.store.transaction() as tx:
            await rt.store.queue.retry_errors(tx, None, now=now)
        await service.check_alerts(alerter)
        assert rec.texts()[-1].startswith("Resolved:")
        assert url not in "".join(rec.texts())
    finally:
        await rt.aclose()
