"""Acceptance tests: the real `syncd` CLI in subprocesses.

Shared helpers live here: `Simulators` runs `syncd simulate` and talks to both simulated APIs
over HTTP as any API client would (OAuth token, Pardot v5, Salesforce REST), `start_syncd` runs a
`syncd` command with its output in files, and `wait_until` is the only way a test waits: poll a
condition until a generous deadline, never assert on elapsed time.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx

ROOT = Path(__file__).resolve().parents[2]
SYNCD = [sys.executable, "-m", "syncd"]
EXAMPLE_SEED = ROOT / "config" / "example-seed.json"
T = TypeVar("T")


def wait_until(
    check: Callable[[], T | None], *, timeout_s: float = 60.0, what: str = "condition"
) -> T:
    """Call `check` until it returns something truthy; fail with `what` after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    last: T | None = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what} (last: {last!r})")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def base_env(**extra: str) -> dict[str, str]:
    """The test's environment without SYNCD_* settings, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYNCD_")}
    env.pop("NOTIFY_SOCKET", None)
    env.pop("WATCHDOG_USEC", None)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


@dataclass
class Proc:
    """A `syncd` subprocess whose stdout and stderr go to files."""

    popen: subprocess.Popen[bytes]
    out: Path
    err: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def stdout(self) -> str:
        return self.out.read_text(errors="replace")

    def stderr(self) -> str:
        return self.err.read_text(errors="replace")

    def events(self) -> list[dict[str, Any]]:
        """The JSON log events written so far (every stderr line must be one)."""
        lines = [ln for ln in self.stderr().splitlines() if ln.strip()]
        return [json.loads(ln) for ln in lines]

    def signal(self, sig: signal.Signals) -> None:
        self.popen.send_signal(sig)

    def wait(self, timeout_s: float) -> int:
        return self.popen.wait(timeout=timeout_s)

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait(timeout=30)


def start_syncd(args: list[str], *, env: dict[str, str], cwd: Path, name: str) -> Proc:
    out, err = cwd / f"{name}.out", cwd / f"{name}.err"
    popen = subprocess.Popen(
        [*SYNCD, *args],
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=out.open("wb"),
        stderr=err.open("wb"),
    )
    return Proc(popen, out, err)


@dataclass
class Simulators:
    """`syncd simulate` in a subprocess, and a tiny API client for changing data through it."""

    proc: Proc
    env: dict[str, str]
    _token: dict[str, str] = field(default_factory=dict)

    @property
    def salesforce_url(self) -> str:
        return self.env["SYNCD_SALESFORCE__LOGIN_URL"]

    @property
    def pardot_url(self) -> str:
        return self.env["SYNCD_PARDOT__BASE_URL"]

    def _auth(self) -> dict[str, str]:
        if not self._token:
            r = httpx.post(
                f"{self.salesforce_url}/services/oauth2/token",
                data={
                    "grant_type": "client_credentials",
                    "client_id": self.env["SYNCD_SALESFORCE__CLIENT_ID"],
                    "client_secret": self.env["SYNCD_SALESFORCE__CLIENT_SECRET"],
                },
                timeout=30,
            )
            r.raise_for_status()
            self._token = r.json()
        return self._token

    def _sf_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._auth()['access_token']}"}

    def _pd_headers(self) -> dict[str, str]:
        return {
            **self._sf_headers(),
            "Pardot-Business-Unit-Id": self.env["SYNCD_PARDOT__BUSINESS_UNIT_ID"],
        }

    def soql(self, query: str) -> list[dict[str, Any]]:
        """Every record of a SOQL query (following nextRecordsUrl)."""
        inst = self._auth()["instance_url"]
        r = httpx.get(
            f"{inst}/services/data/v60.0/query",
            params={"q": query},
            headers=self._sf_headers(),
            timeout=60,
        )
        r.raise_for_status()
        body = r.json()
        records = list(body["records"])
        while not body.get("done", True):
            r = httpx.get(f"{inst}{body['nextRecordsUrl']}", headers=self._sf_headers(), timeout=60)
            r.raise_for_status()
            body = r.json()
            records.extend(body["records"])
        return records

    def sf_patch(self, sobject: str, record_id: str, data: dict[str, Any]) -> None:
        inst = self._auth()["instance_url"]
        r = httpx.patch(
            f"{inst}/services/data/v60.0/sobjects/{sobject}/{record_id}",
            json=data,
            headers=self._sf_headers(),
            timeout=30,
        )
        assert r.status_code == 204, r.text

    def prospect(self, prospect_id: int, fields: str) -> dict[str, Any]:
        r = httpx.get(
            f"{self.pardot_url}/api/v5/objects/prospects/{prospect_id}",
            params={"fields": fields},
            headers=self._pd_headers(),
            timeout=30,
        )
        r.raise_for_status()
        body: dict[str, Any] = r.json()
        return body

    def pd_patch(self, prospect_id: int, data: dict[str, Any]) -> None:
        r = httpx.patch(
            f"{self.pardot_url}/api/v5/objects/prospects/{prospect_id}",
            params={"fields": "id"},
            json=data,
            headers=self._pd_headers(),
            timeout=30,
        )
        assert r.status_code == 200, r.text

    def run_env(self, database_url: str, **extra: str) -> dict[str, str]:
        """Environment for `syncd run` against these simulators and `database_url`."""
        return base_env(
            **self.env,
            SYNCD_DATABASE__URL=database_url,
            SYNCD_SYNC__POLL_INTERVAL_S="1",
            SYNCD_LOG__FORMAT="json",
            **extra,
        )


_ENV_LINE = re.compile(r"^\s+(SYNCD_[A-Z_]+)=(.*)$")


@contextmanager
def simulators(
    tmp: Path, *, seed: Path = EXAMPLE_SEED, extra_args: tuple[str, ...] = ()
) -> Iterator[Simulators]:
    """Run `syncd simulate` on free ports until the block ends (then SIGTERM, exit 0)."""
    proc = start_syncd(
        [
            "simulate",
            "--seed",
            str(seed),
            "--salesforce-port",
            str(free_port()),
            "--pardot-port",
            str(free_port()),
            *extra_args,
        ],
        env=base_env(),
        cwd=tmp,
        name="simulate",
    )
    try:

        def ready() -> dict[str, str] | None:
            assert proc.popen.poll() is None, f"simulate exited:\n{proc.stderr()}"
            found = dict(
                m.groups() for ln in proc.stdout().splitlines() if (m := _ENV_LINE.match(ln))
            )
            return found if "SYNCD_PARDOT__BASE_URL" in found else None

        env = wait_until(ready, timeout_s=60, what="syncd simulate to print its URLs")
        yield Simulators(proc, env)
    finally:
        if proc.popen.poll() is None:
            proc.signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.stop()


class NotifyListener:
    """A datagram socket standing in for systemd's NOTIFY_SOCKET; collects every message."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.setblocking(False)
        self.messages: list[dict[str, str]] = []

    def drain(self) -> list[dict[str, str]]:
        while True:
            try:
                data = self.sock.recv(4096).decode()
            except BlockingIOError:
                return self.messages
            self.messages.append(dict(ln.split("=", 1) for ln in data.split("\n") if ln))

    def seen(self, key: str, value: str = "1") -> bool:
        return any(m.get(key) == value for m in self.drain())

    def close(self) -> None:
        self.sock.close()


def read_store(url: str, fn: Callable[[Any, Any], Any]) -> Any:
    """Run `await fn(store, tx)` in a read transaction on the store at `url` (from a test)."""
    import asyncio

    from syncd.store import Store

    async def go() -> Any:
        store = await Store.open(url, check_schema=False)
        try:
            async with store.read() as tx:
                return await fn(store, tx)
        finally:
            await store.aclose()

    return asyncio.run(go())


def queue_counts(url: str) -> Any:
    """The store's `QueueCounts` now."""
    from datetime import UTC, datetime

    return read_store(url, lambda store, tx: store.queue.counts(tx, now=datetime.now(UTC)))
