"""The values a batch moves through: `Work` (one prospect or CRM record) and its `Status`.

A `Work` is frozen; each stage returns new values (`dataclasses.replace` through `Work.but`,
`Work.failed`, `Work.paused_by`), so a stage is read from `status`, never guessed from which
fields are None. The fields are grouped by the stage that sets them.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from syncd import errors
from syncd.clients.salesforce import SaveResult
from syncd.domain.models import (
    CrmRecord,
    CrmType,
    Decision,
    Link,
    LinkAction,
    Prospect,
    ProspectInput,
    SentEmail,
)
from syncd.domain.plan import Plan
from syncd.domain.values import parse_datetime
from syncd.store.models import Link as StoredLink
from syncd.store.models import NewItem, QueueItem

SYNC_META = "_sync"  # key in the stored merge base for syncd's own bookkeeping


class Status(enum.Enum):
    """Where a `Work` stands. The order of the first four is the order of the stages."""

    # The items grouped per prospect / CRM record; only ids, the poller's snapshot and a
    # grouping note (`skip_reason`, `handoff_to`) are known.
    GROUPED = "grouped"
    # The prospect, its stored link, its pending emails and the decision input (`inp`) are read.
    LOADED = "loaded"
    # `plan` is chosen (domain.plan.reconcile, or a skip decided from the grouping or load).
    DECIDED = "decided"
    # The plan's writes are done: `created_*`, `followup`, `pardot_updated_at`,
    # `emails_logged` and `link_to_store` say what happened.
    APPLIED = "applied"
    # An API error ended it (`error`): the items retry later or go to the error queue. What was
    # done before stays done (a created Lead stays linked through `link_to_store`).
    FAILED = "failed"
    # A side's daily budget ran out before it finished (`paused`): the items go back to the
    # queue without using an attempt.
    PAUSED = "paused"


@dataclass(frozen=True, eq=False)
class Work:
    """One prospect (or CRM-only record) being synced, and the items it answers for."""

    items: Sequence[QueueItem]
    prospect_id: int | None = None
    crm_id: str | None = None  # CRM-only work
    status: Status = Status.GROUPED
    # -- set by grouping
    raw_prospect: Mapping[str, Any] | None = None
    skip_reason: str | None = None  # nothing to sync: decided as a SKIP plan
    handoff_to: int | None = None  # a CRM-only record linked to this prospect: synced under it
    # -- set by load
    prospect: Prospect | None = None
    stored_link: StoredLink | None = None
    emails: tuple[SentEmail, ...] = ()
    inp: ProspectInput | None = None
    # -- set by decide
    plan: Plan | None = None
    # -- set by apply
    followup: Plan | None = None  # the plan of a Lead this batch created, after reading it back
    created_id: str | None = None  # the Lead (or prospect) created for this work
    created_new: bool = False  # created by this batch (not found again after a lost answer)
    created_record: CrmRecord | None = None
    pardot_updated_at: datetime | None = None
    link_to_store: StoredLink | None = None
    emails_logged: frozenset[int] = frozenset()
    requeue: NewItem | None = None
    # -- FAILED / PAUSED
    error: errors.APIError | None = None
    paused: errors.BudgetExhaustedError | None = None

    @property
    def ok(self) -> bool:
        return self.status not in (Status.FAILED, Status.PAUSED)

    def but(self, **changes: Any) -> Work:
        """A copy with `changes` (the next stage's fields, or a new status)."""
        return replace(self, **changes)

    def failed(self, exc: errors.APIError) -> Work:
        """FAILED with `exc`, unless it already failed or paused (the first reason wins).

        Pardot refusing to update the prospect because it is in the recycle bin is no failure:
        it was sent there after it was read (a stale snapshot, or a user between our read and
        write). A prospect in the recycle bin is skipped, never an error (RULES, issue 15):
        the work ends with a SKIP follow-up and the prospect known to be in the bin (history
        and `syncd status` say so; what was written stays written, the merge base stays as
        it was) and it syncs again once restored.
        """
        if not self.ok:
            return self
        if self.prospect_id is not None and _in_recycle_bin(exc):
            reason = (
                f"prospect {self.prospect_id} is in Pardot's recycle bin (sent there while it "
                "was being synced): not synced (it syncs again once restored)"
            )
            skip = Plan(
                prospect_id=self.prospect_id,
                action=LinkAction.SKIP,
                crm_type=None,
                crm_id=None,
                skip_reason=reason,
                decisions=(Decision(action="skip", reason=reason),),
            )
            recycled = replace(self.prospect, is_deleted=True) if self.prospect else None
            return replace(self, followup=skip, prospect=recycled)
        return replace(self, status=Status.FAILED, error=exc)

    def paused_by(self, signal: errors.BudgetExhaustedError) -> Work:
        """PAUSED: the items go back to the queue without using an attempt."""
        return replace(self, status=Status.PAUSED, paused=signal) if self.ok else self

    def logged(self, email_id: int) -> Work:
        return replace(self, emails_logged=self.emails_logged | {email_id})


# Pardot's answer to an update of a prospect in the recycle bin: 400 code 219 "Deleted records
# can't be updated. Please undelete before updating." (reference/wire-formats.md C.6)
PARDOT_DELETED_RECORD = "219"


def _in_recycle_bin(exc: errors.APIError) -> bool:
    return (
        isinstance(exc, errors.PermanentAPIError)
        and exc.system == "pardot"
        and exc.code == PARDOT_DELETED_RECORD
    )


class Board:
    """The works of one batch by position; a stage replaces the values it advances.

    Concurrent steps of one stage (Pardot updates, Task creates) write different positions.
    """

    def __init__(self, works: Sequence[Work]) -> None:
        self.works = list(works)

    def __getitem__(self, i: int) -> Work:
        return self.works[i]

    def __len__(self) -> int:
        return len(self.works)

    def ok(self, i: int) -> bool:
        return self.works[i].ok

    def set(self, i: int, **changes: Any) -> None:
        self.works[i] = self.works[i].but(**changes)

    def fail(self, i: int, exc: errors.APIError) -> None:
        self.works[i] = self.works[i].failed(exc)

    def pause(self, i: int, signal: errors.BudgetExhaustedError) -> None:
        self.works[i] = self.works[i].paused_by(signal)

    def logged(self, i: int, email_id: int) -> None:
        self.works[i] = self.works[i].logged(email_id)


def result_error(result: SaveResult, system: str = "salesforce") -> errors.APIError:
    """The error of one record of a collection call (retriable or permanent, as it says)."""
    first = result.errors[0] if result.errors else None
    code = first.code if first else "SAVE_FAILED"
    message = first.message if first else "the record was not saved"
    if first and first.fields:
        message = f"{message} (fields: {', '.join(first.fields)})"
    cls = errors.RetriableAPIError if result.retriable else errors.PermanentAPIError
    return cls(system=system, status=200, code=code, message=message, details=result.errors)


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


def domain_link(link: StoredLink) -> Link:
    """The domain `Link` of a stored one (syncd's bookkeeping left out of the base)."""
    return Link(
        prospect_id=link.prospect_id,
        crm_type=CrmType(link.crm_type),
        crm_id=link.crm_id,
        base={k: v for k, v in link.base.items() if k != SYNC_META},
        crm_deleted=link.crm_deleted,
    )


def echo_stamp(link: StoredLink | None) -> datetime | None:
    """The prospect `updatedAt` our last Pardot write produced (kept in the stored base)."""
    if link is None:
        return None
    meta = link.base.get(SYNC_META)
    if isinstance(meta, Mapping):
        return parse_datetime(meta.get("pardot_updated_at"))
    return None
