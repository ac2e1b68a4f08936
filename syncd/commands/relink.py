"""`syncd relink [--dry-run]`: rebuild links from the mirror field `sync.crm_link_field`.

Pardot will not let an API client write a prospect's CRM link (RULES.md 2a), so syncd's store
is the one source of truth for it, and `sync.crm_link_field` mirrors it on each Lead and Contact
(the prospect id, in a custom field syncd may write). When the store was lost (a new database, a
container without its volume, a move to PostgreSQL), this reads every record whose mirror is set
and stores the links again, before any matching by email could pick another record.

- A prospect with no link gets the mirrored record's (a Contact before a Lead; a converted Lead
  is followed to its Contact), with an empty merge base, and is queued to sync now.
- A prospect whose stored link already names that record is left alone.
- A prospect whose stored link names ANOTHER record keeps it (the store wins); it is reported.
`--dry-run` reports the same and writes nothing. Exit 0; 2 when no mirror field is configured.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from datetime import datetime
from typing import Any

from syncd.domain.match import mirrored_record
from syncd.domain.models import CrmRecord, CrmType, same_sf_id
from syncd.domain.plan import mirror_value
from syncd.errors import ConfigError
from syncd.runtime.pipeline import record_from
from syncd.runtime.wiring import Runtime, build_runtime
from syncd.settings import Settings
from syncd.store.models import Link, NewItem, Reason


async def mirrored(rt: Runtime, field: str) -> dict[int, list[CrmRecord]]:
    """Every Lead and Contact whose mirror field is set, by the prospect id it names."""
    out: dict[int, list[CrmRecord]] = defaultdict(list)
    for crm_type in (CrmType.CONTACT, CrmType.LEAD):
        select = ", ".join(rt.crm_select_fields(crm_type))
        soql = f"SELECT {select} FROM {crm_type.value} WHERE {field} != null"
        async for raw in rt.salesforce.query(soql):
            record = record_from(raw, crm_type)
            pid = mirror_value(record.fields.get(field))
            if pid is not None:
                out[pid].append(record)
    return out


def _target(records: list[CrmRecord]) -> tuple[CrmType, str] | None:
    found = mirrored_record(records)
    if found is None:
        return None
    if found.type is CrmType.LEAD and found.is_converted:
        if not found.converted_contact_id:
            return None
        return CrmType.CONTACT, found.converted_contact_id
    return found.type, found.id


async def relink(rt: Runtime, *, dry_run: bool) -> dict[str, Any]:
    """Rebuild missing links from the mirror; returns what was (or would be) done."""
    field = rt.config.crm_link_field
    if not field:
        raise ConfigError(
            "syncd relink needs sync.crm_link_field (the Salesforce custom field that mirrors "
            "the link): set SYNCD_SYNC__CRM_LINK_FIELD or [sync] crm_link_field"
        )
    by_prospect = await mirrored(rt, field)
    async with rt.store.read() as tx:
        stored = await rt.store.links.by_prospect_ids(tx, by_prospect)
    now: datetime = rt.clock()
    rebuilt: list[Link] = []
    right: list[int] = []
    differ: list[dict[str, Any]] = []
    for pid in sorted(by_prospect):
        target = _target(by_prospect[pid])
        if target is None:
            continue
        crm_type, crm_id = target
        current = stored.get(pid)
        if current is None:
            rebuilt.append(
                Link(
                    prospect_id=pid,
                    crm_type=crm_type.value,
                    crm_id=crm_id,
                    email=None,
                    base={},
                    synced_at=now,
                )
            )
        elif same_sf_id(current.crm_id, crm_id) and not current.crm_deleted:
            right.append(pid)
        else:
            differ.append({"prospect_id": pid, "store": current.crm_id, "mirror": crm_id})
    if rebuilt and not dry_run:
        async with rt.store.transaction() as tx:
            await rt.store.links.upsert_many(tx, rebuilt, now=now)
            items = [NewItem.for_prospect(link.prospect_id, Reason.REPROCESS) for link in rebuilt]
            await rt.store.queue.enqueue(tx, items, now=now)
    return {
        "field": field,
        "dry_run": dry_run,
        "rebuilt": [[link.prospect_id, link.crm_id] for link in rebuilt],
        "already_right": len(right),
        "differ": differ,
    }


async def run(args: argparse.Namespace, settings: Settings, **runtime_options: Any) -> int:
    rt = await build_runtime(settings, **runtime_options)
    try:
        report = await relink(rt, dry_run=bool(args.dry_run))
    finally:
        await rt.aclose()
    if getattr(args, "json", False):
        sys.stdout.write(json.dumps(report, indent=2) + "\n")
        return 0
    verb = "would rebuild" if report["dry_run"] else "rebuilt"
    sys.stdout.write(
        f"syncd relink: {verb} {len(report['rebuilt'])} link(s) from {report['field']}; "
        f"{report['already_right']} already right; {len(report['differ'])} differ (the "
        "store's link kept)\n"
    )
    for pid, crm_id in report["rebuilt"]:
        sys.stdout.write(f"  prospect {pid} -> {crm_id}\n")
    for d in report["differ"]:
        sys.stdout.write(
            f"  prospect {d['prospect_id']}: store says {d['store']}, the mirror says "
            f"{d['mirror']} (kept {d['store']}; `syncd history {d['prospect_id']}` tells why)\n"
        )
    return 0
