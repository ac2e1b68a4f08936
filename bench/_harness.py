"""Benchmark plumbing: the machine, databases, the simulator and daemon processes, result tables.

The simulators run in one child process (`bench._simserver`, uvicorn, real HTTP) and the daemon
in another (`python -m syncd run`, the real CLI, configured through SYNCD_* variables), so the
simulators' CPU does not share the daemon's event loop and the daemon's memory is measured alone
(its RSS sampled with psutil every 100 ms). API calls are counted by the simulators
(`/__sim__/counters`), not by the daemon's own bookkeeping. Progress is read from the daemon's
store (the same snapshot `syncd status` shows).
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psutil
import sqlalchemy as sa

from syncd.runtime.snapshot import Snapshot, read_snapshot
from syncd.store import Store, tables

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
PG_ADMIN = os.environ.get(
    "SYNCD_BENCH_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
)


# -- the machine --------------------------------------------------------------------------------


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _postgres_version() -> str | None:
    async def ask() -> str | None:
        import asyncpg

        try:
            conn = await asyncpg.connect(_asyncpg_dsn(PG_ADMIN), timeout=3)
        except (OSError, asyncpg.PostgresError, TimeoutError):
            return None
        try:
            return str(await conn.fetchval("SHOW server_version"))
        finally:
            await conn.close()

    return asyncio.run(ask())


def machine() -> dict[str, Any]:
    """CPU model, cores, RAM, Python, SQLite and PostgreSQL versions, and the date."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
    except OSError:
        commit = ""
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "ram_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "postgresql": _postgres_version(),
        "os": f"{platform.system()} {platform.release()}",
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": commit or None,
    }


# -- databases ----------------------------------------------------------------------------------


def _asyncpg_dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


class Database:
    """A fresh database for one run: a SQLite file in a temp dir, or a new PostgreSQL database."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._pg_name: str | None = None
        if kind == "sqlite":
            self._tmp = tempfile.TemporaryDirectory(prefix="syncd-bench-")
            self.url = f"sqlite+aiosqlite:///{self._tmp.name}/syncd.db"
        elif kind == "postgresql":
            self._pg_name = f"syncd_bench_{uuid.uuid4().hex[:10]}"
            asyncio.run(self._pg(f'CREATE DATABASE "{self._pg_name}"'))
            base = PG_ADMIN.rsplit("/", 1)[0]
            self.url = f"{base}/{self._pg_name}"
        else:
            raise ValueError(f"unknown database kind {kind!r}: sqlite or postgresql")

    @staticmethod
    async def _pg(statement: str) -> None:
        import asyncpg

        conn = await asyncpg.connect(_asyncpg_dsn(PG_ADMIN), timeout=5)
        try:
            await conn.execute(statement)
        finally:
            await conn.close()

    def close(self) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()
        if self._pg_name is not None:
            asyncio.run(self._pg(f'DROP DATABASE IF EXISTS "{self._pg_name}" WITH (FORCE)'))

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def postgres_available() -> bool:
    return _postgres_version() is not None


# -- the simulator process ----------------------------------------------------------------------


class Simulators:
    """`bench._simserver` in a child process, seeded from `seed`, with `latency_ms` per call."""

    def __init__(self, seed: Mapping[str, Any], *, latency_ms: float, workdir: Path) -> None:
        seed_path = workdir / "seed.json"
        seed_path.write_text(json.dumps(seed), encoding="utf-8")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bench._simserver",
                "--seed",
                str(seed_path),
                "--latency-ms",
                str(latency_ms),
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait(timeout=10)
            raise RuntimeError(f"the simulator process exited with {self.proc.returncode}")
        info = json.loads(line)
        self.salesforce_url: str = info["salesforce"]
        self.pardot_url: str = info["pardot"]
        self.env: dict[str, str] = info["env"]
        self.http = httpx.Client(timeout=30)

    def counters(self) -> dict[str, Any]:
        """Requests per simulator, by route (control routes not counted)."""
        return {
            "salesforce": self.http.get(f"{self.salesforce_url}/__sim__/counters").json(),
            "pardot": self.http.get(f"{self.pardot_url}/__sim__/counters").json(),
        }

    def bench(self, method: str, path: str, **kwargs: Any) -> Any:
        r = self.http.request(method, f"{self.salesforce_url}/__bench__{path}", **kwargs)
        r.raise_for_status()
        return r.json()

    def close(self) -> None:
        self.http.close()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self) -> Simulators:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def calls_by_route(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, int]:
    """Requests between two counter snapshots by "system METHOD route" (non-zero only)."""
    out: dict[str, int] = {}
    for system in ("salesforce", "pardot"):
        a, b = before[system]["requests"], after[system]["requests"]
        for route, n in sorted(b.items()):
            if n - a.get(route, 0):
                out[f"{system} {route}"] = n - a.get(route, 0)
    return out


def api_calls(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, int]:
    """API calls between two counter snapshots, per system (token requests left out).

    Pardot calls refused with code 66 (concurrency limit) are counted apart as `pardot_refused`.
    """
    out: dict[str, int] = {}
    for system in ("salesforce", "pardot"):
        a, b = before[system]["requests"], after[system]["requests"]
        calls = 0
        for route, n in b.items():
            if "/oauth2/" in route:
                continue
            calls += n - a.get(route, 0)
        out[system] = calls
    refused = after["pardot"]["faults"].get("concurrent_limit", 0) - before["pardot"]["faults"].get(
        "concurrent_limit", 0
    )
    out["pardot"] -= refused
    out["pardot_refused"] = refused
    return out


# -- the daemon process -------------------------------------------------------------------------


@dataclass
class Daemon:
    """`syncd run` in a child process against the simulators and `db_url`; RSS sampled."""

    sims: Simulators
    db_url: str
    settings: Mapping[str, str] = field(default_factory=dict)
    log_path: Path | None = None
    peak_rss: int = 0
    started_at: float = 0.0
    cpu_s: float = 0.0
    processes_seen: int = 1
    _child_cpu: dict[int, float] = field(default_factory=dict)

    def start(self) -> None:
        env = daemon_env(self.sims, self.db_url, self.settings)
        out = open(self.log_path, "w") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        self.started_at = time.monotonic()
        # memory profiling: the daemon under memray (`pip install memray`), its allocations
        # written to this file when it stops (`python -m memray summary FILE`)
        mem = os.environ.get("SYNCD_BENCH_MEMRAY")
        pre = ["-m", "memray", "run", "--aggregate", "-o", mem] if mem else []
        self.proc = subprocess.Popen(
            [sys.executable, *pre, "-m", "syncd", "run"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        self._ps = psutil.Process(self.proc.pid)
        self._sampling = threading.Event()
        self._sampler = threading.Thread(target=self._sample, daemon=True)
        self._sampler.start()
        self._spy: subprocess.Popen[bytes] | None = None
        spy_out = os.environ.get("SYNCD_BENCH_PYSPY")
        if spy_out:  # profiling: py-spy attached to the daemon (`pip install py-spy`)
            spy = Path(sys.executable).with_name("py-spy")
            cmd = [str(spy), "record", "-r", "100", "-f", "raw", "-o", spy_out]
            cmd.extend(["-p", str(self.proc.pid)])
            self._spy = subprocess.Popen(
                cmd,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )

    def _sample(self) -> None:
        ticks = 0
        while not self._sampling.wait(0.1):
            try:
                self.peak_rss = max(self.peak_rss, self._ps.memory_info().rss)
            except psutil.Error:
                return
            ticks += 1
            if ticks % 10 == 0:  # once a second: catch short-lived worker processes' CPU
                self.cpu_seconds()

    def cpu_seconds(self) -> float:
        """User + system CPU seconds used so far by every process of the daemon: the main one,
        its children alive now (worker processes, if any), and those already gone (their last
        sample, or the kernel's count of reaped children, whichever is larger)."""
        try:
            t = self._ps.cpu_times()
            children = self._ps.children(recursive=True)
        except psutil.Error:
            return self.cpu_s
        for child in children:
            try:
                c = child.cpu_times()
            except psutil.Error:
                continue
            self._child_cpu[child.pid] = float(c.user + c.system)
        self.processes_seen = 1 + len(self._child_cpu)
        reaped = float(t.children_user + t.children_system)
        self.cpu_s = float(t.user + t.system) + max(reaped, sum(self._child_cpu.values()))
        return self.cpu_s

    def rss(self) -> int:
        try:
            return int(self._ps.memory_info().rss)
        except psutil.Error:
            return 0

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> int:
        self._sampling.set()
        self.cpu_seconds()
        if self._spy is not None:
            self._spy.send_signal(signal.SIGINT)
            self._spy.wait(timeout=30)
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._sampler.join(timeout=1)
        return int(self.proc.returncode or 0)


class Daemons:
    """Several `syncd run` on one PostgreSQL database, seen as one daemon: CPU summed over
    all of them (every process of syncd counted), peak RSS the largest one's, alive while all
    are. The first polls (the feeds' advisory locks), every one claims batches (`SKIP LOCKED`).
    SQLite allows one `syncd run` per file, so this is PostgreSQL's lever for both cores."""

    def __init__(self, members: list[Daemon]) -> None:
        self.members = members

    @property
    def started_at(self) -> float:
        return min(d.started_at for d in self.members)

    @property
    def proc(self) -> subprocess.Popen[bytes]:
        dead = [d for d in self.members if not d.alive()]
        return (dead or self.members)[0].proc

    @property
    def cpu_s(self) -> float:
        return sum(d.cpu_s for d in self.members)

    @property
    def peak_rss(self) -> int:
        return max(d.peak_rss for d in self.members)

    @property
    def processes_seen(self) -> int:
        return sum(d.processes_seen for d in self.members)

    def start(self) -> None:
        for d in self.members:
            d.start()

    def cpu_seconds(self) -> float:
        return sum(d.cpu_seconds() for d in self.members)

    def rss(self) -> int:
        return max(d.rss() for d in self.members)

    def alive(self) -> bool:
        return all(d.alive() for d in self.members)

    def stop(self) -> int:
        codes = [d.stop() for d in self.members]
        return next((c for c in codes if c), 0)


def daemon_env(
    sims: Simulators, db_url: str, settings: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The environment of a `syncd` process pointed at `sims` and `db_url` (SYNCD_* only from
    here: the caller's own SYNCD_* variables are dropped)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYNCD_")}
    env.update(sims.env)
    env.update(
        {
            "SYNCD_DATABASE__URL": db_url,
            # The bench measures speed, not the budget guard: let syncd use it all.
            "SYNCD_PARDOT__DAILY_API_LIMIT": "10000000",
            "SYNCD_SYNC__API_BUDGET_SHARE": "1.0",
            "SYNCD_LOG__LEVEL": "warning",
            "SYNCD_LOG__FORMAT": "json",
            **(settings or {}),
        }
    )
    return env


class StoreWatch:
    """Reads the daemon's store (what `syncd status` shows) from the bench process."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.store: Store | None = None

    async def snapshot(self) -> Snapshot | None:
        if self.store is None:
            try:
                store = await Store.open(self.url, migrate=False)
            except Exception:
                return None
            self.store = store
        try:
            return await read_snapshot(self.store, now=datetime.now(UTC), stale_s=120)
        except Exception:
            return None

    async def links_count(self) -> int | None:
        """How many prospects the daemon has linked so far (None if the store is not ready)."""
        if self.store is None:
            return None
        try:
            async with self.store.read() as tx:
                n = await tx.scalar(sa.select(sa.func.count()).select_from(tables.links))
        except Exception:
            return None
        return int(n or 0)

    async def aclose(self) -> None:
        if self.store is not None:
            await self.store.aclose()


def stored_links(url: str, *, limit: int) -> list[list[Any]]:
    """The daemon's links, [[prospect id, CRM id], ...]: the link lives in syncd's store, not on
    the prospect (Pardot's link fields are read-only for API clients, RULES.md 2a)."""

    async def read() -> list[list[Any]]:
        store = await Store.open(url, migrate=False)
        try:
            async with store.read() as tx:
                return [list(pair) for pair in await store.links.live(tx, limit=limit)]
        finally:
            await store.aclose()

    return asyncio.run(read())


async def wait_drained(
    watch: StoreWatch,
    daemon: Daemon | Daemons,
    *,
    quiet_s: float,
    timeout_s: float,
    progress: Any = None,
    complete: Callable[[], Awaitable[bool]] | None = None,
    patience_s: float = float("inf"),
) -> float:
    """Seconds from the daemon's start until its queue emptied for good.

    "For good": nothing pending or claimed, and still nothing `quiet_s` later (set it above the
    poll interval, so the echoes of syncd's own writes, which the next poll queues, are waited
    for and processed). With `complete` (say, every prospect linked), an empty queue that has
    not completed the work counts only after `patience_s` (by default never: the timeout
    ends the wait): a feed may still be reading a long
    first window whose rows it does not queue (echoes), and the queue is empty meanwhile. A
    500,000-prospect backfill was once reported done with 207,000 linked that way.
    Raises TimeoutError after `timeout_s`.
    """
    empty_at: float | None = None
    while True:
        if not daemon.alive():
            raise RuntimeError(f"the daemon exited with {daemon.proc.returncode}")
        elapsed = time.monotonic() - daemon.started_at
        if elapsed > timeout_s:
            raise TimeoutError(f"the queue did not drain within {timeout_s:.0f} s")
        snap = await watch.snapshot()
        if snap is not None and snap.migrated and snap.feeds:
            q = snap.queue
            if progress is not None:
                shown = progress(elapsed, q)
                if asyncio.iscoroutine(shown):
                    await shown
            if q.pending == 0 and q.claimed == 0:
                if empty_at is None:
                    empty_at = elapsed
                elif elapsed - empty_at >= quiet_s and (
                    complete is None or elapsed - empty_at >= patience_s or await complete()
                ):
                    return empty_at
            else:
                empty_at = None
        await asyncio.sleep(1.0)  # gently: the watch shares the CPU and the store with syncd


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- results ------------------------------------------------------------------------------------


def markdown_table(headers: list[str], rows: list[list[Any]]) -> str:
    def cell(v: Any) -> str:
        if v is None:
            return "-"
        if isinstance(v, float):
            return f"{v:,.3f}" if abs(v) < 1 else f"{v:,.1f}"
        if isinstance(v, int):
            return f"{v:,}"
        return str(v)

    lines = [
        "| " + " | ".join(headers) + " |",
        "|" + "|".join("---" for _ in headers) + "|",
    ]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def machine_line(m: Mapping[str, Any]) -> str:
    return (
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['ram_gb']} GB RAM; {m['os']}; "
        f"Python {m['python']}; SQLite {m['sqlite']}; PostgreSQL {m['postgresql'] or 'n/a'}. "
        f"Date: {m['date']}" + (f"; commit {m['commit']}" if m.get("commit") else "") + "."
    )


def write_results(name: str, doc: Mapping[str, Any], markdown: str, out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{name}.json").write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    (out_dir / f"{name}.md").write_text(markdown.rstrip() + "\n", encoding="utf-8")
