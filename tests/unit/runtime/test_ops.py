"""The ops HTTP endpoint (uvicorn in the test's loop) over a real socket: routes, status codes,
bearer auth, bind defaults."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest

from syncd.runtime.metrics import CONTENT_TYPE, SyncdMetrics
from syncd.runtime.ops import DEFAULT_HOST, Check, OpsHandlers, OpsServer, parse_listen

TOKEN = "s3cret-ops-token-value"


class _State:
    def __init__(self) -> None:
        self.alive = True
        self.ready = Check(False, {"store": "not migrated"})
        self.metrics = SyncdMetrics()

    def handlers(self) -> OpsHandlers:
        async def readyz() -> Check:
            return self.ready

        async def metrics() -> str:
            return self.metrics.render()

        return OpsHandlers(
            healthz=lambda: Check(self.alive, {"loop": "ok" if self.alive else "stalled"}),
            readyz=readyz,
            metrics=metrics,
        )


async def _serve(state: _State, token: str | None) -> AsyncIterator[httpx.AsyncClient]:
    server = OpsServer(state.handlers(), host="127.0.0.1", port=0, bearer_token=token)
    await server.start()
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as client:
            yield client
    finally:
        await server.aclose()


@pytest.fixture
def state() -> _State:
    return _State()


@pytest.fixture
async def open_client(state: _State) -> AsyncIterator[httpx.AsyncClient]:
    async for client in _serve(state, None):
        yield client


@pytest.fixture
async def authed_client(state: _State) -> AsyncIterator[httpx.AsyncClient]:
    async for client in _serve(state, TOKEN):
        yield client


async def test_healthz_follows_liveness(state: _State, open_client: httpx.AsyncClient) -> None:
    r = await open_client.get("/healthz")
    assert r.status_code == 200
    assert r.json() == {"ok": True, "loop": "ok"}
    state.alive = False
    r = await open_client.get("/healthz")
    assert r.status_code == 503
    assert r.json()["loop"] == "stalled"


async def test_readyz_says_why_not_ready(state: _State, open_client: httpx.AsyncClient) -> None:
    r = await open_client.get("/readyz")
    assert r.status_code == 503
    assert r.json() == {"ok": False, "store": "not migrated"}
    state.ready = Check(True, {"store": "ok"})
    assert (await open_client.get("/readyz")).status_code == 200


async def test_metrics_content_type_and_body(state: _State, open_client: httpx.AsyncClient) -> None:
    state.metrics.items_processed.inc(3)
    r = await open_client.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"] == CONTENT_TYPE
    assert "syncd_items_processed_total 3\n" in r.text


async def test_unknown_route_and_method(open_client: httpx.AsyncClient) -> None:
    assert (await open_client.get("/nope")).status_code == 404
    r = await open_client.post("/metrics", content=b"x")
    assert r.status_code == 405
    assert {m.strip() for m in r.headers["allow"].split(",")} == {"GET", "HEAD"}
    head = await open_client.head("/healthz")
    assert head.status_code == 200
    assert head.content == b""


@pytest.mark.parametrize("path", ["/readyz", "/metrics"])
async def test_bearer_token_guards_everything_but_healthz(
    state: _State, authed_client: httpx.AsyncClient, path: str
) -> None:
    state.ready = Check(True)
    assert (await authed_client.get("/healthz")).status_code == 200
    for header in (None, "Bearer wrong", f"Basic {TOKEN}", f"Bearer {TOKEN}x", "Bearer"):
        headers = {"Authorization": header} if header else {}
        r = await authed_client.get(path, headers=headers)
        assert r.status_code == 401, header
        assert r.headers["www-authenticate"].startswith("Bearer")
        assert TOKEN not in r.text
    r = await authed_client.get(path, headers={"Authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 200
    assert TOKEN not in r.text


async def test_garbage_request_gets_400(state: _State) -> None:
    server = OpsServer(state.handlers(), port=0)
    await server.start()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"NONSENSE\r\n\r\n")
        await writer.drain()
        reply = await reader.read()
        writer.close()
        assert reply.startswith(b"HTTP/1.1 400 ")
        # and the server still answers afterwards
        async with httpx.AsyncClient() as client:
            assert (await client.get(f"http://127.0.0.1:{server.port}/healthz")).status_code == 200
    finally:
        await server.aclose()


async def test_a_failing_check_is_a_500_not_a_dead_endpoint() -> None:
    async def broken() -> Check:
        raise RuntimeError("store exploded")

    async def metrics() -> str:
        return ""

    server = OpsServer(OpsHandlers(lambda: Check(True), broken, metrics), port=0)
    await server.start()
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as client:
            assert (await client.get("/readyz")).status_code == 500
            assert (await client.get("/healthz")).status_code == 200
    finally:
        await server.aclose()


def test_listen_without_host_binds_loopback() -> None:
    assert DEFAULT_HOST == "127.0.0.1"
    assert parse_listen(":9108") == ("127.0.0.1", 9108)
    assert parse_listen("0.0.0.0:9108") == ("0.0.0.0", 9108)
    assert parse_listen("[::1]:9108") == ("::1", 9108)
    with pytest.raises(ValueError, match="host:port"):
        parse_listen("9108")


async def test_default_server_binds_loopback(state: _State) -> None:
    server = OpsServer(state.handlers())
    await server.start()
    try:
        assert server.host == "127.0.0.1"
        assert server.sockets
        assert {s.getsockname()[0] for s in server.sockets} == {"127.0.0.1"}
    finally:
        await server.aclose()
