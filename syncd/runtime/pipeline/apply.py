"""The apply stage: a batch's decided plans written to both APIs, in a safe order.

Lead creates first (sObject Collections of 200, exactly once: a create whose answer was lost is
re-matched by email, never blindly resent), then each new Lead's follow-up plan, prospect
creates, CRM updates (`update_many`), email Tasks (`syncd.runtime.pipeline.tasks`), Pardot
updates (`pardot_writes`: PATCHes within `pardot.max_concurrency`, or one Import API upsert
when a batch has many). Every step takes the works still ok and advances them on a `Board`; a
failure fails only its works, a spent budget pauses them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from syncd import errors, logs
from syncd.clients.salesforce import SaveResult
from syncd.domain.match import email_key
from syncd.domain.models import (
    CrmRecord,
    CrmType,
    Directory,
    Link,
    LinkAction,
    ProspectInput,
    sf_id_key,
    thaw,
)
from syncd.domain.plan import reconcile
from syncd.runtime.pipeline.pardot_writes import PardotWriter, Update
from syncd.runtime.pipeline.settle import stored_link
from syncd.runtime.pipeline.stages import Board, RunStats, Status, result_error
from syncd.runtime.pipeline.tasks import TaskLogger
from syncd.runtime.wiring import Runtime
from syncd.store.models import Link as StoredLink
from syncd.store.models import NewItem, Reason

log = logs.get(__name__)


class Applier:
    """Writes the plans of one batch (see the module docstring for the order)."""

    def __init__(self, rt: Runtime, stats: RunStats, worker_id: str) -> None:
        self.rt = rt
        self.stats = stats
        self.tasks = TaskLogger(rt, stats, worker_id)
        self.pardot_writes = PardotWriter(rt, stats)

    async def apply(self, board: Board, directory: Directory) -> None:
        """Advance every DECIDED work of `board` to APPLIED (or FAILED / PAUSED).

        Raises `BudgetExhaustedError` when a side's budget ran out between steps; the works
        done so far keep what they did (the caller pauses the rest and settles).
        """

        def todo(action: LinkAction | None = None) -> list[int]:
            return [
                i
                for i in range(len(board))
                if board.ok(i)
                and (plan := board[i].plan) is not None
                and (action is None or plan.action is action)
            ]

        await self._create_leads(board, todo(LinkAction.CREATE_LEAD), directory)
        await self._create_prospects(board, todo(LinkAction.CREATE_PROSPECT))
        await self._recycle_prospects(board, todo(LinkAction.RECYCLE_PROSPECT))
        self.pardot_writes.done = {}
        await self._update_crm(board, todo())
        await self.tasks.log(board, todo(), directory)
        await self._update_pardot(board, todo())
        for i in todo():
            board.set(i, status=Status.APPLIED)

    # -- recycle bin -----------------------------------------------------------------------------

    async def _recycle_prospects(self, board: Board, idx: list[int]) -> None:
        """`sync.crm_delete_action = "recycle"`: the CRM record was deleted (not merged), so the
        prospect goes to Pardot's recycle bin, as Salesforce's own connector does. A prospect
        already gone counts as done (the client reads both not-found codes so)."""
        for i in idx:
            pid = board[i].prospect_id
            if pid is None:
                continue
            try:
                self.rt.budget.check("pardot")
                await self.rt.pardot.delete_prospect(pid)
            except errors.BudgetExhaustedError as signal:
                board.pause(i, signal)
            except errors.APIError as exc:
                board.fail(i, exc)
            else:
                log.info("prospect_recycled", prospect_id=pid)

    # -- Lead creates ----------------------------------------------------------------------------

    async def _create_leads(self, board: Board, idx: list[int], directory: Directory) -> None:
        """Create Leads exactly once: never resend a create whose outcome is unknown."""
        if not idx:
            return
        for auto_assign in (False, True):
            group = [i for i in idx if (p := board[i].plan) and p.auto_assign is auto_assign]
            if group:
                await self._send_lead_creates(board, group, auto_assign=auto_assign)
        created = [i for i in idx if board[i].created_id]
        if created:
            await self._after_lead_creates(board, created, directory)

    async def _send_lead_creates(
        self, board: Board, group: list[int], *, auto_assign: bool
    ) -> None:
        bodies = [dict(p.create_lead or {}) for i in group if (p := board[i].plan) is not None]
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
            for i in group:
                board.fail(i, exc)
            return
        unknown: list[int] = []
        for i, result in zip(group, results, strict=True):
            if result.success and result.id:
                board.set(i, created_id=result.id, created_new=True)
            elif result.budget is not None:
                board.pause(i, result.budget)  # its chunk was refused unprocessed: none created
            elif result.retriable:
                unknown.append(i)
            else:
                board.fail(i, result_error(result))
        if unknown:
            await self._rematch_lost_creates(board, unknown, lost_error)

    async def _after_lead_creates(
        self, board: Board, created: list[int], directory: Directory
    ) -> None:
        """Read the new Leads back (owner chosen by a rule, system fields) and plan the rest."""
        try:
            records = await self.rt.crm.records_by_ids(
                cid for i in created if (cid := board[i].created_id)
            )
        except (errors.APIError, errors.BudgetExhaustedError) as exc:
            # Not read back: the Leads are still linked below (a spent budget pauses at the
            # next call).
            records = {}
            log.warning("created_leads_not_read_back", code=exc.code)
        now = self.rt.clock()
        for i in created:
            w = board[i]
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
            link = Link(
                prospect_id=w.prospect.id,
                crm_type=CrmType.LEAD,
                crm_id=w.created_id,
                base=w.plan.new_base or {},
            )
            log.info("lead_created", prospect_id=w.prospect.id, lead_id=w.created_id)
            followup = reconcile(
                ProspectInput(prospect=w.prospect, link=link, linked=record),
                config=self.rt.config,
                directory=directory,
                now=now,
            )
            board.set(
                i,
                created_record=record,
                link_to_store=stored_link(link, w, now),
                followup=followup,
            )

    async def _rematch_lost_creates(
        self, board: Board, idx: list[int], error: errors.APIError | None
    ) -> None:
        """The create answer was lost: find the Lead by email; if absent, retry the item later."""
        emails = [p.email for i in idx if (p := board[i].prospect) is not None and p.email]
        try:
            found = await self.rt.crm.records_by_email(emails, types=(CrmType.LEAD,))
        except errors.APIError as exc:
            for i in idx:
                board.fail(i, exc)
            return
        by_email: dict[str, list[CrmRecord]] = {}
        for rec in found:
            key = email_key(rec.email)
            if key and not rec.is_converted:
                by_email.setdefault(key, []).append(rec)
        for i in idx:
            w = board[i]
            key = email_key(w.prospect.email if w.prospect else None)
            matches = sorted(by_email.get(key or "", []), key=lambda r: (r.created_date, r.id))
            if matches:
                board.set(i, created_id=matches[0].id)
                log.info(
                    "lead_create_answer_lost_found",
                    prospect_id=w.prospect_id,
                    lead_id=matches[0].id,
                )
            else:
                board.fail(
                    i,
                    error
                    or errors.RetriableAPIError(
                        system="salesforce",
                        status=None,
                        code="CREATE_OUTCOME_UNKNOWN",
                        message="the Lead create answer was lost and no Lead was found yet; "
                        "the item runs again later and re-matches by email first",
                    ),
                )

    # -- prospect creates ------------------------------------------------------------------------

    async def _create_prospects(self, board: Board, idx: list[int]) -> None:
        """Create prospects for CRM-only records (auto-create on), re-matching by email first."""
        for i in idx:
            w = board[i]
            plan = w.plan
            assert plan is not None
            data = dict(plan.pardot_create or {})
            email = str(data.get("email") or "")
            requeue = None
            try:
                existing = await self.rt.pardot.find_prospects_by_email(email, ["id"])
                if existing:
                    pid = int(existing[0]["id"])
                    log.info("prospect_exists_for_crm_record", prospect_id=pid, crm_id=w.crm_id)
                    requeue = NewItem.for_prospect(pid, Reason.CRM_CHANGE, crm_id=w.crm_id)
                    board.set(i, created_id=str(pid), requeue=requeue)
                    continue
                created = await self.rt.pardot.create_prospect(data, ["id", "updatedAt"])
            except errors.APIError as exc:
                board.fail(i, exc)
                continue
            pid = int(created["id"])
            self.stats.prospects_created += 1
            assert plan.crm_type is not None and plan.crm_id is not None
            link = StoredLink(
                prospect_id=pid,
                crm_type=plan.crm_type.value,
                crm_id=plan.crm_id,
                email=email,
                base=thaw(plan.new_base or {}),
                synced_at=self.rt.clock(),
            )
            # Its next sync merges with the record (and writes the link's mirror, if any).
            requeue = NewItem.for_prospect(pid, Reason.CRM_CHANGE, crm_id=w.crm_id)
            board.set(i, prospect_id=pid, created_id=str(pid), link_to_store=link, requeue=requeue)

    # -- updates ---------------------------------------------------------------------------------

    async def _update_crm(self, board: Board, idx: list[int]) -> None:
        """Field (and owner) updates to Leads and Contacts, 200 records per call."""
        for kind in (CrmType.LEAD, CrmType.CONTACT):
            batch: list[tuple[int, dict[str, Any]]] = []
            for i in idx:
                w = board[i]
                for plan in (w.plan, w.followup):
                    if plan is None or not plan.crm_update or plan.crm_type is not kind:
                        continue
                    target = plan.crm_id or w.created_id
                    if target is None:
                        continue
                    batch.append((i, {"Id": target, **dict(plan.crm_update)}))
            if not batch:
                continue
            try:
                results = await self.rt.salesforce.update_many(
                    kind.value, [body for _, body in batch], all_or_none=False
                )
            except errors.APIError as exc:
                for i, _ in batch:
                    board.fail(i, exc)
                continue
            for (i, body), result in zip(batch, results, strict=True):
                if result.success:
                    self.stats.crm_fields += len(body) - 1
                elif result.budget is not None:
                    board.pause(i, result.budget)
                else:
                    board.fail(i, result_error(result))

    async def _update_pardot(self, board: Board, idx: Sequence[int]) -> None:
        """Prospect updates: PATCHes, or one import for many (`pardot_writes.PardotWriter`)."""
        updates: list[Update] = []
        for i in idx:
            w = board[i]
            if w.prospect_id is None or w.plan is None:
                continue
            data: dict[str, Any] = {}
            for plan in (w.plan, w.followup):
                if plan is not None and plan.pardot_update:
                    data.update(plan.pardot_update)
            if data:
                updates.append(Update(i, w.prospect_id, data))
        await self.pardot_writes.write(board, updates)
        paused = [i for i in idx if board[i].paused is not None]
        if paused:
            log.warning("pardot_budget_exhausted_mid_batch", items=len(paused))
