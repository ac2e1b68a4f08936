"""The reconcile pipeline: claim a batch, load both sides in bulk, decide per prospect, apply.

One batch, as `syncd.runtime.worker.Worker.batch()` runs it (`claim`, then `process`):

1. **claim** up to `sync.batch_size` due items (a lease; other workers skip them).
2. **load** everything the batch needs in a few calls: prospects (the poller's snapshot when it
   is newer than our last write, else Pardot GETs within the concurrency cap), links from the
   store, CRM records by `Id IN (...)` and `Email IN (...)` for Leads and Contacts (chunked under
   the URI limit), the Contacts of converted Leads, users and queues (the directory, cached),
   and the sent emails not yet logged.
3. **decide**: `domain.plan.reconcile` per prospect (pure).
4. **apply**, in this order: Lead creates (sObject Collections of 200, exactly once: a create
   whose answer was lost is re-matched by email, never blindly resent), the follow-up plan of
   each new Lead, prospect creates, CRM updates (`update_many`), email Tasks (reserved in the
   store first, so a lost answer is found again by its marker instead of created twice), Pardot
   updates (concurrently, within `pardot.max_concurrency`); then ONE store transaction: links and
   merge bases, audit lines, and the items completed, retried later or parked in the error queue.

Per item: success -> complete; `RetriableAPIError` -> retry later with `domain.retry` backoff;
`PermanentAPIError` (also per-record collection errors) -> the sync error queue with code and
message. `BudgetExhaustedError` is not an `APIError`, so no `except APIError` here swallows it:
raised while loading, it leaves `process` and the worker releases the batch; raised while
applying, `process` settles the batch with every unfinished item given back without using an
attempt (what was done stays done: a created Lead stays linked), then raises it so the side
pauses (`syncd.runtime.worker`'s docstring has the whole table, bugs included). A plan that
changes nothing writes nothing, so reprocessing an item is harmless.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from syncd import errors, logs
from syncd.clients.salesforce import (
    MAX_URI_BYTES,
    SaveResult,
    chunked_in_lists,
    parse_sf_datetime,
    soql_in,
)
from syncd.domain import retry as retry_rules
from syncd.domain.fieldmap import PARDOT_LINK_FIELDS
from syncd.domain.match import email_key
from syncd.domain.models import (
    CrmRecord,
    CrmType,
    Directory,
    Link,
    LinkAction,
    Prospect,
    ProspectInput,
    SentEmail,
    crm_type_of_id,
    sf_id_key,
    thaw,
)
from syncd.domain.plan import (
    Plan,
    TaskSpec,
    mirror_value,
    parse_task_marker,
    reconcile,
    task_fields,
)
from syncd.domain.values import parse_datetime
from syncd.runtime.control import SIDES, raise_if_paused
from syncd.runtime.pollers import EMAILS_KV
from syncd.runtime.wiring import Runtime
from syncd.store.models import AuditLine, NewItem, QueueItem, Reason
from syncd.store.models import Link as StoredLink

log = logs.get(__name__)

SOQL_IN_BUDGET = MAX_URI_BYTES - 2_000  # room for the SELECT list and the rest of the URL
SYNC_META = "_sync"  # key in the stored merge base for syncd's own bookkeeping
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


# -- small helpers ------------------------------------------------------------------------------


def prospect_from(raw: Mapping[str, Any]) -> Prospect:
    """A domain `Prospect` from a Pardot v5 record (the feed's snapshot or a GET).

    Raises ValueError naming the field when the record's id, email or userId has a type the
    API never sends (the caller parks that one record instead of failing its batch).
    """
    updated = parse_datetime(raw.get("updatedAt")) or EPOCH
    user = raw.get("userId")
    email = raw.get("email")
    if email is not None and not isinstance(email, str):
        raise ValueError(f"email is a {type(email).__name__}, not text")
    if isinstance(user, bool) or not isinstance(user, int | str | None):
        raise ValueError(f"userId is a {type(user).__name__}, not a number")
    try:
        user_id = int(user) if user not in (None, "") else None
    except ValueError:
        raise ValueError(f"userId {str(user)[:40]!r} is not a number") from None
    return Prospect(
        id=int(raw["id"]),
        email=email,
        user_id=user_id,
        fields={k: v for k, v in raw.items()},
        updated_at=updated,
        crm_id=_native_link(raw),
        is_deleted=bool(raw.get("isDeleted")),
    )


def _native_link(raw: Mapping[str, Any]) -> str | None:
    """The CRM record Salesforce's own connector linked the prospect to, if any: a matching
    hint only (syncd never writes these read-only fields; its own link lives in the store)."""
    for name in PARDOT_LINK_FIELDS:
        value = raw.get(name)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None


def record_from(raw: Mapping[str, Any], crm_type: CrmType | None = None) -> CrmRecord:
    """A domain `CrmRecord` from a Salesforce Lead/Contact record.

    Raises ValueError when `Id` or `Email` has a type the API never sends.
    """
    for name in ("Id", "Email"):
        value = raw.get(name)
        if value is not None and not isinstance(value, str):
            raise ValueError(f"{name} is a {type(value).__name__}, not text")
    attrs = raw.get("attributes")
    kind = crm_type
    if kind is None and isinstance(attrs, Mapping) and attrs.get("type") in ("Lead", "Contact"):
        kind = CrmType(attrs["type"])
    if kind is None:
        kind = crm_type_of_id(str(raw["Id"])) or CrmType.LEAD
    fields = {k: v for k, v in raw.items() if k != "attributes"}

    def when(name: str) -> datetime:
        value = raw.get(name)
        if isinstance(value, str) and value:
            return parse_sf_datetime(value)
        return EPOCH

    return CrmRecord(
        type=kind,
        id=str(raw["Id"]),
        email=raw.get("Email"),
        fields=fields,
        owner_id=raw.get("OwnerId"),
        created_date=when("CreatedDate"),
        last_modified=when("LastModifiedDate"),
        is_converted=bool(raw.get("IsConverted")),
        converted_contact_id=raw.get("ConvertedContactId") or None,
        is_deleted=bool(raw.get("IsDeleted")),
    )


def _readable_record(raw: Mapping[str, Any], crm_type: CrmType) -> CrmRecord:
    """`record_from`, with a malformed answer as a retriable API error of the batch's load.

    The record cannot be skipped (it may be the match that keeps a duplicate Lead from being
    created), so the works of this batch wait and retry; nothing crashes or spins.
    """
    try:
        return record_from(raw, crm_type)
    except (KeyError, TypeError, ValueError) as exc:
        raise errors.RetriableAPIError(
            system="salesforce",
            status=200,
            code="BAD_RESPONSE",
            message=f"{crm_type.value} {str(raw.get('Id'))[:18]} cannot be read: {exc}",
        ) from None


def domain_link(link: StoredLink) -> Link:
    return Link(
        prospect_id=link.prospect_id,
        crm_type=CrmType(link.crm_type),
        crm_id=link.crm_id,
        base={k: v for k, v in link.base.items() if k != SYNC_META},
        crm_deleted=link.crm_deleted,
    )


def _echo_stamp(link: StoredLink | None) -> datetime | None:
    """The prospect `updatedAt` our last Pardot write produced (kept in the stored base)."""
    if link is None:
        return None
    meta = link.base.get(SYNC_META)
    if isinstance(meta, Mapping):
        return parse_datetime(meta.get("pardot_updated_at"))
    return None


def _error_text(exc: errors.APIError) -> tuple[str, str]:
    return exc.code, logs.redact(exc.message)[:1000]


def _result_error(result: SaveResult, system: str = "salesforce") -> errors.APIError:
    first = result.errors[0] if result.errors else None
    code = first.code if first else "SAVE_FAILED"
    message = first.message if first else "the record was not saved"
    if first and first.fields:
        message = f"{message} (fields: {', '.join(first.fields)})"
    cls = errors.RetriableAPIError if result.retriable else errors.PermanentAPIError
    return cls(system=system, status=200, code=code, message=message, details=result.errors)


RANGE_MIN_IDS = 4  # a range read pays off from this many wanted ids in one cluster
RANGE_MAX_GAP = 50  # ids further apart than this start a new cluster (<= 50 rows read per id)
RANGE_MAX_SPAN = 1000  # one page of a Pardot query


def id_clusters(works: Sequence[Work]) -> tuple[list[list[Work]], list[Work]]:
    """Split works into clusters of close prospect ids (read by id range) and the rest (GET)."""
    ordered = sorted(
        (w for w in works if w.prospect_id is not None), key=lambda w: w.prospect_id or 0
    )
    clusters: list[list[Work]] = []
    current: list[Work] = []
    for w in ordered:
        pid = w.prospect_id or 0
        if current and (
            pid - (current[-1].prospect_id or 0) > RANGE_MAX_GAP
            or pid - (current[0].prospect_id or 0) >= RANGE_MAX_SPAN
        ):
            clusters.append(current)
            current = []
        current.append(w)
    if current:
        clusters.append(current)
    ranges = [c for c in clusters if len(c) >= RANGE_MIN_IDS]
    singles = [w for c in clusters if len(c) < RANGE_MIN_IDS for w in c]
    return ranges, singles


# -- per-run statistics -------------------------------------------------------------------------


@dataclass
class RunStats:
    """Counters for the summary line of `syncd once` (and the metrics)."""

    items: int = 0
    leads_created: int = 0
    prospects_created: int = 0
    linked: int = 0
    crm_fields: int = 0
    pardot_fields: int = 0
    tasks: int = 0
    owners_changed: int = 0
    marked_deleted: int = 0
    skipped: int = 0
    retried: int = 0
    errors: int = 0


# -- one unit of work ---------------------------------------------------------------------------


@dataclass(eq=False)
class Work:
    """One prospect (or CRM-only record) being synced, and the items it answers for."""

    items: list[QueueItem]
    prospect_id: int | None = None
    crm_id: str | None = None  # CRM-only work
    raw_prospect: dict[str, Any] | None = None
    prospect: Prospect | None = None
    stored_link: StoredLink | None = None
    plan: Plan | None = None
    followup: Plan | None = None
    emails: list[SentEmail] = field(default_factory=list)
    created_id: str | None = None  # the Lead (or prospect) created for this work
    created_new: bool = False  # created by this batch (not found again after a lost answer)
    created_record: CrmRecord | None = None
    pardot_updated_at: datetime | None = None
    error: errors.APIError | None = None
    paused: errors.BudgetExhaustedError | None = None  # unfinished: a side's budget ran out
    link_to_store: StoredLink | None = None
    audit: list[AuditLine] = field(default_factory=list)
    emails_logged: set[int] = field(default_factory=set)
    inp: ProspectInput | None = None
    requeue: NewItem | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.paused is None

    def fail(self, exc: errors.APIError) -> None:
        if self.ok:
            self.error = exc

    def pause(self, signal: errors.BudgetExhaustedError) -> None:
        """Stop here: the items go back to the queue without using an attempt."""
        if self.ok:
            self.paused = signal


@dataclass(eq=False)
class _TaskJob:
    """One email Task to log: the work it belongs to, the spec, and the record (WhoId)."""

    work: Work
    spec: TaskSpec
    who: str

    @property
    def key(self) -> tuple[int, str]:
        return (self.spec.email_id, self.who)


# -- the pipeline -------------------------------------------------------------------------------


class Pipeline:
    """Claims and syncs batches of queued items for one worker."""

    def __init__(self, rt: Runtime, *, worker_id: str, stats: RunStats | None = None) -> None:
        self.rt = rt
        self.worker_id = worker_id
        self.stats = stats if stats is not None else RunStats()
        self._pardot_fields = list(rt.field_map.pardot_fields())

    # -- claim ---------------------------------------------------------------------------

    async def claim(self) -> list[QueueItem]:
        """Claim the next batch of due items (after returning expired leases to the queue)."""
        rt = self.rt
        now = rt.clock()
        s = rt.settings.sync

        async def take(tx: Any) -> list[QueueItem]:
            # console pause hook (syncd.runtime.control): no batch while a side is paused
            await raise_if_paused(rt.store, tx, SIDES)
            await rt.store.queue.reap(tx, now=now, max_attempts=s.max_attempts)
            return await rt.store.queue.claim(
                tx, worker_id=self.worker_id, limit=s.batch_size, lease_s=s.lease_s, now=now
            )

        items: list[QueueItem] = await rt.store.run(take)
        return items

    # -- the whole batch -------------------------------------------------------------------

    async def process(self, items: Sequence[QueueItem]) -> list[Work]:
        """Load, decide and apply for claimed `items`; settle every item in the store."""
        works = await self._group(items)
        directory = await self.rt.directory()
        await self._load(works, directory)
        self._decide(works, directory)
        try:
            await self._apply(works, directory)
        except errors.BudgetExhaustedError as signal:
            # A side's budget ran out mid-apply: what is done stays done, the rest waits.
            for w in works:
                w.pause(signal)
        await self._settle(works)
        paused = next((w.paused for w in works if w.paused is not None), None)
        if paused is not None:
            raise paused
        return works

    async def plan_only(self, items: Sequence[QueueItem]) -> list[Plan]:
        """Load and decide without writing anything (`syncd once --dry-run`)."""
        works = await self._group(items)
        directory = await self.rt.directory()
        await self._load(works, directory)
        self._decide(works, directory)
        return [w.plan for w in works if w.plan is not None]

    # -- grouping: items -> units of work ----------------------------------------------------

    async def _group(self, items: Sequence[QueueItem]) -> list[Work]:
        by_prospect: dict[int, Work] = {}
        crm_only: dict[str, Work] = {}
        for item in items:
            if item.prospect_id is not None:
                work = by_prospect.setdefault(
                    item.prospect_id, Work(items=[], prospect_id=item.prospect_id)
                )
                work.items.append(item)
                snap = item.snapshot
                if snap and "id" in snap and str(snap.get("id")) == str(item.prospect_id):
                    work.raw_prospect = dict(snap)
            elif item.crm_id is not None:
                key = sf_id_key(item.crm_id)
                crm_only.setdefault(key, Work(items=[], crm_id=item.crm_id)).items.append(item)
            elif item.email:
                # `syncd reprocess --email`: every prospect with that email, else its CRM records.
                found = await self.rt.pardot.find_prospects_by_email(
                    item.email, self._pardot_fields
                )
                if found:
                    first = True
                    for raw in found:
                        pid = int(raw["id"])
                        work = by_prospect.setdefault(pid, Work(items=[], prospect_id=pid))
                        work.raw_prospect = dict(raw)
                        if first:
                            work.items.append(item)
                            first = False
                else:
                    records = await self._records_by_email([item.email])
                    if records:
                        # One item settles once: it rides with the first record's work.
                        for n, rec in enumerate(records):
                            work = crm_only.setdefault(
                                sf_id_key(rec.id), Work(items=[], crm_id=rec.id)
                            )
                            if n == 0:
                                work.items.append(item)
                    else:
                        work = Work(items=[item])
                        work.plan = Plan(
                            prospect_id=None,
                            action=LinkAction.SKIP,
                            crm_type=None,
                            crm_id=None,
                            skip_reason=f"no prospect or CRM record has the email {item.email}",
                        )
                        crm_only[f"e:{item.id}"] = work
        # A CRM-only record that is linked after all syncs through its prospect: queued under
        # the prospect's key, never processed here. Its `c:` key does not exclude the `p:` key,
        # so another worker may hold the prospect right now; syncing it here too would race
        # that worker (two Tasks for one email were seen in the soak).
        if crm_only:
            ids = [w.crm_id for w in crm_only.values() if w.crm_id]
            async with self.rt.store.read() as tx:
                links = await self.rt.store.links.by_crm_ids(tx, ids)
            for key, work in list(crm_only.items()):
                found_links = links.get(work.crm_id or "") or []
                if found_links:
                    pid = found_links[0].prospect_id
                    handoff = Work(items=work.items)
                    handoff.plan = Plan(
                        prospect_id=pid,
                        action=LinkAction.SKIP,
                        crm_type=None,
                        crm_id=None,
                        skip_reason=f"{work.crm_id} is linked to prospect {pid}: queued under it",
                    )
                    handoff.requeue = NewItem.for_prospect(
                        pid, Reason.CRM_CHANGE, crm_id=work.crm_id
                    )
                    crm_only[key] = handoff
        return [w for w in [*by_prospect.values(), *crm_only.values()] if w.items or w.plan]

    # -- load -------------------------------------------------------------------------------

    async def _load(self, works: list[Work], directory: Directory) -> None:
        rt = self.rt
        prospect_works = [w for w in works if w.prospect_id is not None]
        pids = [w.prospect_id for w in prospect_works if w.prospect_id is not None]
        async with rt.store.read() as tx:
            links = await rt.store.links.by_prospect_ids(tx, pids)
            pending_emails: dict[int, Any] = {}
            for pid in pids:
                value = await rt.store.kv.get(tx, EMAILS_KV.format(prospect_id=pid))
                if value:
                    pending_emails[pid] = value
        for w in prospect_works:
            assert w.prospect_id is not None
            w.stored_link = links.get(w.prospect_id)
        await self._load_prospects(prospect_works)
        for w in prospect_works:
            if w.raw_prospect is not None:
                try:
                    w.prospect = prospect_from(w.raw_prospect)
                except (KeyError, TypeError, ValueError) as exc:
                    # One malformed record fails alone (error queue), never its whole batch.
                    w.fail(
                        errors.PermanentAPIError(
                            system="pardot",
                            status=200,
                            code="BAD_RECORD",
                            message=f"prospect {w.prospect_id} cannot be read: {exc}",
                        )
                    )
            for raw in pending_emails.get(w.prospect_id or 0, []):
                sent = parse_datetime(raw.get("sentAt"))
                if sent is None:
                    continue
                w.emails.append(
                    SentEmail(
                        id=int(raw["id"]),
                        prospect_id=int(raw.get("prospectId") or w.prospect_id or 0),
                        subject=str(raw.get("subject") or ""),
                        sent_at=sent,
                    )
                )
        await self._load_crm(works)

    async def _load_prospects(self, works: list[Work]) -> None:
        """Use the poller's snapshot when it is at least as new as our last write, else GET."""
        need: list[Work] = []
        for w in works:
            snap = w.raw_prospect
            if snap is None:
                need.append(w)
                continue
            stamp = _echo_stamp(w.stored_link)
            at = parse_datetime(snap.get("updatedAt"))
            if stamp is not None and (at is None or at < stamp):
                need.append(w)  # older than our own last write: stale
        if not need:
            return

        async def get(w: Work) -> None:
            assert w.prospect_id is not None
            try:
                w.raw_prospect = await self.rt.pardot.get_prospect(
                    w.prospect_id, self._pardot_fields
                )
            except errors.APIError as exc:
                w.fail(exc)

        async def read_range(group: list[Work]) -> None:
            # One query for close-together ids instead of a GET each (a backfill's echoes and
            # CRM-side changes come in id clusters); an id not returned is deleted or in the
            # recycle bin, exactly what a GET answering "not found" means.
            ids = [w.prospect_id for w in group if w.prospect_id is not None]
            try:
                rows = await self.rt.pardot.prospects_in_id_range(
                    min(ids), max(ids), self._pardot_fields
                )
            except errors.APIError as exc:
                for w in group:
                    w.fail(exc)
                return
            by_id = {int(r["id"]): r for r in rows}
            for w in group:
                w.raw_prospect = by_id.get(w.prospect_id or 0)

        ranges, singles = id_clusters(need)
        await asyncio.gather(*(get(w) for w in singles), *(read_range(g) for g in ranges))

    async def _query_records(
        self, crm_type: CrmType, where_field: str, values: list[str]
    ) -> list[CrmRecord]:
        if not values:
            return []
        fields = ", ".join(self.rt.crm_select_fields(crm_type))
        out: list[CrmRecord] = []
        for chunk in chunked_in_lists(values, max_chars=SOQL_IN_BUDGET):
            soql = f"SELECT {fields} FROM {crm_type.value} WHERE {soql_in(where_field, chunk)}"
            async for raw in self.rt.salesforce.query(soql):
                out.append(_readable_record(raw, crm_type))
        return out

    async def _records_by_id(self, ids: Iterable[str]) -> dict[str, CrmRecord]:
        by_type: dict[CrmType, list[str]] = {CrmType.LEAD: [], CrmType.CONTACT: []}
        for crm_id in ids:
            kind = crm_type_of_id(crm_id)
            if kind is not None and crm_id not in by_type[kind]:
                by_type[kind].append(crm_id)
        out: dict[str, CrmRecord] = {}
        for kind, values in by_type.items():
            for rec in await self._query_records(kind, "Id", values):
                out[sf_id_key(rec.id)] = rec
        return out

    async def _records_by_email(self, emails: Iterable[str]) -> list[CrmRecord]:
        wanted = sorted({e.strip() for e in emails if e and e.strip()})
        out: list[CrmRecord] = []
        for kind in (CrmType.CONTACT, CrmType.LEAD):
            out.extend(await self._query_records(kind, "Email", wanted))
        return out

    def _select(self, crm_type: CrmType, where_field: str, values: list[str]) -> list[str]:
        fields = ", ".join(self.rt.crm_select_fields(crm_type))
        return [
            f"SELECT {fields} FROM {crm_type.value} WHERE {soql_in(where_field, chunk)}"
            for chunk in chunked_in_lists(values, max_chars=SOQL_IN_BUDGET)
        ]

    async def _records_by_id_and_email(
        self, ids: Iterable[str], emails: Iterable[str], mirrored: Iterable[int] = ()
    ) -> tuple[dict[str, CrmRecord], list[CrmRecord], list[CrmRecord]]:
        """`_records_by_id`, `_records_by_email` and the records whose mirror field names one of
        `mirrored` (prospect ids) in one go: the queries ride in composite calls of up to 5
        (one API call each) instead of one call per query."""
        by_type: dict[CrmType, list[str]] = {CrmType.LEAD: [], CrmType.CONTACT: []}
        for crm_id in ids:
            kind = crm_type_of_id(crm_id)
            if kind is not None and crm_id not in by_type[kind]:
                by_type[kind].append(crm_id)
        wanted = sorted({e.strip() for e in emails if e and e.strip()})
        mirror = self.rt.config.crm_link_field
        named = sorted({str(pid) for pid in mirrored}) if mirror else []
        jobs: list[tuple[CrmType, str]] = []  # (type, what the query looks up) per query
        soqls: list[str] = []
        for kind, values in by_type.items():
            for q in self._select(kind, "Id", values) if values else []:
                jobs.append((kind, "id"))
                soqls.append(q)
        for kind in (CrmType.CONTACT, CrmType.LEAD):
            for q in self._select(kind, "Email", wanted) if wanted else []:
                jobs.append((kind, "email"))
                soqls.append(q)
            for q in self._select(kind, mirror, named) if mirror and named else []:
                jobs.append((kind, "mirror"))
                soqls.append(q)
        by_id: dict[str, CrmRecord] = {}
        candidates: list[CrmRecord] = []
        mirrors: list[CrmRecord] = []
        results = await self.rt.salesforce.query_many(soqls) if soqls else []
        for (kind, what), rows in zip(jobs, results, strict=True):
            for raw in rows:
                rec = _readable_record(raw, kind)
                if what == "email":
                    candidates.append(rec)
                elif what == "mirror":
                    mirrors.append(rec)
                else:
                    by_id[sf_id_key(rec.id)] = rec
        return by_id, candidates, mirrors

    @staticmethod
    def _wanted_crm(works: list[Work]) -> tuple[list[str], list[str], list[int]]:
        """CRM ids to read (links, prospects' CRM ids, CRM-only items), emails to match, and
        the unlinked prospects whose link may be rebuilt from the mirror field."""
        ids: list[str] = []
        emails: list[str] = []
        unlinked: list[int] = []
        for w in works:
            if not w.ok:
                continue
            if w.stored_link is not None:
                ids.append(w.stored_link.crm_id)
            if w.prospect is not None:
                if w.prospect.crm_id:
                    ids.append(w.prospect.crm_id)
                if w.stored_link is None:
                    unlinked.append(w.prospect.id)
                # Only unlinked prospects match by email: a link is followed by id.
                if w.prospect.email and (w.stored_link is None or w.stored_link.crm_deleted):
                    emails.append(w.prospect.email)
            if w.crm_id is not None:
                ids.append(w.crm_id)
        return ids, emails, unlinked

    async def _load_crm(self, works: list[Work]) -> None:
        """CRM records for the whole batch: by id, by email, by the link's mirror field, and
        converted Leads' Contacts."""
        ids, emails, unlinked = self._wanted_crm(works)
        try:
            by_id, candidates, mirrors = await self._records_by_id_and_email(ids, emails, unlinked)
            converted = [
                r.converted_contact_id
                for r in [*by_id.values(), *candidates, *mirrors]
                if r.is_converted and r.converted_contact_id
            ]
            contacts = await self._records_by_id(c for c in converted if sf_id_key(c) not in by_id)
        except errors.APIError as exc:
            for w in works:
                w.fail(exc)
            return
        by_id.update(contacts)
        by_email: dict[str, list[CrmRecord]] = {}
        for rec in candidates:
            key = email_key(rec.email)
            if key:
                by_email.setdefault(key, []).append(rec)
        # Records already linked to another prospect (several prospects per email, AMPSEA).
        cand_ids = [r.id for r in candidates]
        async with self.rt.store.read() as tx:
            taken = await self.rt.store.links.by_crm_ids(tx, cand_ids) if cand_ids else {}
        by_mirror: dict[int, list[CrmRecord]] = {}
        mirror = self.rt.config.crm_link_field
        for rec in mirrors:
            pid = mirror_value(rec.fields.get(mirror or ""))
            if pid is not None:
                by_mirror.setdefault(pid, []).append(rec)
        for w in works:
            if not w.ok or w.plan is not None:
                continue
            if w.prospect is not None:
                w.inp = self._prospect_input(
                    w, w.prospect, by_id, by_email, taken, by_mirror.get(w.prospect.id, [])
                )
            elif w.crm_id is not None and w.prospect_id is None:
                record = by_id.get(sf_id_key(w.crm_id))
                w.inp = ProspectInput(prospect=None, link=None, linked=None, crm_record=record)

    @staticmethod
    def _prospect_input(
        w: Work,
        prospect: Prospect,
        by_id: Mapping[str, CrmRecord],
        by_email: Mapping[str, list[CrmRecord]],
        taken_links: Mapping[str, list[StoredLink]],
        mirrored: Sequence[CrmRecord] = (),
    ) -> ProspectInput:
        link = domain_link(w.stored_link) if w.stored_link is not None else None
        linked_id = link.crm_id if link is not None else prospect.crm_id
        linked = by_id.get(sf_id_key(linked_id)) if linked_id else None
        converted = None
        # The record the decision will follow: the link's, else (no link) a mirrored one first.
        for rec in (linked,) if link is not None else (*mirrored, linked):
            if rec is not None and rec.is_converted and rec.converted_contact_id:
                converted = by_id.get(sf_id_key(rec.converted_contact_id))
                break
        key = email_key(prospect.email)
        candidates = [c for c in (by_email.get(key, []) if key else []) if not c.is_converted]
        taken = frozenset(
            c.id
            for c in candidates
            if any(other.prospect_id != prospect.id for other in taken_links.get(c.id, []))
        )
        return ProspectInput(
            prospect=prospect,
            link=link,
            linked=linked,
            converted_contact=converted,
            candidates=candidates,
            emails=tuple(w.emails),
            taken_crm_ids=taken,
            mirrored=tuple(mirrored),
        )

    # -- decide -----------------------------------------------------------------------------

    def _decide(self, works: list[Work], directory: Directory) -> None:
        now = self.rt.clock()
        for w in works:
            if not w.ok or w.plan is not None:
                continue
            inp = w.inp
            if w.prospect_id is not None and w.prospect is None:
                w.plan = Plan(
                    prospect_id=w.prospect_id,
                    action=LinkAction.SKIP,
                    crm_type=None,
                    crm_id=None,
                    skip_reason="prospect not found in Pardot (deleted or in the recycle bin)",
                )
                continue
            if inp is None:
                continue
            w.plan = reconcile(inp, config=self.rt.config, directory=directory, now=now)

    # -- apply ------------------------------------------------------------------------------

    async def _apply(self, works: list[Work], directory: Directory) -> None:
        todo = [w for w in works if w.ok and w.plan is not None]
        await self._create_leads(
            [w for w in todo if w.plan and w.plan.action is LinkAction.CREATE_LEAD], directory
        )
        await self._create_prospects(
            [w for w in todo if w.ok and w.plan and w.plan.action is LinkAction.CREATE_PROSPECT]
        )
        await self._update_crm([w for w in todo if w.ok])
        await self._create_tasks([w for w in todo if w.ok], directory)
        await self._update_pardot([w for w in todo if w.ok])

    async def _create_leads(self, works: list[Work], directory: Directory) -> None:
        """Create Leads exactly once: never resend a create whose outcome is unknown."""
        if not works:
            return
        for auto_assign in (False, True):
            group = [w for w in works if w.plan is not None and w.plan.auto_assign is auto_assign]
            if group:
                await self._send_lead_creates(group, auto_assign=auto_assign)
        created = [w for w in works if w.created_id]
        if created:
            await self._after_lead_creates(created, directory)

    async def _send_lead_creates(self, group: list[Work], *, auto_assign: bool) -> None:
        bodies = [dict(w.plan.create_lead or {}) for w in group if w.plan is not None]
        lost_error: errors.APIError | None = None
        try:
            results = await self.rt.salesforce.create_many(
                "Lead", bodies, all_or_none=False, auto_assign=auto_assign
            )
        except errors.RetriableAPIError as exc:
            # The whole request failed in a way that may have been applied: treat every record
            # as unknown and re-match, never resend blindly.
            results = [SaveResult(id=None, success=False, errors=exc.details, retriable=True)]
            results *= len(group)
            lost_error = exc
        except errors.APIError as exc:
            for w in group:
                w.fail(exc)
            return
        unknown: list[Work] = []
        for w, result in zip(group, results, strict=True):
            if result.success and result.id:
                w.created_id = result.id
                w.created_new = True
            elif result.budget is not None:
                w.pause(result.budget)  # its chunk was refused unprocessed: nothing was created
            elif result.retriable:
                unknown.append(w)
            else:
                w.fail(_result_error(result))
        if unknown:
            await self._rematch_lost_creates(unknown, lost_error)

    async def _after_lead_creates(self, created: list[Work], directory: Directory) -> None:
        """Read the new Leads back (owner chosen by a rule, system fields) and plan the rest."""
        try:
            records = await self._records_by_id(w.created_id for w in created if w.created_id)
        except (errors.APIError, errors.BudgetExhaustedError) as exc:
            # Not read back: the Leads are still linked below (a spent budget pauses at the
            # next call).
            records = {}
            log.warning("created_leads_not_read_back", code=exc.code)
        now = self.rt.clock()
        for w in created:
            assert w.created_id is not None and w.plan is not None and w.prospect is not None
            self.stats.leads_created += 1
            record = records.get(sf_id_key(w.created_id))
            if record is None:
                values = dict(w.plan.create_lead or {})
                record = CrmRecord(
                    type=CrmType.LEAD,
                    id=w.created_id,
                    email=values.get("Email"),
                    fields=values,
                    owner_id=values.get("OwnerId"),
                    created_date=now,
                    last_modified=now,
                )
            w.created_record = record
            link = Link(
                prospect_id=w.prospect.id,
                crm_type=CrmType.LEAD,
                crm_id=w.created_id,
                base=w.plan.new_base or {},
            )
            w.link_to_store = self._stored(link, w)
            log.info("lead_created", prospect_id=w.prospect.id, lead_id=w.created_id)
            w.followup = reconcile(
                ProspectInput(prospect=w.prospect, link=link, linked=record),
                config=self.rt.config,
                directory=directory,
                now=now,
            )

    async def _rematch_lost_creates(self, works: list[Work], error: errors.APIError | None) -> None:
        """The create answer was lost: find the Lead by email; if absent, retry the item later."""
        emails = [w.prospect.email for w in works if w.prospect is not None and w.prospect.email]
        try:
            found = await self._query_records(CrmType.LEAD, "Email", sorted(set(emails)))
        except errors.APIError as exc:
            for w in works:
                w.fail(exc)
            return
        by_email: dict[str, list[CrmRecord]] = {}
        for rec in found:
            key = email_key(rec.email)
            if key and not rec.is_converted:
                by_email.setdefault(key, []).append(rec)
        for w in works:
            key = email_key(w.prospect.email if w.prospect else None)
            matches = sorted(by_email.get(key or "", []), key=lambda r: (r.created_date, r.id))
            if matches:
                w.created_id = matches[0].id
                log.info(
                    "lead_create_answer_lost_found",
                    prospect_id=w.prospect_id,
                    lead_id=w.created_id,
                )
            else:
                w.fail(
                    error
                    or errors.RetriableAPIError(
                        system="salesforce",
                        status=None,
                        code="CREATE_OUTCOME_UNKNOWN",
                        message="the Lead create answer was lost and no Lead was found yet; "
                        "the item runs again later and re-matches by email first",
                    )
                )

    async def _create_prospects(self, works: list[Work]) -> None:
        """Create prospects for CRM-only records (auto-create on), re-matching by email first."""
        for w in works:
            plan = w.plan
            assert plan is not None
            data = dict(plan.pardot_create or {})
            email = str(data.get("email") or "")
            try:
                existing = await self.rt.pardot.find_prospects_by_email(email, ["id"])
                if existing:
                    pid = int(existing[0]["id"])
                    log.info("prospect_exists_for_crm_record", prospect_id=pid, crm_id=w.crm_id)
                    w.created_id = str(pid)
                    self._requeue_prospect(w, pid)
                    continue
                created = await self.rt.pardot.create_prospect(data, ["id", "updatedAt"])
            except errors.APIError as exc:
                w.fail(exc)
                continue
            pid = int(created["id"])
            w.prospect_id = pid
            w.created_id = str(pid)
            self.stats.prospects_created += 1
            assert plan.crm_type is not None and plan.crm_id is not None
            w.link_to_store = StoredLink(
                prospect_id=pid,
                crm_type=plan.crm_type.value,
                crm_id=plan.crm_id,
                email=email,
                base=thaw(plan.new_base or {}),
                synced_at=self.rt.clock(),
            )
            # Its next sync merges with the record (and writes the link's mirror, if any).
            self._requeue_prospect(w, pid)

    def _requeue_prospect(self, w: Work, prospect_id: int) -> None:
        w.requeue = NewItem.for_prospect(prospect_id, Reason.CRM_CHANGE, crm_id=w.crm_id)

    async def _update_crm(self, works: list[Work]) -> None:
        """Field (and owner) updates to Leads and Contacts, 200 records per call."""
        for kind in (CrmType.LEAD, CrmType.CONTACT):
            batch: list[tuple[Work, dict[str, Any]]] = []
            for w in works:
                for plan in (w.plan, w.followup):
                    if plan is None or not plan.crm_update or plan.crm_type is not kind:
                        continue
                    target = plan.crm_id or w.created_id
                    if target is None:
                        continue
                    batch.append((w, {"Id": target, **dict(plan.crm_update)}))
            if not batch:
                continue
            try:
                results = await self.rt.salesforce.update_many(
                    kind.value, [body for _, body in batch], all_or_none=False
                )
            except errors.APIError as exc:
                for w, _ in batch:
                    w.fail(exc)
                continue
            for (w, body), result in zip(batch, results, strict=True):
                if result.success:
                    self.stats.crm_fields += len(body) - 1
                elif result.budget is not None:
                    w.pause(result.budget)
                else:
                    w.fail(_result_error(result))

    async def _create_tasks(self, works: list[Work], directory: Directory) -> None:
        """Log sent emails as Tasks, exactly once per (email, record).

        Each (email id, record id) pair is reserved in the store (committed) before its Task is
        created and marked done with the Task id after. A pair found still pending was being
        created when an answer was lost or the process died: the record's Tasks are searched
        for the email's marker first, and the Task is created only if it is not there.

        Exactly once must not depend on the store surviving (a lost file, a new database): a
        pair the store knew nothing of is searched for too, in bulk for the batch, unless its
        record was created by this very batch (a new Lead has no Tasks yet).
        """
        wanted: list[_TaskJob] = []
        for w in works:
            plan = w.plan
            who = (plan.crm_id or w.created_id) if plan is not None else None
            if plan is None or who is None:
                continue
            wanted.extend(_TaskJob(w, spec, who) for spec in plan.tasks)
        if not wanted:
            return
        todo, unsure = await self._reserve_tasks(wanted)
        # New reservations whose record existed before this batch: the store may have lost what
        # it knew (a Task made by an earlier store), so look for the marker before creating.
        fresh = [j for j in todo if not (j.work.created_new and j.who == j.work.created_id)]
        if fresh:
            todo = [j for j in todo if j not in fresh]
            unsure = [*unsure, *fresh]
        held = [j.key for j in [*todo, *unsure]]
        done: list[tuple[tuple[int, str], str]] = []
        released: list[tuple[int, str]] = []
        try:
            if unsure:
                found, again = await self._find_tasks(unsure)
                done.extend(found)
                todo.extend(again)
            if todo:
                created, released = await self._send_tasks(todo, directory)
                done.extend(created)
        except errors.BudgetExhaustedError:
            # Paused with the outcome of these pairs unknown: let them go, so the next attempt
            # (by any worker) searches for their Tasks by marker before creating any.
            await self._let_go(held)
            raise
        if done or released:
            async with self.rt.store.transaction() as tx:
                if done:
                    await self.rt.store.activities.mark_done(tx, done, now=self.rt.clock())
                if released:
                    await self.rt.store.activities.release(tx, released)

    async def _reserve_tasks(self, wanted: list[_TaskJob]) -> tuple[list[_TaskJob], list[_TaskJob]]:
        """Hold each pair for this worker; returns (to create, to search for first).

        New pairs are reserved (ours only if our INSERT made them); pending pairs whose hold ran
        out or was let go are taken over and searched for by marker before any create. A pair
        held by another live worker (the same email reached through another queue item) is not
        touched: that job's item retries later and then finds the Task done.
        """
        rt = self.rt
        now = rt.clock()
        hold_until = now + timedelta(seconds=rt.settings.sync.lease_s)
        keys = sorted({j.key for j in wanted})
        prospect_of = {j.key: j.work.prospect_id for j in reversed(wanted)}
        async with rt.store.transaction() as tx:
            known = await rt.store.activities.get(tx, keys)
            mine: set[tuple[int, str]] = set()
            for key in (k for k in keys if k not in known):
                mine.update(
                    await rt.store.activities.reserve(
                        tx, [key], prospect_id=prospect_of[key], now=now, hold_until=hold_until
                    )
                )
            stale = [k for k, a in known.items() if a.state == "pending"]
            taken = set(
                await rt.store.activities.take_over(tx, stale, now=now, hold_until=hold_until)
            )
        todo: list[_TaskJob] = []
        unsure: list[_TaskJob] = []
        seen: set[tuple[int, str]] = set()
        for job in wanted:
            prior = known.get(job.key)
            if prior is not None and prior.state == "done":
                job.work.emails_logged.add(job.spec.email_id)
            elif job.key in seen or job.key not in mine | taken:
                job.work.fail(
                    errors.RetriableAPIError(
                        system="salesforce",
                        status=None,
                        code="TASK_IN_FLIGHT",
                        message=(
                            f"email {job.spec.email_id} is being logged as a Task by another "
                            "worker; this item retries later"
                        ),
                    )
                )
            elif job.key in mine:
                todo.append(job)
            else:
                unsure.append(job)
            seen.add(job.key)
        return todo, unsure

    async def _find_tasks(
        self, unsure: list[_TaskJob]
    ) -> tuple[list[tuple[tuple[int, str], str]], list[_TaskJob]]:
        """Tasks of pending pairs that already exist (found by marker), and the ones that don't."""
        try:
            existing = await self._tasks_by_marker({j.who for j in unsure})
        except errors.APIError as exc:
            for job in unsure:
                job.work.fail(exc)
            await self._let_go([j.key for j in unsure])
            return [], []
        found: list[tuple[tuple[int, str], str]] = []
        again: list[_TaskJob] = []
        for job in unsure:
            task_id = existing.get((job.spec.email_id, sf_id_key(job.who)))
            if task_id:
                found.append((job.key, task_id))
                job.work.emails_logged.add(job.spec.email_id)
                log.info(
                    "task_found_after_lost_answer", email_id=job.spec.email_id, task_id=task_id
                )
            else:
                again.append(job)
        return found, again

    async def _send_tasks(
        self, todo: list[_TaskJob], directory: Directory
    ) -> tuple[list[tuple[tuple[int, str], str]], list[tuple[int, str]]]:
        """Create the Tasks; returns (created pairs with Task ids, reservations to drop)."""
        bodies = []
        for job in todo:
            body = task_fields(job.spec, job.who)
            if "OwnerId" not in body:
                # Created by an assignment rule: the Task belongs to the owner it chose.
                record = job.work.created_record
                owner = record.owner_id if record is not None else None
                usable = owner and not directory.is_queue(owner)
                body["OwnerId"] = owner if usable else directory.connector_user_id
            bodies.append(body)
        try:
            results = await self.rt.salesforce.create_many("Task", bodies, all_or_none=False)
        except errors.APIError as exc:
            # Outcome unknown: the reservations stay pending and are let go, so the next
            # attempt (by any worker) searches for the Tasks before creating them.
            for job in todo:
                job.work.fail(exc)
            await self._let_go([j.key for j in todo])
            return [], []
        done: list[tuple[tuple[int, str], str]] = []
        released: list[tuple[int, str]] = []
        unknown: list[tuple[int, str]] = []
        for job, result in zip(todo, results, strict=True):
            if result.success and result.id:
                done.append((job.key, result.id))
                job.work.emails_logged.add(job.spec.email_id)
                self.stats.tasks += 1
            elif result.budget is not None:
                released.append(job.key)  # refused unprocessed: certainly not created
                job.work.pause(result.budget)
            else:
                if result.retriable:
                    unknown.append(job.key)  # this chunk's answer was lost
                else:
                    released.append(job.key)  # refused: certainly not created
                job.work.fail(_result_error(result))
        await self._let_go(unknown)
        return done, released

    async def _let_go(self, keys: list[tuple[int, str]]) -> None:
        """End this worker's hold on Task reservations whose outcome is unknown."""
        if keys:
            async with self.rt.store.transaction() as tx:
                await self.rt.store.activities.let_go(tx, keys, now=self.rt.clock())

    async def _tasks_by_marker(self, who_ids: set[str]) -> dict[tuple[int, str], str]:
        """Existing email Tasks of these records, by (Pardot email id, WhoId) from the marker.

        `Task.Description` cannot be filtered in SOQL, so Tasks are selected by `WhoId` and
        `TaskSubtype` and the marker is matched here.
        """
        out: dict[tuple[int, str], str] = {}
        for chunk in chunked_in_lists(sorted(who_ids), max_chars=SOQL_IN_BUDGET):
            soql = (
                "SELECT Id, WhoId, Description FROM Task WHERE "
                f"{soql_in('WhoId', chunk)} AND TaskSubtype = 'Email'"
            )
            async for raw in self.rt.salesforce.query(soql):
                email_id = parse_task_marker(raw.get("Description"))
                if email_id is not None and raw.get("WhoId"):
                    out[(email_id, sf_id_key(str(raw["WhoId"])))] = str(raw["Id"])
        return out

    async def _update_pardot(self, works: list[Work]) -> None:
        """Prospect updates, concurrently (the client caps concurrency at Pardot's limit)."""

        async def one(w: Work, data: dict[str, Any]) -> None:
            assert w.prospect_id is not None
            try:
                # The budget is checked per call: one batch may hold hundreds of updates.
                self.rt.budget.check("pardot")
                answer = await self.rt.pardot.update_prospect(
                    w.prospect_id, data, ("id", "updatedAt")
                )
            except errors.BudgetExhaustedError as signal:
                w.pause(signal)  # the other updates in flight finish; this one waits
                return
            except errors.APIError as exc:
                w.fail(exc)
                return
            self.stats.pardot_fields += len(data)
            w.pardot_updated_at = parse_datetime(answer.get("updatedAt")) if answer else None

        jobs = []
        for w in works:
            if w.prospect_id is None or w.plan is None:
                continue
            data: dict[str, Any] = {}
            for plan in (w.plan, w.followup):
                if plan is not None and plan.pardot_update:
                    data.update(plan.pardot_update)
            if data:
                jobs.append(one(w, data))
        if jobs:
            await asyncio.gather(*jobs)
        paused = [w for w in works if w.paused is not None]
        if paused:
            log.warning("pardot_budget_exhausted_mid_batch", items=len(paused))

    # -- settle -----------------------------------------------------------------------------

    def _stored(self, link: Link, w: Work, *, deleted: bool | None = None) -> StoredLink:
        base = dict(thaw(link.base))
        if w.pardot_updated_at is not None:
            base[SYNC_META] = {"pardot_updated_at": w.pardot_updated_at.isoformat()}
        email = w.prospect.email if w.prospect is not None else None
        return StoredLink(
            prospect_id=link.prospect_id,
            crm_type=link.crm_type.value,
            crm_id=link.crm_id,
            email=email,
            base=base,
            synced_at=self.rt.clock(),
            crm_deleted=link.crm_deleted if deleted is None else deleted,
        )

    def _final_link(self, w: Work) -> StoredLink | None:
        """The link to store for a finished unit of work (None: leave the stored one)."""
        plan = w.followup or w.plan
        if plan is None or w.prospect is None:
            return w.link_to_store
        if plan.action is LinkAction.MARK_DELETED and plan.crm_id and plan.crm_type:
            current = w.stored_link
            return self._stored(
                Link(
                    prospect_id=w.prospect.id,
                    crm_type=plan.crm_type,
                    crm_id=plan.crm_id,
                    base=domain_link(current).base if current else {},
                    crm_deleted=True,
                ),
                w,
            )
        target = plan.crm_id or w.created_id
        if (
            plan.action
            in (
                LinkAction.KEEP,
                LinkAction.LINK,
                LinkAction.MOVE_TO_CONTACT,
                LinkAction.CREATE_LEAD,
            )
            and target
            and plan.crm_type
            and plan.new_base is not None
        ):
            link = Link(
                prospect_id=w.prospect.id,
                crm_type=plan.crm_type,
                crm_id=target,
                base=plan.new_base,
            )
            stored = self._stored(link, w)
            if w.pardot_updated_at is None and w.stored_link is not None:
                # No Pardot write this time: keep the stamp of the last one.
                meta = w.stored_link.base.get(SYNC_META)
                if meta is not None and stored.crm_id == w.stored_link.crm_id:
                    stored = StoredLink(
                        prospect_id=stored.prospect_id,
                        crm_type=stored.crm_type,
                        crm_id=stored.crm_id,
                        email=stored.email,
                        base={**stored.base, SYNC_META: meta},
                        synced_at=stored.synced_at,
                    )
            if (
                w.stored_link is not None
                and plan.writes == 0
                and w.pardot_updated_at is None
                and _same_link(stored, w.stored_link)
            ):
                return None  # nothing changed: no store write either
            return stored
        return w.link_to_store

    def _audit_lines(self, w: Work) -> list[AuditLine]:
        now = self.rt.clock()
        lines: list[AuditLine] = []
        for plan in (w.plan, w.followup):
            if plan is None:
                continue
            if plan.action is LinkAction.KEEP and plan.writes == 0:
                continue  # a no-op re-check: nothing to tell
            crm_id = plan.crm_id or w.created_id
            for d in plan.decisions:
                lines.append(
                    AuditLine(
                        at=now,
                        action=d.action,
                        prospect_id=w.prospect_id,
                        crm_id=crm_id if d.action != "create_prospect" else w.crm_id,
                        field=d.field,
                        old=thaw(d.old),
                        new=thaw(d.new),
                        policy=d.policy,
                        reason=d.reason,
                    )
                )
            if plan.action is LinkAction.SKIP and not plan.decisions and plan.skip_reason:
                lines.append(
                    AuditLine(
                        at=now,
                        action="skip",
                        prospect_id=w.prospect_id,
                        crm_id=w.crm_id,
                        reason=plan.skip_reason,
                    )
                )
        if w.error is not None:
            code, message = _error_text(w.error)
            kind = "retry" if isinstance(w.error, errors.RetriableAPIError) else "error"
            lines.append(
                AuditLine(
                    at=now,
                    action=kind,
                    prospect_id=w.prospect_id,
                    crm_id=(w.plan.crm_id if w.plan else None) or w.crm_id,
                    reason=f"{w.error.system} {code}: {message}",
                )
            )
        return lines

    def _count(self, w: Work) -> None:
        if w.paused is not None:
            return  # not processed: back in the queue
        self.stats.items += len(w.items)
        plan = w.plan
        if plan is None:
            return
        if plan.action in (LinkAction.LINK, LinkAction.MOVE_TO_CONTACT):
            self.stats.linked += 1
        elif plan.action is LinkAction.MARK_DELETED:
            self.stats.marked_deleted += 1
        elif plan.action is LinkAction.SKIP:
            self.stats.skipped += 1
        for p in (plan, w.followup):
            if p is not None and "userId" in p.pardot_update:
                self.stats.owners_changed += 1
            if p is not None and "OwnerId" in p.crm_update:
                self.stats.owners_changed += 1

    def _fate(self, w: Work, out: _Settlement, now: datetime) -> None:
        """Decide what happens to the items of one unit of work."""
        if w.ok:
            link = self._final_link(w)
            if link is not None:
                out.links.append(link)
            out.complete.extend(i.id for i in w.items)
            if w.requeue is not None:
                out.requeue.append(w.requeue)
        elif w.paused is not None:
            if w.link_to_store is not None:
                out.links.append(w.link_to_store)  # a created record stays linked
            out.release.extend(i.id for i in w.items)  # no attempt used
        else:
            if w.link_to_store is not None:
                out.links.append(w.link_to_store)  # a created record stays linked, whatever failed
            error = w.error
            assert error is not None
            s = self.rt.settings.sync
            for item in w.items:
                decision = retry_rules.next_attempt(
                    attempts=item.attempts,
                    retriable=isinstance(error, errors.RetriableAPIError),
                    now=now,
                    base_s=s.retry_base_s,
                    max_attempts=s.max_attempts,
                    retry_after_s=error.retry_after_s,
                    jitter=random.random(),
                )
                if decision.give_up or decision.retry_at is None:
                    out.fail.append((item, error))
                else:
                    out.retry.append((item, error, decision.retry_at))
        logged_any = w.emails_logged or not self.rt.config.email_activities
        if w.prospect_id is not None and w.emails and logged_any:
            # Activities off: emails sent meanwhile are not logged later either (all dropped).
            done = frozenset(w.emails_logged) if self.rt.config.email_activities else None
            out.emails[w.prospect_id] = done

    async def _settle(self, works: list[Work]) -> None:
        """ONE transaction: links, audit, emails logged, and every item's fate."""
        rt = self.rt
        now = rt.clock()
        out = _Settlement()
        for w in works:
            self._count(w)
            out.audit.extend(self._audit_lines(w))
            self._fate(w, out, now)
        async with rt.store.transaction() as tx:
            if out.links:
                await rt.store.links.upsert_many(tx, out.links, now=now)
            if out.audit:
                await rt.store.audit.append(tx, out.audit)
            for pid, logged in out.emails.items():
                # Remove only what this batch logged: the emails feed may have added emails to
                # this prospect since they were read (a rewrite from that read lost them).
                key = EMAILS_KV.format(prospect_id=pid)
                current = await rt.store.kv.get(tx, key, for_update=True) or []
                left = [] if logged is None else [e for e in current if int(e["id"]) not in logged]
                if not left:
                    await rt.store.kv.delete(tx, key)
                elif len(left) != len(current):
                    await rt.store.kv.set(tx, key, left, now=now)
            if out.complete:
                await rt.store.queue.complete(tx, out.complete, worker_id=self.worker_id)
            if out.release:
                await rt.store.queue.release(tx, out.release, worker_id=self.worker_id, now=now)
            for item, exc, at in out.retry:
                code, message = _error_text(exc)
                await rt.store.queue.retry(
                    tx,
                    [item.id],
                    worker_id=self.worker_id,
                    available_at=at,
                    code=code,
                    message=message,
                    now=now,
                )
            for item, exc in out.fail:
                code, message = _error_text(exc)
                await rt.store.queue.fail(
                    tx, [item.id], worker_id=self.worker_id, code=code, message=message, now=now
                )
            if out.requeue:
                await rt.store.queue.enqueue(tx, out.requeue, now=now)
        self.stats.retried += len(out.retry)
        self.stats.errors += len(out.fail)
        for item, exc in out.fail:
            log.warning(
                "item_failed", item_id=item.id, key=item.key, code=exc.code, system=exc.system
            )


@dataclass
class _Settlement:
    """What one batch writes to the store in its final transaction."""

    links: list[StoredLink] = field(default_factory=list)
    audit: list[AuditLine] = field(default_factory=list)
    complete: list[int] = field(default_factory=list)
    release: list[int] = field(default_factory=list)  # paused by a spent budget
    retry: list[tuple[QueueItem, errors.APIError, datetime]] = field(default_factory=list)
    fail: list[tuple[QueueItem, errors.APIError]] = field(default_factory=list)
    requeue: list[NewItem] = field(default_factory=list)
    emails: dict[int, frozenset[int] | None] = field(default_factory=dict)  # None: drop all


def _same_link(a: StoredLink, b: StoredLink) -> bool:
    return (
        a.crm_type == b.crm_type
        and sf_id_key(a.crm_id) == sf_id_key(b.crm_id)
        and dict(a.base) == dict(b.base)
        and a.crm_deleted == b.crm_deleted
    )
