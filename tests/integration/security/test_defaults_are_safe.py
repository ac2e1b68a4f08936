"""Safe by default, seen from outside the process: ops endpoint, bearer token, file mode, TLS.

- the ops endpoint given only a port (`:PORT`) listens on 127.0.0.1, not on every interface;
  with `ops.bearer_token` everything but `/healthz` needs `Authorization: Bearer <token>`;
- the SQLite store and its side files are created mode 0600 even under umask 0;
- TLS verification cannot be turned off quietly: `verify_tls = false` prints a loud warning on
  stderr and logs `tls_verification_disabled`; with the default there is no such warning.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path

import httpx
import psutil
from acceptance import SYNCD, free_port, simulators, wait_until

TOKEN = "ops-bearer-token-0123456789"
WARNING = "WARNING: TLS certificate verification is OFF"


def _listening(pid: int, port: int) -> list[str]:
    proc = psutil.Process(pid)
    return [
        c.laddr.ip
        for c in proc.net_connections(kind="inet")
        if c.status == psutil.CONN_LISTEN and c.laddr.port == port
    ]


def test_run_binds_loopback_requires_the_token_and_creates_a_private_store(
    tmp_path: Path,
) -> None:
    port = free_port()
    db = tmp_path / "store" / "syncd.db"
    db.parent.mkdir()
    with simulators(tmp_path) as sims:
        env = sims.run_env(
            f"sqlite+aiosqlite:///{db}",
            SYNCD_OPS__LISTEN=f":{port}",
            SYNCD_OPS__BEARER_TOKEN=TOKEN,
        )
        err = (tmp_path / "run.err").open("wb")
        run = subprocess.Popen(
            [*SYNCD, "run"],
            env=env,
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=err,
            umask=0,  # the most permissive umask: the store must still be private
        )
        try:
            base = f"http://127.0.0.1:{port}"

            def up() -> bool:
                try:
                    return httpx.get(f"{base}/healthz", timeout=2).status_code == 200
                except httpx.HTTPError:
                    return False

            wait_until(up, timeout_s=60, what="the ops endpoint")
            assert _listening(run.pid, port) == ["127.0.0.1"]

            assert httpx.get(f"{base}/metrics", timeout=5).status_code == 401
            wrong = {"Authorization": "Bearer not-the-token"}
            assert httpx.get(f"{base}/metrics", headers=wrong, timeout=5).status_code == 401
            assert httpx.get(f"{base}/readyz", timeout=5).status_code == 401
            right = {"Authorization": f"Bearer {TOKEN}"}
            assert httpx.get(f"{base}/metrics", headers=right, timeout=5).status_code == 200

            files = sorted(db.parent.glob("syncd.db*"))
            assert db in files
            for f in files:
                assert stat.S_IMODE(f.stat().st_mode) == 0o600, f"{f.name} is not private"
        finally:
            run.terminate()
            run.wait(60)
            err.close()
    stderr = (tmp_path / "run.err").read_text()
    assert WARNING not in stderr and "tls_verification_disabled" not in stderr
    assert TOKEN not in stderr


def test_turning_tls_verification_off_is_loud(tmp_path: Path) -> None:
    with simulators(tmp_path) as sims:
        env = sims.run_env(
            f"sqlite+aiosqlite:///{tmp_path}/syncd.db", SYNCD_PARDOT__VERIFY_TLS="false"
        )
        done = subprocess.run(
            [*SYNCD, "once"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120
        )
    assert done.returncode == 0, done.stderr
    assert WARNING in done.stderr
    assert "pardot.verify_tls" in done.stderr.split(WARNING, 1)[1].splitlines()[0]
    events = [json.loads(ln) for ln in done.stderr.splitlines() if ln.startswith("{")]
    (warned,) = [e for e in events if e["event"] == "tls_verification_disabled"]
    assert warned["level"] == "warning" and warned["settings"] == ["pardot.verify_tls"]
    assert os.environ.get("SYNCD_PARDOT__VERIFY_TLS") is None  # the test's own env untouched
