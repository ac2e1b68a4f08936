"""The preflight report: its sections as dataclasses, and its JSON (version 1)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

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
    # The record life cycle: merge losers still in Salesforce's recycle bin, per object (their
    # prospects' links follow the survivors), and prospects in Pardot's recycle bin (skipped).
    life_cycle: dict[str, int] = field(default_factory=dict)
    problems: list[dict[str, str]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """The report as a JSON-ready dict (stable keys)."""
        return asdict(self)

    def problem(self, severity: str, section: str, message: str) -> None:
        self.problems.append({"severity": severity, "section": section, "message": message})
