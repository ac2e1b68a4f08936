"""`syncd simulate`: serve the Salesforce and Pardot simulators over real HTTP until SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections.abc import Iterator
from typing import Any

import uvicorn

from syncd import logs
from syncd.errors import ConfigError
from syncd.settings import Settings
from syncd.simulators._base import Faults
from syncd.simulators.world import SeedError, World, load_seed

log = logs.get(__name__)


class _Server(uvicorn.Server):
    """A uvicorn server that leaves signal handling to us (two servers share one process)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _faults(args: argparse.Namespace, seed_section: dict[str, Any]) -> Faults:
    if args.fault_rate or args.latency_ms:
        if not 0 <= args.fault_rate <= 1:
            raise ConfigError("--fault-rate must be between 0 and 1")
        return Faults.from_rate(args.fault_rate, latency_ms=args.latency_ms)
    return Faults.from_seed(seed_section.get("faults"))


def _server(app: Any, host: str, port: int) -> _Server:
    config = uvicorn.Config(
        app, host=host, port=port, log_level="warning", access_log=False, lifespan="off"
    )
    return _Server(config)


def _bound_port(server: uvicorn.Server) -> int:
    for srv in server.servers:
        for sock in srv.sockets:
            return int(sock.getsockname()[1])
    raise RuntimeError("server has no socket")


async def run(args: argparse.Namespace, settings: Settings | None) -> int:
    try:
        seed = load_seed(args.seed)
        world = World(
            seed,
            salesforce_faults=_faults(args, seed.get("salesforce") or {}),
            pardot_faults=_faults(args, seed.get("pardot") or {}),
            token_ttl_s=args.token_ttl_s,
        )
    except (SeedError, ValueError) as exc:
        raise ConfigError(str(exc)) from None

    sf = _server(world.salesforce.app, args.host, args.salesforce_port)
    pd = _server(world.pardot.app, args.host, args.pardot_port)
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
            print("syncd simulate: could not start (is a port in use?)", file=sys.stderr)
            return 1
        await asyncio.sleep(0.02)
    host = args.host if ":" not in args.host else f"[{args.host}]"
    world.salesforce.base_url = f"http://{host}:{_bound_port(sf)}"
    world.pardot.base_url = f"http://{host}:{_bound_port(pd)}"
    print(f"salesforce: {world.salesforce.base_url}", flush=True)
    print(f"pardot: {world.pardot.base_url}", flush=True)
    for key, value in sorted(world.settings_env().items()):
        print(f"  {key}={value}", flush=True)
    log.info(
        "simulators_started",
        salesforce=world.salesforce.base_url,
        pardot=world.pardot.base_url,
    )
    await asyncio.gather(*tasks)
    log.info(
        "simulators_stopped",
        salesforce_requests=world.salesforce.counters.total,
        pardot_requests=world.pardot.counters.total,
    )
    return 0
