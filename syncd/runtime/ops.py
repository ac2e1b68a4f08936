"""Ops HTTP server: uvicorn inside the daemon's own event loop, serving an ASGI app.

The app is the web console (`syncd.web.app.build_app`), which also answers `/healthz`,
`/readyz` and `/metrics`; without a console (`OpsServer(handlers)`) it is those three routes
alone (`syncd.web.app.ops_app`).

Why uvicorn this way: `uvicorn.Server.serve()` normally installs its own SIGINT/SIGTERM
handlers, which would fight the daemon's two-stage stop (`syncd.runtime.signals`: the first
signal drains, the second cancels). `_QuietServer` turns that off (`capture_signals` does
nothing), and the listening socket is bound here, so a busy port fails `start()` at once with
an `OSError` the service turns into a configuration error. `aclose()` asks uvicorn to exit and
waits for open requests up to `SHUTDOWN_S`.

The endpoint is off unless `ops.listen` is set. A listen value without a host (`:9108`) binds
127.0.0.1: the console, metrics and readiness describe the business, so exposing them is an
explicit choice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Awaitable, Callable, Generator, Sequence
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.types import ASGIApp

from syncd import logs

log = logs.get(__name__)

DEFAULT_HOST = "127.0.0.1"
SHUTDOWN_S = 2.0
MAX_HEADER_BYTES = 16 * 1024


@dataclass(frozen=True, slots=True)
class Check:
    """The outcome of a health or readiness check: ok, plus named reasons (shown as JSON)."""

    ok: bool
    reasons: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class OpsHandlers:
    """What the server asks the daemon: liveness, readiness and the metrics text."""

    healthz: Callable[[], Check]
    readyz: Callable[[], Awaitable[Check]]
    metrics: Callable[[], Awaitable[str]]


def parse_listen(listen: str) -> tuple[str, int]:
    """`host:port` -> (host, port); an empty host means 127.0.0.1; `[::1]:9108` works for IPv6."""
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ValueError(f"ops.listen must be host:port such as 127.0.0.1:9108, not {listen!r}")
    host = host.strip("[]") or DEFAULT_HOST
    return host, int(port)


class _QuietServer(uvicorn.Server):
    """uvicorn without its own signal handling (the daemon owns SIGTERM/SIGINT)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


class OpsServer:
    """Serve `app` (default: the three ops routes) on host:port. `await start()`, `aclose()`."""

    def __init__(
        self,
        handlers: OpsHandlers | None = None,
        *,
        host: str = DEFAULT_HOST,
        port: int = 0,
        bearer_token: str | None = None,
        app: ASGIApp | None = None,
        tls: tuple[str, str] | None = None,
        warm_up: Callable[[], Awaitable[None]] | None = None,
        trusted_proxies: Sequence[str] = (),
    ) -> None:
        if app is None:
            if handlers is None:
                raise ValueError("OpsServer needs handlers or an app")
            from syncd.web.app import ops_app

            app = ops_app(handlers, bearer_token=bearer_token)
        self._app = app
        self._host = host
        self._port = port
        self._tls = tls
        self._proxies = tuple(trusted_proxies)
        self._sock: socket.socket | None = None
        self._server: _QuietServer | None = None
        self._task: asyncio.Task[None] | None = None
        self._warm_up = warm_up
        self._warm_task: asyncio.Task[None] | None = None

    @property
    def host(self) -> str:
        return self._host

    @property
    def port(self) -> int:
        """The bound port (useful when started with port 0)."""
        if self._sock is None:
            return self._port
        return int(self._sock.getsockname()[1])

    @property
    def sockets(self) -> list[socket.socket]:
        return [] if self._sock is None else [self._sock]

    async def start(self) -> None:
        """Bind (raising `OSError` when the address is taken) and start serving."""
        family = socket.AF_INET6 if ":" in self._host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            # Inherited by accepted connections: without it a keep-alive response written in
            # two parts (headers, body) waits ~40 ms for the client's delayed ACK (Nagle).
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.bind((self._host, self._port))
            sock.listen(128)
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        self._sock = sock
        config = uvicorn.Config(
            self._app,
            log_config=None,
            access_log=False,
            lifespan="off",
            server_header=False,
            # Only a trusted proxy's X-Forwarded-For / -Proto count: then the client address
            # (sign-in throttling) and the scheme (the cookie's Secure flag) are the caller's.
            proxy_headers=bool(self._proxies),
            forwarded_allow_ips=",".join(self._proxies) if self._proxies else None,
            h11_max_incomplete_event_size=MAX_HEADER_BYTES,
            timeout_graceful_shutdown=int(SHUTDOWN_S),
            ssl_certfile=self._tls[0] if self._tls else None,
            ssl_keyfile=self._tls[1] if self._tls else None,
            http="h11",
            ws="none",
        )
        for name in ("uvicorn.error", "uvicorn.access"):
            logging.getLogger(name).setLevel(logging.WARNING)
        self._server = _QuietServer(config)
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]), name="ops-server")
        while not self._server.started and not self._task.done():
            await asyncio.sleep(0.01)
        if self._task.done():
            self._task.result()  # raises what stopped it
        log.info("ops_listening", host=self._host, port=self.port, tls=self._tls is not None)
        if self._warm_up is not None:
            self._warm_task = asyncio.create_task(self._warm(self._warm_up), name="ops-warm-up")

    @staticmethod
    async def _warm(fn: Callable[[], Awaitable[None]]) -> None:
        """Fill the app's caches (the console's hourly counts) before anyone asks."""
        try:
            await fn()
        except Exception as exc:  # a cache: the first page view fills it instead
            log.warning("ops_warm_up_failed", error=type(exc).__name__)

    async def aclose(self) -> None:
        """Stop accepting, let open requests finish (up to `SHUTDOWN_S`), then close."""
        if self._warm_task is not None:
            self._warm_task.cancel()
            with contextlib.suppress(BaseException):
                await self._warm_task
            self._warm_task = None
        server, task = self._server, self._task
        self._server, self._task = None, None
        if server is not None and task is not None:
            server.should_exit = True
            try:
                async with asyncio.timeout(SHUTDOWN_S * 2):
                    await asyncio.shield(task)
            except (TimeoutError, Exception) as exc:
                server.force_exit = True
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
                log.warning("ops_stop_forced", error=type(exc).__name__)
        if self._sock is not None:
            self._sock.close()
            self._sock = None
