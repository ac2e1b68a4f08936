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
from rich.table import Table

from syncd.runtime.wiring import open_store
from syncd.settings import Settings
from syncd.store.models import AuditLine

HISTORY_LIMIT = 500


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
    """Print the history as a readable table."""
    if not lines:
        console.print(f"No history for {ident}: it has not been synced (or the id is wrong).")
        return
    table = Table(title=f"History of {ident} (newest first)", title_justify="left")
    table.add_column("when (UTC)", no_wrap=True)
    table.add_column("action", no_wrap=True)
    table.add_column("record", no_wrap=True)
    table.add_column("change", overflow="fold")
    table.add_column("policy", no_wrap=True)
    table.add_column("why", overflow="fold")
    for line in lines:
        change = ""
        if line.field:
            change = f"{line.field}: {_value(line.old)} -> {_value(line.new)}"
        record = line.crm_id or (f"p:{line.prospect_id}" if line.prospect_id else "")
        table.add_row(
            line.at.strftime("%Y-%m-%d %H:%M:%S"),
            line.action,
            record,
            change,
            line.policy or "",
            line.reason or "",
        )
    console.print(table)


async def run(args: argparse.Namespace, settings: Settings) -> int:
    ident = str(args.id).strip()
    store = await open_store(settings, migrate=False)
    try:
        async with store.transaction() as tx:
            if ident.isdigit():
                lines = await store.audit.history(tx, int(ident), limit=HISTORY_LIMIT)
            else:
                lines = await store.audit.history_for_crm(tx, ident, limit=HISTORY_LIMIT)
    finally:
        await store.aclose()
    if args.json:
        sys.stdout.write(
            json.dumps([line_dict(x) for x in lines], ensure_ascii=False, indent=2) + "\n"
        )
        return 0
    render(ident, lines, Console())
    return 0
