"""`syncd run`, `once` and `demo` share one worker loop: one failure behaviour, one stop path.

Each test runs the real CLI in a subprocess (against `syncd simulate` over HTTP, or the demo's
own in-process world) and watches the store. Waits are bounded polls on progress; signals are
sent when the store or the output shows the command got there, never after a fixed sleep.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import pytest

from syncd.simulators.generate import generate_seed

from . import (
    SYNCD,
    Proc,
    Simulators,
    base_env,
    queue_counts,
    read_store,
    simulators,
    start_syncd,
    wait_until,
)

# The real CLI with one seam patched: the pipeline's apply stage raises, as a bug would.
_BUGGY_SYNCD = """
import sys
from syncd.runtime import pipeline

async def _apply(self, works, directory):
    raise RuntimeError("injected bug in the apply stage")

pipeline.Pipeline._apply = _apply
from syncd.cli import main
sys.exit(main())
"""
BUGGY_SYNCD = [sys.executable, "-c", _BUGGY_SYNCD]
MAX_ATTEMPTS = 2


def _start(cmd: list[str], args: list[str], env: dict[str, str], cwd: Path, name: str) -> Proc:
    out, err = cwd / f"{name}.out", cwd / f"{name}.err"
    popen = subprocess.Popen(
        [*cmd, *args],
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=out.open("wb"),
        stderr=err.open("wb"),
    )
    return Proc(popen, out, err)


def _parked(url: str) -> list[Any]:
    return list(read_store(url, lambda store, tx: store.queue.errors(tx, limit=1000, offset=0)))


def _all_parked(url: str) -> bool:
    try:
        counts = queue_counts(url)
    except Exception:
        return False  # not created or migrated yet
    return counts.error > 0 and counts.pending == 0 and counts.claimed == 0


def _bug_env(extra: dict[str, str]) -> dict[str, str]:
    return {
        **extra,
        "SYNCD_SYNC__MAX_ATTEMPTS": str(MAX_ATTEMPTS),
        "SYNCD_SYNC__RETRY_BASE_S": "0.05",
    }


def _drive_once(sims: Simulators, url: str, tmp: Path) -> None:
    env = sims.run_env(url, **_bug_env({}))
    for n in range(2 * MAX_ATTEMPTS):
        done = subprocess.run(
            [*BUGGY_SYNCD, "once"],
            env=env,
            cwd=tmp,
            capture_output=True,
            text=True,
            timeout=180,
            stdin=subprocess.DEVNULL,
        )
        assert done.returncode in (0, 1), done.stderr[-3000:]
        assert "Traceback" not in done.stderr, done.stderr[-3000:]
        if _all_parked(url):
            assert done.returncode == 1  # items in the error queue
            return
        assert n < 2 * MAX_ATTEMPTS - 1, f"not parked after {n + 1} runs: {queue_counts(url)}"


def _drive_daemon(
    cmd: list[str], args: list[str], env: dict[str, str], url: str, tmp: Path
) -> None:
    proc = _start(cmd, args, env, tmp, "buggy")
    try:
        wait_until(lambda: _all_parked(url), timeout_s=120, what="every item parked")
        proc.signal(signal.SIGTERM)
        assert proc.wait(60) == 0, proc.stderr()[-3000:]
    finally:
        proc.stop()


@pytest.mark.parametrize("command", ["run", "once", "demo"])
def test_a_bug_in_the_apply_stage_parks_the_items_after_max_attempts(
    command: str, tmp_path: Path
) -> None:
    """The same failure behaviour in all three commands: before one loop, `once` and `demo`
    released the batch on a bug and gave the attempt back, so the items never left the queue."""
    url = f"sqlite+aiosqlite:///{tmp_path}/syncd.db"
    if command == "demo":
        env = base_env(**_bug_env({"SYNCD_LOG__FORMAT": "json"}))
        args = ["demo", "--prospects", "10", "--database", url]
        _drive_daemon(BUGGY_SYNCD, args, env, url, tmp_path)
    else:
        with simulators(tmp_path) as sims:
            if command == "once":
                _drive_once(sims, url, tmp_path)
            else:
                env = sims.run_env(url, **_bug_env({}))
                _drive_daemon(BUGGY_SYNCD, ["run"], env, url, tmp_path)
    parked = _parked(url)
    assert parked
    assert {i.last_error_code for i in parked} == {"INTERNAL_ERROR"}
    assert all("injected bug in the apply stage" in (i.last_error_message or "") for i in parked)
    assert {i.attempts for i in parked} == {MAX_ATTEMPTS}


# -- the stop path ---------------------------------------------------------------------------

_LOCKER = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=60)
conn.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
sys.stdin.readline()  # until the test says so
conn.execute("ROLLBACK")
"""


@contextmanager
def _locked(db: Path) -> Iterator[None]:
    """Another process holding the SQLite file's write lock until the block ends."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _LOCKER, str(db)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdin is not None
    try:
        assert proc.stdout.readline().strip() == "locked"
        yield
    finally:
        with suppress(BrokenPipeError):
            proc.stdin.write("release\n")
            proc.stdin.close()
        proc.wait(30)


def _claimed(url: str) -> bool:
    try:
        return bool(queue_counts(url).claimed)
    except Exception:
        return False  # not migrated yet


def _stop_acknowledged(proc: Proc, command: str) -> bool:
    if command == "demo":
        return "stopping:" in proc.stdout()
    return "stop_requested" in proc.stderr()


@pytest.mark.parametrize(
    ("command", "first", "second"),
    [
        ("run", signal.SIGTERM, signal.SIGTERM),
        ("once", signal.SIGTERM, signal.SIGINT),
        ("demo", signal.SIGINT, signal.SIGINT),
    ],
)
def test_two_signals_stop_at_once_on_a_store_locked_by_another_process(
    command: str, first: signal.Signals, second: signal.Signals, tmp_path: Path
) -> None:
    """The second signal abandons in-flight work even though the store cannot be written:
    nothing retries the locked store past a short timeout (the product promises 5 s; the
    test only waits for the exit, with a generous timeout)."""
    db = tmp_path / "syncd.db"
    url = f"sqlite+aiosqlite:///{db}"
    # a long grace: only the second signal can explain a prompt exit (the demo keeps its own
    # 10 s grace, still longer than the stop takes)
    grace = {"SYNCD_SYNC__SHUTDOWN_GRACE_S": "600"}
    if command == "demo":
        env = base_env(**grace)
        proc = start_syncd(
            ["demo", "--prospects", "3000", "--database", url], env=env, cwd=tmp_path, name="demo"
        )
        _signal_twice_while_locked(proc, command, first, second, db, url)
        return
    with simulators(tmp_path, extra_args=("--latency-ms", "1500")) as sims:
        env = sims.run_env(url, **grace)
        proc = start_syncd([command], env=env, cwd=tmp_path, name=command)
        _signal_twice_while_locked(proc, command, first, second, db, url)


def _signal_twice_while_locked(
    proc: Proc,
    command: str,
    first: signal.Signals,
    second: signal.Signals,
    db: Path,
    url: str,
) -> None:
    try:
        wait_until(lambda: _claimed(url), timeout_s=120, what="claimed items")
        with _locked(db):
            proc.signal(first)
            wait_until(
                lambda: _stop_acknowledged(proc, command),
                timeout_s=60,
                what="the graceful stop to begin",
            )
            proc.signal(second)
            rc = proc.wait(60)
        assert rc == 128 + second, (rc, proc.stderr()[-3000:])
        assert "Traceback" not in proc.stderr(), proc.stderr()[-3000:]
    finally:
        proc.stop()


def test_once_on_sigterm_releases_its_items_and_says_so(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/syncd.db"
    with simulators(tmp_path, extra_args=("--latency-ms", "1500")) as sims:
        env = sims.run_env(url, SYNCD_SYNC__SHUTDOWN_GRACE_S="0.5")
        proc = start_syncd(["once"], env=env, cwd=tmp_path, name="once")
        try:
            wait_until(lambda: _claimed(url), timeout_s=120, what="claimed items")
            proc.signal(signal.SIGTERM)
            assert proc.wait(60) == 128 + signal.SIGTERM
        finally:
            proc.stop()
    counts = queue_counts(url)
    assert counts.claimed == 0
    assert counts.pending > 0  # released, due again at once (not left to a 300 s lease)
    summary = proc.stdout().strip().splitlines()
    assert len(summary) == 1 and summary[0].startswith("syncd once: ")
    assert "stopped by SIGTERM" in summary[0] and "items left in the queue" in summary[0]


def test_once_with_a_spent_budget_exits_3_and_names_the_work_left(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/syncd.db"
    seed = tmp_path / "seed.json"
    seed.write_text(json.dumps(generate_seed(40, seed=5)))
    with simulators(tmp_path, seed=seed) as sims:
        # a share of 0.5 of 8 calls a day: syncd may make 4 Pardot calls, in small batches
        env = sims.run_env(
            url,
            SYNCD_PARDOT__DAILY_API_LIMIT="8",
            SYNCD_SYNC__API_BUDGET_SHARE="0.5",
            SYNCD_SYNC__BATCH_SIZE="5",
        )
        done = subprocess.run(
            [*SYNCD, "once"],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=180,
            stdin=subprocess.DEVNULL,
        )
    assert done.returncode == 3, done.stdout + done.stderr[-3000:]
    (line,) = done.stdout.strip().splitlines()
    assert "stopped with work left" in line
    assert "items waiting" in line and "pardot until" in line
    assert "--wait-budget" in line
    left = queue_counts(url)
    assert left.pending + left.claimed > 0 or "feeds not read" in line
