"""Rotated refresh tokens are stored, not lost: the next run logs in with the rotated one.

The simulated Salesforce rotates refresh tokens (`oauth.rotate_refresh_tokens`): each refresh
answers a new refresh token and revokes the one used, as a connected app with rotation does. The
configured token works exactly once; a second run that re-used it would be refused.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from acceptance import EXAMPLE_SEED, SYNCD, read_store, simulators

REFRESH = "5Aep-initial-refresh-token-123456"
KEY = "salesforce.refresh_token"


def _once(env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*SYNCD, "once"], env=env, cwd=cwd, capture_output=True, text=True, timeout=120
    )


def test_second_run_uses_the_stored_rotated_refresh_token(tmp_path: Path) -> None:
    seed: dict[str, Any] = json.loads(EXAMPLE_SEED.read_text())
    seed["salesforce"]["oauth"].update(refresh_token=REFRESH, rotate_refresh_tokens=True)
    seed_file = tmp_path / "seed.json"
    seed_file.write_text(json.dumps(seed))
    url = f"sqlite+aiosqlite:///{tmp_path}/syncd.db"

    def stored() -> Any:
        return read_store(url, lambda store, tx: store.kv.get(tx, KEY))

    with simulators(tmp_path, seed=seed_file) as sims:
        env = sims.run_env(url)
        env.update(
            SYNCD_SALESFORCE__AUTH_FLOW="refresh_token",
            SYNCD_SALESFORCE__REFRESH_TOKEN=REFRESH,
        )
        env.pop("SYNCD_SALESFORCE__CLIENT_SECRET")  # refresh needs no secret here

        first = _once(env, tmp_path)
        assert first.returncode == 0, first.stderr
        rotated = stored()
        assert isinstance(rotated, str) and rotated not in ("", REFRESH)

        # the configured token is spent: only the stored one can log in now
        second = _once(env, tmp_path)
        assert second.returncode == 0, second.stderr
        again = stored()
        assert isinstance(again, str) and again not in (REFRESH, rotated)

        # and with the store gone, the spent configured token is refused, with a clear message
        (tmp_path / "fresh").mkdir()
        env["SYNCD_DATABASE__URL"] = f"sqlite+aiosqlite:///{tmp_path}/fresh/syncd.db"
        third = _once(env, tmp_path / "fresh")
        assert third.returncode == 2, third.stderr
        assert "refresh_token" in third.stderr and "Traceback" not in third.stderr
