"""`reconcile`: one queued item in, one `Plan` out: every write to either system, and why.

`reconcile` is the whole sync decision for one prospect (or one CRM-only record): match it
(`match`), merge fields three-way (`merge`), sync owners (`owners`), keep the link's optional
mirror on the CRM record right and log sent emails as Tasks. It reads nothing and writes nothing;
the pipeline applies the plan. The same input always gives the same plan (sorted keys, stable
order). The link itself lives in syncd's store: a plan never writes Pardot's read-only link fields
(`salesforceId`, `salesforceLeadId`, ...: RULES.md 2a), nor any other read-only Pardot field.

Pipeline contract:
- `CREATE_LEAD`: create the Lead from `create_lead` (header `Sforce-Auto-Assign: TRUE` when
  `auto_assign`), create `tasks` with `who_id` = the new id, store the link with `new_base`, then
  call `reconcile` again with `link`/`linked` = the new record: with `auto_assign`, that plan
  writes the owner the rule chose to Pardot (`userId`).
- `CREATE_PROSPECT`: create the prospect from `pardot_create`, store the link (prospect id <->
  `crm_id`) with `new_base`; its next sync writes the mirror field when one is configured.
- `MOVE_TO_CONTACT` / `LINK` / `KEEP`: write `crm_update` to the record `crm_id`, `pardot_update`
  to the prospect, create `tasks`, store the link (`crm_type`, `crm_id`) with `new_base`.
- `MOVE_TO_SURVIVOR`: the linked record was merged into another (`from_crm_id` = the loser,
  deleted with `MasterRecordId` = `crm_id`): as `MOVE_TO_CONTACT`; the plan was merged from no
  base (first-sync rules against the survivor). No Lead is created, nothing is marked deleted.
- `MARK_DELETED`: set the link's `crm_deleted`; nothing is written to either system.
- `RECYCLE_PROSPECT` (`sync.crm_delete_action = "recycle"`): as `MARK_DELETED`, and DELETE the
  prospect in Pardot (`pardot_delete`; it goes to the recycle bin; already gone counts as done).
- `FAIL`: nothing is written; the item goes to the sync error queue with `error.code` and
  `error.message` (a permanent error: retried when the prospect or record changes again).
- `SKIP`: nothing; `skip_reason` says why. A skip stores nothing, so it is never sticky.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, Final

from syncd.domain.fieldmap import REQUIRED_CRM_FIELDS, FieldMap
from syncd.domain.match import Match, email_key, resolve
from syncd.domain.merge import (
    BASE_CRM,
    BASE_PARDOT,
    MISSING,
    crm_value,
    merge_record,
    pardot_value,
)
from syncd.domain.models import (
    EMPTY,
    CrmRecord,
    CrmType,
    Decision,
    Directory,
    LinkAction,
    Policy,
    Prospect,
    ProspectInput,
    SentEmail,
    SyncConfig,
    freeze,
)
from syncd.domain.owners import (
    assignee_for_new_prospect,
    new_lead_owner,
    sync_owner,
    task_owner,
)
from syncd.domain.values import UNKNOWN_PLACEHOLDER, Scalar, canonical, coerce, parse_datetime

__all__ = [
    "TASK_MARKER",
    "TASK_STATUS",
    "TASK_SUBJECT_PREFIX",
    "TASK_SUBTYPE",
    "Decision",
    "LinkAction",
    "Plan",
    "PlanError",
    "TaskSpec",
    "creates_prospect",
    "mirror_value",
    "parse_task_marker",
    "reconcile",
    "task_fields",
    "task_marker",
]

TASK_SUBJECT_PREFIX: Final = "Email: "
TASK_SUBTYPE: Final = "Email"
TASK_STATUS: Final = "Completed"
# Put in every logged-email Task's Description so a Task whose create response was lost can be
# found again (`Description LIKE '%[pardot-email:123]%'`) instead of created twice.
TASK_MARKER: Final = "[pardot-email:{email_id}]"
_TASK_MARKER_RE: Final = re.compile(r"\[pardot-email:(\d+)\]")
_SUBJECT_MAX: Final = 255  # Salesforce Task.Subject length


def task_marker(email_id: int) -> str:
    """The marker for one Pardot email: `[pardot-email:<id>]`."""
    return TASK_MARKER.format(email_id=email_id)


def parse_task_marker(description: str | None) -> int | None:
    """The Pardot email id in a Task description's marker, or None."""
    if not description:
        return None
    found = _TASK_MARKER_RE.search(description)
    return int(found.group(1)) if found else None


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskSpec:
    """A Salesforce Task logging one sent email.

    `subject` is the final Task Subject ("Email: <email subject>", at most 255 characters).
    `who_id` None = the Lead this plan creates (the pipeline fills it after the create);
    `owner_id` None = the owner the assignment rule picks (the pipeline may fill it).
    """

    email_id: int
    subject: str
    activity_date: date
    who_id: str | None
    owner_id: str | None
    description: str


def task_fields(spec: TaskSpec, who_id: str | None = None) -> dict[str, Any]:
    """The Salesforce `Task` create body for a spec; `who_id` fills a spec's missing WhoId."""
    body: dict[str, Any] = {
        "Subject": spec.subject,
        "WhoId": spec.who_id or who_id,
        "Status": TASK_STATUS,
        "TaskSubtype": TASK_SUBTYPE,
        "ActivityDate": spec.activity_date.isoformat(),
        "Description": spec.description,
    }
    if spec.owner_id:
        body["OwnerId"] = spec.owner_id
    return body


def _frozen_map(value: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    return None if value is None else freeze(dict(sorted(value.items())))


@dataclass(frozen=True, slots=True, kw_only=True)
class PlanError:
    """Why a `FAIL` plan sends its item to the sync error queue (a permanent error)."""

    code: str
    message: str


# PlanError codes.
EMAIL_IN_USE: Final = "EMAIL_IN_USE"


@dataclass(frozen=True, slots=True, kw_only=True)
class Plan:
    """Everything to do for one item. Mappings are read-only and sorted by key."""

    prospect_id: int | None
    action: LinkAction
    crm_type: CrmType | None
    crm_id: str | None  # the target record; None when this plan creates it
    create_lead: Mapping[str, Any] | None = None  # Lead field values (OwnerId unless auto_assign)
    auto_assign: bool = False  # send Sforce-Auto-Assign: TRUE; no OwnerId
    crm_update: Mapping[str, Any] = field(default_factory=lambda: EMPTY)
    pardot_update: Mapping[str, Any] = field(default_factory=lambda: EMPTY)
    pardot_create: Mapping[str, Any] | None = None
    tasks: tuple[TaskSpec, ...] = ()
    new_base: Mapping[str, Any] | None = None  # store as JSON via models.thaw
    decisions: tuple[Decision, ...] = ()
    skip_reason: str | None = None
    from_crm_id: str | None = None  # MOVE_TO_CONTACT / MOVE_TO_SURVIVOR: the record it leaves
    pardot_delete: bool = False  # RECYCLE_PROSPECT: DELETE the prospect (to the recycle bin)
    error: PlanError | None = None  # FAIL: the error queue entry

    def __post_init__(self) -> None:
        object.__setattr__(self, "create_lead", _frozen_map(self.create_lead))
        object.__setattr__(self, "crm_update", _frozen_map(self.crm_update))
        object.__setattr__(self, "pardot_update", _frozen_map(self.pardot_update))
        object.__setattr__(self, "pardot_create", _frozen_map(self.pardot_create))
        object.__setattr__(self, "new_base", _frozen_map(self.new_base))
        object.__setattr__(self, "tasks", tuple(self.tasks))
        object.__setattr__(self, "decisions", tuple(self.decisions))

    @property
    def writes(self) -> int:
        """Write operations this plan implies: creates, one update per side, one per Task."""
        return (
            (self.create_lead is not None)
            + bool(self.crm_update)
            + bool(self.pardot_update)
            + (self.pardot_create is not None)
            + self.pardot_delete
            + len(self.tasks)
        )

    @property
    def is_noop(self) -> bool:
        """Nothing to write to either system (the link and base may still be recorded)."""
        return self.writes == 0


# --- tasks -----------------------------------------------------------------------------------


def _email_order(email: SentEmail) -> tuple[datetime, int]:
    return (parse_datetime(email.sent_at) or datetime.min.replace(tzinfo=UTC), email.id)


def _tasks(
    prospect: Prospect,
    emails: tuple[SentEmail, ...],
    *,
    config: SyncConfig,
    who_id: str | None,
    owner_id: str | None,
) -> tuple[tuple[TaskSpec, ...], tuple[Decision, ...]]:
    if not emails:
        return (), ()
    if not config.email_activities:
        return (), (
            Decision(
                action="skip_tasks",
                reason=f"email activities are off: {len(emails)} sent email(s) not logged",
            ),
        )
    specs: list[TaskSpec] = []
    decisions: list[Decision] = []
    for email in sorted(emails, key=_email_order):
        if email.prospect_id != prospect.id:
            decisions.append(
                Decision(
                    action="skip_task",
                    reason=f"email {email.id} belongs to prospect {email.prospect_id}",
                )
            )
            continue
        sent = parse_datetime(email.sent_at) or email.sent_at
        subject = (TASK_SUBJECT_PREFIX + email.subject.strip())[:_SUBJECT_MAX]
        specs.append(
            TaskSpec(
                email_id=email.id,
                subject=subject,
                activity_date=sent.date(),
                who_id=who_id,
                owner_id=owner_id,
                description=f"{task_marker(email.id)} Pardot email sent {sent.isoformat()}",
            )
        )
        decisions.append(
            Decision(
                action="create_task",
                reason=f"email {email.id} sent {sent.date().isoformat()} logged as a Task",
                new=subject,
                side="crm",
            )
        )
    return tuple(specs), tuple(decisions)


# --- plans per action --------------------------------------------------------------------------


def _match_decision(match: Match) -> Decision:
    return Decision(action=match.action.value, reason=match.reason, new=match.crm_id)


def mirror_value(raw: Any) -> int | None:
    """The prospect id a CRM record's mirror field (`sync.crm_link_field`) holds, or None.

    The field is Text by recommendation, but a Number field reads back as `1001.0`: both parse.
    """
    if raw is None or raw is MISSING or isinstance(raw, bool):
        return None
    try:
        number = float(str(raw).strip())
    except ValueError:
        return None
    return int(number) if number.is_integer() and number > 0 else None


def _mirror_update(
    prospect: Prospect, record: CrmRecord, config: SyncConfig
) -> tuple[dict[str, Scalar], list[Decision]]:
    """The CRM write that keeps the link's mirror (`sync.crm_link_field`) naming the prospect.

    Pardot will not let an API client write the prospect's CRM link (RULES.md 2a), so syncd
    mirrors it where it may write: a custom field on the record holding the prospect id. It
    rides in the batch's CRM update collection; a record whose mirror is right costs nothing.
    """
    name = config.crm_link_field
    if not name:
        return {}, []
    current = crm_value(record, name)
    if mirror_value(current) == prospect.id:
        return {}, []
    old = None if current is MISSING else current
    return {name: str(prospect.id)}, [
        Decision(
            action="update_crm",
            reason=f"mirror of the link: {record.type} {record.id} <-> prospect {prospect.id}",
            field=name,
            old=old if isinstance(old, str | int | float) else None,
            new=str(prospect.id),
            side="crm",
        )
    ]


def _merge_plan(
    inp: ProspectInput,
    prospect: Prospect,
    match: Match,
    record: CrmRecord,
    config: SyncConfig,
    directory: Directory,
) -> Plan:
    # A new link (LINK, or a merge's survivor) starts from no base: the first sync rules apply.
    fresh = match.action in (LinkAction.LINK, LinkAction.MOVE_TO_SURVIVOR)
    base = inp.link.base if inp.link is not None and not fresh else EMPTY
    merged = merge_record(
        config.field_map, prospect, record, base, opt_in_owner=config.opt_in_owner
    )
    clash = _email_clash(inp, prospect, record, merged.pardot_update, merged.crm_update, config)
    if clash is not None:
        return clash
    owner_update, owner_decisions = sync_owner(prospect, record, directory)
    mirror_update, mirror_decisions = _mirror_update(prospect, record, config)
    tasks, task_decisions = _tasks(
        prospect,
        tuple(inp.emails),
        config=config,
        who_id=record.id,
        owner_id=task_owner(record.owner_id, directory),
    )
    pardot_update = {**merged.pardot_update, **owner_update}
    return Plan(
        prospect_id=prospect.id,
        action=match.action,
        crm_type=record.type,
        crm_id=record.id,
        crm_update={**merged.crm_update, **mirror_update},
        pardot_update=pardot_update,
        tasks=tasks,
        new_base=merged.base,
        decisions=(
            _match_decision(match),
            *merged.decisions,
            *owner_decisions,
            *mirror_decisions,
            *task_decisions,
        ),
        from_crm_id=match.from_crm_id,
    )


def _email_clash(
    inp: ProspectInput,
    prospect: Prospect,
    record: CrmRecord,
    pardot_update: Mapping[str, Any],
    crm_update: Mapping[str, Any],
    config: SyncConfig,
) -> Plan | None:
    """A FAIL plan when the merge would write an email that ANOTHER linked prospect has.

    An email change never moves a link; writing an address another synced prospect already
    holds would leave two prospects on one address, so it is an error an admin settles.
    """
    rule = config.field_map.rule("email")
    crm_field = rule.crm_name(record.type) if rule is not None else None
    writes = []
    if "email" in pardot_update:
        writes.append(("Pardot", "the CRM", pardot_update["email"]))
    if crm_field is not None and crm_field in crm_update:
        writes.append(("the CRM", "Pardot", crm_update[crm_field]))
    for target, source, value in writes:
        key = email_key(value if isinstance(value, str) else None)
        other = inp.email_owners.get(key) if key is not None else None
        if other is None or other == prospect.id:
            continue
        message = (
            f"the email changed in {source} to {value}, but prospect {other} already syncs "
            f"with that address; not written to {target} and the link of prospect "
            f"{prospect.id} to {record.type} {record.id} is kept (an email change never "
            "relinks). Fix the address on one side, or merge the two prospects in Pardot, "
            "then run `syncd errors retry`"
        )
        return Plan(
            prospect_id=prospect.id,
            action=LinkAction.FAIL,
            crm_type=record.type,
            crm_id=record.id,
            error=PlanError(code=EMAIL_IN_USE, message=message),
            decisions=(Decision(action="error", reason=message, field="email", new=value),),
        )
    return None


def _lead_values(field_map: FieldMap, prospect: Prospect) -> dict[str, Scalar]:
    values: dict[str, Scalar] = {}
    for rule in field_map.synced_rules(CrmType.LEAD):
        crm_field = rule.crm_name(CrmType.LEAD)
        if crm_field is None or rule.effective_policy is Policy.TO_PARDOT:
            continue  # one-way CRM -> Pardot: Pardot's value never goes to the CRM
        raw = pardot_value(prospect, rule.pardot)
        value = None if raw is MISSING else coerce(rule.kind, raw)
        if value is not None:
            values[crm_field] = value
    if prospect.email and "Email" not in values:
        values["Email"] = prospect.email.strip()
    for required in sorted(REQUIRED_CRM_FIELDS[CrmType.LEAD]):
        if required not in values:
            values[required] = UNKNOWN_PLACEHOLDER
    return values


def _created_base(
    field_map: FieldMap,
    crm_type: CrmType,
    pardot_values: Mapping[str, Any],
    crm_values: Mapping[str, Any],
    unknown: frozenset[str],
) -> dict[str, Any]:
    """The merge base after a create: what each side holds, per synced field.

    `unknown` names the (Pardot) fields whose source value was not loaded: they get no base.
    """
    base_p: dict[str, Scalar] = {}
    base_c: dict[str, Scalar] = {}
    for rule in field_map.synced_rules(crm_type):
        crm_field = rule.crm_name(crm_type)
        if crm_field is None or rule.pardot in unknown:
            continue
        base_p[rule.pardot] = canonical(rule.kind, pardot_values.get(rule.pardot))
        base_c[rule.pardot] = canonical(rule.kind, crm_values.get(crm_field))
    return {BASE_PARDOT: base_p, BASE_CRM: base_c}


def _create_lead_plan(
    inp: ProspectInput, prospect: Prospect, match: Match, config: SyncConfig, directory: Directory
) -> Plan:
    values = _lead_values(config.field_map, prospect)
    owner = new_lead_owner(prospect, config, directory)
    if owner.owner_id is not None:
        values["OwnerId"] = owner.owner_id
    if config.crm_link_field:
        values[config.crm_link_field] = str(prospect.id)  # the link's mirror (RULES.md 2a)
    task_owner_id = None if owner.auto_assign else task_owner(owner.owner_id, directory)
    tasks, task_decisions = _tasks(
        prospect, tuple(inp.emails), config=config, who_id=None, owner_id=task_owner_id
    )
    rules = config.field_map.synced_rules(CrmType.LEAD)
    pardot_values = {rule.pardot: pardot_value(prospect, rule.pardot) for rule in rules}
    unknown = frozenset(name for name, value in pardot_values.items() if value is MISSING)
    return Plan(
        prospect_id=prospect.id,
        action=LinkAction.CREATE_LEAD,
        crm_type=CrmType.LEAD,
        crm_id=None,
        create_lead=values,
        auto_assign=owner.auto_assign,
        tasks=tasks,
        new_base=_created_base(config.field_map, CrmType.LEAD, pardot_values, values, unknown),
        decisions=(
            _match_decision(match),
            Decision(
                action="create_lead",
                reason="new Lead from the prospect's mapped fields",
                new=values.get("Email"),
                side="crm",
            ),
            owner.decision,
            *task_decisions,
        ),
    )


def _skip(prospect_id: int | None, reason: str, **target: Any) -> Plan:
    return Plan(
        prospect_id=prospect_id,
        action=LinkAction.SKIP,
        crm_type=target.get("crm_type"),
        crm_id=target.get("crm_id"),
        skip_reason=reason,
        decisions=(Decision(action="skip", reason=reason),),
    )


def _crm_only_refusal(inp: ProspectInput, record: CrmRecord, config: SyncConfig) -> Plan | None:
    """The SKIP plan of a CRM-only record that gets no prospect, or None to create one."""
    target = {"crm_type": record.type, "crm_id": record.id}
    if inp.recycled_prospect_ids:
        ids = ", ".join(str(i) for i in sorted(inp.recycled_prospect_ids))
        return _skip(
            None,
            f"prospect {ids} of {record.type} {record.id} is in Pardot's recycle bin: not "
            "synced and not re-created (restore it in Pardot to sync again)",
            **target,
        )
    if inp.merged_prospect_ids:
        ids = ", ".join(str(i) for i in sorted(inp.merged_prospect_ids))
        return _skip(
            None,
            f"{record.type} {record.id} is the survivor of a merge: the link of prospect {ids} "
            "follows it, so no new prospect is created",
            **target,
        )
    if inp.link is not None:
        return _skip(
            None, f"linked prospect {inp.link.prospect_id} was not found in Pardot", **target
        )
    if not config.auto_create_prospects:
        return _skip(None, "no prospect with this email; auto-create prospects is off", **target)
    if record.is_deleted:
        return _skip(None, f"{record.type} {record.id} is deleted", **target)
    if record.type is CrmType.LEAD and record.is_converted:
        return _skip(None, f"Lead {record.id} is converted; its Contact syncs instead", **target)
    if not record.email or not record.email.strip():
        return _skip(None, "auto-create needs an email", **target)
    return None


def _before_auto_create(record: CrmRecord, config: SyncConfig) -> bool:
    since = parse_datetime(config.auto_create_since) if config.auto_create_since else None
    created = parse_datetime(record.created_date)
    return since is not None and created is not None and created < since


def creates_prospect(inp: ProspectInput, config: SyncConfig) -> bool:
    """True when `reconcile` would create a prospect for this CRM-only input.

    The load stage asks it before reading what only such a record needs (the prospects in
    Pardot's recycle bin with its email, the merge losers linked to prospects), so a quiet
    batch pays for none of it. With those read, `reconcile` may still refuse.
    """
    record = inp.crm_record
    if inp.prospect is not None or record is None:
        return False
    return _crm_only_refusal(inp, record, config) is None and not _before_auto_create(
        record, config
    )


def _crm_only_plan(inp: ProspectInput, config: SyncConfig, directory: Directory) -> Plan:
    """A CRM change with no prospect: create one when auto-create is on (seed row 2)."""
    record = inp.crm_record
    if record is None:
        return _skip(None, "nothing to sync: no prospect and no CRM record")
    refused = _crm_only_refusal(inp, record, config)
    if refused is not None:
        return refused
    if _before_auto_create(record, config):
        return _skip(
            None,
            "created before auto-create was turned on (not retroactive)",
            crm_type=record.type,
            crm_id=record.id,
        )
    values: dict[str, Scalar] = {}
    for rule in config.field_map.synced_rules(record.type):
        crm_field = rule.crm_name(record.type)
        if crm_field is None or rule.effective_policy is Policy.TO_CRM:
            continue  # one-way Pardot -> CRM (or read-only in Pardot): never sent to Pardot
        raw = crm_value(record, crm_field)
        value = None if raw is MISSING else coerce(rule.kind, raw)
        if value is not None:
            values[rule.pardot] = value
    values["email"] = (record.email or "").strip()  # checked non-blank by _crm_only_refusal
    user_id, owner_decision = assignee_for_new_prospect(record, directory)
    crm_values: dict[str, Any] = {}
    unknown: set[str] = set()
    for rule in config.field_map.synced_rules(record.type):
        crm_field = rule.crm_name(record.type)
        if crm_field is None:
            continue
        raw = crm_value(record, crm_field)
        if raw is MISSING:
            unknown.add(rule.pardot)
        else:
            crm_values[crm_field] = raw
    base = _created_base(config.field_map, record.type, values, crm_values, frozenset(unknown))
    if user_id is not None:
        values["userId"] = user_id
    return Plan(
        prospect_id=None,
        action=LinkAction.CREATE_PROSPECT,
        crm_type=record.type,
        crm_id=record.id,
        pardot_create=values,
        new_base=base,
        decisions=(
            Decision(
                action="create_prospect",
                reason=f"{record.type} {record.id} has no prospect and auto-create is on",
                new=values["email"],
                side="pardot",
            ),
            owner_decision,
        ),
    )


def _recycle_plan(prospect: Prospect, match: Match) -> Plan:
    """`sync.crm_delete_action = "recycle"`: the record is gone, so is the prospect (to the bin).

    Only for a linked record deleted in the CRM (never a merge: `resolve` follows merges).
    """
    return Plan(
        prospect_id=prospect.id,
        action=LinkAction.RECYCLE_PROSPECT,
        crm_type=match.crm_type,
        crm_id=match.crm_id,
        pardot_delete=True,
        decisions=(
            _match_decision(match),
            Decision(
                action="recycle_prospect",
                reason=f"{match.crm_type} {match.crm_id} deleted in the CRM and "
                'sync.crm_delete_action = "recycle": prospect sent to Pardot\'s recycle bin',
                side="pardot",
            ),
        ),
    )


def reconcile(
    inp: ProspectInput, *, config: SyncConfig, directory: Directory, now: datetime
) -> Plan:
    """Decide everything for one queued item. Pure and deterministic.

    `now` is the decision time; today's rules do not depend on it (the plan is a function of the
    input alone), but it is part of the signature so time-dependent rules stay pure.
    """
    del now  # no rule depends on the clock yet
    prospect = inp.prospect
    if prospect is None:
        return _crm_only_plan(inp, config, directory)
    match = resolve(inp)
    if match.action is LinkAction.SKIP:
        return _skip(prospect.id, match.reason, crm_type=match.crm_type, crm_id=match.crm_id)
    if match.action is LinkAction.MARK_DELETED:
        if config.crm_delete_action == "recycle" and inp.link is not None:
            return _recycle_plan(prospect, match)
        return Plan(
            prospect_id=prospect.id,
            action=LinkAction.MARK_DELETED,
            crm_type=match.crm_type,
            crm_id=match.crm_id,
            decisions=(_match_decision(match),),
        )
    if match.action is LinkAction.CREATE_LEAD:
        return _create_lead_plan(inp, prospect, match, config, directory)
    if match.record is None:  # resolve() always names the record for KEEP / LINK / MOVE
        return _skip(prospect.id, f"internal: {match.action} without a record")
    return _merge_plan(inp, prospect, match, match.record, config, directory)
