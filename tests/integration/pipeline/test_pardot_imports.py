"""Pardot writes through the Import API, end to end (issue 13's Done-when for the import path).

A batch whose prospects need many Pardot writes of the same fields goes through ONE import
(upsert by `matchId`), not one PATCH a prospect; a row the import refuses lands alone in the
error queue with Pardot's message; an import that never completes is retried without writing
any prospect twice, and so is one whose `start` answer was lost. Everything is read back
through the simulators (the prospects' values, the import calls, the writes applied to each
prospect) and through syncd's own commands and store.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from syncd.clients.http import Transports
from syncd.runtime.pipeline.pardot_writes import KV_PREFIX

from .conftest import DANA, Sync, base_seed

MakeSync = Callable[..., Sync]
N = 50
FIRST = 101
START = "POST /api/v5/imports"
IMPORTS = {"import_min_rows": 20}


def seed(n: int = N) -> dict[str, Any]:
    """`n` prospects with a blank job title and phone, each matching a Contact that has both:
    the CRM fills the blank Pardot fields, so every prospect needs the same Pardot write."""
    out = base_seed()
    out["pardot"]["prospects"] = [
        {"id": FIRST + k, "email": f"p{k}@example.com", "userId": 2, "firstName": "Pat",
         "lastName": f"Last{k}"}
        for k in range(n)
    ]  # fmt: skip
    out["salesforce"]["contacts"] = [
        {"Id": f"003{k:012d}AAA", "Email": f"p{k}@example.com", "FirstName": "Pat",
         "LastName": f"Last{k}", "OwnerId": DANA, "Title": f"Title {k}",
         "Phone": f"+1 555 01{k:02d}"}
        for k in range(n)
    ]  # fmt: skip
    return out


def ids(n: int = N) -> list[int]:
    return [FIRST + k for k in range(n)]


def imports_started(s: Sync) -> int:
    return int(s.pd.counters.requests[START])


def patches(s: Sync) -> int:
    return s.pd.counters.count("PATCH", "/objects/prospects/")


def assert_written(s: Sync, n: int = N) -> None:
    for k, pid in enumerate(ids(n)):
        p = s.prospect(pid)
        assert (p["jobTitle"], p["phone"]) == (f"Title {k}", f"+1 555 01{k:02d}"), pid


async def remembered(s: Sync) -> Any:
    async with s.store() as (store, tx):
        return await store.kv.with_prefix(tx, KV_PREFIX)


async def error_items(s: Sync) -> list[dict[str, Any]]:
    return await s.error_items()


async def queue_states(s: Sync) -> dict[str, int]:
    counts = await s.queue_counts()
    return {"pending": counts.pending, "claimed": counts.claimed, "error": counts.error}


@dataclass
class Hook(httpx.AsyncBaseTransport):
    """Forwards to the Pardot simulator; on the first request matching `when`, runs `before`
    (then forwards it) or, with `lose`, forwards it and loses the answer."""

    inner: httpx.AsyncBaseTransport
    when: Callable[[httpx.Request], bool]
    before: Callable[[], None] = lambda: None
    lose: bool = False
    fired: list[str] = field(default_factory=list)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self.fired or not self.when(request):
            return await self.inner.handle_async_request(request)
        self.fired.append(f"{request.method} {request.url.path}")
        self.before()
        response = await self.inner.handle_async_request(request)
        if not self.lose:
            return response
        await response.aread()
        raise httpx.ReadTimeout("the answer was lost", request=request)


def hook(s: Sync, monkeypatch: pytest.MonkeyPatch, hooked: Hook) -> Hook:
    real = s.world.transports()
    hooked.inner = real.pardot  # type: ignore[assignment]
    both = Transports(salesforce=real.salesforce, pardot=hooked)
    monkeypatch.setattr(s.world, "transports", lambda: both)
    return hooked


def is_start(r: httpx.Request) -> bool:
    return r.method == "POST" and r.url.path == "/api/v5/imports"


def is_submit(r: httpx.Request) -> bool:
    return r.method == "PATCH" and r.url.path.startswith("/api/v5/imports/")


# -- one import for a batch ----------------------------------------------------------------------


async def test_a_batch_of_updates_goes_through_one_import(make_sync: MakeSync) -> None:
    s = make_sync(seed(), pardot=IMPORTS)
    assert await s.once() == 0
    assert imports_started(s) == 1
    assert patches(s) == 0
    assert_written(s)
    assert all(s.pd.prospect_writes[pid] == 1 for pid in ids())
    assert s.pd.written()["Prospect"] == {"jobTitle": N, "phone": N}
    assert await remembered(s) == {}  # settled: the import is forgotten
    # The echoes of the import come back through the feed: nothing to write.
    s.later(seconds=5)
    before = s.api_writes()
    assert await s.once() == 0
    assert s.api_writes() == before
    assert imports_started(s) == 1
    assert all(s.pd.prospect_writes[pid] == 1 for pid in ids())


async def test_few_updates_and_imports_off_are_patched(make_sync: MakeSync) -> None:
    s = make_sync(seed(), pardot={"import_min_rows": 0})
    assert await s.once() == 0
    assert (imports_started(s), patches(s)) == (0, N)
    assert_written(s)
    small = make_sync(seed(5), pardot=IMPORTS)
    assert await small.once() == 0
    assert (imports_started(small), patches(small)) == (0, 5)


async def test_an_import_pardot_refuses_whole_is_patched_not_an_error(make_sync: MakeSync) -> None:
    """Pardot's daily limit of import batches met (code 188 on the first batch): the import is
    refused before anything of it applies, so its rows are PATCHed, once each, and nothing
    reaches the error queue (the 500,000-prospect bench parked 17,902 items before this)."""
    world = seed()
    world["pardot"]["import_daily_batch_cap"] = 0
    s = make_sync(world, pardot=IMPORTS)
    assert await s.once() == 0, s.last_out
    assert imports_started(s) == 1
    assert patches(s) == N
    assert_written(s)
    assert all(s.pd.prospect_writes[pid] == 1 for pid in ids())
    assert await queue_states(s) == {"pending": 0, "claimed": 0, "error": 0}
    assert await remembered(s) == {}  # never submitted: nothing to ask about later


# -- a refused row -------------------------------------------------------------------------------


async def test_a_refused_row_lands_alone_in_the_error_queue(
    make_sync: MakeSync, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Pardot user deletes one prospect for good (emptied from the recycle bin) while the
    import is submitted: the import refuses that row (its error CSV says why), the row's
    prospect is not in the recycle bin either, so it is an error; every other row is written."""
    s = make_sync(seed(), pardot=IMPORTS)
    gone = FIRST + 7
    hooked = hook(s, monkeypatch, Hook(None, is_submit, lambda: s.pd.purge_prospect(gone)))  # type: ignore[arg-type]
    assert await s.once() == 1  # an item is in the error queue
    assert hooked.fired
    assert imports_started(s) == 1
    assert patches(s) == 0
    [item] = await error_items(s)
    assert item["key"] == f"p:{gone}"
    assert item["code"] == "IMPORT_ROW"
    assert "No prospect matched" in item["message"]
    others = [pid for pid in ids() if pid != gone]
    assert all(s.pd.prospect_writes[pid] == 1 for pid in others)
    for k, pid in enumerate(ids()):
        if pid != gone:
            assert s.prospect(pid)["jobTitle"] == f"Title {k}"
    assert await queue_states(s) == {"pending": 0, "claimed": 0, "error": 1}
    assert await remembered(s) == {}


async def test_a_row_of_a_prospect_sent_to_the_recycle_bin_meanwhile_is_a_skip(
    make_sync: MakeSync, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The recycle bin is never an error (issue 15), by PATCH (219) or by import: the refused
    row's prospect is read again, found in the bin, and skipped as such; restored, it syncs."""
    s = make_sync(seed(), pardot=IMPORTS)
    gone = FIRST + 7
    hooked = hook(s, monkeypatch, Hook(None, is_submit, lambda: s.pd.recycle_prospect(gone)))  # type: ignore[arg-type]
    assert await s.once() == 0, s.last_out
    assert hooked.fired
    assert await error_items(s) == []
    assert await queue_states(s) == {"pending": 0, "claimed": 0, "error": 0}
    assert all(s.pd.prospect_writes[pid] == 1 for pid in ids() if pid != gone)
    lines = await s.history_lines(gone)
    assert any("recycle bin" in json.dumps(line) for line in lines), lines
    s.pd.restore_prospect(gone)
    s.later(seconds=2)
    assert await s.once() == 0, s.last_out
    assert s.prospect(gone)["jobTitle"] == "Title 7"


# -- an import that never completes --------------------------------------------------------------


@pytest.mark.parametrize("then", ["complete", "fail", "still stalled"])
async def test_an_import_that_never_completes_is_retried_without_double_writes(
    make_sync: MakeSync, then: str
) -> None:
    s = make_sync(seed(), pardot={**IMPORTS, "import_wait_s": 0.3})
    s.pd.import_fault = "stall"
    assert await s.once() == 0  # nothing failed for good: the works retry later
    assert imports_started(s) == 1
    assert all(s.pd.prospect_writes[pid] == 0 for pid in ids())
    assert await error_items(s) == []
    assert await queue_states(s) == {"pending": N, "claimed": 0, "error": 0}
    kept = await remembered(s)
    assert list(kept) == [f"{KV_PREFIX}1"]  # remembered durably, with every prospect
    assert len(kept[f"{KV_PREFIX}1"]["rows"]) == N

    if then == "fail":  # it ended Failed meanwhile (later imports process normally)
        s.pd.imports_control(b'{"fault": "fail", "process": true}')
    s.pd.import_fault = "stall" if then == "still stalled" else None
    s.later(hours=1)  # the retries are due
    assert await s.once() == 0
    if then == "complete":  # completed when asked: its rows are not written again
        assert imports_started(s) == 1
        assert patches(s) == 0
    elif then == "fail":  # nothing applied: written again, once
        assert imports_started(s) == 2
    else:  # still running: waited for again, nothing new sent
        assert imports_started(s) == 1
        assert await queue_states(s) == {"pending": N, "claimed": 0, "error": 0}
        assert all(s.pd.prospect_writes[pid] == 0 for pid in ids())
        s.pd.import_fault = None
        s.later(hours=2)
        assert await s.once() == 0
        assert imports_started(s) == 1
    assert_written(s)
    assert all(s.pd.prospect_writes[pid] == 1 for pid in ids())  # never twice
    # Whatever Pardot still holds now finishes: no import writes these prospects again.
    s.pd.imports_control(b'{"process": true}')
    assert all(s.pd.prospect_writes[pid] == 1 for pid in ids())
    assert await queue_states(s) == {"pending": 0, "claimed": 0, "error": 0}
    assert await remembered(s) == {}
    s.later(seconds=5)
    before = s.api_writes()
    assert await s.once() == 0
    assert s.api_writes() == before


async def test_an_import_whose_start_answer_was_lost(
    make_sync: MakeSync, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The POST that creates the import is not resent (a second import could double the rows);
    the orphan import holds no rows and writes nothing; the retry writes each prospect once."""
    s = make_sync(seed(), pardot=IMPORTS)
    hooked = hook(s, monkeypatch, Hook(None, is_start, lose=True))  # type: ignore[arg-type]
    assert await s.once() == 0
    assert hooked.fired == ["POST /api/v5/imports"]
    assert imports_started(s) == 1
    assert all(s.pd.prospect_writes[pid] == 0 for pid in ids())
    assert await queue_states(s) == {"pending": N, "claimed": 0, "error": 0}
    s.later(hours=1)
    assert await s.once() == 0
    assert imports_started(s) == 2
    assert_written(s)
    assert all(s.pd.prospect_writes[pid] == 1 for pid in ids())
    assert await queue_states(s) == {"pending": 0, "claimed": 0, "error": 0}
