"""syncd against the per-record script: `syncd once` and `bench.baseline_script` on one world.

Both run in the same `python -m bench` invocation, each on its own fresh simulator process seeded
with the same world (so neither sees the other's writes), with the same latency added to every
call. Timed: the wall time of each process, from its start to its exit; `syncd once` includes
its start-up and schema migration, the script its token request. The ratio printed is script
time / syncd time (the issue's aim: at least 20).

CPU is counted for every process: `resource.getrusage(RUSAGE_CHILDREN)` before and after each
run covers the process and everything it started and reaped.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bench._harness import ROOT, Database, Simulators, api_calls, daemon_env, stored_links
from bench.backfill import backfill_seed

DEFAULT_PROSPECTS = 2_000


def _children_cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return float(r.ru_utime + r.ru_stime)


def _timed(cmd: list[str], env: Mapping[str, str] | None, timeout_s: float) -> dict[str, Any]:
    cpu0 = _children_cpu_s()
    started = time.monotonic()
    done = subprocess.run(
        cmd, cwd=ROOT, env=dict(env) if env is not None else None, capture_output=True,
        text=True, timeout=timeout_s, check=False,
    )  # fmt: skip
    wall = time.monotonic() - started
    return {
        "wall_s": round(wall, 2),
        "cpu_s": round(_children_cpu_s() - cpu0, 2),
        "exit": done.returncode,
        "stdout": done.stdout,
        "stderr": done.stderr[-2000:],
    }


def run_syncd_once(
    seed: dict[str, Any], *, latency_ms: float, settings: Mapping[str, str], timeout_s: float
) -> dict[str, Any]:
    """`syncd once` on a fresh SQLite store against fresh simulators seeded with `seed`."""
    prospects = len(seed["pardot"]["prospects"])
    with (
        tempfile.TemporaryDirectory(prefix="syncd-bench-") as tmp,
        Database("sqlite") as db,
        Simulators(seed, latency_ms=latency_ms, workdir=Path(tmp)) as sims,
    ):
        before = sims.counters()
        env = daemon_env(sims, db.url, settings)
        run = _timed([sys.executable, "-m", "syncd", "once"], env, timeout_s)
        after = sims.counters()
        synced = len(stored_links(db.url, limit=prospects + 1))
    if run["exit"] not in (0, 1):
        raise RuntimeError(f"syncd once exited {run['exit']}: {run['stderr']}")
    calls = api_calls(before, after)
    return {
        "wall_s": run["wall_s"],
        "cpu_s": run["cpu_s"],
        "exit": run["exit"],
        "synced": synced,
        "salesforce_calls": calls["salesforce"],
        "pardot_calls": calls["pardot"],
    }


def run_script(seed: dict[str, Any], *, latency_ms: float, timeout_s: float) -> dict[str, Any]:
    """`bench.baseline_script` against fresh simulators seeded with `seed`."""
    with (
        tempfile.TemporaryDirectory(prefix="syncd-bench-") as tmp,
        Simulators(seed, latency_ms=latency_ms, workdir=Path(tmp)) as sims,
    ):
        env = sims.env
        cmd = [
            sys.executable, "-m", "bench.baseline_script",
            "--salesforce", env["SYNCD_SALESFORCE__LOGIN_URL"],
            "--pardot", env["SYNCD_PARDOT__BASE_URL"],
            "--client-id", env["SYNCD_SALESFORCE__CLIENT_ID"],
            "--business-unit-id", env["SYNCD_PARDOT__BUSINESS_UNIT_ID"],
        ]  # fmt: skip
        child_env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("SYNCD_")},
            "BASELINE_CLIENT_SECRET": env["SYNCD_SALESFORCE__CLIENT_SECRET"],
        }
        before = sims.counters()
        run = _timed(cmd, child_env, timeout_s)
        after = sims.counters()
    if run["exit"] != 0:
        raise RuntimeError(f"the baseline script exited {run['exit']}: {run['stderr']}")
    counts = json.loads(run["stdout"].strip().splitlines()[-1])
    calls = api_calls(before, after)
    return {
        "wall_s": run["wall_s"],
        "cpu_s": run["cpu_s"],
        "counts": counts,
        "salesforce_calls": calls["salesforce"],
        "pardot_calls": calls["pardot"],
    }


def run_compare(
    prospects: int = DEFAULT_PROSPECTS,
    *,
    latency_ms: float = 20.0,
    settings: Mapping[str, str] | None = None,
    world: str = "today",
) -> dict[str, Any]:
    """Both runs on the same world; the figures and the ratio (script time / syncd time)."""
    seed = backfill_seed(prospects, world)
    timeout_s = max(600.0, prospects * 0.5)
    print(f"compare {prospects:,} ({world}): syncd once", file=sys.stderr, flush=True)
    syncd = run_syncd_once(
        seed, latency_ms=latency_ms, settings=settings or {}, timeout_s=timeout_s
    )
    print(f"compare: syncd once {syncd}", file=sys.stderr, flush=True)
    print(f"compare {prospects:,} ({world}): the per-record script", file=sys.stderr, flush=True)
    script = run_script(seed, latency_ms=latency_ms, timeout_s=timeout_s * 4)
    print(f"compare: script {script}", file=sys.stderr, flush=True)
    ratio = script["wall_s"] / syncd["wall_s"] if syncd["wall_s"] else None
    return {
        "world": world,
        "prospects": prospects,
        "latency_ms": latency_ms,
        "syncd_once": syncd,
        "script": script,
        "speedup": None if ratio is None else round(ratio, 2),
    }


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_PROSPECTS
    out = run_compare(n)
    print(json.dumps(out, indent=2))
    print(f"syncd once {out['syncd_once']['wall_s']} s, script {out['script']['wall_s']} s: "
          f"{out['speedup']}x")  # fmt: skip
