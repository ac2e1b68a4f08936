"""`syncd preflight [--json] [--limit N]`: what the first sync will do and what to fix first.

Reads both systems with GET requests only (see `syncd.runtime.preflight`) and prints the report:
a terminal report (rich; sections with counts and example tables, readable at 100 columns), or
`--json` (the keys documented in `syncd.runtime.preflight`). Exit 0 when the report was made,
1 when a system could not be read.

The configured database is not opened: the runtime gets a throw-away SQLite store in a
temporary directory, so the queue, links, cursors and API counters stay untouched. One
exception: with `salesforce.auth_flow = "refresh_token"` the configured store is used, because
it may hold the rotated refresh token (and must keep a newly rotated one).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from syncd import errors, logs
from syncd.runtime.preflight import Group, PreflightReport, Side, build_report
from syncd.runtime.wiring import build_runtime, open_store
from syncd.settings import Settings
from syncd.store import Store

log = logs.get(__name__)

WIDTH = 100


async def run(args: argparse.Namespace, settings: Settings, **runtime_options: Any) -> int:
    limit = max(0, int(getattr(args, "limit", 10) or 0))
    with tempfile.TemporaryDirectory(prefix="syncd-preflight-") as tmp:
        if "store" not in runtime_options:
            runtime_options["store"] = await _store(settings, Path(tmp))
        rt = await build_runtime(settings, **runtime_options)
        try:
            report = await build_report(rt, limit=limit)
        except (errors.APIError, errors.BudgetExhaustedError) as exc:
            sys.stderr.write(
                f"syncd preflight: could not read {exc.system}: {exc.code} "
                f"{logs.redact(exc.message)}\n"
            )
            return 1
        finally:
            await rt.aclose()
    if getattr(args, "json", False):
        sys.stdout.write(json.dumps(report.to_json(), indent=2, default=str) + "\n")
    else:
        # markup off: org data and messages such as "[[unknown]]" or "[fields]" print as is.
        width = min(WIDTH, Console().width)
        render(report, Console(width=width, highlight=False, markup=False))
    return 0


async def _store(settings: Settings, tmp: Path) -> Store:
    if settings.salesforce.auth_flow == "refresh_token":
        return await open_store(settings)
    return await Store.open(f"sqlite+aiosqlite:///{tmp / 'preflight.db'}", migrate=True)


# -- rendering -------------------------------------------------------------------------------------


def _n(value: int | float | None) -> str:
    if value is None:
        return "unknown"
    if isinstance(value, float):
        return f"{value:,.1f}"
    return f"{value:,}"


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, list | tuple):
        return ", ".join(str(v) for v in value) or "-"
    return str(value)


def _section(console: Console, title: str) -> None:
    console.print()
    console.rule(Text(title, style="bold"), align="left")


def _line(console: Console, count: int | float | None, text: str, *, bad: bool = False) -> None:
    style = "yellow" if bad and count else ""
    console.print(Text.assemble((f"{_n(count):>9}  ", style or "bold"), text))


def _table(console: Console, group: Group, columns: Sequence[tuple[str, str]]) -> None:
    if not group.examples:
        return
    table = Table(show_edge=False, pad_edge=False, box=None, header_style="dim")
    for _, header in columns:
        table.add_column(Text(header), overflow="fold")
    for row in group.examples:
        table.add_row(*(Text(_cell(row.get(key))) for key, _ in columns))
    console.print(table, style="", new_line_start=False)
    if group.count > len(group.examples):
        console.print(Text(f"           ... and {group.count - len(group.examples):,} more", "dim"))


PROSPECT_COLUMNS = (
    ("prospect_id", "prospect"),
    ("email", "email"),
    ("assigned_to", "user"),
    ("crm_id", "CRM id"),
    ("reason", "why"),
)


def render(report: PreflightReport, console: Console) -> None:
    """The report for a terminal."""
    r = report
    t = r.totals
    console.print(
        Text.assemble(
            ("syncd preflight", "bold"),
            f"  read {_n(t.get('prospects'))} prospects, {_n(t.get('leads'))} Leads, "
            f"{_n(t.get('contacts'))} Contacts, {_n(t.get('sent_emails'))} sent emails; "
            "nothing was written",
        )
    )
    _render_problems(r, console)
    _render_connector(r, console)
    _render_users(r, console)
    _render_duplicates(r, console)
    _render_prospects(r, console)
    _render_life_cycle(r, console)
    _render_emails(r, console)
    _render_owners(r, console)
    _render_fields(r, console)
    _render_api(r, console)


def _render_problems(r: PreflightReport, console: Console) -> None:
    _section(console, "Fix first")
    if not r.problems:
        console.print("  nothing blocks the first sync")
    grid = Table.grid(padding=(0, 1))
    grid.add_column(width=9, no_wrap=True)
    grid.add_column(overflow="fold")
    for p in r.problems:
        style = "bold red" if p["severity"] == "blocker" else "yellow"
        grid.add_row(Text(f" {p['severity']}", style), Text(p["message"]))
    if r.problems:
        console.print(grid)


def _yes(flag: bool | None) -> str:
    return "unknown" if flag is None else ("yes" if flag else "NO")


def _render_connector(r: PreflightReport, console: Console) -> None:
    c = r.connector
    _section(console, "Connector user")
    name = c.username or "(not found among CRM users)"
    active = "" if c.active is None else (" active" if c.active else " INACTIVE")
    console.print(f"  {c.user_id}  {name}{active}")
    console.print(
        f"  create Leads: {_yes(c.can_create_leads)}   edit Leads: {_yes(c.can_update_leads)}   "
        f"edit Contacts: {_yes(c.can_update_contacts)}   create Tasks: {_yes(c.can_create_tasks)}"
    )


def _render_users(r: PreflightReport, console: Console) -> None:
    u = r.users
    _section(console, "Pardot users without an active CRM user")
    _line(console, u.no_crm_user.count, "Pardot users with prospects and no CRM user", bad=True)
    _line(console, u.inactive_crm_user.count, "Pardot users whose CRM user is inactive", bad=True)
    _line(console, u.prospects_affected, "prospects assigned to them")
    _line(
        console,
        u.new_leads_owned_by_connector,
        "new Leads that would be owned by the connector user",
        bad=True,
    )
    columns = (
        ("pardot_user_id", "Pardot user"),
        ("email", "email"),
        ("salesforce_id", "CRM user"),
        ("crm_username", "CRM username"),
        ("prospects", "prospects"),
        ("new_leads", "new Leads"),
    )
    _table(console, u.no_crm_user, columns)
    _table(console, u.inactive_crm_user, columns)


def _render_duplicates(r: PreflightReport, console: Console) -> None:
    d = r.duplicates
    _section(console, "Duplicate emails in the CRM")
    _line(console, d.emails.count, "emails held by more than one Contact/Lead", bad=True)
    _line(console, d.records, "records involved")
    _line(console, d.prospects, "prospects that would link to one of them")
    _table(
        console,
        d.emails,
        (
            ("email", "email"),
            ("contacts", "Contacts"),
            ("leads", "Leads"),
            ("links_to", "links to"),
            ("prospect_ids", "prospects"),
        ),
    )


def _render_prospects(r: PreflightReport, console: Console) -> None:
    p = r.prospects
    _section(console, "Prospects")
    rows = (
        (p.link_contact, "would link to an existing Contact", False),
        (p.link_lead, "would link to an existing Lead", False),
        (p.create_lead, "would create a new Lead", False),
        (p.unassigned, "would not sync: unassigned and no matching record", True),
        (p.no_email, "would not sync: no email", True),
        (p.crm_deleted, "name a CRM record that is gone (marked crm_deleted)", True),
        (p.other_skip, "would not sync for another reason", True),
        (p.unknown_placeholder, "new Leads that need [[unknown]] for LastName/Company", True),
    )
    for group, text, bad in rows:
        _line(console, group.count, text, bad=bad)
    for group, text, _ in rows:
        if group.examples:
            console.print(Text(f"  {text}:", "dim"))
            columns: Sequence[tuple[str, str]] = PROSPECT_COLUMNS
            if group is p.unknown_placeholder:
                columns = (*PROSPECT_COLUMNS[:2], ("fields", "[[unknown]] in"))
            _table(console, group, columns)


def _render_emails(r: PreflightReport, console: Console) -> None:
    e = r.emails
    _section(console, "Sent emails")
    _line(console, e.sent, "emails sent (since sync.start_at)")
    if not e.enabled:
        console.print("           sync.email_activities is off: no Task would be logged")
    _line(console, e.tasks, "would be logged as Tasks on the synced Lead/Contact")
    _line(console, e.not_logged, "would not be logged now (prospect does not sync, or off)")
    _table(
        console,
        e.examples_group,
        (
            ("email_id", "email"),
            ("prospect_id", "prospect"),
            ("sent_at", "sent"),
            ("who_id", "Task on"),
            ("subject", "subject"),
        ),
    )


def _render_owners(r: PreflightReport, console: Console) -> None:
    o = r.owners
    _section(console, "CRM owners without a Pardot user")
    _line(console, o.without_pardot_user.count, "CRM owners (users or queues)", bad=True)
    _line(console, o.assignee_kept, "linked prospects keep their Pardot assignee")
    _line(console, o.reassigned.count, "prospects reassigned in Pardot to the CRM owner's user")
    auto = o.auto_create
    state = "on" if auto.enabled else "off"
    _line(console, auto.records, f"CRM records with no prospect (auto-create is {state})")
    if auto.enabled:
        _line(console, auto.unassigned, "of them would arrive in Pardot unassigned", bad=True)
    _table(
        console,
        o.without_pardot_user,
        (
            ("owner_id", "owner"),
            ("username", "username"),
            ("kind", "kind"),
            ("records", "records"),
            ("linked_prospects", "linked prospects"),
        ),
    )
    _table(
        console,
        o.reassigned,
        (
            ("prospect_id", "prospect"),
            ("from_user", "from user"),
            ("to_user", "to user"),
            ("crm_id", "CRM record"),
        ),
    )


def _render_life_cycle(r: PreflightReport, console: Console) -> None:
    life = r.life_cycle
    if not life:
        return
    _section(console, "Record life cycle")
    for obj in ("lead", "contact"):
        _line(console, life.get(f"merge_losers_{obj}", 0), f"{obj.title()}s merged into another "
              "(their prospects' links follow the survivor)")  # fmt: skip
    _line(console, life.get("prospects_in_recycle_bin", 0),
          "prospects in Pardot's recycle bin (skipped until restored)")  # fmt: skip


def _render_fields(r: PreflightReport, console: Console) -> None:
    f = r.fields
    _section(console, "Field map against the org")
    _line(console, f.checked, "mapped Lead/Contact fields checked")
    _line(console, len(f.problems), "problems", bad=True)
    for obj, present in sorted(f.managed_package.items()):
        state = "present" if present else "MISSING (install the Account Engagement package)"
        console.print(f"           managed-package fields on {obj}: {state}")
    for obj, state in sorted(f.link_mirror.items()):
        console.print(f"           link mirror (sync.crm_link_field) on {obj}: {state}")
    group = Group(count=len(f.problems), examples=f.problems)
    _table(
        console,
        group,
        (
            ("object", "object"),
            ("field", "field"),
            ("pardot_field", "Pardot"),
            ("problem", "problem"),
        ),
    )


def _render_side(console: Console, name: str, side: Side) -> None:
    console.print(Text(f"  {name}", "bold"))
    for step in side.steps:
        console.print(f"  {_n(step['calls']):>9}  {step['step']}")
    console.print(f"  {_n(side.calls):>9}  in all")
    console.print(
        f"{'':>13}daily limit {_n(side.daily_limit)}, used today {_n(side.used_today)}, "
        f"syncd's budget {_n(side.budget)} ({_days(side.days)})"
    )
    if side.latency_ms is not None:
        console.print(f"{'':>13}{side.latency_ms} ms per call measured")


def _days(days: int | None) -> str:
    if days is None:
        return "days unknown"
    return "fits in one day" if days <= 1 else f"needs about {days} days"


def _render_api(r: PreflightReport, console: Console) -> None:
    a = r.api
    _section(console, "API calls of the first sync (estimate)")
    _render_side(console, "Salesforce", a.salesforce)
    _render_side(console, "Pardot", a.pardot)
    if a.duration_s is not None:
        took = (
            f"{a.duration_s:,.0f} seconds"
            if a.duration_s < 120
            else f"{a.duration_s / 60:,.0f} minutes"
            if a.duration_s < 7200
            else f"{a.duration_s / 3600:,.1f} hours"
        )
        console.print(f"  about {took} at the measured latency (budget pauses not included)")
