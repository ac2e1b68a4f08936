"""`syncd console` as an operator runs it: the real CLI in a subprocess, over a store only."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import httpx

from . import SYNCD, base_env, free_port, start_syncd, wait_until

TOKEN = "console-cli-admin-token-123456"
VIEWER = "console-cli-viewer-token-654321"


def test_console_serves_the_store_and_stops_on_sigterm(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/syncd.db"
    env = base_env(
        SYNCD_DATABASE__URL=url,
        SYNCD_OPS__BEARER_TOKEN=TOKEN,
        SYNCD_OPS__VIEWER_TOKEN=VIEWER,
    )
    subprocess.run([*SYNCD, "migrate"], env=env, cwd=tmp_path, check=True, timeout=120)
    port = free_port()
    proc = start_syncd(
        ["console", "--listen", f"127.0.0.1:{port}"], env=env, cwd=tmp_path, name="console"
    )
    try:
        base = f"http://127.0.0.1:{port}"
        line = wait_until(
            lambda: "http://" in proc.stdout() and proc.stdout(), what="the console's address"
        )
        assert f"syncd console on {base}/" in line
        assert httpx.get(f"{base}/healthz", timeout=10).json()["ok"] is True
        assert httpx.get(f"{base}/api/status", timeout=10).status_code == 401
        viewer = {"Authorization": f"Bearer {VIEWER}"}
        status = httpx.get(f"{base}/api/status", headers=viewer, timeout=10).json()
        assert status["queue"]["pending"] == 0
        assert status["schema"]["migrated"] is True
        r = httpx.post(f"{base}/api/control/pardot/pause", headers=viewer, timeout=10)
        assert r.status_code == 403
        admin = {"Authorization": f"Bearer {TOKEN}"}
        r = httpx.post(f"{base}/api/control/pardot/pause", headers=admin, timeout=10)
        assert r.json()["paused"] is True
        assert (
            "pardot" in httpx.get(f"{base}/api/status", headers=admin, timeout=10).json()["paused"]
        )
        assert httpx.get(f"{base}/metrics", headers=admin, timeout=10).status_code == 200
        proc.signal(signal.SIGTERM)
        assert proc.wait(60) == 0
        assert TOKEN not in proc.stderr() and VIEWER not in proc.stderr()
    finally:
        proc.stop()


def test_console_refuses_a_taken_port(tmp_path: Path) -> None:
    env = base_env(SYNCD_DATABASE__URL=f"sqlite+aiosqlite:///{tmp_path}/syncd.db")
    subprocess.run([*SYNCD, "migrate"], env=env, cwd=tmp_path, check=True, timeout=120)
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [*SYNCD, "console", "--listen", f"127.0.0.1:{port}"],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert done.returncode == 2
    assert "cannot listen" in done.stderr
