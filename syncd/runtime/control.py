"""Operator pause of a side, honoured by pollers and workers on every host.

Two hooks call `raise_if_paused`: `Pollers._load` (before a feed is read: the feed's side) and
`Pipeline.claim` (before a batch is claimed: both sides, since one batch may write to either).
Both raise `SidePausedError`, a `BudgetExhaustedError`, so the existing "side paused" handling
of every loop applies: pollers skip the feed, workers wait and claim again later, `syncd once`
stops with exit 3. The flag lives in the store (`store.control`), read with one indexed query.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy.ext.asyncio import AsyncConnection

from syncd import errors
from syncd.store import Store
from syncd.store.control import SIDES

__all__ = ["SIDES", "raise_if_paused", "system_of_feed"]

RECHECK_S = 2.0  # how soon a waiting worker looks again


async def raise_if_paused(store: Store, tx: AsyncConnection, systems: Iterable[str]) -> None:
    """Raise `SidePausedError` when one of `systems` is paused in the store."""
    wanted = set(systems)
    paused = await store.control.paused(tx)
    for system in sorted(wanted & paused.keys()):
        by = paused[system].get("by", "an operator")
        raise errors.SidePausedError(
            system=system,
            status=None,
            code="PAUSED",
            message=f"{system} paused by {by} in the console; resume it there to sync again",
            retry_after_s=RECHECK_S,
        )


def system_of_feed(feed: str) -> str:
    """`salesforce.Lead` -> `salesforce`; `pardot.prospects` -> `pardot`."""
    return feed.split(".", 1)[0]
