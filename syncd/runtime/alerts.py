"""Alerts: a Slack-compatible webhook told once per incident, and once more when it ends.

Incidents (each has a key, so it is announced once however long it lasts):
- `login.<side>`: the side's credentials were refused (the daemon's last call said so);
- `budget.<side>`: the side is paused because its daily API budget is spent;
- `errors`: the error queue holds more than `alerts.error_queue_threshold` items.

The open incidents are kept in the store (`kv` key `alerts.open`), so a restart does not
announce them again, and only the process that holds the `pardot.prospects` feed sends (on
PostgreSQL one process at a time; see `syncd.runtime.leader`). A message that cannot be sent
is tried again at the next check; the webhook URL is a secret and is never logged.
The payload is `{"text": ...}`, which Slack, Mattermost, Rocket.Chat and Teams' Slack-compatible
endpoints accept.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx

from syncd import logs
from syncd.runtime.budget import SideFigures
from syncd.store import Store

log = logs.get(__name__)

OPEN_KEY = "alerts.open"
TIMEOUT_S = 10.0


def incidents(
    *,
    login: Mapping[str, str],
    figures: list[SideFigures],
    error_items: int,
    threshold: int,
) -> dict[str, str]:
    """The incidents open now: key -> what an operator reads (pure: no I/O)."""
    out: dict[str, str] = {}
    for side, state in sorted(login.items()):
        if state == "refused":
            out[f"login.{side}"] = (
                f"syncd cannot log in to {side}: the credentials were refused; fix the "
                "[salesforce] settings (Pardot uses the Salesforce login) and restart"
            )
    for f in figures:
        if f.paused:
            until = f.resume_at.isoformat() if f.resume_at else "later"
            out[f"budget.{f.system}"] = (
                f"syncd paused {f.system}: its daily API budget is spent ({f.reason}); "
                f"it resumes at {until}, or raise sync.api_budget_share"
            )
    if error_items > threshold:
        out["errors"] = (
            f"the sync error queue holds {error_items} items (threshold {threshold}): see "
            "the console's Errors page or `syncd errors list`"
        )
    return out


@dataclass(frozen=True, slots=True)
class Message:
    key: str
    text: str
    resolved: bool


class Alerter:
    """Compares the open incidents with the stored ones and posts what changed."""

    def __init__(
        self,
        store: Store,
        webhook_url: str,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._store = store
        self._url = webhook_url
        self._transport = transport

    async def check(self, current: Mapping[str, str], *, now: datetime) -> list[Message]:
        """Post new and resolved incidents; returns the messages delivered."""
        async with self._store.read() as tx:
            stored = await self._store.kv.get(tx, OPEN_KEY)
        known: dict[str, Any] = dict(stored) if isinstance(stored, dict) else {}
        todo = [Message(k, t, False) for k, t in sorted(current.items()) if k not in known]
        todo += [
            Message(k, str(v.get("text", k)), True)
            for k, v in sorted(known.items())
            if k not in current and isinstance(v, dict)
        ]
        if not todo:
            return []
        sent: list[Message] = []
        async with httpx.AsyncClient(transport=self._transport, timeout=TIMEOUT_S) as client:
            for m in todo:
                text = f"Resolved: {m.text}" if m.resolved else f"syncd alert: {m.text}"
                try:
                    r = await client.post(self._url, json={"text": text})
                    r.raise_for_status()
                except httpx.HTTPError as exc:
                    log.warning("alert_not_sent", incident=m.key, error=type(exc).__name__)
                    continue
                log.info("alert_sent", incident=m.key, resolved=m.resolved)
                sent.append(m)
        if sent:
            async with self._store.transaction() as tx:
                latest = await self._store.kv.get(tx, OPEN_KEY, for_update=True)
                state: dict[str, Any] = dict(latest) if isinstance(latest, dict) else {}
                for m in sent:
                    if m.resolved:
                        state.pop(m.key, None)
                    else:
                        state[m.key] = {"text": m.text, "since": now.isoformat()}
                await self._store.kv.set(tx, OPEN_KEY, state, now=now)
        return sent
