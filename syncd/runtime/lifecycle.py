"""The load stage's reads for the record life cycle (issue 15): merge losers and survivors.

A linked Lead or Contact that the ordinary query no longer finds was deleted; only the REST
`queryAll` resource tells a merge (deleted with `MasterRecordId` naming the survivor) from a
plain delete. `read_merged` reads the missing records that way and follows each merge chain hop
by hop (a survivor may have been merged again), so the domain gets `ProspectInput.linked` (the
deleted row) and `ProspectInput.survivor` (the live record at the end of the chain).
`read_losers` answers the other way round, for a CRM-only record: which records were merged
into it (their links follow it, so auto-create must not give it a prospect of its own), and
`read_recycled` which prospects in Pardot's recycle bin hold its email (auto-create must not
make a second one beside them); the load stage asks both only for records it would otherwise
give a prospect (`domain.plan.creates_prospect`).
`email_keys_to_check` / `email_owners` fill `ProspectInput.email_owners` from the store's links
(an email change must not write an address another linked prospect holds).
`count_life_cycle` is what `syncd preflight` reports: merge losers still in Salesforce's recycle
bin and prospects in Pardot's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from syncd.clients.pardot import PardotClient
from syncd.clients.records import in_queries, merge_loser_count
from syncd.clients.salesforce import SalesforceClient
from syncd.domain.match import MAX_MERGE_HOPS, email_key, merge_survivor
from syncd.domain.models import CrmRecord, CrmType, Prospect, crm_type_of_id, sf_id_key
from syncd.store.models import Link as StoredLink

__all__ = [
    "LifeCycleCounts",
    "MergeRead",
    "count_life_cycle",
    "email_keys_to_check",
    "email_owners",
    "read_losers",
    "read_merged",
    "read_recycled",
]

RecordReader = Callable[[Mapping[str, Any], CrmType], CrmRecord]


@dataclass(frozen=True, slots=True, kw_only=True)
class MergeRead:
    """What `queryAll` says of one record the ordinary query did not find.

    `record`: the row read (deleted), or None when even `queryAll` has no row (purged from the
    recycle bin: a plain delete). `survivor`: for a merge loser, the live record at the end of
    its MasterRecordId chain, else None.
    """

    record: CrmRecord | None
    survivor: CrmRecord | None

    @property
    def merged(self) -> bool:
        """True when the record was merged into another (whether or not the survivor was read)."""
        return self.record is not None and bool(self.record.master_record_id)


async def read_merged(
    salesforce: SalesforceClient,
    missing_ids: Iterable[str],
    *,
    select_fields: Callable[[CrmType], Sequence[str]],
    to_record: RecordReader,
    max_hops: int = MAX_MERGE_HOPS,
) -> dict[str, MergeRead]:
    """For each id (Lead or Contact) the ordinary query did not find: its row and survivor.

    Keys are the 15-character ids (`sf_id_key`). `select_fields` is what the load stage selects
    for that object (`Runtime.crm_select_fields`, which includes `MasterRecordId`); `to_record`
    turns a row into a `CrmRecord` (the pipeline's `record_from`). One `queryAll` per object and
    hop, chunked under the URI limit; at most `max_hops` hops.
    """
    wanted = [i for i in dict.fromkeys(missing_ids) if crm_type_of_id(i) is not None]
    known: dict[str, CrmRecord] = {}
    frontier = wanted
    for _ in range(max_hops + 1):
        if not frontier:
            break
        for rec in await _query_all_by_id(salesforce, frontier, select_fields, to_record):
            known[sf_id_key(rec.id)] = rec
        frontier = [
            master
            for rec in known.values()
            if rec.is_deleted
            and (master := rec.master_record_id)
            and sf_id_key(master) not in known
            and crm_type_of_id(master) is not None
        ]
    out: dict[str, MergeRead] = {}
    for crm_id in wanted:
        row = known.get(sf_id_key(crm_id))
        survivor = merge_survivor(row, known, max_hops=max_hops) if row is not None else None
        out[sf_id_key(crm_id)] = MergeRead(record=row, survivor=survivor)
    return out


async def _query_all_by_id(
    salesforce: SalesforceClient,
    ids: Sequence[str],
    select_fields: Callable[[CrmType], Sequence[str]],
    to_record: RecordReader,
) -> list[CrmRecord]:
    by_type: dict[CrmType, list[str]] = {}
    for crm_id in ids:
        kind = crm_type_of_id(crm_id)
        if kind is not None:
            by_type.setdefault(kind, []).append(crm_id)
    out: list[CrmRecord] = []
    for kind, values in by_type.items():
        names = list(select_fields(kind))
        for needed in ("Id", "IsDeleted", "MasterRecordId"):
            if needed not in names:
                names.append(needed)
        for soql in in_queries(names, kind.value, "Id", values):
            for raw in await salesforce.query_with_deleted(soql):
                rec = to_record(raw, kind)
                master = raw.get("MasterRecordId")
                # The reader may predate MasterRecordId: carry it over either way.
                out.append(
                    replace(
                        rec,
                        is_deleted=bool(raw.get("IsDeleted")),
                        master_record_id=master if isinstance(master, str) and master else None,
                    )
                )
    return out


async def read_losers(
    salesforce: SalesforceClient, survivor_ids: Iterable[str]
) -> dict[str, list[str]]:
    """For each record id: the ids of the records merged into it (`MasterRecordId` = the id).

    Keys are the 15-character ids of the survivors that have losers; one `queryAll` per object,
    chunked under the URI limit. The load stage looks the losers up in the store's links to
    fill `ProspectInput.merged_prospect_ids` of a CRM-only item.
    """
    by_type: dict[CrmType, list[str]] = {}
    for crm_id in dict.fromkeys(survivor_ids):
        kind = crm_type_of_id(crm_id)
        if kind is not None:
            by_type.setdefault(kind, []).append(crm_id)
    out: dict[str, list[str]] = {}
    for kind, values in by_type.items():
        soqls = in_queries(
            ("Id", "MasterRecordId"), kind.value, "MasterRecordId", values, where="IsDeleted = true"
        )
        for soql in soqls:
            for raw in await salesforce.query_with_deleted(soql):
                master = raw.get("MasterRecordId")
                if isinstance(master, str) and master:
                    out.setdefault(sf_id_key(master), []).append(str(raw["Id"]))
    return out


async def read_recycled(pardot: PardotClient, emails: Iterable[str]) -> dict[str, frozenset[int]]:
    """For each email (keyed by `email_key`): the ids of the prospects with it that are in
    Pardot's recycle bin (emails with none are absent).

    One prospects query per distinct email (`email` filter, `deleted=all`, fields `id` and
    `isDeleted`): the v5 reference documents the `email` filter with one value, so several
    emails in one query would be a guess (UNCONFIRMED; CHOICE: one each, run side by side
    within the client's concurrency cap). Only records about to get a prospect are asked.
    """
    wanted: dict[str, str] = {}
    for raw in emails:
        key = email_key(raw)
        if key and key not in wanted:
            wanted[key] = raw.strip()

    async def one(key: str, email: str) -> tuple[str, frozenset[int]]:
        rows = await pardot.find_prospects_by_email(
            email, ["id", "isDeleted"], include_deleted=True
        )
        return key, frozenset(int(r["id"]) for r in rows if r.get("isDeleted") is True)

    found = await asyncio.gather(*(one(k, e) for k, e in wanted.items()), return_exceptions=True)
    out: dict[str, frozenset[int]] = {}
    for result in found:
        if isinstance(result, BaseException):
            raise result  # the first failure; the others were awaited, none left running
        if result[1]:
            out[result[0]] = result[1]
    return out


def email_keys_to_check(prospect: Prospect | None, linked: CrmRecord | None) -> set[str]:
    """The emails an item may write (either side's current one), as `email_key`s: look them
    up with `LinkRepo.by_emails` and pass the result to `email_owners`."""
    keys = {
        email_key(prospect.email) if prospect else None,
        email_key(linked.email) if linked else None,
    }
    return {k for k in keys if k}


def email_owners(
    prospect_id: int, links_by_email: Mapping[str, Sequence[StoredLink]]
) -> dict[str, int]:
    """`ProspectInput.email_owners`: per email, ANOTHER prospect whose live link holds it
    (the lowest id when several do); links marked crm_deleted no longer sync and do not count."""
    out: dict[str, int] = {}
    for raw, links in links_by_email.items():
        key = email_key(raw)
        others = sorted(
            link.prospect_id
            for link in links
            if link.prospect_id != prospect_id and not link.crm_deleted
        )
        if key and others:
            out[key] = others[0]
    return out


@dataclass(frozen=True, slots=True, kw_only=True)
class LifeCycleCounts:
    """Merge losers per object (deleted with a MasterRecordId, still readable by `queryAll`:
    Salesforce keeps deleted records about 15 days) and prospects in Pardot's recycle bin."""

    merge_losers: Mapping[str, int]
    recycled_prospects: int


async def count_life_cycle(salesforce: SalesforceClient, pardot: PardotClient) -> LifeCycleCounts:
    """Read-only counts for `syncd preflight`: one `queryAll` COUNT per object, and the
    recycled prospects paged by id (`deleted=true`, ids only)."""
    losers: dict[str, int] = {}
    for kind in CrmType:
        losers[kind.value] = await merge_loser_count(salesforce, kind)
    recycled = 0
    async for _row in pardot.iter_prospects(["id"], deleted="true"):
        recycled += 1
    return LifeCycleCounts(merge_losers=losers, recycled_prospects=recycled)
