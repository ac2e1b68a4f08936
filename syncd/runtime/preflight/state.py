"""Preflight's working state: what the scans gather, the API tally, and small helpers."""

from __future__ import annotations

import math
import statistics
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple, TypeVar

from syncd.clients.records import in_query_count
from syncd.clients.salesforce import parse_sf_datetime
from syncd.domain.models import (
    CrmRecord,
    CrmType,
    Directory,
    LinkAction,
)
from syncd.domain.plan import Plan
from syncd.domain.values import parse_datetime
from syncd.runtime.preflight.report import (
    PreflightReport,
)
from syncd.runtime.wiring import Runtime

REPORT_VERSION = 1
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
    return in_query_count(values)


def _pages(n: int, size: int) -> int:
    return max(1, math.ceil(n / size))


class _State:
    """What the scans gather (shared by the checks, the scan and the sections)."""

    directory: Directory

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

    def _live(self, key: str) -> list[Brief]:
        return [b for b in self.by_email.get(key, []) if not b.converted]


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
