"""The load stage: group a batch's items into works and read everything they need, in bulk.

Prospects come from the poller's snapshot when it is at least as new as our last write, else
from Pardot (a GET each, or one id-range query for a cluster of close ids); links and pending
emails from the store; CRM records by id, by email and by the link's mirror field, and the
Contacts of converted Leads, from `CrmRecords.lookup` (composite calls of up to 5 queries).
`read_crm` and `prospect_input` are also what `syncd preflight` decides with, so the two cannot
drift apart.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

from syncd import errors
from syncd.clients.prospects import prospect_from
from syncd.clients.records import CrmRecords, record_from
from syncd.domain.match import email_key
from syncd.domain.models import CrmRecord, Prospect, ProspectInput, SentEmail, sf_id_key
from syncd.domain.plan import creates_prospect, mirror_value
from syncd.domain.values import parse_datetime
from syncd.runtime.lifecycle import (
    MergeRead,
    email_keys_to_check,
    email_owners,
    read_losers,
    read_merged,
    read_recycled,
)
from syncd.runtime.pipeline.stages import Status, Work, domain_link, echo_stamp
from syncd.runtime.wiring import Runtime
from syncd.store.models import Link as StoredLink
from syncd.store.models import QueueItem
from syncd.store.pending_emails import PendingEmail

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


def sent_email(pending: PendingEmail) -> SentEmail | None:
    """A pending email as the domain's `SentEmail`; None without a readable send time."""
    sent = parse_datetime(pending.sent_at)
    if sent is None:
        return None
    return SentEmail(
        id=pending.id, prospect_id=pending.prospect_id, subject=pending.subject, sent_at=sent
    )


# -- the CRM view both the pipeline and preflight decide with ------------------------------------


@dataclass(frozen=True)
class CrmView:
    """The CRM records of a batch, indexed for `prospect_input`."""

    by_id: Mapping[str, CrmRecord]  # by `sf_id_key`, converted Leads' Contacts included
    by_email: Mapping[str, list[CrmRecord]]  # by `email_key`
    by_mirror: Mapping[int, list[CrmRecord]]  # by the prospect id the mirror field names


async def read_crm(
    crm: CrmRecords,
    ids: Iterable[str],
    emails: Iterable[str | None],
    unlinked: Iterable[int] = (),
    *,
    composite: bool = True,
) -> CrmView:
    """The records by id, by email and by mirror (for the `unlinked` prospect ids)."""
    found = await crm.lookup(ids, emails, unlinked, composite=composite)
    by_email: dict[str, list[CrmRecord]] = {}
    for rec in found.by_email:
        key = email_key(rec.email)
        if key:
            by_email.setdefault(key, []).append(rec)
    by_mirror: dict[int, list[CrmRecord]] = {}
    for rec in found.mirrored:
        pid = mirror_value(rec.fields.get(crm.mirror_field or ""))
        if pid is not None:
            by_mirror.setdefault(pid, []).append(rec)
    return CrmView(by_id=found.by_id, by_email=by_email, by_mirror=by_mirror)


def prospect_input(
    prospect: Prospect,
    stored: StoredLink | None,
    emails: Sequence[SentEmail],
    view: CrmView,
    is_taken: Callable[[CrmRecord], bool],
) -> ProspectInput:
    """The decision input of one prospect (pure): its link, linked record, converted Contact,
    email candidates (`is_taken`: linked to another prospect already) and mirrored records."""
    link = domain_link(stored) if stored is not None else None
    mirrored = view.by_mirror.get(prospect.id, [])
    linked_id = link.crm_id if link is not None else prospect.crm_id
    linked = view.by_id.get(sf_id_key(linked_id)) if linked_id else None
    converted = None
    # The record the decision will follow: the link's, else (no link) a mirrored one first.
    for rec in (linked,) if link is not None else (*mirrored, linked):
        if rec is not None and rec.is_converted and rec.converted_contact_id:
            converted = view.by_id.get(sf_id_key(rec.converted_contact_id))
            break
    key = email_key(prospect.email)
    candidates = [c for c in (view.by_email.get(key, []) if key else []) if not c.is_converted]
    return ProspectInput(
        prospect=prospect,
        link=link,
        linked=linked,
        converted_contact=converted,
        candidates=candidates,
        emails=tuple(emails),
        taken_crm_ids=frozenset(c.id for c in candidates if is_taken(c)),
        mirrored=tuple(mirrored),
    )


def wanted_crm(works: Sequence[Work]) -> tuple[list[str], list[str], list[int]]:
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


def life_cycle_input(
    inp: ProspectInput,
    w: Work,
    merged: Mapping[str, MergeRead],
    links_by_email: Mapping[str, Sequence[StoredLink]],
    is_taken: Callable[[CrmRecord], bool],
) -> ProspectInput:
    """`inp` with what the record life cycle needs (pure): for a linked record the ordinary
    query no longer finds, its deleted row and merge survivor (`queryAll`), and the other
    linked prospects holding the emails this item may write (RULES.md 2a; issue 15)."""
    link = w.stored_link
    if link is None or w.prospect is None:
        return inp
    linked, survivor, taken = inp.linked, inp.survivor, inp.taken_crm_ids
    found = merged.get(sf_id_key(link.crm_id))
    if found is not None:
        linked, survivor = found.record, found.survivor
        if survivor is not None and is_taken(survivor):
            taken = taken | {survivor.id}
    return replace(
        inp,
        linked=linked,
        survivor=survivor,
        taken_crm_ids=taken,
        email_owners=email_owners(w.prospect.id, links_by_email),
    )


# -- the stage -----------------------------------------------------------------------------------


class Loader:
    """Groups claimed items and loads what their works need."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.pardot_fields = list(rt.field_map.pardot_fields())

    async def group(self, items: Sequence[QueueItem]) -> list[Work]:
        """One work per prospect (or CRM-only record); a note where there is nothing to sync."""
        by_prospect: dict[int, Work] = {}
        crm_only: dict[str, Work] = {}

        def prospect_work(
            pid: int, item: QueueItem | None, raw: Mapping[str, object] | None
        ) -> None:
            w = by_prospect.get(pid) or Work(items=(), prospect_id=pid)
            items = (*w.items, item) if item is not None else w.items
            by_prospect[pid] = w.but(items=items, raw_prospect=raw or w.raw_prospect)

        def crm_work(crm_id: str, item: QueueItem | None) -> None:
            key = sf_id_key(crm_id)
            w = crm_only.get(key) or Work(items=(), crm_id=crm_id)
            crm_only[key] = w.but(items=(*w.items, item) if item is not None else w.items)

        for item in items:
            if item.prospect_id is not None:
                snap = item.snapshot
                usable = snap and "id" in snap and str(snap.get("id")) == str(item.prospect_id)
                prospect_work(item.prospect_id, item, dict(snap) if usable and snap else None)
            elif item.crm_id is not None:
                crm_work(item.crm_id, item)
            elif item.email:
                # `syncd reprocess --email`: every prospect with that email, else its CRM records.
                # One item settles once: it rides with the first work found.
                found = await self.rt.pardot.find_prospects_by_email(item.email, self.pardot_fields)
                records = [] if found else await self.rt.crm.records_by_email([item.email])
                for n, raw in enumerate(found):
                    prospect_work(int(raw["id"]), item if n == 0 else None, dict(raw))
                for n, rec in enumerate(records):
                    crm_work(rec.id, item if n == 0 else None)
                if not found and not records:
                    reason = f"no prospect or CRM record has the email {item.email}"
                    crm_only[f"e:{item.id}"] = Work(items=(item,), skip_reason=reason)
        # A CRM-only record that is linked after all syncs through its prospect: queued under
        # the prospect's key, never processed here. Its `c:` key does not exclude the `p:` key,
        # so another worker may hold the prospect right now; syncing it here too would race
        # that worker (two Tasks for one email were seen in the soak).
        ids = [w.crm_id for w in crm_only.values() if w.crm_id]
        if ids:
            async with self.rt.store.read() as tx:
                links = await self.rt.store.links.by_crm_ids(tx, ids)
            for key, w in list(crm_only.items()):
                found_links = links.get(w.crm_id or "") or []
                if found_links:
                    crm_only[key] = Work(
                        items=w.items, crm_id=w.crm_id, handoff_to=found_links[0].prospect_id
                    )
        works = [*by_prospect.values(), *crm_only.values()]
        return [w for w in works if w.items or w.skip_reason]

    async def load(self, works: Sequence[Work]) -> list[Work]:
        """Every work LOADED (or FAILED while loading); notes from grouping pass through."""
        rt = self.rt
        pids = [w.prospect_id for w in works if w.prospect_id is not None]
        async with rt.store.read() as tx:
            links = await rt.store.links.by_prospect_ids(tx, pids)
            pending = await rt.store.pending_emails.for_prospects(tx, pids)
        out: list[Work] = []
        for w in works:
            if w.prospect_id is not None and w.handoff_to is None:
                emails = [sent_email(e) for e in pending.get(w.prospect_id, [])]
                w = w.but(
                    stored_link=links.get(w.prospect_id),
                    emails=tuple(e for e in emails if e is not None),
                )
            out.append(w)
        out = await self._prospects(out)
        return await self._crm(out)

    async def _prospects(self, works: list[Work]) -> list[Work]:
        """Use the poller's snapshot when it is at least as new as our last write, else GET."""
        need: list[Work] = []
        for w in works:
            if w.prospect_id is None or w.skip_reason or w.handoff_to is not None:
                continue
            snap = w.raw_prospect
            stamp = echo_stamp(w.stored_link)
            at = parse_datetime(snap.get("updatedAt")) if snap is not None else None
            if snap is None or (stamp is not None and (at is None or at < stamp)):
                need.append(w)  # no snapshot, or older than our own last write: stale
        raw: dict[int, Mapping[str, object] | None] = {}
        failed: dict[int, errors.APIError] = {}

        async def get(w: Work) -> None:
            assert w.prospect_id is not None
            try:
                # The recycle bin too: a recycled prospect is skipped as such (never an error,
                # never re-created), and syncs again once restored.
                raw[w.prospect_id] = await self.rt.pardot.get_prospect(
                    w.prospect_id, self.pardot_fields, include_deleted=True
                )
            except errors.APIError as exc:
                failed[w.prospect_id] = exc

        async def read_range(group: list[Work]) -> None:
            # One query for close-together ids instead of a GET each (a backfill's echoes and
            # CRM-side changes come in id clusters); an id not returned is deleted or in the
            # recycle bin, exactly what a GET answering "not found" means.
            ids = [w.prospect_id for w in group if w.prospect_id is not None]
            try:
                rows = await self.rt.pardot.prospects_in_id_range(
                    min(ids), max(ids), self.pardot_fields, include_deleted=True
                )
            except errors.APIError as exc:
                failed.update(dict.fromkeys(ids, exc))
                return
            by_id = {int(r["id"]): r for r in rows}
            raw.update({pid: by_id.get(pid) for pid in ids})

        if need:
            ranges, singles = id_clusters(need)
            await asyncio.gather(*(get(w) for w in singles), *(read_range(g) for g in ranges))
        out: list[Work] = []
        for w in works:
            pid = w.prospect_id
            if pid is None or w.skip_reason or w.handoff_to is not None:
                out.append(w)
                continue
            if pid in failed:
                out.append(w.failed(failed[pid]))
                continue
            snap = raw.get(pid, w.raw_prospect)
            prospect = None
            if snap is not None:
                try:
                    prospect = prospect_from(snap)
                except (KeyError, TypeError, ValueError) as exc:
                    # One malformed record fails alone (error queue), never its whole batch.
                    out.append(
                        w.failed(
                            errors.PermanentAPIError(
                                system="pardot",
                                status=200,
                                code="BAD_RECORD",
                                message=f"prospect {pid} cannot be read: {exc}",
                            )
                        )
                    )
                    continue
            out.append(w.but(raw_prospect=snap, prospect=prospect))
        return out

    @staticmethod
    def _linked(w: Work, view: CrmView) -> CrmRecord | None:
        link = w.stored_link
        return view.by_id.get(sf_id_key(link.crm_id)) if link is not None else None

    async def _merged(self, works: Sequence[Work], view: CrmView) -> dict[str, MergeRead]:
        """Linked records the ordinary query did not find: deleted, or merged into another
        (`queryAll` tells which, and names the survivor). Nothing to read in a quiet batch."""
        missing = [
            w.stored_link.crm_id
            for w in works
            if w.ok
            and w.prospect is not None
            and w.stored_link is not None
            and sf_id_key(w.stored_link.crm_id) not in view.by_id
        ]
        if not missing:
            return {}
        return await read_merged(
            self.rt.salesforce,
            missing,
            select_fields=self.rt.crm_select_fields,
            to_record=record_from,
        )

    async def _crm(self, works: list[Work]) -> list[Work]:
        """CRM records for the whole batch, then each work's decision input."""
        todo = [w for w in works if w.skip_reason is None and w.handoff_to is None]
        ids, emails, unlinked = wanted_crm(todo)
        try:
            view = await read_crm(self.rt.crm, ids, emails, unlinked)
        except errors.APIError as exc:
            return [w.failed(exc) for w in works]
        try:
            merged = await self._merged(todo, view)
        except errors.APIError as exc:
            return [w.failed(exc) for w in works]
        survivors = [m.survivor for m in merged.values() if m.survivor is not None]
        # Records already linked to another prospect (several prospects per email, AMPSEA; a
        # merge survivor another prospect syncs with).
        cand_ids = [r.id for found in view.by_email.values() for r in found]
        cand_ids += [r.id for r in survivors]
        keys = {
            key
            for w in todo
            if w.prospect is not None and w.stored_link is not None
            for key in email_keys_to_check(w.prospect, self._linked(w, view))
        }
        async with self.rt.store.read() as tx:
            taken = await self.rt.store.links.by_crm_ids(tx, cand_ids) if cand_ids else {}
            by_email = await self.rt.store.links.by_emails(tx, keys) if keys else {}
        out: list[Work] = []
        for w in works:
            inp = None
            if w.ok and w.skip_reason is None and w.handoff_to is None:
                if w.prospect is not None:
                    pid = w.prospect.id

                    def is_taken(c: CrmRecord, pid: int = pid) -> bool:
                        return any(o.prospect_id != pid for o in taken.get(c.id, []))

                    inp = prospect_input(w.prospect, w.stored_link, w.emails, view, is_taken)
                    inp = life_cycle_input(inp, w, merged, by_email, is_taken)
                elif w.crm_id is not None and w.prospect_id is None:
                    record = view.by_id.get(sf_id_key(w.crm_id))
                    inp = ProspectInput(prospect=None, link=None, linked=None, crm_record=record)
            out.append(w.but(inp=inp, status=Status.LOADED) if w.ok else w)
        return await self._crm_only_life_cycle(out)

    async def _crm_only_life_cycle(self, works: list[Work]) -> list[Work]:
        """For CRM-only works that would get a new prospect: the prospects in Pardot's recycle
        bin with the record's email, and the prospects linked to records merged into it
        (`ProspectInput.recycled_prospect_ids` / `merged_prospect_ids`: either refuses the
        create). Read only for those works, in one batch (one `queryAll` per object, one
        prospects query per email); a failed read fails those works alone (retried later)."""
        todo: dict[int, tuple[ProspectInput, CrmRecord]] = {}
        for i, w in enumerate(works):
            inp = w.inp
            if not (w.ok and w.prospect is None and inp is not None and inp.crm_record):
                continue
            if creates_prospect(inp, self.rt.config):
                todo[i] = (inp, inp.crm_record)
        if not todo:
            return works
        records = [record for _, record in todo.values()]
        read = await asyncio.gather(
            read_losers(self.rt.salesforce, [r.id for r in records]),
            read_recycled(self.rt.pardot, [r.email or "" for r in records]),
            return_exceptions=True,  # both finish: no read left running unobserved
        )
        losers, recycled = read
        for result in read:
            if isinstance(result, errors.APIError):
                return [w.failed(result) if i in todo else w for i, w in enumerate(works)]
            if isinstance(result, BaseException):
                raise result  # a spent budget, a bug: as any other read in this stage
        assert isinstance(losers, dict) and isinstance(recycled, dict)
        loser_ids = [loser for found in losers.values() for loser in found]
        links: dict[str, list[StoredLink]] = {}
        if loser_ids:
            async with self.rt.store.read() as tx:
                links = await self.rt.store.links.by_crm_ids(tx, loser_ids)
        by_loser = {sf_id_key(crm_id): found for crm_id, found in links.items()}
        out = list(works)
        for i, (inp, record) in todo.items():
            merged = {
                link.prospect_id
                for loser in losers.get(sf_id_key(record.id), [])
                for link in by_loser.get(sf_id_key(loser), [])
            }
            key = email_key(record.email)
            out[i] = works[i].but(
                inp=replace(
                    inp,
                    recycled_prospect_ids=recycled.get(key, frozenset()) if key else frozenset(),
                    merged_prospect_ids=frozenset(merged),
                )
            )
        return out
