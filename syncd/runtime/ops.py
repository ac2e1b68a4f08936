"""Ops HTTP endpoint: `/healthz`, `/readyz` and `/metrics` on a small asyncio server.

Why `asyncio.start_server` and not uvicorn + starlette (both are dependencies): the endpoint has
three GET routes with bodies of a few kilobytes, and it must live inside the daemon's own event
loop and shutdown sequence. uvicorn's `Server.serve()` installs its own SIGINT/SIGTERM handlers and
logging, which would fight the daemon's two-stage stop (`syncd.runtime.signals`); a hundred lines
of HTTP/1.1 (one request per connection, bounded header size, a read timeout) have no such
interplay and are easy to audit for the one security property that matters here: with
`ops.bearer_token` set, every route but `/healthz` needs `Authorization: Bearer <token>`, compared
in constant time (`hmac.compare_digest`), and the token is never echoed or logged.

The endpoint is off unless `ops.listen` is set. A listen value without a host (`:9108`) binds
127.0.0.1: metrics and readiness describe the business, so exposing them is an explicit choice.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from syncd import logs
from syncd.runtime.metrics import CONTENT_TYPE

log = logs.get(__name__)

DEFAULT_HOST = "127.0.0.1"
MAX_HEADER_BYTES = 16 * 1024
READ_TIMEOUT_S = 5.0


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


_REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    405: "Method Not Allowed",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


class OpsServer:
    """The ops endpoint. `await start()`, then `await aclose()`; `port` is the bound port."""

    def __init__(
        self,
        handlers: OpsHandlers,
        *,
        host: str = DEFAULT_HOST,
        port: int = 0,
        bearer_token: str | None = None,
    ) -> None:
        self._handlers = handlers
        self._host = host
        self._port = port
        self._token = bearer_token.encode() if bearer_token else None
        self._server: asyncio.Server | None = None

    @property
    def host(self) -> str:
        return self._host

    @property
    def port(self) -> int:
        """The bound port (useful when started with port 0)."""
        if self._server is None or not self._server.sockets:
            return self._port
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self._host, self._port)
        log.info("ops_listening", host=self._host, port=self.port, auth=self._token is not None)

    async def aclose(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), timeout=2.0)
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            status, ctype, body, extra = await self._respond(reader)
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            status, ctype, body, extra = 400, "text/plain; charset=utf-8", b"bad request\n", {}
        except ConnectionError:
            writer.close()
            return
        except Exception as exc:  # a failing check must not kill the endpoint
            log.warning("ops_handler_failed", error=str(exc))
            status, ctype, body, extra = 500, "text/plain; charset=utf-8", b"internal error\n", {}
        head = [
            f"HTTP/1.1 {status} {_REASONS.get(status, '')}",
            f"Content-Type: {ctype}",
            f"Content-Length: {len(body)}",
            "Cache-Control: no-store",
            "Connection: close",
            *(f"{k}: {v}" for k, v in extra.items()),
        ]
        with contextlib.suppress(ConnectionError):
            writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)
            await writer.drain()
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()

    async def _respond(
        self, reader: asyncio.StreamReader
    ) -> tuple[int, str, bytes, dict[str, str]]:
        raw = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=READ_TIMEOUT_S)
        if len(raw) > MAX_HEADER_BYTES:
            raise ValueError("headers too large")
        request_line, *header_lines = raw.decode("latin-1").split("\r\n")
        method, target, _version = request_line.split(" ", 2)
        headers = {}
        for line in header_lines:
            name, sep, value = line.partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        path = target.split("?", 1)[0]
        text = "text/plain; charset=utf-8"
        if method not in ("GET", "HEAD"):
            return 405, text, b"method not allowed\n", {"Allow": "GET, HEAD"}
        if path not in ("/healthz", "/readyz", "/metrics"):
            return 404, text, b"not found\n", {}
        if path != "/healthz" and not self._authorized(headers.get("authorization", "")):
            return 401, text, b"unauthorized\n", {"WWW-Authenticate": 'Bearer realm="syncd"'}
        body: bytes
        if path == "/metrics":
            status, ctype, body = 200, CONTENT_TYPE, (await self._handlers.metrics()).encode()
        else:
            if path == "/healthz":
                check = self._handlers.healthz()
            else:
                check = await self._handlers.readyz()
            status = 200 if check.ok else 503
            ctype = "application/json"
            body = json.dumps({"ok": check.ok, **check.reasons}, default=str).encode() + b"\n"
        return status, ctype, b"" if method == "HEAD" else body, {}

    def _authorized(self, header: str) -> bool:
        if self._token is None:
            return True
        scheme, _, credentials = header.partition(" ")
        # compare_digest on bytes runs in time independent of where the strings differ
        presented = credentials.strip().encode("utf-8", "surrogateescape")
        return scheme.lower() == "bearer" and hmac.compare_digest(presented, self._token)
