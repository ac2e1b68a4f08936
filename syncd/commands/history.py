"""`syncd history ID [--json]`: what was decided for a prospect (or CRM record), and why.

ID is a Pardot prospect id (digits) or a Salesforce Lead/Contact id. Lines come newest first:
when, what was done, which field changed from what to what, under which policy, and why.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from rich.console import Console
from rich.markup import escape
from sqlalchemy.ext.asyncio import AsyncConnection

from syncd import logs
from syncd.commands._store import open_existing_store, shown_url
from syncd.settings import Settings
from syncd.store import Store
from syncd.store.models import AuditLine, crm_key, prospect_key

HISTORY_LIMIT = 500


async def _known_prospect(store: Store, tx: AsyncConnection, prospect_id: int) -> bool:
    """Queued or linked, even if nothing was decided for it yet."""
    if await store.queue.by_key(tx, prospect_key(prospect_id)):
        return True
    return bool(await store.links.by_prospect_ids(tx, [prospect_id]))


async def _known_crm(store: Store, tx: AsyncConnection, crm_id: str) -> bool:
    if await store.queue.by_key(tx, crm_key(crm_id)):
        return True
    return bool(await store.links.by_crm_ids(tx, [crm_id]))


def _where(settings: Settings) -> str:
    return logs.redact(shown_url(settings.database.url))


def line_dict(line: AuditLine) -> dict[str, Any]:
    """An audit line as JSON-ready data."""
    return {
        "at": line.at.isoformat(),
        "action": line.action,
        "prospect_id": line.prospect_id,
        "crm_id": line.crm_id,
        "field": line.field,
        "old": line.old,
        "new": line.new,
        "policy": line.policy,
        "reason": line.reason,
        "detail": dict(line.detail) if line.detail else None,
    }


def _value(value: Any) -> str:
    if value is None:
        return "(blank)"
    text = json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def render(ident: str, lines: list[AuditLine], console: Console) -> None:
    """Print the history grouped by sync (newest first), one decision a line.

    A list, not a table: the reasons are sentences, and a six-column table is unreadable in an
    80-column terminal or a log viewer.
    """
    if not lines:
        console.print(f"No history for {ident}: it has not been synced (or the id is wrong).")
        return
    console.print(f"[bold]History of {ident}[/] (newest first)")
    current: tuple[str, str] | None = None
    for line in lines:
        record = line.crm_id or (f"prospect {line.prospect_id}" if line.prospect_id else "")
        group = (line.at.strftime("%Y-%m-%d %H:%M:%S UTC"), record)
        if group != current:
            current = group
            console.print(f"\n[bold]{group[0]}[/]  {escape(record)}")
        what = escape(line.action)
        if line.field:
            change = f"{line.field}: {_value(line.old)} -> {_value(line.new)}"
            what += f"  {escape(change)}"
        if line.policy:
            what += f"  [dim](policy {escape(line.policy)})[/]"
        console.print(f"  - {what}", soft_wrap=False)
        if line.reason:
            console.print(f"      {escape(line.reason)}", style="italic")


async def run(args: argparse.Namespace, settings: Settings) -> int:
    ident = str(args.id).strip()
    store = await open_existing_store(settings)
    try:
        async with store.transaction() as tx:
            if ident.isdigit():
                lines = await store.audit.history(tx, int(ident), limit=HISTORY_LIMIT)
                known = bool(lines) or await _known_prospect(store, tx, int(ident))
            else:
                lines = await store.audit.history_for_crm(tx, ident, limit=HISTORY_LIMIT)
                known = bool(lines) or await _known_crm(store, tx, ident)
    finally:
        await store.aclose()
    if not known:
        what = "prospect" if ident.isdigit() else "Lead or Contact"
        sys.stderr.write(
            f"syncd history: no {what} with id {ident} in this store ({_where(settings)}): "
            "nothing was queued or decided for it; check the id (a Pardot prospect id, or a "
            "Salesforce 00Q.../003... id) and the database\n"
        )
        return 2
    if args.json:
        sys.stdout.write(
            json.dumps([line_dict(x) for x in lines], ensure_ascii=False, indent=2) + "\n"
        )
        return 0
    render(ident, lines, Console())
    return 0
