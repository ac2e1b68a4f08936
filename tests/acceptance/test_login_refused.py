"""`syncd run` with refused credentials says so and stops, instead of looking healthy forever.

Through the real CLI against `syncd simulate`: a wrong client secret ends `syncd run` with exit 2
and one `login refused` line; while a daemon allowed more refusals is backing off, `syncd check`
(the container HEALTHCHECK) reports it unhealthy.
"""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path
from typing import Any

from syncd.runtime.login import LOGIN_FAILING_KV

from . import SYNCD, read_store, simulators, start_syncd, wait_until

WRONG = {"SYNCD_SALESFORCE__CLIENT_SECRET": "wrong-secret"}


def _failing(url: str) -> Any:
    try:
        return read_store(url, lambda store, tx: store.kv.get(tx, LOGIN_FAILING_KV))
    except Exception:
        return None  # not migrated yet


def test_a_wrong_secret_ends_run_with_exit_2_and_one_login_refused_line(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/syncd.db"
    with simulators(tmp_path) as sims:
        env = {**sims.run_env(url), **WRONG}
        run = start_syncd(["run"], env=env, cwd=tmp_path, name="run")
        try:
            rc = run.wait(90)  # the product promises well within a minute
        finally:
            run.stop()
    assert rc == 2, run.stderr()[-3000:]
    refused = [ln for ln in run.stderr().splitlines() if "login refused" in ln]
    assert len(refused) == 1, run.stderr()[-3000:]
    assert refused[0].startswith("syncd run: login refused:")
    assert "salesforce.client_secret" in refused[0]  # says what to fix
    assert "wrong-secret" not in run.stderr()


def test_check_reports_a_daemon_whose_login_is_refused_as_unhealthy(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/syncd.db"
    with simulators(tmp_path) as sims:
        # more refusals allowed, and a long back-off: it is still running while we look
        patient = sims.run_env(
            url, SYNCD_SYNC__LOGIN_REFUSALS_AT_START="2", SYNCD_SYNC__LOGIN_BACKOFF_S="600"
        )
        env = {**patient, **WRONG}
        run = start_syncd(["run"], env=env, cwd=tmp_path, name="run")
        try:
            entry = wait_until(lambda: _failing(url), timeout_s=90, what="the failing login")
            assert entry["system"] == "salesforce" and entry["refusals"] == 1
            check = subprocess.run(
                [*SYNCD, "check"], env=env, cwd=tmp_path, capture_output=True, text=True,
                timeout=60,
            )  # fmt: skip
            assert check.returncode == 1, check.stdout + check.stderr
            (line,) = check.stderr.strip().splitlines()
            assert line.startswith("syncd check: login refused: salesforce refused")
            assert "fix the credentials" in line
            status = subprocess.run(
                [*SYNCD, "status", "--json"], env=env, cwd=tmp_path, capture_output=True,
                text=True, timeout=60,
            )  # fmt: skip
            assert status.returncode == 0, status.stderr
            refused = json.loads(status.stdout)["login_refused"]
            assert refused["system"] == "salesforce" and refused["code"] == "invalid_client"
            assert run.popen.poll() is None  # backing off, not restarting logins every 5 s
            events = [e["event"] for e in run.events()]
            assert events.count("login_refused") == 1
            run.signal(signal.SIGTERM)
            assert run.wait(60) == 0
        finally:
            run.stop()
    assert _failing(url) is None  # a stopped daemon leaves no failing state behind
