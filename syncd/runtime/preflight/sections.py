"""Preflight sections, summarised after the scan: users, duplicates, owners, emails, API."""

from __future__ import annotations

import math

from syncd.clients.salesforce import parse_sf_datetime
from syncd.domain.budget import own_cap
from syncd.domain.match import match_by_email
from syncd.domain.models import (
    CrmType,
    sf_id_key,
)
from syncd.runtime.preflight.report import (
    Side,
)
from syncd.runtime.preflight.state import (
    PARDOT_PAGE,
    SOQL_BATCH,
    _pages,
    _State,
)


class _Sections(_State):
    # -- sections after the scan ---------------------------------------------------------------

    def _users_section(self) -> None:
        u = self.report.users
        d = self.directory
        for user_id, prospects in sorted(self.assigned.items()):
            user = d.pardot_users.get(user_id)
            sf_id = user.salesforce_id if user is not None else None
            crm = None
            if sf_id:
                crm = next(
                    (c for c in d.crm_users.values() if sf_id_key(c.id) == sf_id_key(sf_id)), None
                )
            if crm is not None and crm.is_active:
                continue
            row = {
                "pardot_user_id": user_id,
                "email": user.email if user is not None else None,
                "salesforce_id": sf_id,
                "crm_username": crm.username if crm is not None else None,
                "prospects": prospects,
                "new_leads": self.connector_leads.get(user_id, 0),
            }
            group = u.inactive_crm_user if crm is not None else u.no_crm_user
            group.add(self.limit, row)
            u.prospects_affected += prospects
        u.new_leads_owned_by_connector = sum(self.connector_leads.values())

    def _duplicates_section(self) -> None:
        dup = self.report.duplicates
        for key in sorted(self.by_email):
            live = self._live(key)
            if len(live) < 2:
                continue
            dup.records += len(live)
            prospects = self.dup_prospects.get(key, [])
            dup.prospects += len(prospects)
            target = self.dup_targets.get(key)
            if target is None:
                first = match_by_email(key, [b.record() for b in live])
                target = first.id if first is not None else None
            contacts = [b.id for b in live if b.type is CrmType.CONTACT]
            leads = [b.id for b in live if b.type is CrmType.LEAD]
            dup.emails.add(
                self.limit,
                {
                    "email": live[0].email,
                    "contacts": contacts,
                    "leads": leads,
                    "links_to": target,
                    "prospect_ids": prospects,
                },
            )

    def _owners_section(self) -> None:
        o = self.report.owners
        d = self.directory
        for owner_key, records in self.owner_records.most_common():
            if d.pardot_user_for(owner_key) is not None:
                continue
            crm = next((c for c in d.crm_users.values() if sf_id_key(c.id) == owner_key), None)
            kind = "queue" if d.is_queue(owner_key) else ("user" if crm is not None else "unknown")
            o.without_pardot_user.add(
                self.limit,
                {
                    "owner_id": crm.id if crm is not None else owner_key,
                    "username": crm.username if crm is not None else None,
                    "kind": kind,
                    "records": records,
                    "linked_prospects": self.linked_by_owner.get(owner_key, 0),
                },
            )
        auto = o.auto_create
        auto.enabled = self.rt.config.auto_create_prospects
        since = self.rt.config.auto_create_since
        for key, briefs in self.by_email.items():
            if key in self.prospect_emails:
                continue
            for b in briefs:
                if b.converted:
                    continue
                if since is not None and b.created and parse_sf_datetime(b.created) < since:
                    continue
                auto.records += 1
                if d.pardot_user_for(b.owner_id) is None:
                    auto.unassigned += 1

    def _emails_section(self) -> None:
        e = self.report.emails
        e.enabled = self.rt.config.email_activities

    # -- API estimate --------------------------------------------------------------------------

    def _estimate(self) -> None:
        r = self.report
        s = self.rt.settings.sync
        t = self.tally
        sf, pd = r.api.salesforce, r.api.pardot
        leads, contacts = self.record_counts[CrmType.LEAD], self.record_counts[CrmType.CONTACT]
        crm_items = leads + contacts
        sf.step("read users (directory)", 1)
        sf.step(
            "poll Leads and Contacts (SOQL pages of 2,000)",
            _pages(leads, SOQL_BATCH) + _pages(contacts, SOQL_BATCH),
        )
        sf.step("poll deletions (getDeleted)", 2)
        sf.step("match prospects by email and CRM id (SOQL IN chunks per batch)", t.match_queries)
        sf.step("create Leads (collections of 200)", t.lead_creates)
        sf.step("read new Leads back", t.readbacks)
        sf.step("update Leads and Contacts (collections of 200)", t.crm_updates)
        sf.step("log sent emails as Tasks (collections of 200)", t.task_creates)
        sf.step(
            "CRM records queued by the poll (SOQL by Id per batch)",
            math.ceil(crm_items / s.batch_size) * 2 if crm_items else 0,
        )
        sf.step(
            "next poll re-reads the records written (pages and SOQL by Id)",
            (_pages(t.written_records, SOQL_BATCH) + math.ceil(t.written_records / s.batch_size))
            if t.written_records
            else 0,
        )
        prospects = r.totals.get("prospects", 0)
        pd.step("read users (directory)", 1)
        pd.step("read prospects (pages of 1,000)", _pages(prospects, PARDOT_PAGE))
        if self.rt.config.email_activities:
            pd.step("read sent emails (pages of 1,000)", _pages(r.emails.sent, PARDOT_PAGE))
        pd.step("update prospects (one PATCH each)", t.pardot_patches)
        pd.step(
            "re-read the prospect of each linked CRM record the poll queued (one GET each)",
            len(t.linked_records),
        )
        pd.step(
            "next poll re-reads the prospects written (pages of 1,000)",
            _pages(t.pardot_patches, PARDOT_PAGE) if t.pardot_patches else 0,
        )
        auto = r.owners.auto_create
        if auto.enabled and auto.records:
            pd.step(
                "auto-create: look up by email, create, read back and link (4 each)",
                4 * auto.records,
            )
        share = s.api_budget_share
        for side, system in ((sf, "salesforce"), (pd, "pardot")):
            side.budget = own_cap(side.daily_limit, share)
            latency = self.timer.latency_s(system)
            side.latency_ms = None if latency is None else round(latency * 1000, 1)
            if side.budget:
                side.days = max(1, math.ceil(side.calls / side.budget))
        r.api.duration_s = self._duration(sf, pd)

    def _duration(self, sf: Side, pd: Side) -> float | None:
        sf_lat, pd_lat = self.timer.latency_s("salesforce"), self.timer.latency_s("pardot")
        if sf_lat is None or pd_lat is None:
            return None
        s = self.rt.settings
        patches = self.tally.pardot_patches
        # Salesforce calls of one batch run one after another; Pardot PATCHes run
        # `pardot.max_concurrency` at a time; `sync.workers` batches run side by side.
        serial = sf.calls * sf_lat + (pd.calls - patches) * pd_lat
        serial += patches * pd_lat / max(1, s.pardot.max_concurrency)
        return round(serial / max(1, s.sync.workers), 1)

    # -- problems ------------------------------------------------------------------------------

    def _problems(self) -> None:
        r = self.report
        for f in r.fields.problems:
            r.problem(
                "blocker" if f["blocker"] else "warning",
                "fields",
                f"{f['object']}.{f['field']} ({f['pardot_field']}): {f['problem']}",
            )
        c = r.connector
        if c.active is False:
            r.problem("blocker", "connector", f"connector user {c.user_id} is inactive")
        if r.prospects.create_lead.count and c.can_create_leads is False:
            r.problem(
                "blocker",
                "connector",
                f"{r.prospects.create_lead.count} new Leads are due but the connector user "
                "cannot create Leads: grant Create on Lead",
            )
        if r.emails.tasks and c.can_create_tasks is False:
            r.problem(
                "blocker",
                "connector",
                f"{r.emails.tasks} emails would be logged but the connector user cannot create "
                "Tasks: grant Create on Task, or set sync.email_activities = false",
            )
        for text in c.problems:
            if not any(text in p["message"] for p in r.problems):
                r.problem("warning", "connector", f"connector user: {text}")
        u = r.users
        if u.no_crm_user.count or u.inactive_crm_user.count:
            r.problem(
                "warning",
                "users",
                f"{u.no_crm_user.count + u.inactive_crm_user.count} Pardot users with assigned "
                f"prospects have no active CRM user: {u.new_leads_owned_by_connector} new Leads "
                "would be owned by the connector user; set their CRM username in Pardot first",
            )
        if r.duplicates.emails.count:
            r.problem(
                "warning",
                "duplicates",
                f"{r.duplicates.emails.count} emails are held by several CRM records; each "
                "prospect syncs with the oldest Contact, else the oldest Lead",
            )
        if r.prospects.unknown_placeholder.count:
            r.problem(
                "warning",
                "prospects",
                f"{r.prospects.unknown_placeholder.count} new Leads would get [[unknown]] as "
                "LastName or Company",
            )
        for name, side in (("salesforce", r.api.salesforce), ("pardot", r.api.pardot)):
            if side.days and side.days > 1:
                r.problem(
                    "warning",
                    "api",
                    f"the first sync needs about {side.calls} {name} calls, over syncd's daily "
                    f"budget of {side.budget}: it would take {side.days} days; raise "
                    "sync.api_budget_share or set sync.start_at",
                )
