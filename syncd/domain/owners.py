"""Who owns what: new Lead owners, CRM-owner-is-master, assignees of new prospects (RULES s6).

The seed "Integrating Assignments with Salesforce" gives four scenarios, each handled here:
1. new Lead, assignee without an (active) CRM user -> the connector user owns it;
2. record created in the CRM, owner without a Pardot user -> the new prospect is unassigned;
3. CRM owner changed to a user without a Pardot user -> the prospect keeps its assignee;
4. CRM owner changed to a user with a Pardot user -> the prospect is reassigned to that user.
Once a record is synced the CRM owner is master: the Pardot assignee is never pushed to an
existing record, and queue / assignment-rule modes only ever place new records.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from syncd.domain.models import CrmRecord, Decision, Directory, Prospect, SyncConfig

__all__ = [
    "NewLeadOwner",
    "assignee_for_new_prospect",
    "new_lead_owner",
    "sync_owner",
    "task_owner",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class NewLeadOwner:
    """How a new Lead gets its owner: an `OwnerId`, or the assignment rule (`auto_assign`)."""

    owner_id: str | None
    auto_assign: bool
    decision: Decision


def new_lead_owner(prospect: Prospect, config: SyncConfig, directory: Directory) -> NewLeadOwner:
    """The owner of a Lead created from this prospect, per `config.assignment`."""
    if config.assignment == "rule":
        return NewLeadOwner(
            owner_id=None,
            auto_assign=True,
            decision=Decision(
                action="owner",
                reason="assignment rule: created without an owner (Sforce-Auto-Assign); "
                "the owner it picks is synced back to Pardot",
                side="crm",
            ),
        )
    if config.assignment == "queue":
        return NewLeadOwner(
            owner_id=config.assignment_queue_id,
            auto_assign=False,
            decision=Decision(
                action="owner",
                reason="assign to queue: new record owned by the queue",
                new=config.assignment_queue_id,
                side="crm",
            ),
        )
    owner = directory.crm_owner_for(prospect.user_id)
    if owner is not None:
        return NewLeadOwner(
            owner_id=owner,
            auto_assign=False,
            decision=Decision(
                action="owner",
                reason=f"assignee (Pardot user {prospect.user_id}) is CRM user {owner}",
                new=owner,
                side="crm",
            ),
        )
    return NewLeadOwner(
        owner_id=directory.connector_user_id,
        auto_assign=False,
        decision=Decision(
            action="owner",
            reason=f"assignee (Pardot user {prospect.user_id}) has no active CRM user: "
            "the connector user owns the Lead",
            new=directory.connector_user_id,
            side="crm",
        ),
    )


def sync_owner(
    prospect: Prospect, record: CrmRecord, directory: Directory
) -> tuple[Mapping[str, Any], tuple[Decision, ...]]:
    """CRM owner is master for a synced record: the Pardot `userId` write it implies, if any.

    An owner with a Pardot user reassigns the prospect to that user. An owner without one
    (a user not in Pardot, or a queue) leaves the prospect's assignee alone; nothing is ever
    written to the record's `OwnerId` here, so the old assignee is not pushed back.
    """
    user_id = directory.pardot_user_for(record.owner_id)
    if user_id is not None:
        if user_id == prospect.user_id:
            return MappingProxyType({}), ()
        return MappingProxyType({"userId": user_id}), (
            Decision(
                action="update_pardot",
                reason=f"CRM owner {record.owner_id} is master: reassigned to its Pardot user",
                field="userId",
                old=prospect.user_id,
                new=user_id,
                side="pardot",
            ),
        )
    if prospect.user_id is not None and not _same_owner(prospect, record, directory):
        what = "a queue" if directory.is_queue(record.owner_id) else "a user with no Pardot user"
        return MappingProxyType({}), (
            Decision(
                action="owner_kept",
                reason=f"CRM owner {record.owner_id} is {what}: prospect stays assigned to "
                f"Pardot user {prospect.user_id}",
                field="userId",
                old=prospect.user_id,
                new=prospect.user_id,
            ),
        )
    return MappingProxyType({}), ()


def _same_owner(prospect: Prospect, record: CrmRecord, directory: Directory) -> bool:
    owner = directory.crm_owner_for(prospect.user_id)
    return owner is not None and owner == record.owner_id


def assignee_for_new_prospect(
    record: CrmRecord, directory: Directory
) -> tuple[int | None, Decision]:
    """The Pardot user a prospect created from this CRM record is assigned to (or None)."""
    user_id = directory.pardot_user_for(record.owner_id)
    if user_id is None:
        return None, Decision(
            action="owner",
            reason=f"CRM owner {record.owner_id} has no Pardot user: prospect created unassigned",
            field="userId",
            side="pardot",
        )
    return user_id, Decision(
        action="owner",
        reason=f"CRM owner {record.owner_id} is Pardot user {user_id}",
        field="userId",
        new=user_id,
        side="pardot",
    )


def task_owner(owner_id: str | None, directory: Directory) -> str:
    """The owner of a logged-email Task: the record's owner when it is a user (a Task can't
    belong to a queue), else the connector user."""
    if owner_id and not directory.is_queue(owner_id):
        return owner_id
    return directory.connector_user_id
