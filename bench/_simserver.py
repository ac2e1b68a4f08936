"""The benchmark's simulator process: both simulators over real HTTP, plus bench-only hooks.

Run as `python -m bench._simserver --seed FILE --latency-ms 20`; it prints one JSON line with the
base URLs and the SYNCD_* settings that point a daemon at it, then serves until SIGTERM.

It is `syncd simulate` with two additions the benchmarks need, under `/__bench__/` on the
Salesforce port (not counted, no latency, not under Pardot's concurrency gate):

- `POST /__bench__/edit` `{"side": "pardot"|"salesforce", "sobject": "Lead", "id": ..., "fields":
  {...}}` applies an edit through the simulator's own request handler (the same code an API call
  runs, with a token of a sales rep, so the record's change stamps move as on the real API),
  without spending the daemon's Pardot connections or showing up in the API call counters;
- every request the DAEMON sends is scanned for edit markers (`bench-edit-<n>`); the first time a
  marker reaches the other side in a write, the time is kept: `GET /__bench__/seen` returns
  `{marker: unix time}`. This is "the moment the other side shows the value".
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import signal
import sys
import time
from collections.abc import Iterator
from typing import Any

import httpx
import uvicorn

from syncd.simulators._base import ASGIApp, Faults, Receive, Scope, Send
from syncd.simulators.world import World, load_seed

MARKER = re.compile(rb"bench-edit-\d+")
BENCH_PREFIX = "/__bench__"
API_VERSION = "v60.0"


class _Server(uvicorn.Server):
    """A uvicorn server that leaves signal handling to us (two servers share one process)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class Hooks:
    """The bench routes and the write observer around one world."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.seen: dict[str, float] = {}
        sf_users = [u for u in world.salesforce.tables["User"].rows.values()]
        rep = next(
            (u["Id"] for u in sf_users if not str(u.get("Username", "")).startswith("connector")),
            sf_users[0]["Id"],
        )
        self.token = world.tokens.issue(rep, world.salesforce.org_id).token
        self._pardot = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=world.pardot._asgi), base_url="http://pardot.local"
        )
        self._salesforce = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=world.salesforce._asgi),
            base_url="http://salesforce.local",
        )

    def observe(self, app: ASGIApp) -> ASGIApp:
        """Wrap a simulator app: after a write is answered, note the markers its body carried."""

        async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "http" or scope["method"] == "GET":
                await app(scope, receive, send)
                return
            chunks: list[bytes] = []

            async def tap() -> Any:
                message = await receive()
                chunks.append(message.get("body", b""))
                return message

            await app(scope, tap, send)
            body = b"".join(chunks)
            if b"bench-edit-" in body:
                now = time.time()
                for m in MARKER.findall(body):
                    self.seen.setdefault(m.decode(), now)

        return wrapped

    def with_routes(self, app: ASGIApp) -> ASGIApp:
        async def routed(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] == "http" and scope["path"].startswith(BENCH_PREFIX):
                body = b""
                while True:
                    message = await receive()
                    body += message.get("body", b"")
                    if not message.get("more_body"):
                        break
                status, answer = await self.route(scope, body)
                data = json.dumps(answer).encode()
                await send(
                    {
                        "type": "http.response.start",
                        "status": status,
                        "headers": [(b"content-type", b"application/json")],
                    }
                )
                await send({"type": "http.response.body", "body": data})
                return
            await app(scope, receive, send)

        return routed

    async def route(self, scope: Scope, body: bytes) -> tuple[int, Any]:
        path = scope["path"][len(BENCH_PREFIX) :]
        if path == "/seen":
            return 200, self.seen
        if path == "/edit":
            return await self.edit(json.loads(body))
        return 404, {"error": "unknown bench route"}

    async def edit(self, req: dict[str, Any]) -> tuple[int, Any]:
        auth = {"Authorization": f"Bearer {self.token}"}
        if req["side"] == "pardot":
            r = await self._pardot.patch(
                f"/api/v5/objects/prospects/{req['id']}",
                params={"fields": "id,updatedAt"},
                json=req["fields"],
                headers={**auth, "Pardot-Business-Unit-Id": self.world.pardot.business_unit_id},
            )
        else:
            r = await self._salesforce.patch(
                f"/services/data/{API_VERSION}/sobjects/{req['sobject']}/{req['id']}",
                json=req["fields"],
                headers=auth,
            )
        return 200, {"status": r.status_code, "at": time.time(), "body": r.text[:500]}


def _port(server: uvicorn.Server) -> int:
    for srv in server.servers:
        for sock in srv.sockets:
            return int(sock.getsockname()[1])
    raise RuntimeError("server has no socket")


async def serve(seed_path: str, latency_ms: float, host: str) -> int:
    seed = load_seed(seed_path)
    world = World(
        seed,
        salesforce_faults=Faults(latency_ms=latency_ms),
        pardot_faults=Faults(latency_ms=latency_ms),
    )
    hooks = Hooks(world)
    sf_app = hooks.with_routes(hooks.observe(world.salesforce.app))
    pd_app = hooks.observe(world.pardot.app)

    def server(app: ASGIApp) -> _Server:
        config = uvicorn.Config(
            app,
            host=host,
            port=0,
            log_level="warning",
            access_log=False,
            lifespan="off",
            backlog=2048,
        )
        return _Server(config)

    sf, pd = server(sf_app), server(pd_app)
    loop = asyncio.get_running_loop()

    def stop() -> None:
        sf.should_exit = True
        pd.should_exit = True

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop)
    tasks = [asyncio.create_task(sf.serve()), asyncio.create_task(pd.serve())]
    while not (sf.started and pd.started):
        if any(t.done() for t in tasks):
            stop()
            await asyncio.gather(*tasks, return_exceptions=True)
            return 1
        await asyncio.sleep(0.02)
    world.salesforce.base_url = f"http://{host}:{_port(sf)}"
    world.pardot.base_url = f"http://{host}:{_port(pd)}"
    print(
        json.dumps(
            {
                "salesforce": world.salesforce.base_url,
                "pardot": world.pardot.base_url,
                "env": world.settings_env(),
            }
        ),
        flush=True,
    )
    await asyncio.gather(*tasks)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench._simserver")
    parser.add_argument("--seed", required=True)
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args(argv)
    return asyncio.run(serve(args.seed, args.latency_ms, args.host))


if __name__ == "__main__":
    sys.exit(main())
