"""Remembered Pardot imports in the store, on both databases: `KvRepo.with_prefix` (a prefix is
matched literally, `_` and `%` too) and `pardot_writes.forget`."""

from __future__ import annotations

from syncd.runtime.pipeline.pardot_writes import KV_PREFIX, forget
from syncd.store import Store

from .conftest import T0


async def test_with_prefix_matches_literally(store: Store) -> None:
    async with store.transaction() as tx:
        await store.kv.set(tx, "pardot_import:1", {"rows": {"101": "ab"}}, now=T0)
        await store.kv.set(tx, "pardot_import:22", {"rows": {}}, now=T0)
        await store.kv.set(tx, "pardotXimport:3", "not mine: `_` is no wildcard", now=T0)
        await store.kv.set(tx, "pardot_imports", "not mine either", now=T0)
        await store.kv.set(tx, "100%:a", 1, now=T0)
        await store.kv.set(tx, "100x:b", 2, now=T0)
    async with store.read() as tx:
        assert await store.kv.with_prefix(tx, "pardot_import:") == {
            "pardot_import:1": {"rows": {"101": "ab"}},
            "pardot_import:22": {"rows": {}},
        }
        assert await store.kv.with_prefix(tx, "100%") == {"100%:a": 1}
        assert await store.kv.with_prefix(tx, "nothing:") == {}


async def test_forget_lets_go_only_of_what_settled(store: Store) -> None:
    """`pardot_writes.forget`, in a settle transaction: settled prospects leave their import's
    record; an empty set (all given back) keeps it; None (it applied nothing) drops it whole."""
    rows = {"101": "a", "102": "b", "103": "c"}
    async with store.transaction() as tx:
        for n in (1, 2, 3):
            await store.kv.set(tx, f"{KV_PREFIX}{n}", {"at": T0.isoformat(), "rows": rows}, now=T0)
    async with store.transaction() as tx:
        await forget(store, tx, {1: frozenset({101, 103}), 2: frozenset(), 3: None}, now=T0)
    async with store.read() as tx:
        left = await store.kv.with_prefix(tx, KV_PREFIX)
    assert left == {
        f"{KV_PREFIX}1": {"at": T0.isoformat(), "rows": {"102": "b"}},
        f"{KV_PREFIX}2": {"at": T0.isoformat(), "rows": rows},
    }
    async with store.transaction() as tx:  # its last prospect settled: the record goes
        await forget(store, tx, {1: frozenset({102})}, now=T0)
    async with store.read() as tx:
        assert list(await store.kv.with_prefix(tx, KV_PREFIX)) == [f"{KV_PREFIX}2"]
