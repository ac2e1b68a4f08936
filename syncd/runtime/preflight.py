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

from __future__ import annotations

import math
import statistics
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple, TypeVar

from syncd import errors, logs
from syncd.clients.salesforce import MAX_URI_BYTES, chunked_in_lists, parse_sf_datetime, soql_in
from syncd.domain.budget import own_cap
from syncd.domain.fieldmap import REQUIRED_CRM_FIELDS
from syncd.domain.match import email_key, match_by_email
from syncd.domain.models import (
    CrmRecord,
    CrmType,
    LinkAction,
    Policy,
    Prospect,
    ProspectInput,
    crm_type_of_id,
    same_sf_id,
    sf_id_key,
)
from syncd.domain.plan import Plan, reconcile
from syncd.domain.values import UNKNOWN_PLACEHOLDER, parse_datetime
from syncd.runtime.pipeline import prospect_from, record_from
from syncd.runtime.wiring import Runtime

log = logs.get(__name__)

REPORT_VERSION = 1
SOQL_IN_BUDGET = MAX_URI_BYTES - 2_000  # as the pipeline: room for the SELECT list and the URL
PAGE_SIZE = 1000  # prospects decided per step (Pardot's page size)
SOQL_BATCH = 2000  # records per SOQL answer page
PARDOT_PAGE = 1000  # records per Pardot query page
COLLECTION = 200  # records per sObject Collections call
EMAIL_FIELDS = ("id", "prospectId", "subject", "sentAt")
# The Pardot (Account Engagement) managed package puts these on Lead and Contact.
MANAGED_PACKAGE_FIELDS = (
    "pi__score__c",
    "pi__grade__c",
    "pi__campaign__c",
    "pi__comments__c",
    "pi__created_date__c",
    "pi__last_activity__c",
)
SYNCING = frozenset(
    {LinkAction.LINK, LinkAction.KEEP, LinkAction.MOVE_TO_CONTACT, LinkAction.CREATE_LEAD}
)
T = TypeVar("T")


# -- the report --------------------------------------------------------------------------------


@dataclass
class Group:
    """A count and the first `limit` example rows."""

    count: int = 0
    examples: list[dict[str, Any]] = field(default_factory=list)

    def add(self, limit: int, row: Mapping[str, Any] | Callable[[], Mapping[str, Any]]) -> None:
        self.count += 1
        if len(self.examples) < limit:
            self.examples.append(dict(row() if callable(row) else row))


@dataclass
class Connector:
    user_id: str = ""
    username: str | None = None
    active: bool | None = None
    can_create_leads: bool | None = None
    can_update_leads: bool | None = None
    can_update_contacts: bool | None = None
    can_create_tasks: bool | None = None
    problems: list[str] = field(default_factory=list)


@dataclass
class Users:
    no_crm_user: Group = field(default_factory=Group)
    inactive_crm_user: Group = field(default_factory=Group)
    prospects_affected: int = 0
    new_leads_owned_by_connector: int = 0


@dataclass
class Duplicates:
    emails: Group = field(default_factory=Group)
    records: int = 0
    prospects: int = 0


@dataclass
class Prospects:
    link_contact: Group = field(default_factory=Group)
    link_lead: Group = field(default_factory=Group)
    create_lead: Group = field(default_factory=Group)
    unassigned: Group = field(default_factory=Group)
    no_email: Group = field(default_factory=Group)
    crm_deleted: Group = field(default_factory=Group)
    other_skip: Group = field(default_factory=Group)
    unknown_placeholder: Group = field(default_factory=Group)


@dataclass
class Emails:
    enabled: bool = True
    sent: int = 0
    tasks: int = 0
    not_logged: int = 0
    examples_group: Group = field(default_factory=Group)


@dataclass
class AutoCreate:
    enabled: bool = False
    records: int = 0
    unassigned: int = 0


@dataclass
class Owners:
    without_pardot_user: Group = field(default_factory=Group)
    assignee_kept: int = 0
    reassigned: Group = field(default_factory=Group)
    auto_create: AutoCreate = field(default_factory=AutoCreate)


@dataclass
class Fields:
    checked: int = 0
    managed_package: dict[str, bool] = field(default_factory=dict)
    problems: list[dict[str, Any]] = field(default_factory=list)
    # sync.crm_link_field: per object, "ok" or what is wrong with the link's mirror field.
    link_mirror: dict[str, str] = field(default_factory=dict)


@dataclass
class Side:
    calls: int = 0
    steps: list[dict[str, Any]] = field(default_factory=list)
    daily_limit: int | None = None
    used_today: int | None = None
    budget: int | None = None
    days: int | None = None
    latency_ms: float | None = None

    def step(self, name: str, calls: int) -> None:
        if calls:
            self.steps.append({"step": name, "calls": calls})
            self.calls += calls


@dataclass
class Api:
    salesforce: Side = field(default_factory=Side)
    pardot: Side = field(default_factory=Side)
    duration_s: float | None = None


@dataclass
class PreflightReport:
    """Everything `syncd preflight` shows; see the module docstring for the JSON keys."""

    version: int
    generated_at: str
    limit: int
    settings: dict[str, Any]
    totals: dict[str, int] = field(default_factory=dict)
    connector: Connector = field(default_factory=Connector)
    users: Users = field(default_factory=Users)
    duplicates: Duplicates = field(default_factory=Duplicates)
    prospects: Prospects = field(default_factory=Prospects)
    emails: Emails = field(default_factory=Emails)
    owners: Owners = field(default_factory=Owners)
    fields: Fields = field(default_factory=Fields)
    api: Api = field(default_factory=Api)
    problems: list[dict[str, str]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """The report as a JSON-ready dict (stable keys)."""
        return asdict(self)

    def problem(self, severity: str, section: str, message: str) -> None:
        self.problems.append({"severity": severity, "section": section, "message": message})


# -- compact CRM records -----------------------------------------------------------------------


class Brief(NamedTuple):
    """What preflight keeps of every Lead and Contact (memory: a few dozen bytes each)."""

    type: CrmType
    id: str
    email: str | None
    owner_id: str | None
    created: str | None
    converted: bool
    converted_contact_id: str | None

    def record(self) -> CrmRecord:
        created = (
            parse_sf_datetime(self.created) if self.created else datetime(1970, 1, 1, tzinfo=UTC)
        )
        return CrmRecord(
            type=self.type,
            id=self.id,
            email=self.email,
            fields={},
            owner_id=self.owner_id,
            created_date=created,
            last_modified=created,
            is_converted=self.converted,
            converted_contact_id=self.converted_contact_id,
        )


@dataclass
class _Timer:
    """Latency samples of preflight's own calls, per side."""

    samples: dict[str, list[float]] = field(
        default_factory=lambda: {"salesforce": [], "pardot": []}
    )

    async def timed(self, system: str, call: Awaitable[T]) -> T:
        start = time.perf_counter()
        try:
            return await call
        finally:
            self.samples[system].append(time.perf_counter() - start)

    def latency_s(self, system: str) -> float | None:
        found = self.samples[system]
        return statistics.median(found) if found else None


@dataclass
class _Batch:
    """One pipeline batch (`sync.batch_size` items) as the estimate models it."""

    emails: list[str] = field(default_factory=list)
    ids: dict[CrmType, list[str]] = field(
        default_factory=lambda: {CrmType.LEAD: [], CrmType.CONTACT: []}
    )
    converted: int = 0
    creates: int = 0
    updates: dict[CrmType, int] = field(
        default_factory=lambda: {CrmType.LEAD: 0, CrmType.CONTACT: 0}
    )
    tasks: int = 0
    items: int = 0


@dataclass
class _Tally:
    """Running totals for the API estimate."""

    match_queries: int = 0
    lead_creates: int = 0
    readbacks: int = 0
    crm_updates: int = 0
    task_creates: int = 0
    pardot_patches: int = 0
    linked_records: set[str] = field(default_factory=set)
    written_records: int = 0


def _chunks(values: Iterable[str]) -> int:
    return sum(1 for _ in chunked_in_lists(values, max_chars=SOQL_IN_BUDGET))


def _pages(n: int, size: int) -> int:
    return max(1, math.ceil(n / size))


# -- the builder -------------------------------------------------------------------------------


class _Builder:
    def __init__(self, rt: Runtime, limit: int, now: datetime) -> None:
        self.rt = rt
        self.limit = max(0, limit)
        s = rt.settings.sync
        self.report = PreflightReport(
            version=REPORT_VERSION,
            generated_at=now.isoformat(),
            limit=self.limit,
            settings={
                "assignment": s.assignment,
                "email_activities": s.email_activities,
                "auto_create_prospects": s.auto_create_prospects,
                "api_budget_share": s.api_budget_share,
                "batch_size": s.batch_size,
                "start_at": s.start_at,
            },
        )
        self.timer = _Timer()
        self.describes: dict[str, dict[str, Any]] = {}
        self.field_info: dict[str, dict[str, dict[str, Any]]] = {}
        self.select: dict[CrmType, tuple[str, ...]] = {}
        self.by_email: dict[str, list[Brief]] = {}
        self.owner_records: Counter[str] = Counter()
        self.record_counts: Counter[CrmType] = Counter()
        self.emails_per_prospect: dict[int, int] = {}
        self.first_email: dict[int, tuple[int, str, str]] = {}
        self.prospect_emails: set[str] = set()
        self.assigned: Counter[int] = Counter()
        self.connector_leads: Counter[int] = Counter()
        self.linked_by_owner: Counter[str] = Counter()
        self.dup_prospects: dict[str, list[int]] = {}
        self.dup_targets: dict[str, str] = {}
        self.taken: set[str] = set()
        self.tally = _Tally()
        self.batch = _Batch()
        self.start_at = self._start_at()

    def _start_at(self) -> datetime | None:
        """Where the first sync's feeds start (`sync.start_at`; None: from the beginning)."""
        return (
            parse_datetime(self.rt.settings.sync.start_at)
            if self.rt.settings.sync.start_at
            else None
        )

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

    # -- describe and fields -------------------------------------------------------------------

    async def _describe(self) -> None:
        for name in ("Lead", "Contact", "Task"):
            try:
                answer = await self.timer.timed("salesforce", self.rt.salesforce.describe(name))
            except errors.APIError as exc:
                self.report.problem(
                    "blocker", "connector", f"cannot describe {name}: {exc.code} {exc.message}"
                )
                continue
            self.describes[name] = answer
            self.field_info[name] = {
                str(f.get("name")): dict(f)
                for f in answer.get("fields") or []
                if isinstance(f, Mapping)
            }
        for crm_type in CrmType:
            info = self.field_info.get(crm_type.value)
            wanted = self.rt.crm_select_fields(crm_type)
            # A field the org lacks would fail every SOQL: read what exists (reported below).
            self.select[crm_type] = (
                wanted if info is None else tuple(f for f in wanted if f in info)
            )

    def _check_fields(self) -> None:
        out = self.report.fields
        for crm_type in CrmType:
            info = self.field_info.get(crm_type.value)
            if info is None:
                continue
            out.managed_package[crm_type.value] = all(f in info for f in MANAGED_PACKAGE_FIELDS)
            for rule in self.rt.field_map.synced_rules(crm_type):
                name = rule.crm_name(crm_type)
                if name is None:
                    continue
                out.checked += 1
                problem = self._field_problem(crm_type, name, rule.effective_policy, info)
                if problem is not None:
                    text, blocker = problem
                    out.problems.append(
                        {
                            "object": crm_type.value,
                            "field": name,
                            "pardot_field": rule.pardot,
                            "problem": text,
                            "blocker": blocker,
                        }
                    )

        mirror = self.rt.config.crm_link_field
        if mirror:
            self._check_mirror(mirror)

    def _check_mirror(self, name: str) -> None:
        """The link's mirror must exist on Lead and Contact, hold text, and be editable by the
        connector user (it is written when a link is made or moves)."""
        out = self.report.fields
        for crm_type in CrmType:
            info = self.field_info.get(crm_type.value)
            if info is None:
                continue
            spec = info.get(name)
            if spec is None:
                problem = (
                    f"not on {crm_type.value}: create it (Text, 18) or unset sync.crm_link_field"
                )
            elif spec.get("type") not in ("string", "textarea"):
                problem = f"is a {spec.get('type')} field: make it Text (the prospect id as text)"
            elif not (spec.get("createable") and spec.get("updateable")):
                problem = (
                    "not editable by the connector user (field-level security): grant Edit, "
                    "or the link cannot be mirrored"
                )
            else:
                out.link_mirror[crm_type.value] = "ok"
                continue
            out.link_mirror[crm_type.value] = problem
            out.problems.append(
                {
                    "object": crm_type.value,
                    "field": name,
                    "pardot_field": "(sync.crm_link_field)",
                    "problem": problem,
                    "blocker": True,
                }
            )

    @staticmethod
    def _field_problem(
        crm_type: CrmType, name: str, policy: Policy, info: Mapping[str, Mapping[str, Any]]
    ) -> tuple[str, bool] | None:
        spec = info.get(name)
        if spec is None:
            hint = (
                "install the Account Engagement (Pardot) managed package"
                if name.startswith("pi__")
                else 'create it, or set its policy to "none" in [fields]'
            )
            return f"not on {crm_type.value} (every SOQL naming it fails): {hint}", True
        writes_crm = policy not in (Policy.TO_PARDOT, Policy.NONE)
        if writes_crm and not spec.get("updateable"):
            return (
                "not updateable for the connector user (field-level security or a read-only "
                'field): Pardot values cannot be written; grant Edit or set policy "to_pardot"',
                False,
            )
        if crm_type is CrmType.LEAD and writes_crm and not spec.get("createable"):
            return "not createable: new Leads are created without it", False
        return None

    def _check_connector(self, user_id: str) -> None:
        c = self.report.connector
        c.user_id = user_id
        user = next(
            (u for u in self.directory.crm_users.values() if sf_id_key(u.id) == sf_id_key(user_id)),
            None,
        )
        if user is not None:
            c.username, c.active = user.username, user.is_active
        heads = self.describes
        if "Lead" in heads:
            c.can_create_leads = bool(heads["Lead"].get("createable"))
            c.can_update_leads = bool(heads["Lead"].get("updateable"))
            lead_fields = self.field_info.get("Lead", {})
            for required in sorted(REQUIRED_CRM_FIELDS[CrmType.LEAD]):
                if not (lead_fields.get(required) or {}).get("createable"):
                    c.can_create_leads = False
                    c.problems.append(f"Lead.{required} is not createable")
        if "Contact" in heads:
            c.can_update_contacts = bool(heads["Contact"].get("updateable"))
        if "Task" in heads:
            c.can_create_tasks = bool(heads["Task"].get("createable"))
        for flag, text in (
            (c.can_create_leads, "cannot create Leads"),
            (c.can_update_leads, "cannot edit Leads"),
            (c.can_update_contacts, "cannot edit Contacts"),
            (c.can_create_tasks, "cannot create Tasks"),
        ):
            if flag is False:
                c.problems.append(text)

    async def _limits(self) -> None:
        sf = self.report.api.salesforce
        try:
            answer = await self.timer.timed("salesforce", self.rt.salesforce.limits())
        except errors.APIError as exc:
            log.warning("preflight_limits_unavailable", code=exc.code)
            answer = {}
        daily = answer.get("DailyApiRequests") if isinstance(answer, Mapping) else None
        if isinstance(daily, Mapping) and daily.get("Max") is not None:
            sf.daily_limit = int(daily["Max"])
            if daily.get("Remaining") is not None:
                sf.used_today = sf.daily_limit - int(daily["Remaining"])
        usage = self.rt.salesforce.usage  # Sforce-Limit-Info of the last answer
        if usage is not None:
            sf.daily_limit = sf.daily_limit or usage.limit
            sf.used_today = usage.used
        pd = self.report.api.pardot
        pd.daily_limit = self.rt.settings.pardot.daily_api_limit

    # -- reading -------------------------------------------------------------------------------

    async def _scan_crm(self) -> None:
        """Every Lead and Contact, compactly: the email index, owners, counts."""
        for crm_type in CrmType:
            names = ["Id", "Email", "OwnerId", "CreatedDate"]
            if crm_type is CrmType.LEAD:
                names += ["IsConverted", "ConvertedContactId"]
            names = [n for n in names if n in self.select[crm_type] or n == "Id"]
            soql = f"SELECT {', '.join(names)} FROM {crm_type.value}"
            rows = 0
            async for raw in self.rt.salesforce.query(soql):
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

    async def _full_records(
        self, crm_type: CrmType, where: str, values: list[str]
    ) -> list[CrmRecord]:
        out: list[CrmRecord] = []
        if not values:
            return out
        select = ", ".join(self.select[crm_type])
        for chunk in chunked_in_lists(values, max_chars=SOQL_IN_BUDGET):
            soql = f"SELECT {select} FROM {crm_type.value} WHERE {soql_in(where, chunk)}"
            async for raw in self.rt.salesforce.query(soql):
                out.append(record_from(raw, crm_type))
        return out

    async def _decide_page(self, page: list[Prospect]) -> None:
        """Read the page's CRM records in full (as the pipeline does) and decide each prospect."""
        emails = sorted(
            {p.email.strip() for p in page if p.email and email_key(p.email) in self.by_email}
        )
        ids: dict[CrmType, list[str]] = {CrmType.LEAD: [], CrmType.CONTACT: []}
        for p in page:
            kind = crm_type_of_id(p.crm_id or "")
            if kind is not None and p.crm_id:
                ids[kind].append(p.crm_id)
        by_id: dict[str, CrmRecord] = {}
        candidates: dict[str, list[CrmRecord]] = {}
        for kind in CrmType:
            for rec in await self._full_records(kind, "Id", ids[kind]):
                by_id[sf_id_key(rec.id)] = rec
            for rec in await self._full_records(kind, "Email", emails):
                key = email_key(rec.email)
                if key:
                    candidates.setdefault(key, []).append(rec)
        converted = [
            r.converted_contact_id
            for r in by_id.values()
            if r.is_converted
            and r.converted_contact_id
            and sf_id_key(r.converted_contact_id) not in by_id
        ]
        for rec in await self._full_records(CrmType.CONTACT, "Id", converted):
            by_id[sf_id_key(rec.id)] = rec
        for p in page:
            self._decide(p, by_id, candidates)

    def _decide(
        self, p: Prospect, by_id: Mapping[str, CrmRecord], candidates: Mapping[str, list[CrmRecord]]
    ) -> None:
        key = email_key(p.email)
        if key:
            self.prospect_emails.add(key)
        if p.user_id is not None:
            self.assigned[p.user_id] += 1
        linked = by_id.get(sf_id_key(p.crm_id)) if p.crm_id else None
        converted = None
        if linked is not None and linked.is_converted and linked.converted_contact_id:
            converted = by_id.get(sf_id_key(linked.converted_contact_id))
        usable = [c for c in (candidates.get(key, []) if key else []) if not c.is_converted]
        # Records an earlier prospect (same email, AMPSEA) links to are taken, as in the store.
        taken = frozenset(c.id for c in usable if sf_id_key(c.id) in self.taken)
        inp = ProspectInput(
            prospect=p,
            link=None,
            linked=linked,
            converted_contact=converted,
            candidates=usable,
            taken_crm_ids=taken,
        )
        plan = reconcile(
            inp, config=self.rt.config, directory=self.directory, now=datetime.now(UTC)
        )
        target = plan.crm_id
        record = next(
            (
                r
                for r in (*usable, linked, converted)
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

    def _live(self, key: str) -> list[Brief]:
        return [b for b in self.by_email.get(key, []) if not b.converted]

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


def _reason(plan: Plan) -> str:
    if plan.skip_reason:
        return plan.skip_reason
    for d in plan.decisions:
        if d.action == plan.action.value:
            return d.reason
    return plan.decisions[0].reason if plan.decisions else ""


async def _timed_iter(
    timer: _Timer, system: str, rows: AsyncIterator[dict[str, Any]]
) -> AsyncIterator[dict[str, Any]]:
    """Yield `rows`, timing the first row's wait (one API round trip) as a latency sample."""
    start = time.perf_counter()
    first = True
    async for row in rows:
        if first:
            timer.samples[system].append(time.perf_counter() - start)
            first = False
        yield row


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
