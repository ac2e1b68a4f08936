"""Scale-out: three `syncd run` processes on one PostgreSQL database share the work.

Workers in every process claim with SKIP LOCKED, so each queued prospect is processed once:
no Lead or Task is created twice in the simulator, and the audit shows at most one creation per
prospect and email. Each feed is polled by one process at a time under an advisory lock; when
the holder is SIGKILLed, another process takes the feeds over and changes keep flowing.
"""

from __future__ import annotations

import json
import signal
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from syncd.domain.plan import parse_task_marker
from syncd.simulators.generate import generate_seed
from syncd.store.tables import audit_lines, links

from . import Proc, Simulators, queue_counts, read_store, simulators, start_syncd, wait_until

pytestmark = pytest.mark.postgres
PROSPECTS = 2000


FEEDS = 6  # pardot prospects and emails; salesforce Lead, Contact and their deletions


def _drained(url: str) -> bool:
    """Every feed polled at least once and nothing left to do."""
    try:
        counts = queue_counts(url)
        feeds = read_store(url, lambda store, tx: store.cursors.all(tx))
    except Exception:
        return False  # not migrated yet
    return len(feeds) == FEEDS and counts.pending == 0 and counts.claimed == 0


def _holders(procs: list[Proc]) -> list[Proc]:
    return [p for p in procs if any(e["event"] == "poller_lock_acquired" for e in p.events())]


def _audit(url: str) -> list[Any]:
    async def rows(store: Any, tx: Any) -> list[Any]:
        stmt = select(
            audit_lines.c.prospect_id, audit_lines.c.at, audit_lines.c.action, audit_lines.c.new
        )
        return list((await tx.execute(stmt)).all())

    result: list[Any] = read_store(url, rows)
    return result


def _a_linked_lead(url: str) -> tuple[int, str]:
    async def one(store: Any, tx: Any) -> Any:
        stmt = (
            select(links.c.prospect_id, links.c.crm_id)
            .where(links.c.crm_type == "Lead", links.c.crm_deleted.is_(False))
            .order_by(links.c.prospect_id)
            .limit(1)
        )
        return (await tx.execute(stmt)).one()

    row = read_store(url, one)
    return int(row.prospect_id), str(row.crm_id)


def _assert_created_once(sims: Simulators, seed: dict[str, Any], url: str) -> None:
    seeded = {r["Id"] for r in seed["salesforce"]["leads"]}
    leads = sims.soql("SELECT Id, Email FROM Lead")
    new_emails = [r["Email"].lower() for r in leads if r["Id"] not in seeded and r["Email"]]
    assert new_emails, "the sync created no Lead at all"
    twice = [e for e, n in Counter(new_emails).items() if n > 1]
    assert twice == [], f"Leads created twice: {twice[:5]}"

    tasks = sims.soql("SELECT Id, WhoId, Description FROM Task")
    email_ids = [parse_task_marker(t.get("Description")) for t in tasks]
    logged = [e for e in email_ids if e is not None]
    assert logged, "no email was logged as a Task"
    dup = {e for e, n in Counter(logged).items() if n > 1}
    assert dup == set(), [
        (t["Id"], t["WhoId"], t["Description"])
        for t in tasks
        if parse_task_marker(t.get("Description")) in dup
    ][:6]

    # one processing writes its audit lines with one timestamp (a create may take two lines):
    # every prospect's Lead creation must come from ONE processing
    audit = _audit(url)
    creations = {(r.prospect_id, r.at) for r in audit if r.action == "create_lead"}
    per_prospect = Counter(pid for pid, _ in creations)
    assert len(per_prospect) == len(new_emails)
    assert max(per_prospect.values()) == 1


def test_three_processes_share_one_database(tmp_path: Path, pg_url: str) -> None:
    seed = generate_seed(prospects=PROSPECTS)
    seed_file = tmp_path / "seed.json"
    seed_file.write_text(json.dumps(seed))
    with simulators(tmp_path, seed=seed_file) as sims:
        env = sims.run_env(
            pg_url,
            SYNCD_SYNC__WORKERS="2",
            SYNCD_SYNC__BATCH_SIZE="50",
            SYNCD_OPS__HEARTBEAT_STALE_S="20",
        )
        procs = [start_syncd(["run"], env=env, cwd=tmp_path, name=f"run{i}") for i in range(3)]
        try:
            # the first poll queues every prospect; the three processes drain it together
            # every feed polled, then the queue drained (twice in a row: a poll may be mid-page)
            wait_until(lambda: _drained(pg_url), timeout_s=600, what="the queue to drain")
            time.sleep(2)
            wait_until(lambda: _drained(pg_url), timeout_s=600, what="the queue to drain")
            holders = _holders(procs)
            assert len(holders) >= 1
            _assert_created_once(sims, seed, pg_url)

            # the poller lock holder dies without a word; another process takes over
            victim = holders[0]
            victim.signal(signal.SIGKILL)
            victim.wait(30)
            survivors = [p for p in procs if p is not victim]
            prospect_id, lead_id = _a_linked_lead(pg_url)
            sims.pd_patch(prospect_id, {"score": 4242})

            def synced() -> bool:
                (lead,) = sims.soql(f"SELECT pi__score__c FROM Lead WHERE Id = '{lead_id}'")
                return lead["pi__score__c"] == 4242

            wait_until(synced, timeout_s=120, what="a change after the poller holder died")
            assert _holders(survivors), "no surviving process took the poller locks"

            for p in survivors:
                p.signal(signal.SIGTERM)
            for p in survivors:
                assert p.wait(60) == 0
        finally:
            for p in procs:
                p.stop()
    assert queue_counts(pg_url).claimed == 0
    done = [next(e for e in p.events() if e["event"] == "service_stopped") for p in survivors]
    busy = [d for d in done if d["items"] > 0]
    assert busy, "the surviving processes processed nothing"
