"""Refused logins in `syncd run`: back off for minutes, say so, and give up after a few.

A refused login (`errors.AuthError`: the token endpoint said `invalid_client`, `invalid_grant`,
or Pardot refused the business unit) cannot heal by retrying every few seconds, and against a
real org thousands of failed logins a day risk locking the connector user out. So the daemon
counts refusals in a row:

- while refusals continue, the pollers and workers wait `sync.login_backoff_s` between probes
  (one poll round or one batch is the probe), and the side shows as failing in `/healthz`,
  `/metrics`, `syncd status` and `syncd check` (through the heartbeat's store entry);
- the process gives up, and `syncd run` exits 2 with one `login refused` line, after
  `sync.login_refusals_at_start` refusals before any call succeeded (default 1: a wrong secret
  fails the start), or `sync.login_refusals_later` in a row after one did (default 3);
- any successful poll or batch ends the failing state and resets the count.

Refusals reported during a back-off (another task's probe of the same moment) count once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncConnection

from syncd import errors, logs
from syncd.store import Store

log = logs.get(__name__)

LOGIN_FAILING_KV = "login.failing"  # store entry: {process_id, system, since, refusals, message}


class LoginWatch:
    """Counts refused logins in a row for one process (see the module docstring)."""

    def __init__(
        self,
        *,
        backoff_s: float,
        refusals_at_start: int,
        refusals_later: int,
        clock: Callable[[], datetime],
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.backoff_s = backoff_s
        self.refusals_at_start = refusals_at_start
        self.refusals_later = refusals_later
        self._clock = clock
        self._monotonic = monotonic
        self.failing: errors.AuthError | None = None
        self.since: datetime | None = None
        self.refusals = 0
        self.ever_ok = False
        self.gave_up: errors.AuthError | None = None
        self.given_up = asyncio.Event()
        self._ok = asyncio.Event()
        self._ok.set()
        self._next_probe = 0.0
        self.changed = asyncio.Event()  # set on every change of state (the heartbeat writes it)

    @property
    def limit(self) -> int:
        return self.refusals_later if self.ever_ok else self.refusals_at_start

    def refused(self, exc: errors.AuthError) -> None:
        """A login (or Pardot's business unit) was refused: count it, maybe give up."""
        now = self._monotonic()
        if self.failing is not None and now < self._next_probe:
            return  # the same probe round, seen by another task
        self.refusals += 1
        self.failing = exc
        if self.since is None:
            self.since = self._clock()
        self._next_probe = now + self.backoff_s
        self._ok.clear()
        self.changed.set()
        log.error(
            "login_refused",
            system=exc.system,
            code=exc.code,
            refusals=self.refusals,
            limit=self.limit,
            retry_in_s=self.backoff_s,
            message=logs.redact(exc.message),
        )
        if self.refusals >= self.limit and self.gave_up is None:
            self.gave_up = exc
            self.given_up.set()

    def succeeded(self) -> None:
        """A call went through: the credentials work (again)."""
        self.ever_ok = True
        if self.failing is None:
            return
        log.info("login_recovered", system=self.failing.system, refusals=self.refusals)
        self.failing = None
        self.since = None
        self.refusals = 0
        self._ok.set()
        self.changed.set()

    def probe_in_s(self) -> float:
        """Seconds until the next probe may run (0 when not failing)."""
        if self.failing is None:
            return 0.0
        return max(0.0, self._next_probe - self._monotonic())

    async def resumed(self) -> None:
        """Return once the credentials work again."""
        await self._ok.wait()

    def entry(self, process_id: str) -> dict[str, object] | None:
        """The store entry `syncd check` and `syncd status` read (None: not failing)."""
        if self.failing is None or self.since is None:
            return None
        return {
            "process_id": process_id,
            "system": self.failing.system,
            "code": self.failing.code,
            "since": self.since.isoformat(),
            "refusals": self.refusals,
            "message": logs.redact(self.failing.message)[:300],
        }


async def save_login_state(
    store: Store,
    tx: AsyncConnection,
    process_id: str,
    entry: dict[str, object] | None,
    *,
    now: datetime,
) -> None:
    """Keep `entry` (`LoginWatch.entry`) in the store for `syncd check` and `syncd status`, or,
    with None, remove this process's entry (another process's stays)."""
    if entry is not None:
        await store.kv.set(tx, LOGIN_FAILING_KV, entry, now=now)
        return
    current = await store.kv.get(tx, LOGIN_FAILING_KV)
    if isinstance(current, dict) and current.get("process_id") == process_id:
        await store.kv.delete(tx, LOGIN_FAILING_KV)
