"""Soak test: the daemon under API faults and SIGKILLs until the queue drains, then the invariants.

Run: `.venv/bin/python -m bench.soak [--prospects 10000] [--seed 7] [--databases sqlite,postgresql]`
(`make soak`). A short version runs in `make test` (`tests/acceptance/test_soak.py`).

Per database (a fresh world each):
1. a generated world (`generate_seed`, with the record life cycle of issue 15 on: merge losers,
   prospects in Pardot's recycle bin and one-sided opt-outs, `Shape.life_cycle`; and younger
   twins of some matched records, for the run's merges) is written to a seed file whose
   per-system `"faults"` objects inject, on every API request, 10% 5xx answers, 5% rate-limit
   answers (Salesforce 403 REQUEST_LIMIT_EXCEEDED bursts, Pardot code 66) and, on writes, 2%
   lost answers after the commit; access tokens expire every `token_ttl_s` (60 s).
   `syncd simulate` serves it over real HTTP.
2. `syncd run` runs against it and is killed with SIGKILL at points of progress, then restarted,
   until the queue is drained: nothing pending or claimed, and every feed has polled since the
   queue was last seen empty. Kill k of `max_kills` comes once k/(max_kills + 1) of the prospects
   that must sync are done (linked or in the error queue, read from the store), never at a
   wall-clock second: a faster or slower machine sees the same kills. At two points of
   progress (a third and two thirds of that work; with two kills, just before each) the record
   life cycle happens to prospects linked at that moment (`Life`), through the APIs and under
   the same faults: merges (the linked record into its twin, and the twin into it), email
   changes in Salesforce and in Pardot, prospects sent to the recycle bin (v5 DELETE) while
   their record is edited, opt-outs meeting a stale opt-in edited later on the other side;
   seed prospects in the recycle bin, and later half of those sent there, are restored.
3. The faults are switched off (`POST /__sim__/faults`) and the result is checked THROUGH THE
   APIs (SOQL and Pardot v5 queries over HTTP) and the store:
   - `linked_once`: every prospect the rules say must sync is linked to exactly one CRM record,
     the one `syncd.domain` picks from the seed (existing Contact, else Lead, else a new Lead);
   - `no_duplicate_leads`: no two Leads syncd created share an email, and syncd created none
     where the seed already held a record with that email;
   - `tasks_once`: every sent email of a synced prospect is exactly one Task on its record;
   - `fields`: every synced field holds what its policy demands: the first-sync plan computed by
     `syncd.domain.reconcile` from the seed states, and a fresh reconcile of the final states
     with the stored merge base writes nothing (a fixpoint);
   - `nothing_lost`: no item pending or claimed, and every prospect that must sync is linked or
     in the error queue;
   - `errors_permanent`: the error queue holds only permanent errors;
   - `merges_followed`: a prospect linked to a merge loser ends linked to the survivor (one
     linked to the survivor stays), not marked deleted, no record made for it, no error; the
     loser is deleted with `MasterRecordId` = the survivor (queryAll); nothing links to the
     seed's merge losers;
   - `emails_followed`: an email changed on either side ends on both, the link holds, no other
     prospect or record holds the new address;
   - `recycled_left_alone`: a prospect in the recycle bin stays there, keeps its link, is not
     re-created and is no error; a restored one syncs (the CRM edit made meanwhile reaches it);
   - `opt_outs_kept`: a linked prospect opted out on either side (seed or run) ends opted out
     on both;
   - `no_read_only_pardot_writes`: no write to Pardot carried a read-only prospect field.
   The existing invariants are merge-aware (the record to be linked to is the survivor of the
   merges its first-sync record lost) and life-cycle-aware (the first-sync field demands are
   not asked of a prospect an event changed since; the fixpoint is; one left in the recycle bin
   is not synced, so neither is asked of it, and its emails need not be logged).
4. The figures: faults injected (the simulators' `faults` counters), kills, API calls, time to
   drain, invariants checked and violated.

Figures, not timing assertions; the exit code is 1 when an invariant is violated.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from random import Random
from typing import Any

import httpx

from syncd.clients.prospects import prospect_from
from syncd.clients.records import record_from
from syncd.domain.fieldmap import FieldMap
from syncd.domain.models import (
    CrmRecord,
    CrmType,
    CrmUser,
    Directory,
    LinkAction,
    PardotUser,
    Prospect,
    ProspectInput,
    SyncConfig,
    same_sf_id,
)
from syncd.domain.plan import Plan, parse_task_marker, reconcile
from syncd.domain.values import canonical, is_blank
from syncd.runtime.pipeline import domain_link
from syncd.simulators.generate import Shape, generate_seed, sf_id
from syncd.simulators.pardot import PROSPECT_READ_ONLY
from syncd.store.models import Link as StoredLink
from syncd.store.models import QueueItem

ROOT = Path(__file__).resolve().parents[1]
SYNCD = [sys.executable, "-m", "syncd"]
DEFAULT_PG = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
API = "v60.0"
NOW = datetime(2026, 1, 1, tzinfo=UTC)  # reconcile's `now` (no rule reads it)

# Error codes that are transient by RULES.md section 7: an item parked with one of these gave up
# on a fault that a retry would have cleared, which the error queue must never hold.
TRANSIENT_CODES = frozenset(
    {
        "HTTP_500",
        "HTTP_502",
        "HTTP_503",
        "HTTP_504",
        "HTTP_429",
        "UNKNOWN_EXCEPTION",
        "SERVER_UNAVAILABLE",
        "REQUEST_LIMIT_EXCEEDED",
        "UNABLE_TO_LOCK_ROW",
        "BAD_RESPONSE",
        "TIMEOUT",
        "CONNECTION_ERROR",
        "TRANSPORT_ERROR",
        "INVALID_SESSION_ID",
        "66",
        "183",
        "184",
        "214",
    }
)


@dataclass(frozen=True)
class SoakConfig:
    """One soak run's knobs. The defaults are the full soak of `make soak`."""

    prospects: int = 10_000
    seed: int = 7
    databases: tuple[str, ...] = ("sqlite", "postgresql")
    error_rate: float = 0.10
    rate_limit_rate: float = 0.05
    lost_response_rate: float = 0.02
    token_ttl_s: float = 60.0
    max_kills: int = 8  # kill k comes after k/(max_kills + 1) of the work is done
    workers: int = 2
    batch_size: int | None = None  # sync.batch_size (None: the default); small: kills mid-work
    drain_timeout_s: float = 900.0
    # The record life cycle (issue 15): the seed's share of merge losers, prospects in the
    # recycle bin and one-sided opt-outs (`Shape.life_cycle`), the share of matched records
    # given a younger twin of the same kind and email (what the run's merges merge), and how
    # many prospects each life-cycle event touches at each of the two event points (None:
    # one per 100 prospects, at least one).
    life_share: float = 0.05
    twin_share: float = 0.15
    life_per_point: int | None = None
    workdir: Path | None = None
    postgres_url: str = DEFAULT_PG
    verbose: bool = True


@dataclass
class Invariant:
    name: str
    checked: int = 0
    violations: list[str] = field(default_factory=list)

    def check(self, ok: bool, what: str) -> None:
        self.checked += 1
        if not ok:
            self.violations.append(what)


@dataclass
class SoakReport:
    """The figures of one soak run on one database."""

    database: str
    prospects: int
    kills: int = 0
    starts: int = 0
    drain_s: float = 0.0
    faults: dict[str, dict[str, int]] = field(default_factory=dict)
    requests: dict[str, int] = field(default_factory=dict)
    api_not_ok: dict[str, int] = field(default_factory=dict)
    item_retries: int = 0
    error_queue: int = 0
    error_codes: dict[str, int] = field(default_factory=dict)
    links: int = 0
    leads_created: int = 0
    tasks: int = 0
    invariants: list[Invariant] = field(default_factory=list)
    skipped: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    life: Life | None = None  # the life-cycle events done during the run

    @property
    def ok(self) -> bool:
        return self.skipped is None and all(not i.violations for i in self.invariants)

    def violations(self) -> list[str]:
        return [f"{i.name}: {v}" for i in self.invariants for v in i.violations]

    def to_json(self) -> dict[str, Any]:
        return {
            "database": self.database,
            "prospects": self.prospects,
            "skipped": self.skipped,
            "kills": self.kills,
            "starts": self.starts,
            "drain_s": round(self.drain_s, 1),
            "faults_injected": self.faults,
            "api_requests": self.requests,
            "api_answers_not_ok_seen_by_syncd": self.api_not_ok,
            "item_retries_seen": self.item_retries,
            "error_queue": self.error_queue,
            "error_codes": self.error_codes,
            "links": self.links,
            "leads_created": self.leads_created,
            "tasks": self.tasks,
            "life_cycle_events": dict(Counter(e.kind for e in self.life.events))
            if self.life
            else {},
            "invariants": {
                i.name: {"checked": i.checked, "violated": len(i.violations)}
                for i in self.invariants
            },
            "ok": self.ok,
        }

    def render(self) -> str:
        if self.skipped:
            return f"[{self.database}] skipped: {self.skipped}"
        injected = {
            sys_: sum(v for k, v in f.items() if k != "concurrent_limit")
            for sys_, f in self.faults.items()
        }
        lines = [
            f"[{self.database}] {self.prospects} prospects, {self.kills} SIGKILLs "
            f"({self.starts} starts), drained in {self.drain_s:.0f} s",
            "  faults injected: "
            + "; ".join(f"{s} {injected[s]} {dict(f)}" for s, f in self.faults.items()),
            "  API requests: " + ", ".join(f"{s} {n}" for s, n in self.requests.items()),
            "  answers syncd saw not ok (retried or failed): "
            + (", ".join(f"{k} {v}" for k, v in self.api_not_ok.items()) or "n/a")
            + f"; item retries {self.item_retries}",
            f"  links {self.links}, Leads created {self.leads_created}, Tasks {self.tasks}, "
            f"error queue {self.error_queue} {self.error_codes}",
        ]
        if self.life is not None:
            done = Counter(e.kind for e in self.life.events)
            lines.append("  life-cycle events: " + ", ".join(f"{k} {n}" for k, n in done.items()))
        for inv in self.invariants:
            status = "ok" if not inv.violations else f"VIOLATED {len(inv.violations)}x"
            lines.append(f"  invariant {inv.name}: {inv.checked} checked, {status}")
            lines.extend(f"    - {v}" for v in inv.violations[:10])
        return "\n".join(lines)


# -- processes ----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def base_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYNCD_")}
    for name in ("NOTIFY_SOCKET", "WATCHDOG_USEC"):
        env.pop(name, None)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def _spawn(args: list[str], env: dict[str, str], cwd: Path, name: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [*SYNCD, *args],
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=(cwd / f"{name}.out").open("ab"),
        stderr=(cwd / f"{name}.err").open("ab"),
    )


_ENV_LINE = re.compile(r"^\s+(SYNCD_[A-Z_]+)=(.*)$")


@contextmanager
def simulate(seed_file: Path, cwd: Path) -> Iterator[dict[str, str]]:
    """`syncd simulate` on free ports; yields the SYNCD_* settings it prints."""
    proc = _spawn(
        [
            "simulate",
            "--seed",
            str(seed_file),
            "--salesforce-port",
            str(free_port()),
            "--pardot-port",
            str(free_port()),
        ],
        base_env(),
        cwd,
        "simulate",
    )
    try:
        deadline = time.monotonic() + 120
        found: dict[str, str] = {}
        while "SYNCD_PARDOT__BASE_URL" not in found:
            if proc.poll() is not None:
                raise RuntimeError(f"syncd simulate exited: {(cwd / 'simulate.err').read_text()}")
            if time.monotonic() > deadline:
                raise RuntimeError("syncd simulate did not print its URLs within 120 s")
            _pause(0.2)
            text = (cwd / "simulate.out").read_text()
            found = {
                m.group(1): m.group(2) for ln in text.splitlines() if (m := _ENV_LINE.match(ln))
            }
        yield found
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(30)


# -- API access for the checker (plain HTTP, no syncd client code) -------------------------------


class Apis:
    """Both simulated APIs over HTTP, as any client would use them; re-authenticates on 401."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = dict(env)
        self.http = httpx.Client(timeout=120)
        self._token: dict[str, str] = {}

    def close(self) -> None:
        self.http.close()

    @property
    def sf_url(self) -> str:
        return self.env["SYNCD_SALESFORCE__LOGIN_URL"]

    @property
    def pd_url(self) -> str:
        return self.env["SYNCD_PARDOT__BASE_URL"]

    def _auth(self, renew: bool = False) -> dict[str, str]:
        if renew or not self._token:
            r = self.http.post(
                f"{self.sf_url}/services/oauth2/token",
                data={
                    "grant_type": "client_credentials",
                    "client_id": self.env["SYNCD_SALESFORCE__CLIENT_ID"],
                    "client_secret": self.env["SYNCD_SALESFORCE__CLIENT_SECRET"],
                },
            )
            r.raise_for_status()
            self._token = r.json()
        return self._token

    def instance_url(self) -> str:
        return self._auth()["instance_url"]

    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._auth()['access_token']}"}

    def _get(self, url: str, *, pardot: bool = False, **params: Any) -> Any:
        for renew in (False, True):
            headers = {"Authorization": f"Bearer {self._auth(renew)['access_token']}"}
            if pardot:
                headers["Pardot-Business-Unit-Id"] = self.env["SYNCD_PARDOT__BUSINESS_UNIT_ID"]
            r = self.http.get(url, params=params or None, headers=headers)
            if r.status_code != 401:
                r.raise_for_status()
                return r.json()
        raise RuntimeError(f"GET {url}: still 401 after a new token")

    def set_faults(self, **faults: float) -> dict[str, Any]:
        """Change the injected faults of both simulators (control routes, never faulted)."""
        now = {}
        for name, base in (("salesforce", self.sf_url), ("pardot", self.pd_url)):
            r = self.http.post(f"{base}/__sim__/faults", json=faults)
            r.raise_for_status()
            now[name] = r.json()
        return now

    def counters(self) -> dict[str, dict[str, Any]]:
        return {
            name: self.http.get(f"{base}/__sim__/counters").json()
            for name, base in (("salesforce", self.sf_url), ("pardot", self.pd_url))
        }

    def soql(self, query: str, *, resource: str = "query") -> list[dict[str, Any]]:
        inst = self._auth()["instance_url"]
        body = self._get(f"{inst}/services/data/{API}/{resource}", q=query)
        records = list(body["records"])
        while not body.get("done", True):
            body = self._get(f"{inst}{body['nextRecordsUrl']}")
            records.extend(body["records"])
        return records

    def soql_all(self, query: str) -> list[dict[str, Any]]:
        """SOQL through `queryAll`: deleted rows (merge losers) too."""
        return self.soql(query, resource="queryAll")

    # Writes, made during the run while the faults are on (the life-cycle events).

    def write(
        self,
        method: str,
        url: str,
        body: Any = None,
        *,
        pardot: bool = False,
        already: frozenset[int] = frozenset(),
    ) -> httpx.Response:
        """A write through the injected faults, as a careful client makes it: sent again after a
        5xx, a rate limit or a dropped connection. After such a failure the write may have been
        done (a lost answer): a Pardot error code in `already` then means it was."""
        renew = False
        for attempt in range(100):
            headers = {"Authorization": f"Bearer {self._auth(renew)['access_token']}"}
            if pardot:
                headers["Pardot-Business-Unit-Id"] = self.env["SYNCD_PARDOT__BUSINESS_UNIT_ID"]
            renew = False
            try:
                r = self.http.request(method, url, json=body, headers=headers)
            except httpx.TransportError:
                continue
            if r.is_success:
                return r
            code = _pardot_code(r) if pardot else None
            if r.status_code == 401:
                renew = True
            elif attempt and code in already:
                return r
            elif not (
                r.status_code >= 500
                or r.status_code == 429
                or code == 66
                or (r.status_code == 403 and "REQUEST_LIMIT_EXCEEDED" in r.text)
            ):
                raise RuntimeError(f"{method} {url}: {r.status_code} {r.text[:300]}")
        raise RuntimeError(f"{method} {url}: still failing after 100 attempts")

    def sf_patch(self, sobject: str, record_id: str, values: Mapping[str, Any]) -> None:
        url = f"{self.instance_url()}/services/data/{API}/sobjects/{sobject}/{record_id}"
        self.write("PATCH", url, dict(values))

    def pd_patch(self, prospect_id: int, values: Mapping[str, Any]) -> None:
        url = f"{self.pd_url}/api/v5/objects/prospects/{prospect_id}"
        self.write("PATCH", url, dict(values), pardot=True)

    def pd_delete(self, prospect_id: int) -> None:
        """To Pardot's recycle bin; 192 ("in the recycle bin") after a lost answer: done."""
        url = f"{self.pd_url}/api/v5/objects/prospects/{prospect_id}"
        self.write("DELETE", url, pardot=True, already=frozenset({192}))

    def pd_undelete(self, email: str) -> None:
        """Out of the recycle bin; 109 (no deleted prospect) after a lost answer: done."""
        url = f"{self.pd_url}/api/v5/objects/prospects/do/undelete"
        self.write("POST", url, {"matchEmail": email}, pardot=True, already=frozenset({109}))

    def merge(self, sobject: str, master_id: str, loser_id: str) -> None:
        """A merge as a CRM user makes it (the simulator's control route, never faulted)."""
        r = self.http.post(
            f"{self.sf_url}/__sim__/merge",
            json={"sobject": sobject, "masterId": master_id, "mergedIds": [loser_id]},
        )
        if r.status_code != 200:
            raise RuntimeError(f"merge {loser_id} into {master_id}: {r.status_code} {r.text}")

    def pardot_all(self, objects: str, fields: str, **params: str) -> list[dict[str, Any]]:
        url = f"{self.pd_url}/api/v5/objects/{objects}"
        body = self._get(url, pardot=True, fields=fields, limit=1000, orderBy="id", **params)
        rows = list(body["values"])
        while body.get("nextPageToken"):
            body = self._get(url, pardot=True, fields=fields, nextPageToken=body["nextPageToken"])
            rows.extend(body["values"])
        return rows


def _pardot_code(answer: httpx.Response) -> int | None:
    try:
        body = answer.json()
    except ValueError:
        return None
    code = body.get("code") if isinstance(body, dict) else None
    return code if isinstance(code, int) else None


# -- the store ----------------------------------------------------------------------------------


@dataclass
class StoreView:
    pending: int
    claimed: int
    errors: int
    feeds: dict[str, datetime | None]
    done: int = 0  # prospects linked plus items in the error queue: the soak's progress
    positions: dict[str, datetime] = field(default_factory=dict)  # each feed's cursor


async def _store_view(url: str) -> StoreView:
    from sqlalchemy import func, select

    from syncd.runtime.snapshot import read_snapshot
    from syncd.store import Store
    from syncd.store.tables import links

    store = await Store.open(url, check_schema=False)
    try:
        snap = await read_snapshot(store, now=datetime.now(UTC), stale_s=120)
        async with store.read() as tx:
            linked = int((await tx.execute(select(func.count()).select_from(links))).scalar_one())
    finally:
        await store.aclose()
    q = snap.queue
    feeds = {f.feed: f.last_poll_at for f in snap.feeds}
    positions = {f.feed: f.position for f in snap.feeds}
    return StoreView(q.pending, q.claimed, q.error, feeds, linked + q.error, positions)


def store_view(url: str) -> StoreView | None:
    """The queue and feeds now; None while the store is not there yet (or is locked)."""
    try:
        return asyncio.run(_store_view(url))
    except Exception:  # not migrated yet, or busy: the next look will tell
        return None


async def _store_final(
    url: str, prospect_ids: list[int]
) -> tuple[dict[int, StoredLink], list[QueueItem]]:
    from syncd.store import Store

    store = await Store.open(url, check_schema=False)
    try:
        async with store.read() as tx:
            links = await store.links.by_prospect_ids(tx, prospect_ids)
            errors = await store.queue.errors(tx, limit=1_000_000)
    finally:
        await store.aclose()
    return dict(links), errors


# -- the run ------------------------------------------------------------------------------------


def build_seed(cfg: SoakConfig) -> dict[str, Any]:
    """The generated world with the faults and token expiry of the soak."""
    world = generate_seed(cfg.prospects, seed=cfg.seed, shape=Shape.life_cycle(cfg.life_share))
    add_twins(world, Random(cfg.seed + 3), cfg.twin_share)
    faults = {
        "error_rate": cfg.error_rate,
        "rate_limit_rate": cfg.rate_limit_rate,
        "lost_response_rate": cfg.lost_response_rate,
    }
    world["salesforce"]["faults"] = {**faults, "seed": cfg.seed}
    world["pardot"]["faults"] = {**faults, "seed": cfg.seed + 1}
    world["salesforce"]["token_ttl_s"] = cfg.token_ttl_s
    # The soak measures faults, not the daily budget: room for every retry.
    world["salesforce"]["daily_api_limit"] = 5_000_000
    world["pardot"]["daily_api_limit"] = 5_000_000
    return world


# -- the record life cycle (issue 15) -----------------------------------------------------------

LIFE_DOMAIN = "life.example"  # the new addresses of the email changes
SF_TIME = "%Y-%m-%dT%H:%M:%S.%f%z"


def add_twins(world: dict[str, Any], rng: Random, share: float) -> None:
    """Give a `share` of the prospects matched to exactly one live CRM record a younger twin: a
    second record of the same object and email, the duplicate a CRM user merges during the run.
    The first sync still links to the older one (RULES 2: oldest `CreatedDate` first)."""
    sf = world["salesforce"]
    emails = {_key(p["email"]) for p in world["pardot"]["prospects"]}
    live: dict[str, list[tuple[str, dict[str, Any]]]] = defaultdict(list)
    for key in ("leads", "contacts"):
        for row in sf[key]:
            if not row.get("IsDeleted"):
                live[_key(row.get("Email"))].append((key, row))
    made = 0
    for email, rows in sorted(live.items()):
        if email not in emails or len(rows) != 1 or rng.random() >= share:
            continue
        key, row = rows[0]
        made += 1
        created = datetime.strptime(row["CreatedDate"], SF_TIME) + timedelta(days=1)
        names = ("Email", "FirstName", "LastName", "Title", "OwnerId")
        twin = {k: row[k] for k in names if row.get(k) is not None}
        twin["Id"] = sf_id(row["Id"][:3], 9_000_000 + made)
        twin["CreatedDate"] = created.strftime("%Y-%m-%dT%H:%M:%S.000+0000")
        if key == "leads":
            twin["Company"] = f"{row.get('Company') or 'Unknown'} (twin)"
        sf[key].append(twin)


@dataclass(frozen=True)
class LifeEvent:
    """One life-cycle event done to the world during the run, through the APIs.

    `kind` is one of `Life.KINDS` or "restore"; `crm_type`/`crm_id` name the record the
    prospect was linked to when it happened (empty for a prospect restored from the seed's
    recycle bin); `other` is a merge's other record (the survivor of a `merge_loser`, the
    loser of a `merge_survivor`); `value` is an email change's new address, or the Title set
    in the CRM while a prospect was in the recycle bin.
    """

    kind: str
    prospect_id: int
    crm_type: str = ""
    crm_id: str = ""
    other: str = ""
    value: str = ""
    point: int = 0


@dataclass
class Life:
    """The record life cycle during one soak run.

    At each point of progress in `points` (items done, read from the store, as the kills), a
    few prospects linked at that moment meet each of `KINDS` through the APIs, `per_point`
    each: their record merged into its twin (`merge_loser`) or the twin merged into their
    record (`merge_survivor`); their email changed in Salesforce or in Pardot; sent to Pardot's
    recycle bin (v5 DELETE) while their record is edited in Salesforce; opted out on one side
    while the other side is edited later with a stale opt-in. At the first point half of the
    seed's prospects in the recycle bin are restored (undelete), at the second half of those
    sent there at the first point. `events` is what was done; the checker reads it.
    """

    KINDS = (
        "merge_loser",
        "merge_survivor",
        "email_crm",
        "email_pardot",
        "recycle",
        "opt_out_crm",
        "opt_out_pardot",
    )

    seed: Mapping[str, Any]
    per_point: int
    points: list[int]
    events: list[LifeEvent] = field(default_factory=list)
    fired: int = 0
    done_at: datetime | None = None  # when the last events were done

    def __post_init__(self) -> None:
        plans = first_plans(self.seed)
        self.rows: dict[str, tuple[str, dict[str, Any]]] = {}
        self.live: dict[tuple[str, str], list[str]] = defaultdict(list)
        for kind, key in (("Lead", "leads"), ("Contact", "contacts")):
            for row in self.seed["salesforce"][key]:
                self.rows[row["Id"][:15]] = (kind, row)
                if not row.get("IsDeleted"):
                    self.live[(kind, _key(row.get("Email")))].append(row["Id"])
        self.merged: set[str] = set()
        merge_pool, pool = [], []
        for raw in self.seed["pardot"]["prospects"]:
            pid, plan = int(raw["id"]), plans[int(raw["id"])]
            if plan.action is LinkAction.SKIP:
                continue
            kind, row = self.rows.get((plan.crm_id or "")[:15], ("", {}))
            if (
                plan.action is LinkAction.LINK
                and len(self.live[(kind, _key(row.get("Email")))]) > 1
            ):
                merge_pool.append(pid)
            elif not raw.get("optedOut") and not row.get("HasOptedOutOfEmail"):
                pool.append(pid)
        shuffle = Random(len(plans))
        shuffle.shuffle(merge_pool)
        shuffle.shuffle(pool)
        self.merge_pool, self.pool = merge_pool, pool
        self.emails = {int(p["id"]): p["email"] for p in self.seed["pardot"]["prospects"]}
        self.seed_bin = sorted(
            int(p["id"]) for p in self.seed["pardot"]["prospects"] if p.get("isDeleted")
        )

    def due(self, done: int) -> bool:
        return self.fired < len(self.points) and done >= self.points[self.fired]

    @property
    def finished(self) -> bool:
        return self.fired >= len(self.points)

    def covered(self, view: StoreView) -> bool:
        """Every event done, and the CRM's deleted-records feeds have read past the last ones.

        Those feeds read Salesforce's getDeleted, whose window ends at `latestDateCovered`
        (whole minutes): a merge made just before the queue drained is read a poll after the
        minute turns, so an empty queue and fresh polls alone would end the run before syncd
        saw it. Their cursors, read from the store, say when it has.
        """
        deleted = [at for feed, at in view.positions.items() if feed.endswith(".deleted")]
        return (
            self.finished
            and bool(deleted)
            and all(self.done_at is None or at >= self.done_at for at in deleted)
        )

    def of(self, *kinds: str) -> list[LifeEvent]:
        return [e for e in self.events if e.kind in kinds]

    def fire(self, apis: Apis, url: str) -> bool:
        """The events of the next point; False (nothing done) while the store cannot be read."""
        try:
            links, _ = asyncio.run(_store_final(url, sorted({*self.merge_pool, *self.pool})))
        except Exception:  # busy or mid-migration: the next look will tell
            return False
        point = self.fired
        used = {e.prospect_id for e in self.events}

        def take(pool: list[int], n: int) -> list[StoredLink]:
            out: list[StoredLink] = []
            for pid in pool:
                link = links.get(pid)
                if len(out) < n and pid not in used and link is not None and not link.crm_deleted:
                    used.add(pid)
                    out.append(link)
            return out

        for i, link in enumerate(take(self.merge_pool, 2 * self.per_point)):
            self._merge(apis, link, "merge_loser" if i % 2 == 0 else "merge_survivor", point)
        for kind in self.KINDS[2:]:
            for link in take(self.pool, self.per_point):
                self._event(apis, kind, link, point)
        if point == 0:
            restore = [LifeEvent("restore", pid) for pid in self.seed_bin[::2]]
        else:
            restore = [e for e in self.of("recycle") if e.point == 0][::2]
        for e in restore:
            apis.pd_undelete(self.emails[e.prospect_id])
            self.events.append(replace(e, kind="restore", point=point))
        self.fired += 1
        self.done_at = datetime.now(UTC)
        return True

    def _merge(self, apis: Apis, link: StoredLink, kind: str, point: int) -> None:
        row = self.rows.get(link.crm_id[:15])
        if row is None:  # linked to a record made during the run: it has no twin
            return
        key = (link.crm_type, _key(row[1].get("Email")))
        twins = [
            i
            for i in self.live[key]
            if not same_sf_id(i, link.crm_id) and i[:15] not in self.merged
        ]
        if not twins:
            return
        twin = twins[0]
        loser, survivor = (link.crm_id, twin) if kind == "merge_loser" else (twin, link.crm_id)
        apis.merge(link.crm_type, survivor, loser)
        self.merged.add(loser[:15])
        self.events.append(
            LifeEvent(kind, link.prospect_id, link.crm_type, link.crm_id, twin, point=point)
        )

    def _event(self, apis: Apis, kind: str, link: StoredLink, point: int) -> None:
        pid, sobject, rid = link.prospect_id, link.crm_type, link.crm_id
        value = ""
        if kind == "email_crm":
            value = f"changed-in-crm.{pid}@{LIFE_DOMAIN}"
            apis.sf_patch(sobject, rid, {"Email": value})
        elif kind == "email_pardot":
            value = f"changed-in-pardot.{pid}@{LIFE_DOMAIN}"
            apis.pd_patch(pid, {"email": value})
        elif kind == "recycle":
            value = f"Edited in the bin {pid}"
            apis.pd_delete(pid)
            apis.sf_patch(sobject, rid, {"Title": value})
        elif kind == "opt_out_crm":  # unsubscribed in Salesforce, a stale opt-in edited later
            apis.sf_patch(sobject, rid, {"HasOptedOutOfEmail": True})
            apis.pd_patch(pid, {"optedOut": False, "jobTitle": f"Stale opt-in {pid}"})
        else:  # opt_out_pardot: unsubscribed in Pardot, a stale opt-in edited later in the CRM
            apis.pd_patch(pid, {"optedOut": True})
            apis.sf_patch(sobject, rid, {"HasOptedOutOfEmail": False, "Title": f"Stale {pid}"})
        self.events.append(LifeEvent(kind, pid, sobject, rid, value=value, point=point))


def _scrape(port: int) -> dict[str, float]:
    """The daemon's counters of calls not ok and item retries (best effort; 0 when down)."""
    try:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
    except httpx.HTTPError:
        return {}
    out: dict[str, float] = {}
    for ln in text.splitlines():
        if ln.startswith("syncd_api_calls_total{") and 'outcome="ok"' not in ln:
            m = re.search(r'system="(\w+)"', ln)
            key = f"api:{m.group(1) if m else '?'}"
            out[key] = out.get(key, 0.0) + float(ln.rsplit(" ", 1)[1])
        elif ln.startswith("syncd_items_failed_total{") and 'outcome="retry"' in ln:
            out["item_retries"] = out.get("item_retries", 0.0) + float(ln.rsplit(" ", 1)[1])
    return out


def kill_points(work: int, max_kills: int) -> list[int]:
    """How many items are done (read from the store) when each SIGKILL comes: evenly spread."""
    return [max(1, work * k // (max_kills + 1)) for k in range(1, max_kills + 1)] if work else []


def first_plans(seed: Mapping[str, Any]) -> dict[int, Plan]:
    """Each seed prospect's first-sync plan, as `syncd.domain` decides it from the seed."""
    config, directory = SyncConfig(field_map=FieldMap.default()), _directory(seed)
    initial = _initial_records(seed)
    plans: dict[int, Plan] = {}
    for raw in seed["pardot"]["prospects"]:
        start = prospect_from({"updatedAt": "2025-12-31T00:00:00Z", **raw})
        cands = [r for r in initial.get(_key(start.email), []) if not r.is_converted]
        inp = ProspectInput(prospect=start, link=None, linked=None, candidates=cands)
        plans[start.id] = reconcile(inp, config=config, directory=directory, now=NOW)
    return plans


def must_sync(seed: Mapping[str, Any]) -> int:
    """How many of the seed's prospects the rules sync (the first-sync plan is not SKIP)."""
    return sum(p.action is not LinkAction.SKIP for p in first_plans(seed).values())


def drive(
    cfg: SoakConfig,
    url: str,
    env: dict[str, str],
    cwd: Path,
    report: SoakReport,
    kills_at: list[int],
    life: Life | None = None,
    apis: Apis | None = None,
) -> Counter[str]:
    """Run `syncd run`, SIGKILL and restart it at the points of progress in `kills_at` (items
    done), until the queue drains. Every kill comes before the drain is accepted: the last
    items are done only after the last point, so the count of kills never depends on speed.
    The life-cycle events of `life` come at their own points of progress, just before a kill
    that shares the point (the restarted daemon finds them), through `apis`."""
    seen: Counter[str] = Counter()
    started = time.monotonic()
    deadline = started + cfg.drain_timeout_s
    empty_since: datetime | None = None
    proc: subprocess.Popen[bytes] | None = None
    incarnation: dict[str, float] = {}
    try:
        while True:
            if proc is None or proc.poll() is not None:
                ops_port = free_port()
                proc = _spawn(
                    ["run"], {**env, "SYNCD_OPS__LISTEN": f"127.0.0.1:{ops_port}"}, cwd, "run"
                )
                report.starts += 1
                incarnation = {}
            _pause(0.5)  # how often the store is looked at; no decision hangs on the time
            scraped = _scrape(ops_port)
            if scraped:
                incarnation = scraped
            view = store_view(url)
            if view is None:
                continue
            if life and apis and life.due(view.done) and life.fire(apis, url):
                empty_since = None
                _say(cfg, f"  life-cycle events #{life.fired} with {view.done} items done")
            if report.kills < len(kills_at) and view.done >= kills_at[report.kills]:
                proc.send_signal(signal.SIGKILL)
                proc.wait(30)
                report.kills += 1
                seen.update(incarnation)
                empty_since = None
                _say(cfg, f"  SIGKILL #{report.kills} with {view.done} items done")
                continue
            if view.pending or view.claimed:
                empty_since = None
            elif empty_since is None:
                empty_since = datetime.now(UTC)
            elif _settled(view, empty_since) and (life is None or life.covered(view)):
                break
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"the queue did not drain within {cfg.drain_timeout_s:.0f} s "
                    f"(pending {view.pending}, claimed {view.claimed})"
                )
        report.drain_s = time.monotonic() - started
        seen.update(_scrape(ops_port) or incarnation)
    finally:
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(30)
    return seen


SETTLE_S = 5.0


def _settled(view: StoreView, empty_since: datetime) -> bool:
    """The queue stayed empty for SETTLE_S and every feed polled (found nothing) since."""
    now = datetime.now(UTC)
    if (now - empty_since).total_seconds() < SETTLE_S or len(view.feeds) < 3:
        return False
    return all(at is not None and at > empty_since for at in view.feeds.values())


def _pause(seconds: float) -> None:
    threading.Event().wait(seconds)


def _say(cfg: SoakConfig, text: str) -> None:
    if cfg.verbose:
        print(text, flush=True)


def soak_one(
    cfg: SoakConfig,
    database: str,
    root: Path,
    after: Callable[[Apis, str, SoakReport], None] | None = None,
) -> SoakReport:
    """One soak run on `database` ("sqlite" or "postgresql") in its own directory and world.

    `after(apis, database_url, report)` runs once the checks are done, while the simulators
    still serve (tests use it to prove the checker catches a broken invariant).
    """
    report = SoakReport(database=database, prospects=cfg.prospects)
    cwd = root / database
    cwd.mkdir(parents=True, exist_ok=True)
    if database == "sqlite":
        url = f"sqlite+aiosqlite:///{cwd / 'syncd.db'}"
        drop = None
    else:
        try:
            url = asyncio.run(_create_pg(cfg.postgres_url))
        except Exception as exc:  # reported as a skip, not raised
            report.skipped = f"PostgreSQL at {cfg.postgres_url} unreachable: {exc}"
            return report
        drop = url
    seed = build_seed(cfg)
    seed_file = cwd / "seed.json"
    seed_file.write_text(json.dumps(seed))
    try:
        with simulate(seed_file, cwd) as sim_env:
            env = base_env(
                **sim_env,
                SYNCD_DATABASE__URL=url,
                SYNCD_SYNC__POLL_INTERVAL_S="1",
                SYNCD_SYNC__WORKERS=str(cfg.workers),
                SYNCD_SYNC__LEASE_S="30",
                SYNCD_SYNC__RETRY_BASE_S="0.3",
                SYNCD_SYNC__SHUTDOWN_GRACE_S="5",
                SYNCD_SYNC__API_BUDGET_SHARE="1",
                SYNCD_PARDOT__DAILY_API_LIMIT="5000000",
                SYNCD_LOG__FORMAT="json",
                SYNCD_LOG__LEVEL="warning",
            )
            if cfg.batch_size is not None:
                env["SYNCD_SYNC__BATCH_SIZE"] = str(cfg.batch_size)
            _say(cfg, f"[{database}] syncing {cfg.prospects} prospects under faults ...")
            work = must_sync(seed)
            kills_at = kill_points(work, cfg.max_kills)
            per_point = cfg.life_per_point or max(1, cfg.prospects // 100)
            report.life = Life(seed, per_point, kill_points(work, 2))
            apis = Apis(sim_env)
            try:
                seen = drive(cfg, url, env, cwd, report, kills_at, report.life, apis)
                report.api_not_ok = {k: int(v) for k, v in seen.items() if k.startswith("api:")}
                report.item_retries = int(seen.get("item_retries", 0))
                counters = apis.counters()
                report.faults = {k: dict(v["faults"]) for k, v in counters.items()}
                report.requests = {k: int(v["total"]) for k, v in counters.items()}
                apis.set_faults(error_rate=0, rate_limit_rate=0, lost_response_rate=0)
                _say(cfg, f"[{database}] drained in {report.drain_s:.0f} s; checking ...")
                check(seed, apis, url, report)
                if after is not None:
                    after(apis, url, report)
            finally:
                apis.close()
    finally:
        if drop is not None and (report.ok or not report.invariants):
            with suppress(Exception):
                asyncio.run(_drop_pg(cfg.postgres_url, drop))
        elif drop is not None:
            _say(cfg, f"[{database}] an invariant failed: database kept for inspection: {drop}")
    return report


async def _create_pg(admin: str) -> str:
    import asyncpg

    name = f"syncd_soak_{uuid.uuid4().hex[:10]}"
    conn = await asyncpg.connect(admin.replace("postgresql+asyncpg", "postgresql"), timeout=5)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return f"{admin.rpartition('/')[0]}/{name}"


async def _drop_pg(admin: str, url: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(admin.replace("postgresql+asyncpg", "postgresql"), timeout=5)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{url.rpartition("/")[2]}" WITH (FORCE)')
    finally:
        await conn.close()


# -- the checker --------------------------------------------------------------------------------


def _directory(seed: Mapping[str, Any]) -> Directory:
    sf, pd = seed["salesforce"], seed["pardot"]
    return Directory(
        pardot_users={
            int(u["id"]): PardotUser(
                id=int(u["id"]), email=u.get("email"), salesforce_id=u.get("salesforceId")
            )
            for u in pd["users"]
        },
        crm_users={
            u["Id"]: CrmUser(id=u["Id"], username=u.get("Username"), is_active=u["IsActive"])
            for u in sf["users"]
        },
        queue_ids=frozenset(q["Id"] for q in sf.get("queues") or ()),
        connector_user_id=sf["users"][0]["Id"],
    )


def _key(email: str | None) -> str:
    return (email or "").strip().lower()


def _initial_records(seed: Mapping[str, Any]) -> dict[str, list[CrmRecord]]:
    """The seed's Leads and Contacts by lower-cased email, as the domain sees them."""
    by_email: dict[str, list[CrmRecord]] = defaultdict(list)
    for kind, key in (("Lead", "leads"), ("Contact", "contacts")):
        for row in seed["salesforce"][key]:
            raw = {"attributes": {"type": kind}, "LastModifiedDate": row.get("CreatedDate"), **row}
            rec = record_from(raw)
            by_email[_key(rec.email)].append(rec)
    return by_email


def _same(kind: str, want: Any, have: Any) -> bool:
    if is_blank(want) and is_blank(have):
        return True
    return bool(canonical(kind, want) == canonical(kind, have))


def _kinds(fmap: FieldMap, crm_type: CrmType) -> tuple[dict[str, str], dict[str, str]]:
    """Each mapped field's kind, by CRM field name and by Pardot field name."""
    by_crm: dict[str, str] = {}
    by_pardot: dict[str, str] = {}
    for rule in fmap.synced_rules(crm_type):
        by_pardot[rule.pardot] = rule.kind
        crm_name = rule.crm_name(crm_type)
        if crm_name:
            by_crm[crm_name] = rule.kind
    return by_crm, by_pardot


@dataclass
class Final:
    """What both systems and the store hold once the queue drained."""

    prospects: dict[int, Prospect]
    emails: list[dict[str, Any]]
    crm: dict[str, CrmRecord]  # by 15-character id
    tasks: list[dict[str, Any]]
    links: dict[int, StoredLink]
    errors: list[QueueItem]
    view: StoreView | None
    gone: dict[str, dict[str, Any]] = field(default_factory=dict)  # deleted Leads/Contacts


def fetch_final(apis: Apis, url: str, fmap: FieldMap) -> Final:
    """Read everything over HTTP (no faults) and from the store."""
    pd_fields = sorted(
        {"id", "email", "userId", "salesforceId", "updatedAt", "createdAt", "isDeleted"}
        | set(fmap.pardot_fields())
    )
    prospects = {  # the recycle bin's too (`isDeleted`)
        int(p["id"]): prospect_from(p)
        for p in apis.pardot_all("prospects", ",".join(pd_fields), deleted="all")
    }
    gone = {
        r["Id"][:15]: r
        for kind in ("Lead", "Contact")
        for r in apis.soql_all(
            f"SELECT Id, Email, MasterRecordId FROM {kind} WHERE IsDeleted = true"
        )
    }
    crm: dict[str, CrmRecord] = {}
    for kind in (CrmType.LEAD, CrmType.CONTACT):
        extra = ["IsConverted", "ConvertedContactId"] if kind is CrmType.LEAD else []
        names = {"Id", "Email", "OwnerId", "CreatedById", "CreatedDate", "LastModifiedDate"}
        names |= {*extra, *fmap.crm_select_fields(kind)}
        for raw in apis.soql(f"SELECT {', '.join(sorted(names))} FROM {kind.value}"):
            rec = record_from(raw, kind)
            crm[rec.id[:15]] = rec
    links, errors = asyncio.run(_store_final(url, sorted(prospects)))
    return Final(
        prospects=prospects,
        emails=apis.pardot_all("emails", "id,prospectId,subject,sentAt"),
        crm=crm,
        tasks=apis.soql("SELECT Id, WhoId, Subject, Description, ActivityDate FROM Task"),
        links=links,
        errors=errors,
        view=store_view(url),
        gone=gone,
    )


@dataclass
class Checker:
    """The invariants over one seed, the life-cycle events of the run, and its final state."""

    seed: Mapping[str, Any]
    final: Final
    life: Life | None = None
    fmap: FieldMap = field(default_factory=FieldMap.default)
    linked_once: Invariant = field(default_factory=lambda: Invariant("linked_once"))
    dupes: Invariant = field(default_factory=lambda: Invariant("no_duplicate_leads"))
    tasks_once: Invariant = field(default_factory=lambda: Invariant("tasks_once"))
    fields: Invariant = field(default_factory=lambda: Invariant("fields"))
    lost: Invariant = field(default_factory=lambda: Invariant("nothing_lost"))
    permanent: Invariant = field(default_factory=lambda: Invariant("errors_permanent"))
    merges: Invariant = field(default_factory=lambda: Invariant("merges_followed"))
    emails_inv: Invariant = field(default_factory=lambda: Invariant("emails_followed"))
    recycled: Invariant = field(default_factory=lambda: Invariant("recycled_left_alone"))
    opt_outs: Invariant = field(default_factory=lambda: Invariant("opt_outs_kept"))

    def __post_init__(self) -> None:
        self.config = SyncConfig(field_map=self.fmap)
        self.directory = _directory(self.seed)
        self.initial = _initial_records(self.seed)
        sf = self.seed["salesforce"]
        self.seed_rows = {r["Id"][:15]: r for k in ("leads", "contacts") for r in sf[k]}
        self.seed_ids = set(self.seed_rows)
        self.error_keys = {e.key for e in self.final.errors}
        self.events = list(self.life.events) if self.life else []
        # A merge changes what "right" is: the record a prospect must end linked to is the one
        # its first-sync record was merged into (loser -> survivor, by 15-character id).
        self.merged_into = {
            (e.crm_id if e.kind == "merge_loser" else e.other)[:15]: (
                e.other if e.kind == "merge_loser" else e.crm_id
            )
            for e in self.events
            if e.kind.startswith("merge_")
        }
        self.touched = {e.prospect_id for e in self.events}
        self.restored = {e.prospect_id for e in self.events if e.kind == "restore"}
        seed_bin = {int(p["id"]) for p in self.seed["pardot"]["prospects"] if p.get("isDeleted")}
        recycled = seed_bin | {e.prospect_id for e in self.events if e.kind == "recycle"}
        self.in_bin = recycled - self.restored  # must end in the recycle bin
        self.plan0: dict[int, Plan] = {}

    def invariants(self) -> list[Invariant]:
        return [
            self.linked_once,
            self.dupes,
            self.tasks_once,
            self.fields,
            self.lost,
            self.permanent,
            self.merges,
            self.emails_inv,
            self.recycled,
            self.opt_outs,
        ]

    def run(self) -> list[Invariant]:
        view = self.final.view
        self.lost.check(
            view is not None and view.pending == 0 and view.claimed == 0,
            f"queue not empty at the end: {view}",
        )
        self.created_leads()
        for raw in self.seed["pardot"]["prospects"]:
            self.prospect(raw)
        self.tasks()
        for e in self.final.errors:
            code = e.last_error_code or ""
            self.permanent.check(
                code not in TRANSIENT_CODES and not code.startswith("HTTP_5"),
                f"{e.key}: transient error {code}: {e.last_error_message}",
            )
        self.merges_followed()
        self.emails_followed()
        self.recycled_left_alone()
        self.opt_outs_kept()
        return self.invariants()

    def created_leads(self) -> None:
        by_email: dict[str, list[CrmRecord]] = defaultdict(list)
        for rid, rec in self.final.crm.items():
            if rid not in self.seed_ids:
                by_email[_key(rec.email)].append(rec)
        for email, recs in by_email.items():
            self.dupes.check(len(recs) == 1, f"{email}: syncd created {[r.id for r in recs]}")
            self.dupes.check(
                not self.initial.get(email),
                f"{email}: created {recs[0].id} though the seed held one",
            )

    def _reconcile(self, inp: ProspectInput) -> Plan:
        return reconcile(inp, config=self.config, directory=self.directory, now=NOW)

    def follow(self, crm_id: str | None) -> str | None:
        """The record `crm_id` ends as: itself, or the survivor of the merges it lost."""
        seen: set[str] = set()
        while crm_id and crm_id[:15] in self.merged_into and crm_id[:15] not in seen:
            seen.add(crm_id[:15])
            crm_id = self.merged_into[crm_id[:15]]
        return crm_id

    def prospect(self, raw: Mapping[str, Any]) -> None:
        """Linked as the rules say, to one record, with the fields the policies demand."""
        pid = int(raw["id"])
        if pid in self.restored:  # restored from the recycle bin: it syncs as if never there
            raw = {k: v for k, v in raw.items() if k != "isDeleted"}
        start = prospect_from({"updatedAt": "2025-12-31T00:00:00Z", **raw})
        cands = [r for r in self.initial.get(_key(start.email), []) if not r.is_converted]
        plan0 = self._reconcile(
            ProspectInput(prospect=start, link=None, linked=None, candidates=cands)
        )
        self.plan0[pid] = plan0
        link = self.final.links.get(pid)
        if plan0.action is LinkAction.SKIP:
            self.linked_once.check(link is None, f"prospect {pid}: linked though rules skip it")
            return
        if link is None:
            self.lost.check(
                f"p:{pid}" in self.error_keys,
                f"prospect {pid}: neither synced nor in the error queue",
            )
            return
        self.lost.check(True, "")
        final_p = self.final.prospects[pid]
        record = self.final.crm.get(link.crm_id[:15])
        if record is None:
            self.linked_once.check(False, f"prospect {pid}: linked to {link.crm_id}, now gone")
            return
        if plan0.action is LinkAction.CREATE_LEAD:
            want_ok = link.crm_id[:15] not in self.seed_ids and record.type is CrmType.LEAD
            want = "a Lead syncd created"
        else:
            want_id = self.follow(plan0.crm_id)
            want_ok = same_sf_id(link.crm_id, want_id)
            want = f"{want_id}" + (
                f" (merged from {plan0.crm_id})" if want_id != plan0.crm_id else ""
            )
        self.linked_once.check(want_ok, f"prospect {pid}: linked to {link.crm_id}, want {want}")
        self.linked_once.check(
            _key(record.email) == _key(final_p.email),
            f"prospect {pid}: email {final_p.email!r} but {record.id} has {record.email!r}",
        )
        if final_p.crm_id:
            self.linked_once.check(
                same_sf_id(final_p.crm_id, link.crm_id),
                f"prospect {pid}: salesforceId {final_p.crm_id} but linked to {link.crm_id}",
            )
        if pid not in self.in_bin:  # one in the recycle bin is not synced: nothing to hold
            self.field_values(pid, plan0, final_p, record, link)

    def field_values(
        self, pid: int, plan0: Plan, final_p: Prospect, record: CrmRecord, link: StoredLink
    ) -> None:
        """The first-sync plan's demands hold (unless a life-cycle event changed the prospect
        or its record since: then its own invariant judges), and a reconcile now writes
        nothing."""
        crm_kinds, pd_kinds = _kinds(self.fmap, record.type)
        if pid not in self.touched:
            for name, value in (dict(plan0.create_lead or {}) | dict(plan0.crm_update)).items():
                have = record.fields.get(name)
                self.fields.check(
                    _same(crm_kinds.get(name, "str"), value, have),
                    f"prospect {pid}: {record.id}.{name} = {have!r}, want {value!r}",
                )
            for name, value in plan0.pardot_update.items():
                have = final_p.fields.get(name)
                self.fields.check(
                    _same(pd_kinds.get(name, "str"), value, have),
                    f"prospect {pid}: prospect.{name} = {have!r}, want {value!r}",
                )
        now_cands = [
            r
            for r in self.final.crm.values()
            if _key(r.email) == _key(final_p.email) and not r.is_converted
        ]
        again = self._reconcile(
            ProspectInput(
                prospect=final_p, link=domain_link(link), linked=record, candidates=now_cands
            )
        )
        self.fields.check(
            not again.crm_update and not again.pardot_update and again.create_lead is None,
            f"prospect {pid}: still to write: crm {dict(again.crm_update)} "
            f"pardot {dict(again.pardot_update)}",
        )

    def tasks(self) -> None:
        """Each sent email of a synced prospect: exactly one Task, on the linked record (at
        most one for a prospect left in the recycle bin: its emails may never be logged)."""
        by_marker: dict[int, list[dict[str, Any]]] = defaultdict(list)
        for t in self.final.tasks:
            marker = parse_task_marker(t.get("Description"))
            if marker is not None:
                by_marker[marker].append(t)
        for email in self.final.emails:
            email_id, prospect_id = int(email["id"]), email["prospectId"]
            link = None if prospect_id is None else self.final.links.get(int(prospect_id))
            logged = by_marker.get(email_id, [])
            if link is None:
                self.tasks_once.check(not logged, f"email {email_id}: Task of an unsynced prospect")
                continue
            if int(prospect_id) in self.in_bin:
                self.tasks_once.check(len(logged) <= 1, f"email {email_id}: {len(logged)} Tasks")
            else:
                self.tasks_once.check(len(logged) == 1, f"email {email_id}: {len(logged)} Tasks")
            if logged:
                self.tasks_once.check(
                    same_sf_id(logged[0].get("WhoId"), link.crm_id),
                    f"email {email_id}: Task on {logged[0].get('WhoId')}, link {link.crm_id}",
                )

    # -- the record life cycle (issue 15) ---------------------------------------------------

    def _created_with(self, email: str) -> list[str]:
        """Records made during the run (not in the seed) that hold `email`."""
        return [
            r.id
            for rid, r in self.final.crm.items()
            if rid not in self.seed_ids and _key(r.email) == email
        ]

    def merges_followed(self) -> None:
        """A prospect linked to a merge loser ends linked to the survivor (one linked to the
        survivor stays), never marked deleted, no Lead made for it, nothing in the error queue;
        the loser is deleted with `MasterRecordId` = the survivor; nothing links to the seed's
        merge losers."""
        inv, links = self.merges, self.final.links
        for e in self.of("merge_loser", "merge_survivor"):
            pid = e.prospect_id
            loser, survivor = (
                (e.crm_id, e.other) if e.kind == "merge_loser" else (e.other, e.crm_id)
            )
            link = links.get(pid)
            inv.check(
                link is not None and same_sf_id(link.crm_id, survivor) and not link.crm_deleted,
                f"prospect {pid} ({e.kind}): link {link and link.crm_id} "
                f"{'crm_deleted ' if link and link.crm_deleted else ''}want survivor {survivor}",
            )
            gone = self.final.gone.get(loser[:15])
            inv.check(
                gone is not None and same_sf_id(gone.get("MasterRecordId"), survivor),
                f"{loser}: not deleted as merged into {survivor}: {gone}",
            )
            p = self.final.prospects.get(pid)
            made = self._created_with(_key(p.email if p else ""))
            inv.check(not made, f"prospect {pid} ({e.kind}): records made for it: {made}")
            inv.check(f"p:{pid}" not in self.error_keys, f"prospect {pid} ({e.kind}): in errors")
        linked = {lk.crm_id[:15]: pid for pid, lk in links.items()}
        for rid, row in self.seed_rows.items():
            if row.get("IsDeleted"):
                inv.check(rid not in linked, f"prospect {linked.get(rid)}: linked to loser {rid}")

    def emails_followed(self) -> None:
        """An email changed on either side ends on both, the link holds, and no other prospect
        or record (a relink, a new Lead) holds the new address."""
        inv = self.emails_inv
        for e in self.of("email_crm", "email_pardot"):
            pid, link = e.prospect_id, self.final.links.get(e.prospect_id)
            p, rec = self.final.prospects.get(pid), self.final.crm.get(e.crm_id[:15])
            where = f"prospect {pid} ({e.kind} to {e.value})"
            inv.check(
                link is not None and same_sf_id(link.crm_id, e.crm_id),
                f"{where}: link {link and link.crm_id}, want it held on {e.crm_id}",
            )
            inv.check(
                p is not None and _key(p.email) == e.value, f"{where}: prospect has {p and p.email}"
            )
            inv.check(
                rec is not None and _key(rec.email) == e.value,
                f"{where}: {e.crm_id} has {rec and rec.email}",
            )
            others = [
                i for i, q in self.final.prospects.items() if i != pid and _key(q.email) == e.value
            ]
            others_crm = [
                r.id
                for r in self.final.crm.values()
                if _key(r.email) == e.value and not same_sf_id(r.id, e.crm_id)
            ]
            inv.check(not others and not others_crm, f"{where}: also on {others} {others_crm}")
            inv.check(f"p:{pid}" not in self.error_keys, f"{where}: in the error queue")

    def recycled_left_alone(self) -> None:
        """A prospect in Pardot's recycle bin stays there, keeps its link (if any), is not
        re-created and is no error; a restored one syncs (the CRM's edit made while it was in
        the bin reaches it)."""
        inv = self.recycled
        bin_events = {e.prospect_id: e for e in self.of("recycle")}
        seed_bin = {int(p["id"]) for p in self.seed["pardot"]["prospects"] if p.get("isDeleted")}
        for pid in sorted(set(bin_events) | seed_bin):
            p, link, e = (
                self.final.prospects.get(pid),
                self.final.links.get(pid),
                bin_events.get(pid),
            )
            where = f"prospect {pid} ({'sent to the bin in the run' if e else 'in the seed bin'})"
            inv.check(f"p:{pid}" not in self.error_keys, f"{where}: in the error queue")
            if e is not None:
                inv.check(
                    link is not None and same_sf_id(link.crm_id, e.crm_id) and not link.crm_deleted,
                    f"{where}: link {link and link.crm_id}, want {e.crm_id}",
                )
            if pid in self.restored:
                inv.check(p is not None and not p.is_deleted, f"{where}: restored, not live")
                if e is not None and p is not None:
                    rec = self.final.crm.get(e.crm_id[:15])
                    have = (p.fields.get("jobTitle"), rec and rec.fields.get("Title"))
                    inv.check(
                        have == (e.value, e.value),
                        f"{where}: restored, titles {have}, want {e.value!r}",
                    )
                continue
            inv.check(p is not None and p.is_deleted, f"{where}: not in the recycle bin")
            if e is None:
                inv.check(link is None, f"{where}: linked to {link and link.crm_id}")
            email = _key(p.email if p else "")
            again = [
                i
                for i, q in self.final.prospects.items()
                if i != pid and not q.is_deleted and _key(q.email) == email
            ]
            inv.check(not again, f"{where}: re-created as {again}")

    def opt_outs_kept(self) -> None:
        """A linked prospect opted out on either side (in the seed or during the run) ends
        opted out on both: a sync never undoes an unsubscribe."""
        events = {e.prospect_id for e in self.of("opt_out_crm", "opt_out_pardot")}
        for raw in self.seed["pardot"]["prospects"]:
            pid = int(raw["id"])
            link, plan0 = self.final.links.get(pid), self.plan0.get(pid)
            if link is None or link.crm_deleted or pid in self.in_bin or plan0 is None:
                continue
            first = self.seed_rows.get((plan0.crm_id or "")[:15], {})
            if not (raw.get("optedOut") or first.get("HasOptedOutOfEmail") or pid in events):
                continue
            p, rec = self.final.prospects.get(pid), self.final.crm.get(link.crm_id[:15])
            have = (p and p.fields.get("optedOut"), rec and rec.fields.get("HasOptedOutOfEmail"))
            self.opt_outs.check(
                have == (True, True), f"prospect {pid} / {link.crm_id}: opted out {have}"
            )

    def of(self, *kinds: str) -> list[LifeEvent]:
        return [e for e in self.events if e.kind in kinds]


def check(seed: Mapping[str, Any], apis: Apis, url: str, report: SoakReport) -> None:
    """Every invariant, through the APIs and the store; the results go into `report`."""
    final = fetch_final(apis, url, FieldMap.default())
    report.links = len(final.links)
    report.error_queue = len(final.errors)
    report.error_codes = dict(Counter(e.last_error_code or "?" for e in final.errors))
    report.tasks = len(final.tasks)
    report.leads_created = sum(
        1
        for rid, r in final.crm.items()
        if r.type is CrmType.LEAD and rid not in {x["Id"][:15] for x in seed["salesforce"]["leads"]}
    )
    report.invariants = Checker(seed, final, report.life).run()
    written = apis.http.get(f"{apis.pd_url}/__sim__/written")
    written.raise_for_status()
    report.invariants.append(no_read_only_writes(written.json()))


def no_read_only_writes(written: Mapping[str, Mapping[str, int]]) -> Invariant:
    """No write to Pardot carried a read-only prospect field (wire-formats C.3a, issue 11).

    `written` is the Pardot simulator's `GET /__sim__/written`: per object, how many write
    attempts carried each field, refused ones included, over the simulator's whole life.
    """
    inv = Invariant("no_read_only_pardot_writes")
    for name, n in sorted(written.get("Prospect", {}).items()):
        inv.check(
            name not in PROSPECT_READ_ONLY,
            f"Prospect.{name}: sent in {n} writes; read-only in Pardot API v5",
        )
    return inv


def run_soak(cfg: SoakConfig) -> list[SoakReport]:
    """Every configured database in turn; the reports."""
    reports = []
    with tempfile.TemporaryDirectory(prefix="syncd-soak-") as tmp:
        root = cfg.workdir or Path(tmp)
        for database in cfg.databases:
            report = soak_one(cfg, database, root)
            _say(cfg, report.render())
            reports.append(report)
    return reports


def main(argv: list[str] | None = None) -> int:
    doc = (__doc__ or "").split("\n")[0]
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=doc)
    parser.add_argument("--prospects", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--max-kills", type=int, default=8)
    parser.add_argument("--workdir", type=Path, default=None, help="keep logs and files here")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON too")
    args = parser.parse_args(argv)
    cfg = SoakConfig(
        prospects=args.prospects,
        seed=args.seed,
        databases=tuple(d.strip() for d in args.databases.split(",") if d.strip()),
        max_kills=args.max_kills,
        workdir=args.workdir,
        postgres_url=os.environ.get("SYNCD_TEST_POSTGRES_URL", DEFAULT_PG),
    )
    reports = run_soak(cfg)
    if args.json:
        print(json.dumps([r.to_json() for r in reports], indent=2))
    return 0 if all(r.ok or r.skipped for r in reports) else 1


if __name__ == "__main__":
    raise SystemExit(main())
