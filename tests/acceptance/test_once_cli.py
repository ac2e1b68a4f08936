"""`syncd once` in a subprocess against `syncd simulate` over real HTTP.

The example seed is synced, a second `syncd once` makes no write at all (read from the
simulators' own request counters), and `--dry-run` writes nothing either.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import httpx

from . import SYNCD, Simulators, simulators


def _counters(sims: Simulators) -> tuple[dict[str, Any], dict[str, Any]]:
    sf = httpx.get(f"{sims.salesforce_url}/__sim__/counters", timeout=30).json()
    pd = httpx.get(f"{sims.pardot_url}/__sim__/counters", timeout=30).json()
    return sf, pd


def _api_writes(sims: Simulators) -> tuple[int, int]:
    """Writes to each API, not counting logins (the token endpoint is a POST)."""
    sf, pd = _counters(sims)
    logins = sum(n for k, n in sf["requests"].items() if k.startswith("POST /services/oauth2"))
    return sf["writes"] - logins, pd["writes"]


def _once(sims: Simulators, tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = sims.run_env(f"sqlite+aiosqlite:///{tmp}/syncd.db")
    return subprocess.run(
        [*SYNCD, "once", *args],
        env=env,
        cwd=tmp,
        capture_output=True,
        text=True,
        timeout=180,
        stdin=subprocess.DEVNULL,
    )


def test_once_syncs_the_example_and_a_second_run_writes_nothing(tmp_path: Path) -> None:
    with simulators(tmp_path) as sims:
        dry = _once(sims, tmp_path, "--dry-run")
        assert dry.returncode == 0, dry.stderr
        assert "prospect 1003: create_lead" in dry.stdout
        assert "writes planned (none made)" in dry.stdout
        assert _api_writes(sims) == (0, 0)

        first = _once(sims, tmp_path)
        assert first.returncode == 0, first.stderr
        lines = first.stdout.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("syncd once: ")
        assert "3 leads created" in lines[0]
        assert "0 in the error queue" in lines[0]

        # What a Salesforce user sees: one new Lead per assigned, unmatched prospect.
        lead = "SELECT Id, OwnerId, LastName, Company FROM Lead WHERE Email = "
        nia = sims.soql(lead + "'new.lead@startup.example'")
        assert len(nia) == 1 and nia[0]["OwnerId"] == "005000000000002AAA"
        kim = sims.soql(lead + "'no.company@startup.example'")
        assert len(kim) == 1
        assert kim[0]["LastName"] == "[[unknown]]" and kim[0]["Company"] == "[[unknown]]"
        assert kim[0]["OwnerId"] == "005000000000001AAA"  # assignee has no CRM user
        assert sims.soql("SELECT Id FROM Lead WHERE Email = 'unassigned@prospect.example'") == []
        tasks = sims.soql("SELECT Id, Subject FROM Task WHERE TaskSubtype = 'Email'")
        assert sorted(t["Subject"] for t in tasks) == [
            "Email: Webinar invitation",
            "Email: Welcome to Acme",
            "Email: Your trial starts today",
        ]
        # Ada is linked to her Contact (Contact beats Lead): the link lives in syncd's store
        # (`syncd history`); Pardot's read-only link fields are never written (RULES.md 2a).
        ada = sims.prospect(1001, "id,salesforceId,salesforceContactId")
        assert not ada.get("salesforceId") and not ada.get("salesforceContactId")
        history = subprocess.run(
            [*SYNCD, "history", "1001", "--json"],
            env=sims.run_env(f"sqlite+aiosqlite:///{tmp_path}/syncd.db"),
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
            stdin=subprocess.DEVNULL,
        )
        assert history.returncode == 0, history.stderr
        links = [ln for ln in json.loads(history.stdout) if ln["action"] == "link"]
        assert links and links[0]["crm_id"] == "003000000000001AAA"

        writes_after_first = _api_writes(sims)
        assert writes_after_first[0] > 0 and writes_after_first[1] > 0
        for _ in range(2):
            again = _once(sims, tmp_path)
            assert again.returncode == 0, again.stderr
            assert "0 leads created" in again.stdout
        assert _api_writes(sims) == writes_after_first
