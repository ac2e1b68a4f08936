"""`syncd simulate` serves both simulators over real HTTP; curl sees the documented v5 shape."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
from pathlib import Path

import httpx
import pytest

from . import base_env, simulators, start_syncd


def test_simulate_serves_real_http_and_stops_on_sigterm(tmp_path: Path) -> None:
    with simulators(tmp_path) as sims:
        token = sims._auth()
        # The token answer names the instance (the simulator's own URL) and the connector user.
        assert token["instance_url"] == sims.salesforce_url
        assert token["id"].startswith(f"{sims.salesforce_url}/id/00D")
        assert token["token_type"] == "Bearer"
        assert isinstance(token["issued_at"], str)

        url = (
            f"{sims.pardot_url}/api/v5/objects/prospects"
            "?fields=id,email,userId,updatedAt&limit=3&orderBy=updatedAt%20ASC"
        )
        headers = {
            "Authorization": f"Bearer {token['access_token']}",
            "Pardot-Business-Unit-Id": sims.env["SYNCD_PARDOT__BUSINESS_UNIT_ID"],
        }
        curl = shutil.which("curl")
        if curl is not None:
            out = subprocess.run(
                [curl, "-sS", url, *(a for k, v in headers.items() for a in ("-H", f"{k}: {v}"))],
                capture_output=True,
                text=True,
                timeout=30,
                check=True,
            ).stdout
            body = json.loads(out)
        else:  # pragma: no cover - curl is on every machine this runs on
            body = httpx.get(url, headers=headers, timeout=30).json()
        assert set(body) == {"values", "nextPageToken", "nextPageUrl"}
        assert len(body["values"]) == 3
        assert set(body["values"][0]) == {"id", "email", "userId", "updatedAt"}
        assert body["nextPageToken"]
        assert body["nextPageUrl"].startswith(f"{sims.pardot_url}/api/v5/objects/prospects?")

        # The next page: only `fields` beside the token, as the real API demands.
        page2 = httpx.get(
            f"{sims.pardot_url}/api/v5/objects/prospects",
            params={"fields": "id,email,userId,updatedAt", "nextPageToken": body["nextPageToken"]},
            headers=headers,
            timeout=30,
        ).json()
        seen = {v["id"] for v in body["values"]} | {v["id"] for v in page2["values"]}
        assert len(seen) == 6

        # Without the business unit header: the v5 error body.
        bad = httpx.get(url, headers={"Authorization": headers["Authorization"]}, timeout=30)
        assert bad.status_code == 400
        assert bad.json()["code"] == 181

        # Counters over HTTP.
        counters = httpx.get(f"{sims.pardot_url}/__sim__/counters", timeout=30).json()
        assert counters["total"] >= 3

        sims.proc.signal(signal.SIGTERM)
        assert sims.proc.wait(30) == 0


def test_simulate_rejects_a_bad_seed(tmp_path: Path) -> None:
    bad = tmp_path / "seed.json"
    bad.write_text('{"salesforce": {}, "pardot": {"prospects": [{"id": "x"}]}}')

    proc = start_syncd(["simulate", "--seed", str(bad)], env=base_env(), cwd=tmp_path, name="sim")
    assert proc.wait(60) == 2
    assert "seed" in proc.stderr().lower()


@pytest.mark.parametrize("content", ["not json", "[1, 2]"], ids=["not-json", "wrong-shape"])
def test_simulate_names_the_seed_problem(tmp_path: Path, content: str) -> None:

    seed = tmp_path / "seed.json"
    seed.write_text(content)
    proc = start_syncd(["simulate", "--seed", str(seed)], env=base_env(), cwd=tmp_path, name="sim")
    assert proc.wait(60) == 2
    assert str(seed) in proc.stderr()
