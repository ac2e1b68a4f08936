"""`syncd errors list|show ID|retry [ID...|--all] [--json]`: the sync error queue.

An item lands here when a write failed for good (validation rule, required field, invalid
email, duplicate rule, deleted record...). It runs again by itself when the prospect or record
changes again; `retry` runs it now (after you fixed the cause).
"""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
from typing import Any

from rich.console import Console

from syncd.commands._store import open_existing_store
from syncd.runtime.wiring import utc_now
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
    """Print the error queue as blocks that fit the console's width (80 columns in a pipe).

    Not a table: five columns squeezed into 80 leave the id unreadable, and the id is what
    `errors retry ID` needs. Each item starts with its id, whole, on its own line; the message
    is wrapped below it, never cut.
    """
    if not items:
        console.print("The sync error queue is empty.")
        return
    width = max(40, console.width)
    id_width = max(len(str(i.id)) for i in items)
    indent = " " * (id_width + 2)
    out = [f"Sync errors ({len(items)}), newest failure first; times in UTC", ""]
    for item in items:
        head = f"{str(item.id).rjust(id_width)}  {_when(item)}  {item.last_error_code or '-'}"
        out.extend(_wrap(head, width, indent))
        out.extend(_wrap(_subject(item), width, indent, first=indent))
        out.extend(_wrap(item.last_error_message or "(no message)", width, indent, first=indent))
        out.append("")
    out.extend(
        textwrap.wrap(
            "Fix the cause, then `syncd errors retry ID` (or `--all`); an item also runs again "
            "when its prospect or record changes. `syncd errors show ID` shows one item whole.",
            width,
        )
    )
    # Plain text: no markup, no highlighting, no re-wrapping by rich.
    console.print("\n".join(out), markup=False, highlight=False, soft_wrap=True)


def _wrap(text: str, width: int, indent: str, first: str = "") -> list[str]:
    """Wrap `text` to `width`, breaking long words (an id or an email) rather than overflowing."""
    lines: list[str] = []
    for para in text.splitlines() or [""]:
        lines.extend(
            textwrap.wrap(
                para,
                width,
                initial_indent=first if not lines else indent,
                subsequent_indent=indent,
                break_long_words=True,
                break_on_hyphens=False,
            )
            or [first]
        )
    return lines


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
    store = await open_existing_store(settings)
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
