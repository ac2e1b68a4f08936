"""The store under faults: PostgreSQL connections cut mid-transaction, a SQLite file locked away.

- PostgreSQL: syncd talks to the database through a TCP proxy (`CutProxy`, in a thread of this
  test) that drops every open connection on command, many times while `syncd run` and
  `syncd once` work. Transactions die half way; syncd retries them and loses nothing.
- SQLite: another process holds `BEGIN EXCLUSIVE` for a few seconds (longer than
  `database.busy_timeout_ms`) while the daemon works, and while `syncd once` starts; the daemon
  keeps running and catches up, `once` either waits it out or exits 1 naming the lock.
Afterwards the soak's invariants (`bench.soak.check`, through the simulated APIs and the store)
must all hold: every prospect linked once, no duplicate Lead, Tasks once, fields as the policies
demand, nothing lost, only permanent errors.
"""

from __future__ import annotations

import asyncio
import json
import random
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from acceptance import SYNCD, Simulators, queue_counts, simulators, start_syncd, wait_until

from bench.soak import Apis, SoakReport, check
from syncd.simulators.generate import generate_seed

PROSPECTS = 60


class CutProxy:
    """A TCP proxy to PostgreSQL that can drop every open connection at once (`cut`)."""

    def __init__(
        self, target: tuple[str, int] = ("127.0.0.1", 5432), *, cut_every: int | None = None
    ) -> None:
        self.target = target
        # Cut by progress, not by the clock: every `cut_every`-th read the client sends.
        self.cut_every = cut_every
        self.sent = 0
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.writers: set[asyncio.StreamWriter] = set()
        self.cuts = 0
        self.dropped = 0
        self.port = 0

    def start(self) -> int:
        self.thread.start()
        server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._serve, "127.0.0.1", 0), self.loop
        ).result(10)
        self.server = server
        self.port = int(server.sockets[0].getsockname()[1])
        return self.port

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_r, up_w = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        pair = {writer, up_w}
        self.writers |= pair

        async def pipe(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            try:
                while data := await r.read(65536):
                    w.write(data)
                    await w.drain()
                    if w is up_w and self.cut_every:
                        self.sent += 1
                        if self.sent % self.cut_every == 0:
                            self._abort_all()
            except (ConnectionError, OSError):
                pass
            finally:
                w.close()

        await asyncio.gather(pipe(reader, up_w), pipe(up_r, writer))
        self.writers -= pair

    def cut(self) -> int:
        """Abort every proxied connection now (both sides see a reset); how many were open."""
        done = threading.Event()
        out: list[int] = []

        def go() -> None:
            out.append(self._abort_all())
            done.set()

        self.loop.call_soon_threadsafe(go)
        done.wait(10)
        return out[0] if out else 0

    def _abort_all(self) -> int:
        """In the proxy's loop: reset every open connection; how many there were."""
        n = len(self.writers)
        for w in list(self.writers):
            w.transport.abort()
        self.writers.clear()
        self.cuts += 1
        self.dropped += n
        return n

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.server.close)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@contextmanager
def proxy(*, cut_every: int | None = None) -> Iterator[CutProxy]:
    p = CutProxy(cut_every=cut_every)
    p.start()
    try:
        yield p
    finally:
        p.close()


def _world(tmp: Path) -> tuple[dict[str, Any], Path]:
    seed = generate_seed(PROSPECTS, seed=5)
    path = tmp / "seed.json"
    path.write_text(json.dumps(seed))
    return seed, path


def _env(sims: Simulators, url: str, **extra: str) -> dict[str, str]:
    env = sims.run_env(
        url, SYNCD_SYNC__RETRY_BASE_S="1", SYNCD_SYNC__LEASE_S="20", SYNCD_LOG__LEVEL="info"
    )
    env.update(extra)
    return env


def _invariants(seed: dict[str, Any], sims: Simulators, url: str) -> SoakReport:
    apis = Apis(sims.env)
    try:
        report = SoakReport(database=url, prospects=PROSPECTS)
        check(seed, apis, url, report)
    finally:
        apis.close()
    assert report.links > 0 and report.ok, report.render()
    return report


def _drained(url: str) -> bool:
    counts = queue_counts(url)
    return counts.pending == 0 and counts.claimed == 0


def _once(env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*SYNCD, "once"], env=env, cwd=cwd, capture_output=True, text=True, timeout=180
    )


def _pause(seconds: float) -> None:
    threading.Event().wait(seconds)


def test_daemon_survives_postgres_connections_cut_mid_transaction(
    tmp_path: Path, pg_url: str
) -> None:
    seed, seed_file = _world(tmp_path)
    rng = random.Random(3)
    # 30 ms a call and batches of 10: the first sync is many short transactions, still running
    # while the cuts come, on a fast machine or a slow one.
    slow = ("--latency-ms", "30")
    with proxy() as px, simulators(tmp_path, seed=seed_file, extra_args=slow) as sims:
        via_proxy = pg_url.replace("127.0.0.1:5432", f"127.0.0.1:{px.port}")
        assert via_proxy != pg_url
        env = _env(sims, via_proxy, SYNCD_SYNC__BATCH_SIZE="10")
        run = start_syncd(["run"], env=env, cwd=tmp_path, name="run")
        try:
            # Faults by progress, not by the clock: once the daemon is up (its first store write
            # done; a store that fails at start-up is meant to stop it), cut every connection at
            # random moments while the first sync runs.
            wait_until(
                lambda: "service_started" in run.stderr() or None,
                timeout_s=120,
                what="the daemon to start",
            )
            for _ in range(25):
                _pause(rng.uniform(0.2, 0.8))
                px.cut()
                assert run.popen.poll() is None, f"syncd run died:\n{run.stderr()[-3000:]}"
            assert px.dropped > 0, "no connection was open to cut"
            wait_until(
                lambda: (_drained(pg_url) and queue_counts(pg_url).error == 0) or None,
                timeout_s=180,
                what="the queue to drain after the cuts",
            )
            _pause(3)  # one more poll round: echoes of our own writes
            wait_until(lambda: _drained(pg_url), timeout_s=120, what="the queue to drain")
            assert run.popen.poll() is None, "syncd run must keep running through DB outages"
            run.signal(signal.SIGTERM)
            assert run.wait(60) == 0
        finally:
            run.stop()
        _invariants(seed, sims, pg_url)
    assert "store_retry" in run.stderr() or "connection" in run.stderr().lower()


def test_once_retries_through_postgres_cuts_and_loses_nothing(tmp_path: Path, pg_url: str) -> None:
    seed, seed_file = _world(tmp_path)
    # Every 40th message syncd sends to PostgreSQL resets every connection: cuts come with
    # progress, never at a wall-clock second, so a fast machine meets them as a slow one does.
    with proxy(cut_every=40) as px, simulators(tmp_path, seed=seed_file) as sims:
        via_proxy = pg_url.replace("127.0.0.1:5432", f"127.0.0.1:{px.port}")
        env = _env(sims, via_proxy, SYNCD_SYNC__LEASE_S="5")
        for _ in range(4):
            done = _once(env, tmp_path)
            assert "Traceback" not in done.stderr, done.stderr[-3000:]
            assert done.returncode in (0, 1), done.stderr[-3000:]
            if done.returncode == 0:
                break
            # a run that gave up says so in one line naming the store
            assert "store error" in done.stderr, done.stderr[-3000:]
        assert px.dropped > 0
        # whatever the cuts did, clean runs finish the job: nothing was lost on the way (items a
        # cut-off run still held come back when their lease ends)
        clean = _env(sims, pg_url)
        for _ in range(8):
            final = _once(clean, tmp_path)
            assert final.returncode == 0, final.stderr[-3000:]
            if _drained(pg_url):
                break
            _pause(2)
        assert _drained(pg_url), queue_counts(pg_url)
        _invariants(seed, sims, pg_url)


_LOCKER = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
seconds = float(sys.argv[2])
if seconds >= 0:
    time.sleep(seconds)
else:
    sys.stdin.readline()  # until the test says so
conn.execute("ROLLBACK")
print("released", flush=True)
"""


@contextmanager
def locked(db: Path, seconds: float = -1) -> Iterator[subprocess.Popen[str]]:
    """Another process holding the SQLite write lock (BEGIN EXCLUSIVE) for `seconds`, or (-1)
    until the block ends."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _LOCKER, str(db), str(seconds)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdin is not None
    assert proc.stdout.readline().strip() == "locked"
    try:
        yield proc
    finally:
        with suppress(BrokenPipeError):  # a timed lock may be gone already
            proc.stdin.write("release\n")
            proc.stdin.close()
        proc.wait(max(seconds, 0) + 30)


def test_daemon_and_once_wait_out_a_locked_sqlite_file(tmp_path: Path) -> None:
    seed, seed_file = _world(tmp_path)
    db = tmp_path / "syncd.db"
    url = f"sqlite+aiosqlite:///{db}"
    with simulators(tmp_path, seed=seed_file) as sims:
        # 1. `once` starting while the file is locked for less than busy_timeout: it waits
        migrate = subprocess.run(
            [*SYNCD, "migrate"], env=_env(sims, url), cwd=tmp_path, capture_output=True, text=True
        )
        assert migrate.returncode == 0, migrate.stderr
        with locked(db, 2.0):
            done = _once(_env(sims, url, SYNCD_DATABASE__BUSY_TIMEOUT_MS="10000"), tmp_path)
        assert done.returncode == 0, done.stderr[-3000:]

        # 2. locked for longer than busy_timeout: `once` gives up in one clear line, exit 1
        short = _env(sims, url, SYNCD_DATABASE__BUSY_TIMEOUT_MS="200")
        with locked(db):
            done = _once(short, tmp_path)
        assert done.returncode == 1, done.stderr[-3000:]
        assert "locked" in done.stderr and "busy_timeout_ms" in done.stderr
        assert "Traceback" not in done.stderr

        # 3. the daemon runs through repeated long locks and catches up
        run = start_syncd(["run"], env=short, cwd=tmp_path, name="run")
        try:
            # (a lock at start-up is a clear exit 1, see step 2; systemd restarts the service)
            wait_until(lambda: "service_started" in run.stderr(), what="service_started")
            for _ in range(3):
                _pause(1.0)
                with locked(db, 3.0):
                    pass
                assert run.popen.poll() is None, f"syncd run died:\n{run.stderr()[-3000:]}"

            _pause(3)
            wait_until(lambda: _drained(url), timeout_s=60, what="the queue to drain")
            run.signal(signal.SIGTERM)
            assert run.wait(60) == 0
        finally:
            run.stop()
        assert "store_retry" in run.stderr() or "locked" in run.stderr()
        _invariants(seed, sims, url)
