"""`syncd run` as operators run it: against the simulators over HTTP, stopped with signals.

Each test starts `syncd simulate` and `syncd run` as subprocesses, changes data through the
simulated APIs, and watches the result through those APIs and the store. Waits are bounded polls.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from syncd.settings import SyncSettings
from syncd.store import Heartbeat, Store

from . import (
    SYNCD,
    NotifyListener,
    Simulators,
    base_env,
    free_port,
    queue_counts,
    read_store,
    simulators,
    start_syncd,
    wait_until,
)

TOKEN = "ops-bearer-token-for-tests"
ALAN_PROSPECT = 1002
ALAN_LEAD = "00Q000000000001AAA"
GRACE_S = SyncSettings().shutdown_grace_s


def _lead(sims: Simulators, fields: str) -> dict[str, object]:
    (lead,) = sims.soql(f"SELECT {fields} FROM Lead WHERE Id = '{ALAN_LEAD}'")
    return lead


def test_run_syncs_both_ways_serves_ops_and_stops_cleanly(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/syncd.db"
    ops_port = free_port()
    notify = NotifyListener(tmp_path / "notify.sock")
    with simulators(tmp_path) as sims:
        env = sims.run_env(
            url,
            SYNCD_OPS__LISTEN=f"127.0.0.1:{ops_port}",
            SYNCD_OPS__BEARER_TOKEN=TOKEN,
            NOTIFY_SOCKET=str(notify.path),
            WATCHDOG_USEC="1000000",
        )
        run = start_syncd(["run"], env=env, cwd=tmp_path, name="run")
        try:
            wait_until(lambda: notify.seen("READY"), timeout_s=60, what="READY=1")
            # the first sync links the seeded prospect to its Lead (Pardot is master of score)
            wait_until(
                lambda: _lead(sims, "pi__score__c")["pi__score__c"] == 42,
                what="first sync of the seeded score",
            )

            # a change on each side, through the APIs
            sims.pd_patch(ALAN_PROSPECT, {"score": 99})
            sims.sf_patch("Lead", ALAN_LEAD, {"Company": "Bletchley Park"})
            wait_until(
                lambda: _lead(sims, "pi__score__c")["pi__score__c"] == 99,
                what="Pardot score change synced to the Lead",
            )
            wait_until(
                lambda: sims.prospect(ALAN_PROSPECT, "id,company")["company"] == "Bletchley Park",
                what="Lead company change synced to the prospect",
            )

            # ops endpoint: healthz open, the rest behind the bearer token
            base = f"http://127.0.0.1:{ops_port}"
            assert httpx.get(f"{base}/healthz", timeout=10).status_code == 200
            assert httpx.get(f"{base}/metrics", timeout=10).status_code == 401
            auth = {"Authorization": f"Bearer {TOKEN}"}
            ready = wait_until(
                lambda: (
                    (r := httpx.get(f"{base}/readyz", headers=auth, timeout=10)).status_code == 200
                    and r
                ),
                what="/readyz 200",
            )
            assert ready.json()["ok"] is True
            metrics = httpx.get(f"{base}/metrics", headers=auth, timeout=10).text
            assert 'syncd_api_calls_total{system="pardot",outcome="ok"}' in metrics
            processed = [
                ln for ln in metrics.splitlines() if ln.startswith("syncd_items_processed_total ")
            ]
            assert processed and float(processed[0].split()[1]) >= 2

            # the container health check sees a healthy daemon on this database
            check = subprocess.run(
                [*SYNCD, "check"],
                env=env,
                cwd=tmp_path,
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            assert check.returncode == 0, check.stderr
            assert check.stdout.startswith("ok:")
            wait_until(lambda: notify.seen("WATCHDOG"), what="WATCHDOG=1")

            # status: the same picture for a person (table) and a script (--json)
            status = _syncd(["status", "--json"], env, tmp_path)
            doc = json.loads(status)
            assert doc["schema"]["migrated"] is True
            assert doc["queue"]["claimed"] >= 0 and doc["queue"]["error"] == 0
            feeds = {f["feed"]: f for f in doc["feeds"]}
            assert feeds["pardot.prospects"]["last_poll_at"] is not None
            assert [p["live"] for p in doc["processes"]] == [True]
            assert doc["api"]["pardot"]["own_calls_24h"] > 0
            assert doc["api"]["pardot"]["budget"] == 12_500  # half of the 25,000 default limit
            table = _syncd(["status"], env, tmp_path)
            for title in ("Queue", "Feeds", "API usage", "Processes"):
                assert title in table

            run.signal(signal.SIGTERM)
            assert run.wait(GRACE_S + 30) == 0
        finally:
            run.stop()
        assert notify.seen("STOPPING")
        notify.close()

    counts = queue_counts(url)
    assert counts.claimed == 0
    assert read_store(url, lambda store, tx: store.heartbeats.all(tx)) == []
    events = run.events()  # every stderr line is one JSON event
    names = [e["event"] for e in events]
    assert "service_started" in names
    assert "service_stopped" in names
    assert TOKEN not in run.stderr()
    stopped = next(e for e in events if e["event"] == "service_stopped")
    assert stopped["forced"] is False


def _syncd(args: list[str], env: dict[str, str], cwd: Path) -> str:
    proc = subprocess.run(
        [*SYNCD, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def _busy(url: str) -> bool:
    try:
        return bool(queue_counts(url).claimed)
    except Exception:
        return False  # not migrated yet


def test_sigterm_after_the_grace_releases_in_flight_items_and_exits_0(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/syncd.db"
    # every API call takes 1.5 s, so the first batch is still in flight when the signal comes
    with simulators(tmp_path, extra_args=("--latency-ms", "1500")) as sims:
        env = sims.run_env(url, SYNCD_SYNC__SHUTDOWN_GRACE_S="0.5")
        run = start_syncd(["run"], env=env, cwd=tmp_path, name="run")
        try:
            wait_until(lambda: _busy(url), timeout_s=90, what="a claimed batch")
            run.signal(signal.SIGTERM)
            assert run.wait(60) == 0
        finally:
            run.stop()
    counts = queue_counts(url)
    assert counts.claimed == 0
    assert counts.pending > 0  # released: they run again on the next start
    released = [e for e in run.events() if e["event"] == "items_released"]
    assert released and sum(e["count"] for e in released) > 0


def test_a_second_signal_stops_at_once(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/syncd.db"
    with simulators(tmp_path, extra_args=("--latency-ms", "1500")) as sims:
        env = sims.run_env(url, SYNCD_SYNC__SHUTDOWN_GRACE_S="600")
        run = start_syncd(["run"], env=env, cwd=tmp_path, name="run")
        try:
            wait_until(lambda: _busy(url), timeout_s=90, what="a claimed batch")
            run.signal(signal.SIGTERM)
            wait_until(
                lambda: any(e["event"] == "service_stopping" for e in run.events()),
                what="the graceful stop to begin",
            )
            run.signal(signal.SIGINT)
            # far below the 600 s grace: the second signal did not wait for the batch
            assert run.wait(60) == 128 + signal.SIGINT
        finally:
            run.stop()
    assert queue_counts(url).claimed == 0  # released (else their leases would expire)
    stopped = [e for e in run.events() if e["event"] == "service_stopped"]
    assert stopped and stopped[0]["forced"] is True


def test_check_fails_without_a_running_daemon(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/syncd.db"
    env = base_env(SYNCD_DATABASE__URL=url)
    proc = subprocess.run(
        [*SYNCD, "check"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 1
    assert proc.stderr.strip().count("\n") == 0  # one line
    assert "does not exist" in proc.stderr
    bad = subprocess.run(
        [*SYNCD, "check"],
        env={**env, "SYNCD_SYNC__WORKERS": "many"},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 1  # not 2: Docker reserves exit 2 for health checks
    assert "sync.workers" in bad.stderr


def test_check_judges_the_heartbeat(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/syncd.db"
    env = base_env(SYNCD_DATABASE__URL=url, SYNCD_OPS__HEARTBEAT_STALE_S="60")
    _syncd(["migrate"], env, tmp_path)

    def check() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*SYNCD, "check"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60
        )

    assert "no `syncd run` heartbeat" in check().stderr

    async def beat(age_s: float) -> None:
        store = await Store.open(url)
        now = datetime.now(UTC)
        try:
            async with store.transaction() as tx:
                await store.heartbeats.beat(
                    tx,
                    Heartbeat(
                        process_id="host:1:test",
                        host="host",
                        pid=1,
                        role="run",
                        started_at=now - timedelta(hours=1),
                        last_beat_at=now - timedelta(seconds=age_s),
                    ),
                )
        finally:
            await store.aclose()

    asyncio.run(beat(age_s=600))
    stale = check()
    assert stale.returncode == 1
    assert "heartbeat is stale" in stale.stderr and "limit 60 s" in stale.stderr
    asyncio.run(beat(age_s=1))
    fresh = check()
    assert fresh.returncode == 0, fresh.stderr
    assert fresh.stdout.startswith("ok:")
