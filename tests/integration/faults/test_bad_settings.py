"""Invalid settings at the command line: one clear line naming what to fix, never a traceback.

Missing credentials, malformed URLs and mistyped `SYNCD_*` variables exit 2 (configuration);
an unreachable database exits 1 naming `database.url`; unreachable APIs: `syncd once` exits 1
naming the host setting, and `syncd run` keeps running (it retries every poll) until it is stopped.
(Setting validation itself is unit-tested in tests/unit/test_settings.py.)
"""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import pytest
from acceptance import SYNCD, base_env, start_syncd, wait_until

NOWHERE = "http://127.0.0.1:9"  # the discard port: nothing listens
GOOD = {
    "SYNCD_SALESFORCE__CLIENT_ID": "client-id",
    "SYNCD_SALESFORCE__CLIENT_SECRET": "client-secret-value",
    "SYNCD_SALESFORCE__LOGIN_URL": NOWHERE,
    "SYNCD_PARDOT__BASE_URL": NOWHERE,
    "SYNCD_PARDOT__BUSINESS_UNIT_ID": "0Uv000000000001AAA",
    "SYNCD_LOG__FORMAT": "json",
}


def _once(tmp: Path, **env: str) -> subprocess.CompletedProcess[str]:
    settings = {**GOOD, "SYNCD_DATABASE__URL": f"sqlite+aiosqlite:///{tmp}/syncd.db", **env}
    return subprocess.run(
        [*SYNCD, "once"],
        env=base_env(**{k: v for k, v in settings.items() if v}),
        cwd=tmp,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


PG_NOWHERE = "postgresql+asyncpg://postgres@127.0.0.1:9/syncd"
SQLITE_NO_DIR = "sqlite+aiosqlite:////nonexistent/dir/syncd.db"
CASES = {
    "no-client-id": ({"SYNCD_SALESFORCE__CLIENT_ID": ""}, 2, ["SYNCD_SALESFORCE__CLIENT_ID"]),
    "no-business-unit": ({"SYNCD_PARDOT__BUSINESS_UNIT_ID": ""}, 2, ["pardot.business_unit_id"]),
    "url-no-scheme": ({"SYNCD_SALESFORCE__LOGIN_URL": "sf.example"}, 2, ["salesforce.login_url"]),
    "url-wrong-scheme": ({"SYNCD_PARDOT__BASE_URL": "ftp://pi.example"}, 2, ["pardot.base_url"]),
    "pg-unreachable": ({"SYNCD_DATABASE__URL": PG_NOWHERE}, 1, ["database.url"]),
    "sqlite-no-dir": ({"SYNCD_DATABASE__URL": SQLITE_NO_DIR}, 1, ["database.url"]),
    "env-typo-db": ({"SYNCD_DATABASE_URL": "x"}, 2, ["did you mean SYNCD_DATABASE__URL?"]),
    "env-typo-section": (
        {"SYNCD_SYNK__POLL_INTERVAL_S": "3"},
        2,
        ["SYNCD_SYNK__POLL_INTERVAL_S", "did you mean SYNCD_SYNC__POLL_INTERVAL_S?"],
    ),
}


@pytest.mark.parametrize(("env", "code", "names"), list(CASES.values()), ids=list(CASES))
def test_bad_settings_are_one_clear_line(
    tmp_path: Path, env: dict[str, str], code: int, names: list[str]
) -> None:
    done = _once(tmp_path, **env)
    assert done.returncode == code, done.stderr
    first = done.stderr.strip().splitlines()[-1 if code == 1 else 0]
    assert first.startswith("syncd once: "), done.stderr
    for name in names:
        assert name in done.stderr
    assert "Traceback" not in done.stderr


def test_unreachable_apis_once_exits_1_naming_the_hosts_and_run_keeps_going(
    tmp_path: Path,
) -> None:
    done = _once(tmp_path)
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    out = done.stdout + done.stderr
    assert "127.0.0.1:9" in out and "salesforce.login_url" in out
    # it ends in one short line naming the setting and the host, not every feed blaming Pardot
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("syncd once: ") and len(last) < 300, last
    assert "salesforce.login_url" in last and "127.0.0.1:9" in last
    assert "pardot" not in last.lower()

    env = base_env(**GOOD, SYNCD_DATABASE__URL=f"sqlite+aiosqlite:///{tmp_path}/syncd.db")
    env.update(SYNCD_SYNC__POLL_INTERVAL_S="1", SYNCD_SYNC__SHUTDOWN_GRACE_S="5")
    run = start_syncd(["run"], env=env, cwd=tmp_path, name="run")
    try:
        wait_until(
            lambda: run.stderr().count("salesforce_token_endpoint_unreachable") >= 5,
            what="login attempts retried",
        )
        assert run.popen.poll() is None, "syncd run must keep running while the APIs are down"
        run.signal(signal.SIGTERM)
        assert run.wait(60) == 0
    finally:
        run.stop()
    assert "Traceback" not in run.stderr()
