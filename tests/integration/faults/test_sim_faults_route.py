"""`/__sim__/faults`: read and change a simulator's injected faults while it runs.

The soak turns every fault off through this route before it checks the result over the APIs.
"""

from __future__ import annotations

import httpx

from syncd.simulators._base import Faults
from syncd.simulators.world import World, example_seed_path, load_seed


async def test_faults_route_turns_faults_on_and_off_on_both_simulators() -> None:
    world = World(
        load_seed(example_seed_path()),
        salesforce_faults=Faults(error_rate=1.0, seed=1),
        pardot_faults=Faults(rate_limit_rate=1.0, seed=1),
    )
    t = world.transports()
    async with (
        httpx.AsyncClient(transport=t.salesforce, base_url="http://sf") as sf,
        httpx.AsyncClient(transport=t.pardot, base_url="http://pd") as pd,
    ):
        assert (await sf.get("/services/data/v60.0/limits")).status_code in (500, 503)
        assert (await pd.get("/api/v5/objects/prospects?fields=id")).status_code in (400, 429)
        assert (await sf.get("/__sim__/faults")).json()["error_rate"] == 1.0

        off = {"error_rate": 0, "rate_limit_rate": 0, "lost_response_rate": 0}
        for client in (sf, pd):
            r = await client.post("/__sim__/faults", json=off)
            assert r.status_code == 200 and r.json()["error_rate"] == 0.0
        # no fault any more: the answers are the APIs' own (401: no token was sent)
        assert (await sf.get("/services/data/v60.0/limits")).status_code == 401
        r = await pd.get("/api/v5/objects/prospects?fields=id")
        assert r.status_code == 401 and r.json()["code"] == 49

        bad = await sf.post("/__sim__/faults", json={"error_rat": 0.5})
        assert bad.status_code == 400 and "error_rate" in bad.text
        assert (await pd.post("/__sim__/faults", json={"error_rate": 2})).status_code == 400
        assert (
            world.salesforce.counters.faults["http_500"]
            + world.salesforce.counters.faults["http_503"]
            == 1
        )
