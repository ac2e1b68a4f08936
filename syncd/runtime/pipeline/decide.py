"""The decide stage (pure): a plan per loaded work, `domain.plan.reconcile` or a skip."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from syncd import errors
from syncd.domain.models import Directory, LinkAction, SyncConfig
from syncd.domain.plan import Plan, reconcile
from syncd.runtime.pipeline.stages import Status, Work
from syncd.store.models import NewItem, Reason

NOT_FOUND = "prospect not found in Pardot (deleted or in the recycle bin)"


def skip(prospect_id: int | None, reason: str) -> Plan:
    return Plan(
        prospect_id=prospect_id,
        action=LinkAction.SKIP,
        crm_type=None,
        crm_id=None,
        skip_reason=reason,
    )


def decide_one(w: Work, *, config: SyncConfig, directory: Directory, now: datetime) -> Work:
    """`w` DECIDED (a failed or paused work is returned as it is)."""
    if not w.ok:
        return w
    if w.skip_reason is not None:
        return w.but(plan=skip(None, w.skip_reason), status=Status.DECIDED)
    if w.handoff_to is not None:
        # Linked after all: synced through its prospect, queued under the prospect's key.
        pid = w.handoff_to
        return w.but(
            plan=skip(pid, f"{w.crm_id} is linked to prospect {pid}: queued under it"),
            requeue=NewItem.for_prospect(pid, Reason.CRM_CHANGE, crm_id=w.crm_id),
            status=Status.DECIDED,
        )
    if w.prospect_id is not None and w.prospect is None:
        return w.but(plan=skip(w.prospect_id, NOT_FOUND), status=Status.DECIDED)
    if w.inp is None:
        return w.but(status=Status.DECIDED)  # nothing to decide
    plan = reconcile(w.inp, config=config, directory=directory, now=now)
    if plan.action is LinkAction.FAIL and plan.error is not None:
        # A decision the sync refuses to act on (an email another linked prospect holds): the
        # item goes to the error queue with the reason, and nothing is written.
        refused = errors.PermanentAPIError(
            system="syncd", status=None, code=plan.error.code, message=plan.error.message
        )
        return w.but(plan=plan, status=Status.DECIDED).failed(refused)
    return w.but(plan=plan, status=Status.DECIDED)


def decide(
    works: Sequence[Work], *, config: SyncConfig, directory: Directory, now: datetime
) -> list[Work]:
    return [decide_one(w, config=config, directory=directory, now=now) for w in works]
