"""`syncd reprocess ID... [--crm-id ID] [--email ADDR]`: queue prospects to sync now.

Whatever the change feeds say, the named prospects (Pardot ids), CRM records (Lead/Contact ids)
and email addresses are queued, due now; a running `syncd run` (or the next `syncd once`) syncs
them. Every id is checked first (prospect ids in Pardot, CRM ids in Salesforce): an unknown id
exits 2 naming it, and nothing is queued.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from syncd.domain.models import crm_type_of_id
from syncd.runtime.wiring import Runtime, build_runtime
from syncd.settings import Settings
from syncd.store.models import NewItem, Reason


async def _unknown_prospects(rt: Runtime, ids: list[int]) -> list[str]:
    unknown = []
    for pid in ids:
        if await rt.pardot.get_prospect(pid, ["id"]) is None:
            unknown.append(f"prospect {pid} (not in Pardot)")
    return unknown


async def _known_crm_ids(rt: Runtime, crm_ids: list[str]) -> set[str]:
    return await rt.crm.existing_ids(crm_ids)


async def _known_email(rt: Runtime, email: str) -> bool:
    if await rt.pardot.find_prospects_by_email(email, ["id"]):
        return True
    return await rt.crm.email_known(email)


async def queue_items(rt: Runtime, args: argparse.Namespace) -> tuple[list[NewItem], list[str]]:
    """The items to queue, and the ids that are unknown (or malformed)."""
    unknown: list[str] = []
    prospect_ids: list[int] = []
    for raw in args.ids:
        text = str(raw).strip()
        if text.isdigit():
            prospect_ids.append(int(text))
        else:
            unknown.append(f"{text!r} (a prospect id is a number; use --crm-id for CRM ids)")
    crm_ids = [str(c).strip() for c in args.crm_id]
    for crm_id in crm_ids:
        if crm_type_of_id(crm_id) is None or len(crm_id) not in (15, 18):
            unknown.append(f"{crm_id!r} (not a Lead 00Q... or Contact 003... id)")
    if unknown:
        return [], unknown
    unknown.extend(await _unknown_prospects(rt, prospect_ids))
    known_crm = await _known_crm_ids(rt, crm_ids)
    unknown.extend(
        f"CRM record {c} (not in Salesforce)" for c in crm_ids if c[:15] not in known_crm
    )
    for email in args.email:
        if not await _known_email(rt, email):
            unknown.append(f"email {email!r} (no prospect, Lead or Contact has it)")
    if unknown:
        return [], unknown
    items = [NewItem.for_prospect(pid, Reason.REPROCESS) for pid in prospect_ids]
    if crm_ids:
        async with rt.store.read() as tx:
            links = await rt.store.links.by_crm_ids(tx, crm_ids)
        for crm_id in crm_ids:
            linked = links.get(crm_id) or []
            if linked:
                items.extend(
                    NewItem.for_prospect(link.prospect_id, Reason.REPROCESS, crm_id=crm_id)
                    for link in linked
                )
            else:
                items.append(NewItem.for_crm(crm_id, Reason.REPROCESS))
    items.extend(NewItem.for_email(email) for email in args.email)
    return items, []


async def run(args: argparse.Namespace, settings: Settings, **runtime_options: Any) -> int:
    if not (args.ids or args.crm_id or args.email):
        sys.stderr.write("syncd reprocess: name at least one prospect id, --crm-id or --email\n")
        return 2
    rt = await build_runtime(settings, **runtime_options)
    try:
        items, unknown = await queue_items(rt, args)
        if unknown:
            for what in unknown:
                sys.stderr.write(f"syncd reprocess: unknown {what}\n")
            sys.stderr.write("syncd reprocess: nothing queued\n")
            return 2
        async with rt.store.transaction() as tx:
            await rt.store.queue.enqueue(tx, items, now=rt.clock())
        keys = sorted({i.key for i in items})
        sys.stdout.write(f"Queued {len(keys)} item(s) to sync now: {', '.join(keys)}\n")
        return 0
    finally:
        await rt.aclose()
