"""`syncd simulate`: serve the Salesforce and Pardot simulators over real HTTP until SIGTERM.

The world comes from a seed file (`--seed FILE`, the format of `docs/interfaces.md`) or is
generated (`--generate N`: N prospects and their CRM twins, the demo's generator, the same data
for the same N). Both ports are bound before anything is served, so a busy port is one line
naming the option to change, not a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import socket
import sys
from collections.abc import Iterator
from typing import Any

import uvicorn

from syncd import logs
from syncd.errors import ConfigError
from syncd.settings import Settings
from syncd.simulators._base import Faults
from syncd.simulators.generate import generate_seed
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


class PortBusyError(Exception):
    """A port cannot be listened on; the message names the option that picks another."""


def _listen(host: str, port: int, option: str) -> socket.socket:
    """A listening socket on `host:port`, or `PortBusyError` saying which option to change."""
    try:
        family, kind, proto, _, addr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
    except OSError as exc:
        raise PortBusyError(
            f"cannot listen on {host}: {exc.strerror or exc}; check --host"
        ) from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(addr)
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        reason = exc.strerror or str(exc)
        raise PortBusyError(
            f"cannot listen on {host}:{port} ({reason.lower()}); pick a free port with "
            f"{option} (0 picks any free port)"
        ) from None
    sock.setblocking(False)
    return sock


def _seed(args: argparse.Namespace) -> dict[str, Any]:
    if (args.seed is None) == (args.generate is None):
        raise ConfigError("give either --seed FILE or --generate N (one of them)")
    if args.generate is not None:
        if args.generate < 1:
            raise ConfigError("--generate N needs N >= 1 (the number of prospects)")
        return generate_seed(args.generate)
    return load_seed(args.seed)


async def run(args: argparse.Namespace, settings: Settings | None) -> int:
    try:
        seed = _seed(args)
        world = World(
            seed,
            salesforce_faults=_faults(args, seed.get("salesforce") or {}),
            pardot_faults=_faults(args, seed.get("pardot") or {}),
            token_ttl_s=args.token_ttl_s,
        )
    except (SeedError, ValueError) as exc:
        raise ConfigError(str(exc)) from None

    try:
        sf_sock = _listen(args.host, args.salesforce_port, "--salesforce-port P")
    except PortBusyError as exc:
        print(f"syncd simulate: Salesforce simulator: {exc}", file=sys.stderr)
        return 1
    try:
        pd_sock = _listen(args.host, args.pardot_port, "--pardot-port Q")
    except PortBusyError as exc:
        sf_sock.close()
        print(f"syncd simulate: Pardot simulator: {exc}", file=sys.stderr)
        return 1
    sf = _server(world.salesforce.app, args.host, args.salesforce_port)
    pd = _server(world.pardot.app, args.host, args.pardot_port)
    loop = asyncio.get_running_loop()

    def stop() -> None:
        sf.should_exit = True
        pd.should_exit = True

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop)

    tasks = [
        asyncio.create_task(sf.serve(sockets=[sf_sock])),
        asyncio.create_task(pd.serve(sockets=[pd_sock])),
    ]
    while not (sf.started and pd.started):
        if any(t.done() for t in tasks):
            stop()
            await asyncio.gather(*tasks, return_exceptions=True)
            print("syncd simulate: could not start (is a port in use?)", file=sys.stderr)
            return 1
        await asyncio.sleep(0.02)
    host = args.host if ":" not in args.host else f"[{args.host}]"
    world.salesforce.base_url = f"http://{host}:{sf_sock.getsockname()[1]}"
    world.pardot.base_url = f"http://{host}:{pd_sock.getsockname()[1]}"
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
