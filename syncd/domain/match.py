"""Which CRM record a prospect syncs with (RULES.md section 2, seed "Prospect syncing").

Order: the stored link (syncd's store owns it, RULES.md 2a); else a record whose mirror field
(`sync.crm_link_field`) names the prospect, so a lost store loses no link; else the CRM id
Salesforce's own connector left on the prospect (`salesforceId`, read as a hint, never written);
else a Contact with the same email; else a Lead with the same email; else a new Lead when the
prospect is assigned; else nothing until it is assigned. Duplicates resolve to the oldest
record (CreatedDate, then Id) so every run picks the same one. A Lead converted to a Contact
moves the link to the Contact; a linked record deleted in the CRM marks the link deleted and is
never re-created, unless it was MERGED into another record (deleted with a `MasterRecordId`):
then the link follows the survivor (RULES.md 2a), with the first-sync rules against it.
A prospect in Pardot's recycle bin is skipped (never an error); restored, it syncs again.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from syncd.domain.models import (
    CrmRecord,
    CrmType,
    LinkAction,
    ProspectInput,
    crm_type_of_id,
    same_sf_id,
    sf_id_key,
)
from syncd.domain.values import parse_datetime

__all__ = [
    "MAX_MERGE_HOPS",
    "Match",
    "email_key",
    "first_record",
    "match_by_email",
    "merge_survivor",
    "mirrored_record",
    "resolve",
]

# A survivor merged again later: follow MasterRecordId this many times at most.
MAX_MERGE_HOPS = 5

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True, kw_only=True)
class Match:
    """Where a prospect goes: the link action and the record to merge with (if any)."""

    action: LinkAction
    reason: str
    record: CrmRecord | None = None  # the record to merge with now
    crm_type: CrmType | None = None
    crm_id: str | None = None
    from_crm_id: str | None = None  # MOVE_TO_CONTACT: the converted Lead's id


def email_key(email: str | None) -> str | None:
    """The matching key of an email: trimmed and lower-cased, nothing else.

    Case-insensitive like Salesforce; quotes, plus signs, dots and non-ASCII characters are kept
    exactly (no casefold: "straße@x" and "strasse@x" are different addresses).
    """
    if email is None:
        return None
    key = email.strip().lower()
    return key or None


def _created_key(record: CrmRecord) -> tuple[datetime, str]:
    return (parse_datetime(record.created_date) or _EPOCH, record.id)


def first_record(records: Iterable[CrmRecord]) -> CrmRecord | None:
    """The first of duplicate records, deterministically: oldest CreatedDate, then lowest Id."""
    ordered = sorted(records, key=_created_key)
    return ordered[0] if ordered else None


def match_by_email(
    email: str | None,
    candidates: Iterable[CrmRecord],
    taken_crm_ids: Iterable[str] = (),
) -> CrmRecord | None:
    """The Contact, else the Lead, with this email; deleted, converted and taken ones excluded."""
    key = email_key(email)
    if key is None:
        return None
    taken = {sf_id_key(t) for t in taken_crm_ids}
    usable = [
        r
        for r in candidates
        if not r.is_deleted
        and not (r.type is CrmType.LEAD and r.is_converted)
        and email_key(r.email) == key
        and sf_id_key(r.id) not in taken
    ]
    for crm_type in (CrmType.CONTACT, CrmType.LEAD):
        found = first_record(r for r in usable if r.type is crm_type)
        if found is not None:
            return found
    return None


def _deleted(crm_type: CrmType | None, crm_id: str, why: str) -> Match:
    return Match(
        action=LinkAction.MARK_DELETED,
        reason=f"{why}; marked crm_deleted and never re-created",
        crm_type=crm_type or crm_type_of_id(crm_id),
        crm_id=crm_id,
    )


def _follow(inp: ProspectInput, record: CrmRecord, action: LinkAction, why: str) -> Match:
    """Sync with `record`, following a Lead conversion to its Contact."""
    if not (record.type is CrmType.LEAD and record.is_converted):
        return Match(
            action=action, reason=why, record=record, crm_type=record.type, crm_id=record.id
        )
    contact_id = record.converted_contact_id
    if not contact_id:
        return Match(
            action=LinkAction.SKIP,
            reason=f"Lead {record.id} is converted but names no Contact; nothing to sync with",
            crm_type=record.type,
            crm_id=record.id,
        )
    contact = inp.converted_contact
    if contact is not None and not same_sf_id(contact.id, contact_id):
        return Match(
            action=LinkAction.SKIP,
            reason=f"Lead {record.id} was converted to Contact {contact_id}, which was not loaded",
            crm_type=record.type,
            crm_id=record.id,
        )
    if contact is None or contact.is_deleted:
        return _deleted(
            CrmType.CONTACT,
            contact_id,
            f"Lead {record.id} was converted to Contact {contact_id}, deleted in the CRM",
        )
    return Match(
        action=LinkAction.MOVE_TO_CONTACT if action is LinkAction.KEEP else LinkAction.LINK,
        reason=f"Lead {record.id} was converted to Contact {contact.id}: link follows it",
        record=contact,
        crm_type=CrmType.CONTACT,
        crm_id=contact.id,
        from_crm_id=record.id,
    )


def _by_email(inp: ProspectInput, *, may_create: bool, prefix: str = "") -> Match:
    prospect = inp.prospect
    if prospect is None:  # callers handle CRM-only items
        return Match(action=LinkAction.SKIP, reason="no prospect")
    if email_key(prospect.email) is None:
        return Match(action=LinkAction.SKIP, reason=prefix + "no email: Pardot syncs by email")
    record = match_by_email(prospect.email, inp.candidates, inp.taken_crm_ids)
    if record is not None:
        same = [
            r
            for r in inp.candidates
            if r.type is record.type and email_key(r.email) == email_key(prospect.email)
        ]
        dup = f" (first of {len(same)} by CreatedDate, Id)" if len(same) > 1 else ""
        return _follow(
            inp,
            record,
            LinkAction.LINK,
            f"{prefix}{record.type} with the same email{dup}",
        )
    if not may_create:
        return _deleted(
            crm_type_of_id(prospect.crm_id or ""),
            prospect.crm_id or "",
            f"{prefix}no record with this email either",
        )
    if prospect.user_id is None:
        return Match(action=LinkAction.SKIP, reason="unassigned: syncs once assigned")
    taken = any(
        email_key(r.email) == email_key(prospect.email) and not r.is_deleted
        for r in inp.candidates
        if sf_id_key(r.id) in {sf_id_key(t) for t in inp.taken_crm_ids}
    )
    why = (
        "records with this email sync with other prospects (multiple prospects per email): "
        "assigned, so a Lead of its own"
        if taken
        else "no Contact or Lead with this email and the prospect is assigned"
    )
    return Match(action=LinkAction.CREATE_LEAD, reason=why, crm_type=CrmType.LEAD)


def merge_survivor(
    record: CrmRecord, known: Mapping[str, CrmRecord], *, max_hops: int = MAX_MERGE_HOPS
) -> CrmRecord | None:
    """The live record at the end of `record`'s MasterRecordId chain, from the records read.

    `known` maps ids (15- or 18-character) to records read with `queryAll` (deleted ones
    included). None when `record` is not a merge loser, a link of the chain was not read, the
    end is deleted without a master (a delete after the merge), or the chain is longer than
    `max_hops` (or loops). The load stage reads the chain hop by hop: the masters of the losers
    it has, then theirs, and gives the result as `ProspectInput.survivor`.
    """
    by_key = {sf_id_key(k): v for k, v in known.items()}
    current = record
    for _ in range(max_hops):
        if not current.is_deleted or not current.master_record_id:
            return None
        nxt = by_key.get(sf_id_key(current.master_record_id))
        if nxt is None:
            return None
        if not nxt.is_deleted:
            return nxt
        current = nxt
    return None


def mirrored_record(records: Iterable[CrmRecord]) -> CrmRecord | None:
    """Of the records whose mirror field names one prospect, the one to link: a live Contact
    first, then a Lead (the oldest of several); a converted Lead is followed by the caller."""
    usable = [r for r in records if not r.is_deleted]
    for crm_type in (CrmType.CONTACT, CrmType.LEAD):
        found = first_record(r for r in usable if r.type is crm_type)
        if found is not None:
            return found
    return None


def _by_mirror(inp: ProspectInput) -> Match | None:
    """The record whose mirror field names the prospect: the link, rebuilt from it."""
    found = mirrored_record(inp.mirrored)
    if found is None:
        return None
    return _follow(
        inp,
        found,
        LinkAction.LINK,
        f"{found.type} {found.id} names this prospect in its mirror field: link rebuilt",
    )


def _merged(inp: ProspectInput, loser: CrmRecord, action: LinkAction, why: str) -> Match:
    """The link of a merge loser follows its survivor (`inp.survivor`); never a delete."""
    master = loser.master_record_id or ""
    into = f"{loser.type} {loser.id} merged into {crm_type_of_id(master) or 'record'} {master}"
    survivor = inp.survivor
    if survivor is None or not same_sf_id(survivor.id, master):
        return Match(
            action=LinkAction.SKIP,
            reason=f"{why}{into}, which was not loaded; retried on the next change",
            crm_type=loser.type,
            crm_id=loser.id,
        )
    if survivor.is_deleted:
        return Match(
            action=LinkAction.SKIP,
            reason=f"{why}{into}, deleted too (its merge chain was not followed); retried on "
            "the next change",
            crm_type=loser.type,
            crm_id=loser.id,
        )
    if sf_id_key(survivor.id) in {sf_id_key(t) for t in inp.taken_crm_ids}:
        return Match(
            action=LinkAction.SKIP,
            reason=f"{why}{into}, which already syncs with another prospect: the link was not "
            "moved (merge the duplicate prospects in Pardot)",
            crm_type=loser.type,
            crm_id=loser.id,
        )
    followed = _follow(inp, survivor, action, f"{why}{into}: the link follows the survivor")
    if followed.action in (LinkAction.KEEP, LinkAction.LINK) and action is LinkAction.KEEP:
        return Match(
            action=LinkAction.MOVE_TO_SURVIVOR,
            reason=followed.reason,
            record=followed.record,
            crm_type=followed.crm_type,
            crm_id=followed.crm_id,
            from_crm_id=loser.id,
        )
    if followed.action is LinkAction.MOVE_TO_CONTACT:
        # The survivor is a converted Lead: the link goes on to its Contact.
        return Match(
            action=LinkAction.MOVE_TO_SURVIVOR,
            reason=f"{into}, {followed.reason}",
            record=followed.record,
            crm_type=followed.crm_type,
            crm_id=followed.crm_id,
            from_crm_id=loser.id,
        )
    return followed


def resolve(inp: ProspectInput) -> Match:
    """Decide the link action for an item that has a prospect."""
    prospect = inp.prospect
    if prospect is None:
        return Match(action=LinkAction.SKIP, reason="no prospect")
    if prospect.is_deleted:
        return Match(
            action=LinkAction.SKIP,
            reason=f"prospect {prospect.id} is in Pardot's recycle bin: not synced (it syncs "
            "again once restored)",
        )
    link = inp.link
    if link is not None:
        record = inp.linked
        if (
            link.crm_deleted
            and record is not None
            and record.is_deleted
            and record.master_record_id
            and same_sf_id(record.id, link.crm_id)
            and inp.survivor is not None
        ):
            # Marked crm_deleted before merges were followed (or before the merge was seen):
            # it was a merge after all, so the link follows the survivor and syncing resumes.
            return _merged(inp, record, LinkAction.KEEP, "")
        if link.crm_deleted:
            return Match(
                action=LinkAction.SKIP,
                reason=f"{link.crm_type} {link.crm_id} was deleted in the CRM (crm_deleted); "
                "not re-created",
                crm_type=link.crm_type,
                crm_id=link.crm_id,
            )
        record = inp.linked
        if record is not None and record.is_deleted and record.master_record_id:
            return _merged(inp, record, LinkAction.KEEP, "")
        if record is None or record.is_deleted:
            return _deleted(
                link.crm_type, link.crm_id, f"{link.crm_type} {link.crm_id} deleted in the CRM"
            )
        return _follow(inp, record, LinkAction.KEEP, f"linked to {record.type} {record.id}")
    mirrored = _by_mirror(inp)
    if mirrored is not None:
        return mirrored
    if prospect.crm_id:
        record = inp.linked
        if record is not None and same_sf_id(record.id, prospect.crm_id) and not record.is_deleted:
            return _follow(
                inp, record, LinkAction.LINK, f"{record.type} named by the prospect's CRM id"
            )
        if (
            record is not None
            and same_sf_id(record.id, prospect.crm_id)
            and record.master_record_id
            and inp.survivor is not None
        ):
            return _merged(inp, record, LinkAction.LINK, "the prospect's CRM id: ")
        # The record Pardot names is gone (deleted, or merged into another record): fall back
        # to email, but never create a replacement for a deleted record.
        return _by_email(inp, may_create=False, prefix=f"CRM id {prospect.crm_id} not found; ")
    return _by_email(inp, may_create=True)
