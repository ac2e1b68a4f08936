"""Browser fixtures: the console served over real HTTP to Debian's headless Chromium.

A `Site` is a simulated world (both simulators in-process), the real runtime on a SQLite
file, and the console (`syncd.web`) served by the real `OpsServer` (uvicorn) on a free
loopback port in the test's event loop. Sync passes are driven by the test (poll every feed,
then drain the queue), so each step is deterministic. Chromium runs through Playwright with
the system binary; no browser is downloaded. Without /usr/bin/chromium the tests skip
locally and fail under CI=true (`.ci/run` installs it).

Screenshots go to the test's directory, or to docs/ when CONSOLE_SCREENSHOTS=1 (the
README shows those).
"""

from __future__ import annotations

import copy
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from syncd.commands import console as console_command
from syncd.runtime.ops import OpsServer
from syncd.runtime.pipeline import RunStats
from syncd.runtime.pollers import Pollers
from syncd.runtime.signals import Stop
from syncd.runtime.wiring import Runtime, build_runtime
from syncd.runtime.worker import Worker
from syncd.settings import Settings
from syncd.simulators.world import World
from syncd.web.app import build_app
from syncd.web.views import ConsoleContext
from tests.integration.pipeline.conftest import CONNECTOR, DANA, base_seed

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]
ADMIN = "admin-browser-token-0123456789"
VIEWER = "viewer-browser-token-9876543210"
ROOT = Path(__file__).resolve().parents[2]


def console_seed() -> dict[str, Any]:
    """Ann matches a Lead (blank Title: Pardot fills it); Bea is new; three names too long."""
    seed = base_seed()
    seed["salesforce"]["leads"] = [
        {
            "Id": "00Q000000000001AAA",
            "Email": "ann@example.com",
            "LastName": "Lee",
            "Company": "Acme",
            "OwnerId": DANA,
            "CreatedDate": "2026-01-02T00:00:00Z",
        }
    ]
    seed["pardot"]["prospects"] = [
        {"id": 10, "email": "ann@example.com", "userId": 2, "lastName": "Lee",
         "jobTitle": "CEO", "company": "Acme"},
        {"id": 11, "email": "bea@example.com", "userId": 2, "lastName": "Bo", "company": "Bo"},
        *(
            {"id": 20 + i, "email": f"long{i}@example.com", "userId": 2, "lastName": "x" * 120}
            for i in range(3)
        ),
    ]  # fmt: skip
    assert CONNECTOR  # the connector user exists in the base seed
    return seed


@dataclass
class Site:
    world: World
    rt: Runtime
    server: OpsServer
    shots: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.port}"

    async def sync_pass(self, *, poll: bool = True) -> RunStats:
        """Poll every feed (unless `poll` is False), then drain the queue."""
        if poll:
            await Pollers(self.rt).poll_all()
        stats = RunStats()
        # the one worker loop of run, once and demo, in burst mode: it returns when nothing is
        # due, or when a side is paused (the console's pause, or a spent budget)
        await Worker(self.rt, worker_id="browser-test", stop=Stop(), burst=True, stats=stats).run()
        return stats

    tmp: Path

    def shot(self, name: str, *, readme: bool = True) -> str:
        """Where to save a screenshot (docs/ only for the ones the README shows)."""
        return str((self.shots if readme else self.tmp) / f"console-{name}.png")


@pytest.fixture
async def site(tmp_path: Path, shots: Path) -> AsyncIterator[Site]:
    world = World(copy.deepcopy(console_seed()))
    overrides = world.settings_overrides()
    settings = Settings(
        database={"url": f"sqlite+aiosqlite:///{tmp_path}/syncd.db"},
        sync={"overlap_s": 300, "start_at": "2026-01-01T00:00:00Z"},
        ops={"bearer_token": ADMIN, "viewer_token": VIEWER},
        **overrides,
    )
    rt = await build_runtime(settings, transports=world.transports())
    handlers = console_command.handlers_for(rt.store, settings)
    ctx = ConsoleContext(
        store=rt.store, settings=settings, clock=rt.clock, handlers=handlers, field_map=rt.field_map
    )
    server = OpsServer(handlers, host="127.0.0.1", port=0, app=build_app(ctx))
    await server.start()
    try:
        yield Site(world, rt, server, shots, tmp_path)
    finally:
        await server.aclose()
        await rt.aclose()


@pytest.fixture
def chromium() -> Path:
    if not CHROMIUM.exists():
        msg = "no /usr/bin/chromium: apt-get install chromium (.ci/run does)"
        if os.environ.get("CI") == "true":
            pytest.fail(msg)
        pytest.skip(msg)
    return CHROMIUM


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    shots = ROOT / "docs" if os.environ.get("CONSOLE_SCREENSHOTS") == "1" else tmp_path
    shots.mkdir(exist_ok=True)
    return shots


@pytest.fixture
async def browser(chromium: Path) -> AsyncIterator[Any]:
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        b = await pw.chromium.launch(
            executable_path=str(chromium), args=CHROMIUM_FLAGS, headless=True
        )
        try:
            yield b
        finally:
            await b.close()


@pytest.fixture
async def page(browser: Any) -> AsyncIterator[Any]:
    context = await browser.new_context(viewport={"width": 1100, "height": 800})
    p = await context.new_page()
    p.on("dialog", lambda d: d.accept())  # the console's "are you sure?" confirmations
    p.set_default_timeout(15_000)
    try:
        yield p
    finally:
        await context.close()


async def sign_in(page: Any, site: Site, token: str, path: str = "/") -> None:
    await page.goto(site.url + path)
    assert "/login" in page.url
    await page.fill("#token", token)
    await page.click("button[type=submit]")
    await page.wait_for_url(site.url + path)
