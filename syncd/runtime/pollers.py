"""Change-feed pollers: read each feed from its cursor and queue what changed, cursor included.

Feeds (RULES.md section 1):

- `pardot.prospects`: prospects by `updatedAt` (ascending, paged); each row is queued under
  `p:<id>` with the row as the item's snapshot, so the pipeline need not read it again.
- `pardot.emails`: new sent emails (by id, which only grows); each queues its prospect with the
  reason `email_sent` (only while `sync.email_activities` is on).
- `salesforce.Lead` / `salesforce.Contact`: records by `SystemModstamp` in the window
  `[cursor - overlap, signpost)`, ordered by `SystemModstamp, Id`; a record linked to a prospect
  queues `p:<prospect id>`, any other `c:<record id>`.
- `salesforce.Lead.deleted` / `salesforce.Contact.deleted`: getDeleted; a deleted record linked
  to a prospect queues that prospect (`crm_delete`), so the pipeline marks and audits it.

Each page is committed on its own: the queued items and the advanced cursor in ONE transaction,
so a crash never moves a cursor past changes that were not queued, and memory stays flat however
long the feed. Cursors never pass the poll's start (the signpost) and re-read an overlap window;
rows re-read with the same timestamp are recognised (`domain.cursor.RecentRows`) and not queued
again.

Echoes: syncd's own writes move `updatedAt` and `SystemModstamp`, so both feeds read them back.
A row that `domain.echo` recognises as syncd's own write (linked, values equal to the stored
merge base, the Pardot stamp not newer than syncd's last write) is read, counted under
`echoes` and NOT queued; the cursor still moves past it. Each page costs one store read (the
links of the page's ids), not one per row. When unsure, the row is queued.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from syncd import errors, logs
from syncd.clients.prospects import prospect_from
from syncd.clients.records import record_from
from syncd.clients.salesforce import parse_sf_datetime
from syncd.domain import cursor as cursors
from syncd.domain import echo
from syncd.domain.models import CrmType
from syncd.domain.values import parse_datetime
from syncd.runtime.control import raise_if_paused, system_of_feed
from syncd.runtime.wiring import Runtime
from syncd.store.models import Cursor as StoredCursor
from syncd.store.models import Link, NewItem, Reason
from syncd.store.pending_emails import PendingEmail

log = logs.get(__name__)

PAGE_SIZE = 1000  # rows per committed page (Pardot's maximum page; SOQL batches are 2000)
SF_DELETED_MIN_WINDOW_S = 60.0  # getDeleted works in whole minutes
SF_DELETED_MAX_BACK = timedelta(days=15)  # getDeleted keeps deletions about 15 days

# Sent emails waiting to be logged as Tasks: `store.pending_emails`; the email feed adds them in
# the same transaction as its cursor, the pipeline removes them once logged.
EMAIL_FIELDS = ("id", "prospectId", "subject", "sentAt")

FEED_PARDOT_PROSPECTS = "pardot.prospects"
FEED_PARDOT_EMAILS = "pardot.emails"


def _text(value: Any) -> str | None:
    """A text value from an API row, or None: a wrong type must not fail the whole page."""
    return value if isinstance(value, str) and value else None


def crm_feed(crm_type: CrmType) -> str:
    return f"salesforce.{crm_type.value}"


def crm_deleted_feed(crm_type: CrmType) -> str:
    return f"salesforce.{crm_type.value}.deleted"


@dataclass
class PollStats:
    """What one round of polling read and queued, per feed (`echoes`: rows read that were
    syncd's own writes coming back, not queued)."""

    read: dict[str, int] = field(default_factory=dict)
    queued: dict[str, int] = field(default_factory=dict)
    paused: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # feed -> why its read stopped
    echoes: dict[str, int] = field(default_factory=dict)

    def add(self, feed: str, read: int, queued: int, echoes: int = 0) -> None:
        self.read[feed] = self.read.get(feed, 0) + read
        self.queued[feed] = self.queued.get(feed, 0) + queued
        if echoes:
            self.echoes[feed] = self.echoes.get(feed, 0) + echoes

    @property
    def total_queued(self) -> int:
        return sum(self.queued.values())


async def _pages(rows: AsyncIterator[Any], size: int) -> AsyncIterator[list[Any]]:
    page: list[Any] = []
    async for row in rows:
        page.append(row)
        if len(page) >= size:
            yield page
            page = []
    if page:
        yield page


class Pollers:
    """Polls every feed of one runtime (one instance per process)."""

    def __init__(self, rt: Runtime, *, page_size: int = PAGE_SIZE, dry_run: bool = False) -> None:
        self.rt = rt
        self.page_size = page_size
        # Dry run: read the feeds, keep what would be queued here, write nothing to the store.
        self.dry_run = dry_run
        self.collected: list[NewItem] = []

    # -- cursor plumbing -------------------------------------------------------------------

    def _start_at(self) -> datetime:
        start = self.rt.config.auto_create_since
        if self.rt.settings.sync.start_at:
            parsed = parse_datetime(self.rt.settings.sync.start_at)
            if parsed is not None:
                return parsed
        # A first run reads everything: every record ever changed is a change to consider.
        return start if start is not None else datetime(2000, 1, 1, tzinfo=UTC)

    async def _load(self, feed: str) -> tuple[cursors.Cursor, cursors.RecentRows, dict[str, Any]]:
        async with self.rt.store.transaction() as tx:
            # console pause hook (syncd.runtime.control): a paused side's feeds are not read
            await raise_if_paused(self.rt.store, tx, [system_of_feed(feed)])
            stored = await self.rt.store.cursors.get(tx, feed)
        if stored is None:
            return cursors.initial(self._start_at()), cursors.RecentRows(), {}
        extra = dict(stored.extra or {})
        recent_raw = extra.get("recent") or []
        recent = cursors.RecentRows(
            seen=tuple((str(i), str(a)) for i, a in recent_raw),
            floor=_text(extra.get("recent_floor")),
            next_floor=_text(extra.get("recent_next_floor")),
        )
        found = cursors.Cursor(stored.position, stored.last_id)
        if feed == FEED_PARDOT_EMAILS:  # an id cursor: its time is only shown in `status`
            return found, recent, extra
        cursor = cursors.clamp_to_clock(found, saved_at=stored.updated_at, now=self.rt.clock())
        if cursor is not found:
            recent = cursors.RecentRows()  # what it remembered was read from the bogus position
            log.warning(
                "cursor_ahead_of_clock",
                feed=feed,
                position=found.position.isoformat(),
                reading_from=cursor.position.isoformat(),
            )
        return cursor, recent, extra

    async def _commit(
        self,
        feed: str,
        items: Sequence[NewItem],
        cursor: cursors.Cursor,
        recent: cursors.RecentRows | None,
        extra: Mapping[str, Any] | None = None,
        emails: Mapping[int, list[PendingEmail]] | None = None,
    ) -> None:
        if self.dry_run:
            self.collected.extend(items)
            return
        now = self.rt.clock()
        data = dict(extra or {})
        if recent is not None:
            data["recent"] = [list(pair) for pair in recent.seen]
            data["recent_floor"] = recent.floor
            data["recent_next_floor"] = recent.next_floor
        async with self.rt.store.transaction() as tx:
            if emails:
                await self.rt.store.pending_emails.add(tx, emails, now=now)
            if items:
                await self.rt.store.queue.enqueue(tx, items, now=now)
            await self.rt.store.cursors.save(
                tx,
                feed,
                StoredCursor(position=cursor.position, last_id=cursor.last_id, extra=data),
                now=now,
            )

    # -- all feeds -------------------------------------------------------------------------

    async def poll_all(self) -> PollStats:
        """Poll every feed once; a side whose budget is spent is skipped (named in `paused`)."""
        stats = PollStats()
        unreachable: dict[str, str] = {}
        for feed, system, poll in (
            (FEED_PARDOT_PROSPECTS, "pardot", self.poll_pardot_prospects),
            (FEED_PARDOT_EMAILS, "pardot", self.poll_pardot_emails),
            (crm_feed(CrmType.LEAD), "salesforce", lambda s: self.poll_crm(CrmType.LEAD, s)),
            (crm_feed(CrmType.CONTACT), "salesforce", lambda s: self.poll_crm(CrmType.CONTACT, s)),
            (
                crm_deleted_feed(CrmType.LEAD),
                "salesforce",
                lambda s: self.poll_crm_deleted(CrmType.LEAD, s),
            ),
            (
                crm_deleted_feed(CrmType.CONTACT),
                "salesforce",
                lambda s: self.poll_crm_deleted(CrmType.CONTACT, s),
            ),
        ):
            if system in unreachable:
                stats.failed[feed] = f"not polled: {system} did not answer ({unreachable[system]})"
                continue
            try:
                self.rt.budget.check(system)
                await poll(stats)
            except errors.BudgetExhaustedError as exc:
                if system not in stats.paused:
                    stats.paused.append(system)
                log.warning("poll_paused", system=system, code=exc.code)
            except errors.AuthError:
                raise  # refused credentials: nothing can be read, the caller says what to fix
            except errors.APIError as exc:
                # One feed that cannot be read (API down, a paging loop, a malformed page) must
                # not stop the other feeds or the queue: its cursor stays, the next poll retries.
                stats.failed[feed] = f"{exc.code}: {exc.message}"
                log.warning(
                    "poll_failed", feed=feed, system=exc.system, code=exc.code, message=exc.message
                )
                if exc.status is None:  # no answer at all (its retries are spent): skip its
                    unreachable[system] = exc.code  # other feeds this round
                    unreachable[exc.system] = exc.code
        return stats

    # -- Pardot ----------------------------------------------------------------------------

    async def poll_pardot_prospects(self, stats: PollStats) -> None:
        """Queue prospects whose `updatedAt` is in this poll's window."""
        feed = FEED_PARDOT_PROSPECTS
        cursor, recent, _ = await self._load(feed)
        signpost = self.rt.clock()
        settled = signpost.replace(microsecond=0)
        start, end = cursors.poll_window(
            cursor, signpost=signpost, overlap_s=self.rt.settings.sync.overlap_s
        )
        start = min(recent.read_from(start), end)
        fields = list(self.rt.field_map.pardot_fields())
        rows = self.rt.pardot.iter_prospects(fields, updated_since=start, page_size=self.page_size)
        async for page in _pages(rows, self.page_size):
            keep: list[cursors.Row] = []
            items: list[NewItem] = []
            done = False
            for raw in page:
                at = parse_datetime(raw.get("updatedAt"))
                if at is None:
                    continue
                if at >= end:
                    done = True  # ordered by updatedAt: the rest belongs to the next poll
                    break
                keep.append(cursors.Row(str(raw["id"]), at))
            fresh = {r.id for r in recent.fresh(keep)}
            echoes = await self._pardot_echoes([r for r in page if str(r.get("id")) in fresh])
            fresh -= echoes
            for raw in page:
                if str(raw.get("id")) in fresh:
                    items.append(
                        NewItem.for_prospect(
                            int(raw["id"]),
                            Reason.PARDOT_CHANGE,
                            email=_text(raw.get("email")),
                            crm_id=_text(raw.get("salesforceId")),
                            snapshot=dict(raw),
                        )
                    )
                    fresh.discard(str(raw.get("id")))
            cursor = cursors.advance(cursor, keep, signpost=end)
            recent = recent.remember(
                keep,
                cursor=cursor,
                overlap_s=self.rt.settings.sync.overlap_s,
                settled_before=settled,
            )
            await self._commit(feed, items, cursor, recent)
            stats.add(feed, len(keep), len(items), len(echoes))
            if done:
                break
        # The window was read to its end: what a burst folded becomes the floor.
        await self._commit(feed, [], cursor, recent.complete())

    async def _links(self, prospect_ids: Iterable[int]) -> dict[int, Link]:
        ids = list(prospect_ids)
        if not ids:
            return {}
        async with self.rt.store.read() as tx:
            return await self.rt.store.links.by_prospect_ids(tx, ids)

    async def _pardot_echoes(self, rows: Sequence[Mapping[str, Any]]) -> set[str]:
        """The ids (as text) of the rows that are syncd's own writes coming back."""
        ids: dict[int, Mapping[str, Any]] = {}
        for raw in rows:
            try:
                ids[int(raw["id"])] = raw
            except (KeyError, TypeError, ValueError):
                continue  # queued as before: the pipeline says what is wrong with it
        links = await self._links(ids)
        out: set[str] = set()
        for pid, link in links.items():
            if link.recycled_at is not None:
                continue  # marked as in the recycle bin: a restore must reach the pipeline
            try:
                prospect = prospect_from(ids[pid])
                crm_type = CrmType(link.crm_type)
            except (KeyError, TypeError, ValueError):
                continue
            if echo.is_pardot_echo(
                prospect,
                base=link.base,
                crm_type=crm_type,
                crm_deleted=link.crm_deleted,
                field_map=self.rt.field_map,
            ):
                out.add(str(pid))
        return out

    async def poll_pardot_emails(self, stats: PollStats) -> None:
        """Queue the prospects of newly sent emails (ids only grow: the cursor is the last id)."""
        if not self.rt.config.email_activities:
            return
        feed = FEED_PARDOT_EMAILS
        cursor, _, extra = await self._load(feed)
        after_id = int(cursor.last_id) if cursor.last_id else None
        sent_since = None if after_id is not None else self._start_at()
        rows = self.rt.pardot.iter_emails(
            list(EMAIL_FIELDS), after_id=after_id, sent_since=sent_since
        )
        read_any = False
        async for page in _pages(rows, self.page_size):
            read_any = True
            items: list[NewItem] = []
            by_prospect: dict[int, list[PendingEmail]] = {}
            last_id = cursor.last_id
            position = cursor.position
            for raw in page:
                prospect_id = raw.get("prospectId")
                if prospect_id is not None:
                    items.append(NewItem.for_prospect(int(prospect_id), Reason.EMAIL_SENT))
                    by_prospect.setdefault(int(prospect_id), []).append(
                        PendingEmail.from_row(raw, int(prospect_id))
                    )
                last_id = str(raw["id"])
                sent_at = parse_datetime(raw.get("sentAt"))
                if sent_at is not None and sent_at > position:
                    position = sent_at
            cursor = cursors.Cursor(position, last_id)
            await self._commit(feed, items, cursor, None, extra, emails=by_prospect)
            stats.add(feed, len(page), len(items))
        if not read_any:
            # Nothing new: still record the poll (the cursor's time is the feed's "last
            # successful poll" in `syncd status`; an idle feed must not look stuck).
            await self._commit(feed, [], cursor, None, extra)

    # -- Salesforce ------------------------------------------------------------------------

    async def _links_by_crm_id(self, crm_ids: Iterable[str]) -> dict[str, list[Link]]:
        """The links to each CRM id (several prospects when AMPSEA allows it)."""
        ids = list(crm_ids)
        if not ids:
            return {}
        async with self.rt.store.read() as tx:
            return await self.rt.store.links.by_crm_ids(tx, ids)

    async def _prospects_by_crm_id(self, crm_ids: Iterable[str]) -> dict[str, list[int]]:
        """The prospects linked to each CRM id (several when AMPSEA allows it)."""
        links = await self._links_by_crm_id(crm_ids)
        return {crm_id: [link.prospect_id for link in found] for crm_id, found in links.items()}

    def _crm_echo(self, crm_type: CrmType, raw: Mapping[str, Any], link: Link) -> bool:
        try:
            record = record_from(raw, crm_type)
        except (KeyError, TypeError, ValueError):
            return False
        return echo.is_crm_echo(
            record,
            linked_crm_id=link.crm_id,
            base=link.base,
            crm_deleted=link.crm_deleted,
            field_map=self.rt.field_map,
        )

    async def poll_crm(self, crm_type: CrmType, stats: PollStats) -> None:
        """Queue Leads or Contacts whose `SystemModstamp` is in this poll's window."""
        feed = crm_feed(crm_type)
        cursor, recent, _ = await self._load(feed)
        # Whole seconds: SOQL datetime literals have no fraction. The exclusive bound is the
        # NEXT second, so records stamped in the current second are read now; a record that
        # commits later with an earlier stamp is caught by the overlap re-read.
        settled = self.rt.clock().replace(microsecond=0)
        signpost = settled + timedelta(seconds=1)
        start, end = cursors.poll_window(
            cursor, signpost=signpost, overlap_s=self.rt.settings.sync.overlap_s
        )
        start = min(recent.read_from(start), end)
        rows = self.rt.crm.changed_records(crm_type, start, end)
        async for page in _pages(rows, self.page_size):
            keep = [cursors.Row(r["Id"], parse_sf_datetime(r["SystemModstamp"])) for r in page]
            fresh = {r.id for r in recent.fresh(keep)}
            records = [r for r in page if r["Id"] in fresh]
            linked = await self._links_by_crm_id(r["Id"] for r in records)
            items: list[NewItem] = []
            echoes = 0
            for r in records:
                links = linked.get(r["Id"], [])
                mine = {link.prospect_id for link in links if self._crm_echo(crm_type, r, link)}
                if links and len(mine) == len(links):
                    echoes += 1  # every prospect linked to it already holds what it holds
                    continue
                pids = [link.prospect_id for link in links if link.prospect_id not in mine]
                items.extend(self._crm_items(crm_type, r, pids))
            cursor = cursors.advance(cursor, keep, signpost=end)
            recent = recent.remember(
                keep,
                cursor=cursor,
                overlap_s=self.rt.settings.sync.overlap_s,
                settled_before=settled,
            )
            await self._commit(feed, items, cursor, recent)
            stats.add(feed, len(keep), len(items), echoes)
        await self._commit(feed, [], cursor, recent.complete())

    @staticmethod
    def _crm_items(
        crm_type: CrmType, record: Mapping[str, Any], prospect_ids: Sequence[int]
    ) -> list[NewItem]:
        if prospect_ids:
            return [
                NewItem.for_prospect(
                    pid, Reason.CRM_CHANGE, crm_id=record["Id"], email=_text(record.get("Email"))
                )
                for pid in prospect_ids
            ]
        snapshot = {k: v for k, v in record.items() if k != "attributes"}
        snapshot["attributes"] = {"type": crm_type.value}
        return [
            NewItem.for_crm(
                record["Id"], Reason.CRM_CHANGE, email=_text(record.get("Email")), snapshot=snapshot
            )
        ]

    async def poll_crm_deleted(self, crm_type: CrmType, stats: PollStats) -> None:
        """Queue the prospects linked to Leads or Contacts deleted in the CRM."""
        feed = crm_deleted_feed(crm_type)
        cursor, _, extra = await self._load(feed)
        now = self.rt.clock()
        start = max(
            cursor.position - timedelta(seconds=self.rt.settings.sync.overlap_s),
            now - SF_DELETED_MAX_BACK + timedelta(minutes=5),
        )
        if (now - start).total_seconds() < SF_DELETED_MIN_WINDOW_S:
            return
        answer = await self.rt.salesforce.get_deleted(crm_type.value, start, now)
        ids = [d.id for d in answer.records]
        linked = await self._prospects_by_crm_id(ids)
        items = [
            NewItem.for_prospect(pid, Reason.CRM_DELETE, crm_id=crm_id)
            for crm_id, pids in linked.items()
            for pid in pids
        ]
        position = max(cursor.position, min(answer.latest_date_covered, now))
        await self._commit(feed, items, cursors.Cursor(position, None), None, extra)
        stats.add(feed, len(ids), len(items))
