"""The settle stage: what a finished batch writes (pure), and the ONE transaction that writes it.

`settle(works, ...)` decides, for every work, the link to store, the audit lines, the fate of
its items (complete, retry later, error queue, or back to the queue untouched) and the pending
emails to drop; it reads no clock (time and jitter come in) and does no I/O. `write` then puts
the whole `Settlement` in one store transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime

from syncd import errors, logs
from syncd.domain import echo
from syncd.domain import retry as retry_rules
from syncd.domain.models import Link, LinkAction, same_sf_id, sf_id_key, thaw
from syncd.runtime.pipeline import pardot_writes
from syncd.runtime.pipeline.stages import SYNC_META, RunStats, Work, domain_link
from syncd.store import Store
from syncd.store.models import AuditLine, NewItem, QueueItem
from syncd.store.models import Link as StoredLink

log = logs.get(__name__)

# A plan with one of these actions leaves the prospect linked to its target.
LINKING = (
    LinkAction.KEEP,
    LinkAction.LINK,
    LinkAction.MOVE_TO_CONTACT,
    LinkAction.MOVE_TO_SURVIVOR,
    LinkAction.CREATE_LEAD,
)
# A link made or moved (the "linked" count).
MOVING = (LinkAction.LINK, LinkAction.MOVE_TO_CONTACT, LinkAction.MOVE_TO_SURVIVOR)
# The record is gone: the link is kept, marked crm_deleted (and, under `recycle`, the prospect
# was sent to Pardot's recycle bin by the apply stage).
DELETING = (LinkAction.MARK_DELETED, LinkAction.RECYCLE_PROSPECT)


@dataclass(frozen=True)
class RetryRules:
    """The settings `fate` needs: `sync.retry_base_s`, `sync.max_attempts`."""

    base_s: float
    max_attempts: int


@dataclass(frozen=True)
class Settlement:
    """What one batch writes to the store in its final transaction."""

    links: tuple[StoredLink, ...] = ()
    audit: tuple[AuditLine, ...] = ()
    complete: tuple[int, ...] = ()
    release: tuple[int, ...] = ()  # paused by a spent budget: no attempt used
    retry: tuple[tuple[QueueItem, errors.APIError, datetime], ...] = ()
    fail: tuple[tuple[QueueItem, errors.APIError], ...] = ()
    requeue: tuple[NewItem, ...] = ()
    emails: Mapping[int, frozenset[int] | None] = field(default_factory=dict)  # None: drop all
    # Pardot imports whose rows this batch settled (`pardot_writes.forget`, same transaction).
    imports_done: pardot_writes.ImportsDone = field(default_factory=dict)


def error_text(exc: errors.APIError) -> tuple[str, str]:
    """The code and the (redacted, bounded) message stored for an item's error."""
    return exc.code, logs.redact(exc.message)[:1000]


def _crm_owner(w: Work, crm_id: str) -> tuple[bool, str | None]:
    """(known, owner id) of record `crm_id` once this batch's writes are done."""
    record = w.created_record
    if record is None or not same_sf_id(record.id, crm_id):
        record = None
        inp = w.inp
        if inp is not None:
            for r in (inp.linked, inp.converted_contact, inp.survivor, *inp.candidates):
                if r is not None and same_sf_id(r.id, crm_id):
                    record = r
                    break
    if record is None:
        return False, None
    owner = record.owner_id
    for plan in (w.plan, w.followup):
        if plan is not None and "OwnerId" in plan.crm_update:
            owner = plan.crm_update["OwnerId"]
    return True, owner


def echo_meta(w: Work, crm_id: str) -> dict[str, object]:
    """syncd's bookkeeping kept beside the merge base (`domain.echo`): the stamp of this
    batch's Pardot write, the assignee and the CRM owner syncd left. A value it cannot know is
    left out, so the pollers never take a row for syncd's own echo on a guess."""
    meta: dict[str, object] = {}
    if w.pardot_updated_at is not None:
        meta[echo.META_PARDOT_UPDATED_AT] = w.pardot_updated_at.isoformat()
    if w.prospect is not None:
        user_id: object = w.prospect.user_id
        for plan in (w.plan, w.followup):
            if plan is not None and "userId" in plan.pardot_update:
                user_id = plan.pardot_update["userId"]
        meta[echo.META_PARDOT_USER_ID] = user_id
    known, owner = _crm_owner(w, crm_id)
    if known:
        meta[echo.META_CRM_OWNER_ID] = owner
    return meta


def stored_link(link: Link, w: Work, now: datetime, *, deleted: bool | None = None) -> StoredLink:
    """`link` as the store keeps it, with syncd's bookkeeping of this batch's writes."""
    base = dict(thaw(link.base))
    base[SYNC_META] = echo_meta(w, link.crm_id)
    return StoredLink(
        prospect_id=link.prospect_id,
        crm_type=link.crm_type.value,
        crm_id=link.crm_id,
        email=w.prospect.email if w.prospect is not None else None,
        base=base,
        synced_at=now,
        crm_deleted=link.crm_deleted if deleted is None else deleted,
    )


def learns(new: StoredLink, old: StoredLink) -> bool:
    """True when `new`'s bookkeeping knows something `old`'s does not (an owner or assignee
    first read, or changed). A no-op re-check then writes the link once: without the owner a
    Salesforce row is never taken for syncd's own echo, and re-queuing it on every sight is
    what a link learns its way out of (a Lead created by syncd, owner unknown until read back).
    """
    got, had = new.base.get(SYNC_META), old.base.get(SYNC_META)
    got = got if isinstance(got, Mapping) else {}
    had = had if isinstance(had, Mapping) else {}
    return any(key not in had or had[key] != value for key, value in got.items())


def same_link(a: StoredLink, b: StoredLink) -> bool:
    """The same pairing and merge base; syncd's bookkeeping aside (see `learns`)."""

    def base(link: StoredLink) -> dict[str, object]:
        return {k: v for k, v in link.base.items() if k != SYNC_META}

    return (
        a.crm_type == b.crm_type
        and sf_id_key(a.crm_id) == sf_id_key(b.crm_id)
        and base(a) == base(b)
        and a.crm_deleted == b.crm_deleted
        and (a.recycled_at is None) == (b.recycled_at is None)
    )


def recycled_link(current: StoredLink, now: datetime) -> StoredLink | None:
    """`current` marked as in Pardot's recycle bin since `now` (None: already marked), for
    `syncd status`; the next link written without the mark (it synced again) clears it."""
    return None if current.recycled_at is not None else replace(current, recycled_at=now)


def final_link(w: Work, now: datetime) -> StoredLink | None:
    """The link to store for a finished unit of work (None: leave the stored one)."""
    plan = w.followup or w.plan
    if plan is None or w.prospect is None:
        return w.link_to_store
    if w.prospect.is_deleted and w.stored_link is not None:
        return recycled_link(w.stored_link, now)  # skipped: in Pardot's recycle bin
    if plan.action in DELETING and plan.crm_id and plan.crm_type:
        current = w.stored_link
        deleted = stored_link(
            Link(
                prospect_id=w.prospect.id,
                crm_type=plan.crm_type,
                crm_id=plan.crm_id,
                base=domain_link(current).base if current else {},
                crm_deleted=True,
            ),
            w,
            now,
        )
        if plan.action is LinkAction.RECYCLE_PROSPECT:  # sent to the recycle bin just now
            deleted = replace(deleted, recycled_at=now)
        return deleted
    target = plan.crm_id or w.created_id
    if not (plan.action in LINKING and target and plan.crm_type and plan.new_base is not None):
        return w.link_to_store
    link = Link(
        prospect_id=w.prospect.id, crm_type=plan.crm_type, crm_id=target, base=plan.new_base
    )
    stored = stored_link(link, w, now)
    if w.pardot_updated_at is None and w.stored_link is not None:
        # No Pardot write this time: keep the stamp of the last one.
        old = w.stored_link.base.get(SYNC_META)
        stamp = old.get(echo.META_PARDOT_UPDATED_AT) if isinstance(old, Mapping) else None
        if stamp is not None and stored.crm_id == w.stored_link.crm_id:
            meta = {**stored.base[SYNC_META], echo.META_PARDOT_UPDATED_AT: stamp}
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
        and same_link(stored, w.stored_link)
        and not learns(stored, w.stored_link)
    ):
        return None  # nothing changed: no store write either
    return stored


def audit_lines(w: Work, now: datetime) -> list[AuditLine]:
    """What was decided for `w` and why (and its error), for `syncd history`."""
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
        code, message = error_text(w.error)
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


@dataclass(frozen=True)
class Fate:
    """What happens to the items (and link, pending emails) of one unit of work."""

    link: StoredLink | None = None
    complete: tuple[int, ...] = ()
    release: tuple[int, ...] = ()
    retry: tuple[tuple[QueueItem, errors.APIError, datetime], ...] = ()
    fail: tuple[tuple[QueueItem, errors.APIError], ...] = ()
    requeue: NewItem | None = None
    emails_done: tuple[int, frozenset[int] | None] | None = None  # (prospect id, logged ids)


def fate(
    w: Work, now: datetime, *, rules: RetryRules, email_activities: bool, jitter: float
) -> Fate:
    """Decide what happens to the items of one unit of work."""
    emails_done: tuple[int, frozenset[int] | None] | None = None
    logged_any = w.emails_logged or not email_activities
    if w.prospect_id is not None and w.emails and logged_any:
        # Activities off: emails sent meanwhile are not logged later either (all dropped).
        emails_done = (w.prospect_id, frozenset(w.emails_logged) if email_activities else None)
    ids = tuple(i.id for i in w.items)
    if w.ok:
        return Fate(
            link=final_link(w, now), complete=ids, requeue=w.requeue, emails_done=emails_done
        )
    if w.paused is not None or isinstance(w.error, errors.AuthError):
        # A created record stays linked; the items go back without using an attempt: a spent
        # budget, or a login refused mid-batch (the credentials' fault, not the items': they
        # must never be parked in the error queue for it).
        return Fate(link=w.link_to_store, release=ids, emails_done=emails_done)
    error = w.error
    assert error is not None
    retry: list[tuple[QueueItem, errors.APIError, datetime]] = []
    fail: list[tuple[QueueItem, errors.APIError]] = []
    for item in w.items:
        decision = retry_rules.next_attempt(
            attempts=item.attempts,
            retriable=isinstance(error, errors.RetriableAPIError),
            now=now,
            base_s=rules.base_s,
            max_attempts=rules.max_attempts,
            retry_after_s=error.retry_after_s,
            jitter=jitter,
        )
        if decision.give_up or decision.retry_at is None:
            fail.append((item, error))
        else:
            retry.append((item, error, decision.retry_at))
    # A created record stays linked, whatever failed after.
    return Fate(link=w.link_to_store, retry=tuple(retry), fail=tuple(fail), emails_done=emails_done)


def settle(
    works: Sequence[Work],
    now: datetime,
    *,
    rules: RetryRules,
    email_activities: bool,
    jitter: Callable[[], float],
) -> Settlement:
    """Everything a finished batch writes: links, audit lines, item fates, emails logged."""
    links: list[StoredLink] = []
    audit: list[AuditLine] = []
    complete: list[int] = []
    release: list[int] = []
    retry: list[tuple[QueueItem, errors.APIError, datetime]] = []
    fail: list[tuple[QueueItem, errors.APIError]] = []
    requeue: list[NewItem] = []
    emails: dict[int, frozenset[int] | None] = {}
    for w in works:
        audit.extend(audit_lines(w, now))
        f = fate(w, now, rules=rules, email_activities=email_activities, jitter=jitter())
        if f.link is not None:
            links.append(f.link)
        complete.extend(f.complete)
        release.extend(f.release)
        retry.extend(f.retry)
        fail.extend(f.fail)
        if f.requeue is not None:
            requeue.append(f.requeue)
        if f.emails_done is not None:
            emails[f.emails_done[0]] = f.emails_done[1]
    return Settlement(
        links=tuple(links),
        audit=tuple(audit),
        complete=tuple(complete),
        release=tuple(release),
        retry=tuple(retry),
        fail=tuple(fail),
        requeue=tuple(requeue),
        emails=emails,
    )


def imports_done(
    done: Mapping[int, set[int] | None], works: Sequence[Work]
) -> dict[int, frozenset[int] | None]:
    """The remembered imports' prospects this batch settles: not those given back to the queue
    (paused, or a refused login), whose retry must still ask what became of their import.
    None: the import applied nothing, forget it whole."""
    back = {
        w.prospect_id
        for w in works
        if w.paused is not None or isinstance(w.error, errors.AuthError)
    }
    return {
        n: None if pids is None else frozenset(p for p in pids if p not in back)
        for n, pids in done.items()
    }


def count(stats: RunStats, works: Sequence[Work], out: Settlement) -> None:
    """Add a settled batch to the run's counters."""
    for w in works:
        if w.paused is not None:
            continue  # not processed: back in the queue
        stats.items += len(w.items)
        plan = w.plan
        if plan is None:
            continue
        if plan.action in MOVING:
            stats.linked += 1
        elif plan.action in DELETING:
            stats.marked_deleted += 1
        elif plan.action is LinkAction.SKIP:
            stats.skipped += 1
        for p in (plan, w.followup):
            if p is not None and "userId" in p.pardot_update:
                stats.owners_changed += 1
            if p is not None and "OwnerId" in p.crm_update:
                stats.owners_changed += 1
    stats.retried += len(out.retry)
    stats.errors += len(out.fail)


async def write(store: Store, out: Settlement, *, worker_id: str, now: datetime) -> None:
    """ONE transaction: links, audit, emails logged, and every item's fate."""
    async with store.transaction() as tx:
        if out.links:
            await store.links.upsert_many(tx, list(out.links), now=now)
        if out.audit:
            await store.audit.append(tx, list(out.audit))
        if out.emails:
            await store.pending_emails.remove_logged_many(tx, out.emails, now=now)
        if out.complete:
            await store.queue.complete(tx, list(out.complete), worker_id=worker_id)
        if out.release:
            await store.queue.release(tx, list(out.release), worker_id=worker_id, now=now)
        # One statement per distinct (time, error), not one per item: a batch that fails
        # together (an API down) shares them.
        retry_groups: dict[tuple[datetime, str, str], list[int]] = {}
        for item, exc, at in out.retry:
            retry_groups.setdefault((at, *error_text(exc)), []).append(item.id)
        for (at, code, message), ids in retry_groups.items():
            await store.queue.retry(
                tx,
                ids,
                worker_id=worker_id,
                available_at=at,
                code=code,
                message=message,
                now=now,
            )
        fail_groups: dict[tuple[str, str], list[int]] = {}
        for item, exc in out.fail:
            fail_groups.setdefault(error_text(exc), []).append(item.id)
        for (code, message), ids in fail_groups.items():
            await store.queue.fail(
                tx, ids, worker_id=worker_id, code=code, message=message, now=now
            )
        if out.requeue:
            await store.queue.enqueue(tx, list(out.requeue), now=now)
        if out.imports_done:
            await pardot_writes.forget(store, tx, out.imports_done, now=now)
    for item, exc in out.fail:
        log.warning("item_failed", item_id=item.id, key=item.key, code=exc.code, system=exc.system)
