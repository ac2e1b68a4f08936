"""Pardot writes two ways: one PATCH a prospect (5 at a time) against the Import API.

The ceiling the issue names ("Pardot's 5 connections with no batch update") measured directly,
with syncd's own clients: the same N prospect updates (a new `jobTitle` each) sent by
`PardotClient.update_prospect` with Pardot's 5 concurrent connections, then by
`PardotImports.upsert` (CSV batches by `matchId`, submit, poll, read the errors), against the
simulator process over real HTTP with the bench's added latency. Counted: wall time, Pardot
calls (by the simulator), and rows applied.

Caveat, stated beside the figures: the simulator processes an import on the second status read
(`import_processing_polls` = 1) and the bench polls every `poll_interval_s`; the real Import API
is asynchronous and takes "seconds to minutes" (v4 import doc), so the import figure is its
call cost plus the bench's polling, not Pardot's processing time.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench._harness import Simulators, api_calls
from bench.worlds import make_world
from syncd.clients.pardot import PardotClient
from syncd.clients.pardot_import import ImportRow, PardotImports


class _ClientCredentials:
    """A TokenSource: one client-credentials token from the Salesforce simulator."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.current: str | None = None

    async def token(self) -> str:
        if self.current is None:
            async with httpx.AsyncClient(timeout=30) as http:
                r = await http.post(
                    f"{self.env['SYNCD_SALESFORCE__LOGIN_URL']}/services/oauth2/token",
                    data={
                        "grant_type": "client_credentials",
                        "client_id": self.env["SYNCD_SALESFORCE__CLIENT_ID"],
                        "client_secret": self.env["SYNCD_SALESFORCE__CLIENT_SECRET"],
                    },
                )
                r.raise_for_status()
                self.current = str(r.json()["access_token"])
        return self.current

    async def refresh(self, stale: str) -> str:
        if self.current == stale:
            self.current = None
        return await self.token()


async def _both(
    sims: Simulators, ids: list[int], *, poll_interval_s: float
) -> dict[str, dict[str, Any]]:
    env = sims.env
    client = PardotClient(
        base_url=env["SYNCD_PARDOT__BASE_URL"],
        business_unit_id=env["SYNCD_PARDOT__BUSINESS_UNIT_ID"],
        tokens=_ClientCredentials(env),
        max_concurrency=5,
    )
    out: dict[str, dict[str, Any]] = {}
    async with client:
        await client.get_prospect(ids[0], ["id"])  # the token, and a warm connection pool

        before = sims.counters()
        started = time.monotonic()
        await asyncio.gather(
            *(client.update_prospect(pid, {"jobTitle": f"patched-{pid}"}, ()) for pid in ids)
        )
        wall = time.monotonic() - started
        calls = api_calls(before, sims.counters())
        out["patch"] = {"wall_s": round(wall, 2), "pardot_calls": calls["pardot"]}
        out["patch"]["refused_66"] = calls["pardot_refused"]
        out["patch"]["rows_applied"] = len(ids)

        rows = [ImportRow({"jobTitle": f"imported-{pid}"}, match_id=pid) for pid in ids]
        before = sims.counters()
        started = time.monotonic()
        result = await PardotImports(client).upsert(
            rows, timeout_s=600, poll_interval_s=poll_interval_s
        )
        wall = time.monotonic() - started
        calls = api_calls(before, sims.counters())
        out["import"] = {
            "wall_s": round(wall, 2),
            "pardot_calls": calls["pardot"],
            "refused_66": calls["pardot_refused"],
            "rows_applied": result.updated + result.created,
            "row_errors": len(result.errors),
            "imports": len(result.import_ids),
        }
    return out


def run_pardot_writes(
    prospects: int, *, latency_ms: float = 20.0, poll_interval_s: float = 1.0
) -> dict[str, Any]:
    """Write `prospects` prospects both ways; the figures of each."""
    seed = make_world(prospects, "today")
    ids = [int(p["id"]) for p in seed["pardot"]["prospects"]]
    print(f"pardot writes {prospects:,}: PATCH, then Import API", file=sys.stderr, flush=True)
    with (
        tempfile.TemporaryDirectory(prefix="syncd-bench-") as tmp,
        Simulators(seed, latency_ms=latency_ms, workdir=Path(tmp)) as sims,
    ):
        del seed
        ways = asyncio.run(_both(sims, ids, poll_interval_s=poll_interval_s))
    row = {
        "prospects": prospects,
        "latency_ms": latency_ms,
        "poll_interval_s": poll_interval_s,
        **{f"{way}_{k}": v for way, figures in ways.items() for k, v in figures.items()},
    }
    row["patch_per_s"] = round(prospects / max(row["patch_wall_s"], 1e-9), 1)
    row["import_per_s"] = round(prospects / max(row["import_wall_s"], 1e-9), 1)
    print(f"pardot writes: {row}", file=sys.stderr, flush=True)
    return row


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    print(run_pardot_writes(n))
