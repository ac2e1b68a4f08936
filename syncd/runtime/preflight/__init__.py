"""Preflight: read both systems and say what the first sync would do, without writing anything.

`build_report(rt, limit=N)` reads the org (users, describes, limits, every Lead and Contact, every
prospect, every sent email) and runs the domain's own rules (`domain.plan.reconcile`, which
calls `match` and `owners`) on each prospect, exactly as the pipeline would on a first sync (no
stored links yet). It makes GET requests only: nothing is written to either API or to the store.

Memory stays flat in the number of prospects: Leads and Contacts are first read in a compact
form (id, email, owner, created date, conversion) into an email index; prospects are then
streamed page by page, and only the CRM records a page's emails name are read in full
(`Email IN (...)`, as the pipeline does) to decide that page. Sent emails are kept as counts
per prospect.

The report is a `PreflightReport` dataclass; `PreflightReport.to_json()` gives the JSON of
`syncd preflight --json`. Its keys are stable (version 1); every "group" below is
`{"count": int, "examples": [row, ...]}` with at most `limit` example rows:

- `version`, `generated_at` (ISO 8601 UTC), `limit`
- `settings`: `assignment`, `email_activities`, `auto_create_prospects`, `api_budget_share`,
  `batch_size`, `start_at`
- `totals`: `prospects`, `leads`, `contacts`, `sent_emails`, `pardot_users`, `crm_users`
- `connector`: `user_id`, `username`, `active`, `can_create_leads`, `can_update_leads`,
  `can_update_contacts`, `can_create_tasks`, `problems` (list of text)
- `users`: `no_crm_user` and `inactive_crm_user` (groups of Pardot users; rows `pardot_user_id`,
  `email`, `salesforce_id`, `crm_username`, `prospects`, `new_leads`),
  `prospects_affected`, `new_leads_owned_by_connector`
- `duplicates`: group of CRM emails held by more than one Contact/Lead (rows `email`,
  `contacts`, `leads`, `links_to`, `prospect_ids`), `records`, `prospects`
- `prospects`: groups `link_contact`, `link_lead`, `create_lead`, `unassigned`, `no_email`,
  `crm_deleted`, `other_skip` (rows `prospect_id`, `email`, `assigned_to`, `crm_id`,
  `reason`), and `unknown_placeholder` (new Leads that get `[[unknown]]`; rows add `fields`)
- `emails`: `enabled`, `sent`, `tasks`, `not_logged`, group `examples_group` of Tasks
  (rows `email_id`, `prospect_id`, `subject`, `sent_at`, `who_id`)
- `owners`: `without_pardot_user` (group of CRM owners; rows `owner_id`, `username`, `kind`,
  `records`, `linked_prospects`), `assignee_kept`, `reassigned` (group; rows `prospect_id`,
  `from_user`, `to_user`, `crm_id`), `auto_create` (`enabled`, `records`, `unassigned`)
- `fields`: `checked`, `managed_package` (`Lead`/`Contact`: bool), `problems` (rows
  `object`, `field`, `pardot_field`, `problem`, `blocker`)
- `api`: `salesforce` / `pardot`, each `calls`, `steps` (rows `step`, `calls`), `daily_limit`,
  `used_today`, `budget` (the `api_budget_share` of the limit), `days`, `latency_ms`;
  plus `duration_s` (estimated wall time of the first sync, budget pauses excluded)
- `problems`: rows `severity` ("blocker" | "warning"), `section`, `message`
"""

from syncd.runtime.preflight.builder import build_report
from syncd.runtime.preflight.report import Group, PreflightReport, Side

__all__ = ["Group", "PreflightReport", "Side", "build_report"]
