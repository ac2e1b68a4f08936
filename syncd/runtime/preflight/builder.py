"""Preflight scan: read both systems page by page and decide each prospect as the pipeline would."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

from syncd import errors, logs
from syncd.clients.prospects import prospect_from
from syncd.clients.records import CrmRecords
from syncd.domain.match import email_key
from syncd.domain.models import (
    CrmRecord,
    CrmType,
    LinkAction,
    Prospect,
    crm_type_of_id,
    same_sf_id,
    sf_id_key,
)
from syncd.domain.plan import Plan, reconcile
from syncd.domain.values import UNKNOWN_PLACEHOLDER
from syncd.runtime.lifecycle import count_life_cycle
from syncd.runtime.pipeline.load import CrmView, prospect_input, read_crm
from syncd.runtime.preflight.checks import _Checks
from syncd.runtime.preflight.report import (
    PreflightReport,
)
from syncd.runtime.preflight.sections import _Sections
from syncd.runtime.preflight.state import (
    COLLECTION,
    EMAIL_FIELDS,
    PAGE_SIZE,
    SYNCING,
    Brief,
    _Batch,
    _chunks,
    _reason,
    _timed_iter,
)
from syncd.runtime.wiring import Runtime

log = logs.get(__name__)


class _Builder(_Checks, _Sections):
    # -- whole run -----------------------------------------------------------------------------

    async def build(self) -> PreflightReport:
        rt = self.rt
        session = await rt.auth.session()
        directory = await rt.directory()
        self.directory = directory
        await self._describe()
        self._check_fields()
        self._check_connector(session.user_id)
        await self._limits()
        await self._scan_crm()
        await self._scan_emails()
        await self._scan_prospects()
        await self._life_cycle()
        self._users_section()
        self._duplicates_section()
        self._owners_section()
        self._emails_section()
        self._estimate()
        self._problems()
        r = self.report
        r.totals.update(
            pardot_users=len(directory.pardot_users),
            crm_users=len(directory.crm_users),
        )
        return r

    # -- reading -------------------------------------------------------------------------------

    async def _life_cycle(self) -> None:
        """Merge losers (`queryAll` COUNTs) and prospects in Pardot's recycle bin: read only."""
        try:
            counts = await count_life_cycle(self.rt.salesforce, self.rt.pardot)
        except errors.APIError as exc:
            self.report.problem(
                "warning", "life_cycle", f"cannot count merges and the recycle bin: {exc}"
            )
            return
        self.report.life_cycle = {
            **{f"merge_losers_{obj.lower()}": n for obj, n in counts.merge_losers.items()},
            "prospects_in_recycle_bin": counts.recycled_prospects,
        }

    async def _scan_crm(self) -> None:
        """Every Lead and Contact, compactly: the email index, owners, counts."""
        for crm_type in CrmType:
            names = ["Id", "Email", "OwnerId", "CreatedDate"]
            if crm_type is CrmType.LEAD:
                names += ["IsConverted", "ConvertedContactId"]
            names = [n for n in names if n in self.select[crm_type] or n == "Id"]
            rows = 0
            async for raw in self.rt.crm.compact_records(crm_type, names):
                rows += 1
                brief = Brief(
                    type=crm_type,
                    id=str(raw["Id"]),
                    email=raw.get("Email"),
                    owner_id=raw.get("OwnerId"),
                    created=raw.get("CreatedDate"),
                    converted=bool(raw.get("IsConverted")),
                    converted_contact_id=raw.get("ConvertedContactId") or None,
                )
                if brief.owner_id:
                    self.owner_records[sf_id_key(brief.owner_id)] += 1
                key = email_key(brief.email)
                if key:
                    self.by_email.setdefault(key, []).append(brief)
            self.record_counts[crm_type] = rows
        self.report.totals.update(
            leads=self.record_counts[CrmType.LEAD], contacts=self.record_counts[CrmType.CONTACT]
        )

    async def _scan_emails(self) -> None:
        """Sent emails since the feeds' start, as counts per prospect (and one example each)."""
        rows = self.rt.pardot.iter_emails(list(EMAIL_FIELDS), sent_since=self.start_at)
        sent = 0
        async for raw in _timed_iter(self.timer, "pardot", rows):
            pid = raw.get("prospectId")
            sent += 1
            if pid is None:
                continue
            pid = int(pid)
            self.emails_per_prospect[pid] = self.emails_per_prospect.get(pid, 0) + 1
            if pid not in self.first_email:
                self.first_email[pid] = (
                    int(raw["id"]),
                    str(raw.get("subject") or ""),
                    str(raw.get("sentAt") or ""),
                )
        self.report.emails.sent = sent
        self.report.totals["sent_emails"] = sent

    async def _scan_prospects(self) -> None:
        fields = list(self.rt.field_map.pardot_fields())
        rows = self.rt.pardot.iter_prospects(fields, updated_since=self.start_at)
        page: list[Prospect] = []
        total = 0
        async for raw in _timed_iter(self.timer, "pardot", rows):
            if raw.get("isDeleted"):
                continue
            page.append(prospect_from(raw))
            total += 1
            if len(page) >= PAGE_SIZE:
                await self._decide_page(page)
                page = []
        if page:
            await self._decide_page(page)
        self._close_batch()
        self.report.totals["prospects"] = total

    async def _decide_page(self, page: list[Prospect]) -> None:
        """Read the page's CRM records in full with the pipeline's own load stage (`read_crm`,
        plain GETs here) and decide each prospect as the pipeline would."""
        emails = sorted(
            {p.email.strip() for p in page if p.email and email_key(p.email) in self.by_email}
        )
        ids = [p.crm_id for p in page if p.crm_id and crm_type_of_id(p.crm_id) is not None]
        # Its own SELECT lists (fields the org lacks left out) and no mirror lookups: the
        # mirror field may not exist yet, which the report says instead of failing.
        crm = CrmRecords(self.rt.salesforce, self.select.__getitem__, mirror_field=None)
        view = await read_crm(crm, ids, emails, composite=False)
        for p in page:
            self._decide(p, view)

    def _decide(self, p: Prospect, view: CrmView) -> None:
        key = email_key(p.email)
        if key:
            self.prospect_emails.add(key)
        if p.user_id is not None:
            self.assigned[p.user_id] += 1
        # Records an earlier prospect (same email, AMPSEA) links to are taken, as in the store.
        inp = prospect_input(p, None, (), view, lambda c: sf_id_key(c.id) in self.taken)
        plan = reconcile(
            inp, config=self.rt.config, directory=self.directory, now=datetime.now(UTC)
        )
        target = plan.crm_id
        record = next(
            (
                r
                for r in (*inp.candidates, inp.linked, inp.converted_contact)
                if r is not None and target and same_sf_id(r.id, target)
            ),
            None,
        )
        self._classify(p, plan, key, record)
        self._count_calls(p, plan, key)

    # -- per prospect --------------------------------------------------------------------------

    def _row(self, p: Prospect, plan: Plan, reason: str | None = None) -> dict[str, Any]:
        return {
            "prospect_id": p.id,
            "email": p.email,
            "assigned_to": p.user_id,
            "crm_id": plan.crm_id,
            "reason": reason or _reason(plan),
        }

    def _classify(self, p: Prospect, plan: Plan, key: str | None, record: CrmRecord | None) -> None:
        out = self.report.prospects
        n = self.limit
        if plan.action in (LinkAction.LINK, LinkAction.MOVE_TO_CONTACT) and plan.crm_id:
            self.taken.add(sf_id_key(plan.crm_id))
            self.tally.linked_records.add(sf_id_key(plan.crm_id))
            group = out.link_contact if plan.crm_type is CrmType.CONTACT else out.link_lead
            group.add(n, lambda: self._row(p, plan))
            if key in self.dup_targets or (key and len(self._live(key)) > 1):
                self.dup_prospects.setdefault(key, []).append(p.id)
                self.dup_targets[key] = plan.crm_id
            self._owner_effects(p, plan, record)
        elif plan.action is LinkAction.CREATE_LEAD:
            values = plan.create_lead or {}
            out.create_lead.add(
                n,
                lambda: self._row(
                    p, plan, f"owner {values.get('OwnerId') or 'by assignment rule'}"
                ),
            )
            unknown = sorted(k for k, v in values.items() if v == UNKNOWN_PLACEHOLDER)
            if unknown:
                out.unknown_placeholder.add(
                    n, lambda: {**self._row(p, plan), "fields": ", ".join(unknown)}
                )
            owner = values.get("OwnerId")
            if (
                self.rt.config.assignment == "user"
                and p.user_id is not None
                and owner == self.directory.connector_user_id
                and self.directory.crm_owner_for(p.user_id) is None
            ):
                self.connector_leads[p.user_id] += 1
        elif plan.action is LinkAction.MARK_DELETED:
            out.crm_deleted.add(n, lambda: self._row(p, plan))
        elif plan.action is LinkAction.SKIP:
            reason = plan.skip_reason or ""
            if reason.startswith("unassigned"):
                out.unassigned.add(n, lambda: self._row(p, plan))
            elif "no email" in reason:
                out.no_email.add(n, lambda: self._row(p, plan))
            else:
                out.other_skip.add(n, lambda: self._row(p, plan))
        self._tasks(p, plan)

    def _owner_effects(self, p: Prospect, plan: Plan, record: CrmRecord | None) -> None:
        kept = any(d.action == "owner_kept" for d in plan.decisions)
        if kept:
            self.report.owners.assignee_kept += 1
        if "userId" in plan.pardot_update:
            new = plan.pardot_update["userId"]
            self.report.owners.reassigned.add(
                self.limit,
                {
                    "prospect_id": p.id,
                    "from_user": p.user_id,
                    "to_user": new,
                    "crm_id": plan.crm_id,
                },
            )
        record_owner = record.owner_id if record is not None else None
        if record_owner and self.directory.pardot_user_for(record_owner) is None:
            self.linked_by_owner[sf_id_key(record_owner)] += 1

    def _tasks(self, p: Prospect, plan: Plan) -> None:
        count = self.emails_per_prospect.get(p.id, 0)
        if not count:
            return
        if plan.action not in SYNCING or not self.rt.config.email_activities:
            self.report.emails.not_logged += count
            return
        self.report.emails.tasks += count
        group = self.report.emails.examples_group
        group.count += count
        first = self.first_email.get(p.id)
        if first is not None and len(group.examples) < self.limit:
            group.examples.append(
                {
                    "email_id": first[0],
                    "prospect_id": p.id,
                    "subject": first[1],
                    "sent_at": first[2],
                    "who_id": plan.crm_id or "(new Lead)",
                }
            )

    # -- the estimate, batch by batch ----------------------------------------------------------

    def _count_calls(self, p: Prospect, plan: Plan, key: str | None) -> None:
        b = self.batch
        b.items += 1
        if p.email and key:
            b.emails.append(p.email.strip())
        kind = crm_type_of_id(p.crm_id or "")
        if kind is not None and p.crm_id:
            b.ids[kind].append(p.crm_id)
        if plan.action is LinkAction.CREATE_LEAD:
            b.creates += 1
            self.tally.written_records += 1
            if self.rt.config.assignment == "rule":
                self.tally.pardot_patches += 1  # the owner the rule chose goes back to Pardot
        elif plan.pardot_update:
            # Only real value changes: the link lives in the store, never written back to
            # Pardot's read-only link fields (RULES.md 2a).
            self.tally.pardot_patches += 1
        if plan.crm_update and plan.crm_type is not None:
            b.updates[plan.crm_type] += 1
            self.tally.written_records += 1
        if plan.action in SYNCING and self.rt.config.email_activities:
            b.tasks += self.emails_per_prospect.get(p.id, 0)
        if b.items >= self.rt.settings.sync.batch_size:
            self._close_batch()

    def _close_batch(self) -> None:
        b, t = self.batch, self.tally
        if b.items == 0:
            return
        for kind in CrmType:
            t.match_queries += _chunks(b.ids[kind])
            if b.emails:
                t.match_queries += _chunks(b.emails)
        t.lead_creates += math.ceil(b.creates / COLLECTION)
        t.readbacks += 1 if b.creates else 0
        t.crm_updates += sum(math.ceil(n / COLLECTION) for n in b.updates.values())
        t.task_creates += math.ceil(b.tasks / COLLECTION)
        self.batch = _Batch()


async def build_report(
    rt: Runtime, *, limit: int = 10, now: datetime | None = None
) -> PreflightReport:
    """Read both systems (GET only) and report what the first sync would do; see module doc."""
    builder = _Builder(rt, limit, now or rt.clock())
    report = await builder.build()
    log.info(
        "preflight_done",
        prospects=report.totals.get("prospects", 0),
        problems=len(report.problems),
    )
    return report
