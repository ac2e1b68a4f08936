"""`KvRepo.with_prefix` on both databases: a prefix is matched literally (`_` and `%` too)."""

from __future__ import annotations

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
