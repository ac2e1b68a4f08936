"""`syncd errors list|show ID|retry [ID...|--all] [--json]`: the sync error queue.

An item lands here when a write failed for good (validation rule, required field, invalid
email, duplicate rule, deleted record...). It runs again by itself when the prospect or record
changes again; `retry` runs it now (after you fixed the cause).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from rich.console import Console
from rich.table import Table

from syncd.runtime.wiring import open_store, utc_now
from syncd.settings import Settings
from syncd.store.models import QueueItem

LIST_LIMIT = 1000


def item_dict(item: QueueItem) -> dict[str, Any]:
    """An error item as JSON-ready data."""
    return {
        "id": item.id,
        "key": item.key,
        "prospect_id": item.prospect_id,
        "crm_id": item.crm_id,
        "email": item.email,
        "reasons": sorted(item.reasons),
        "state": str(item.state),
        "attempts": item.attempts,
        "code": item.last_error_code,
        "message": item.last_error_message,
        "first_failed_at": item.first_failed_at.isoformat() if item.first_failed_at else None,
        "last_failed_at": item.last_failed_at.isoformat() if item.last_failed_at else None,
    }


def _when(item: QueueItem) -> str:
    at = item.last_failed_at or item.updated_at
    return at.strftime("%Y-%m-%d %H:%M:%S")


def _subject(item: QueueItem) -> str:
    if item.prospect_id is not None:
        return f"prospect {item.prospect_id}" + (f" / {item.crm_id}" if item.crm_id else "")
    if item.crm_id:
        return f"CRM record {item.crm_id}"
    return f"email {item.email}" if item.email else item.key


def render_list(items: list[QueueItem], console: Console) -> None:
    if not items:
        console.print("The sync error queue is empty.")
        return
    table = Table(title=f"Sync errors ({len(items)})", title_justify="left")
    table.add_column("id", justify="right")
    table.add_column("last failed (UTC)", no_wrap=True)
    table.add_column("what", no_wrap=True)
    table.add_column("code", no_wrap=True)
    table.add_column("message", overflow="fold")
    for item in items:
        table.add_row(
            str(item.id),
            _when(item),
            _subject(item),
            item.last_error_code or "",
            item.last_error_message or "",
        )
    console.print(table)
    console.print(
        "Fix the cause, then `syncd errors retry ID` (or `--all`); an item also runs again "
        "when its prospect or record changes."
    )


def render_item(item: QueueItem, console: Console) -> None:
    data = item_dict(item)
    width = max(len(k) for k in data)
    for key, value in data.items():
        shown = ", ".join(value) if isinstance(value, list) else value
        console.print(f"{key.ljust(width)}  {'' if shown is None else shown}", highlight=False)


async def run(args: argparse.Namespace, settings: Settings) -> int:
    action = args.action
    ids: list[int] = []
    for raw in args.ids:
        if not str(raw).isdigit():
            sys.stderr.write(f"syncd errors {action}: {raw!r} is not an error id (a number)\n")
            return 2
        ids.append(int(raw))
    if action == "show" and len(ids) != 1:
        sys.stderr.write("syncd errors show: give exactly one error id\n")
        return 2
    if action == "retry" and not ids and not args.all:
        sys.stderr.write("syncd errors retry: give error ids, or --all\n")
        return 2
    console = Console()
    store = await open_store(settings, migrate=False)
    try:
        async with store.transaction() as tx:
            if action == "list":
                items = await store.queue.errors(tx, limit=LIST_LIMIT)
                if args.json:
                    sys.stdout.write(json.dumps([item_dict(i) for i in items], indent=2) + "\n")
                else:
                    render_list(items, console)
                return 0
            if action == "show":
                item = await store.queue.get(tx, ids[0])
                if item is None or str(item.state) != "error":
                    sys.stderr.write(f"syncd errors show: no error with id {ids[0]}\n")
                    return 2
                if args.json:
                    sys.stdout.write(json.dumps(item_dict(item), indent=2) + "\n")
                else:
                    render_item(item, console)
                return 0
            revived = await store.queue.retry_errors(tx, None if args.all else ids, now=utc_now())
    finally:
        await store.aclose()
    missing = sorted(set(ids) - set(revived))
    if args.json:
        sys.stdout.write(json.dumps({"retried": revived, "not_found": missing}) + "\n")
    else:
        console.print(f"Queued {len(revived)} item(s) to run again now.")
        if missing:
            console.print(f"Not in the error queue: {', '.join(map(str, missing))}")
    return 2 if missing else 0
