"""Three-way field merge between a prospect and its CRM record, per field policy (RULES.md s4).

For each mapped field the merge compares the canonical values now on both sides with the merge
base (what each side held after the last sync, kept in `Link.base`):

1. equal now -> nothing to write;
2. one side blank, the other a value, and not `blank_overwrites` -> the value fills the blank
   (a blank never overwrites a value; the CRM fills blank Pardot fields and Pardot fills blank
   CRM fields);
3. only one side changed since the base -> that side wins (a stale value never undoes an edit);
4. both changed, or no base yet (first sync) -> the policy's master wins: `crm` the CRM,
   `pardot` Pardot, `recent` the side modified last (ties: the CRM).

`opt_out_wins` (the default for the email opt-out pair: an unsubscribe is a legal fact, not a
field value) replaces steps 2-4 for a flag whose true value means "opted out" (blank = false):
- an opt-out recorded on either side since the last sync (or, with no base yet, either side
  opted out) wins: both sides end opted out;
- an opt-in (clearing the flag) travels only from the side configured as its owner
  (`sync.opt_in_owner`, Pardot by default); an opt-in on the other side is undone (the opt-out
  is written back to it), so the two sides never disagree about an unsubscribe.

One-way policies (`to_pardot`, `to_crm`) copy from their source when it changed (or when the
target is blank) and never write the other way; `none` fields are ignored. With
`blank_overwrites` a blank is an ordinary value in every step above.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from types import MappingProxyType
from typing import Any, Final

from syncd.domain.fieldmap import REQUIRED_CRM_FIELDS, FieldMap, FieldRule
from syncd.domain.models import CrmRecord, CrmType, Decision, Policy, Prospect
from syncd.domain.values import UNKNOWN_PLACEHOLDER, Scalar, canonical, coerce, parse_datetime

__all__ = [
    "BASE_CRM",
    "BASE_PARDOT",
    "CRM",
    "MISSING",
    "PARDOT",
    "FieldMerge",
    "MergeResult",
    "base_side",
    "crm_value",
    "merge_field",
    "merge_record",
    "pardot_value",
]

BASE_PARDOT: Final = "pardot"
BASE_CRM: Final = "crm"
# Decision.side values.
PARDOT: Final = "pardot"
CRM: Final = "crm"

# A field that was not loaded (absent from `fields`): unknown, which is not the same as blank.
MISSING: Final = object()


def pardot_value(prospect: Prospect, name: str) -> Any:
    """The prospect's value of a v5 field, or `MISSING` when it was not loaded."""
    if name == "email":
        return prospect.email
    if name == "userId":
        return prospect.user_id
    if name == "salesforceId":
        return prospect.fields.get(name, prospect.crm_id)
    return prospect.fields.get(name, MISSING)


def crm_value(record: CrmRecord, name: str) -> Any:
    """The record's value of a Salesforce field, or `MISSING` when it was not loaded."""
    if name == "Email":
        return record.email
    if name == "OwnerId":
        return record.owner_id
    return record.fields.get(name, MISSING)


def base_side(base: Mapping[str, Any], side: str) -> Mapping[str, Any]:
    """One side of a merge base (`"pardot"` or `"crm"`); empty when absent or malformed."""
    values = base.get(side) if isinstance(base, Mapping) else None
    return values if isinstance(values, Mapping) else MappingProxyType({})


@dataclass(frozen=True, slots=True, kw_only=True)
class FieldMerge:
    """The outcome for one field: what to write where, and what each side then holds."""

    write_pardot: bool = False
    pardot_value: Scalar = None
    write_crm: bool = False
    crm_value: Scalar = None
    base_pardot: Scalar = None  # canonical value Pardot holds after the plan
    base_crm: Scalar = None  # canonical value the CRM holds after the plan
    decision: Decision | None = None


def _crm_write_value(rule: FieldRule, crm_field: str, crm_type: CrmType, value: Any) -> Scalar:
    written = coerce(rule.kind, value)
    if written is None and crm_field in REQUIRED_CRM_FIELDS[crm_type]:
        # Salesforce rejects an empty required field; the placeholder reads as blank to us.
        return UNKNOWN_PLACEHOLDER
    return written


def _master(policy: Policy, pardot_updated: datetime, crm_modified: datetime) -> str:
    if policy is Policy.PARDOT:
        return PARDOT
    if policy is Policy.RECENT:
        p_at = parse_datetime(pardot_updated)
        c_at = parse_datetime(crm_modified)
        if p_at is not None and c_at is not None and p_at > c_at:
            return PARDOT
    return CRM


def _two_way_winner(
    rule: FieldRule,
    p: Scalar,
    c: Scalar,
    p_changed: bool,
    c_changed: bool,
    first: bool,
    times: tuple[datetime, datetime],
) -> tuple[str, str]:
    """(winning side, reason) for crm / pardot / recent fields whose values differ."""
    if not rule.blank_overwrites and (p is None or c is None):
        return (PARDOT if c is None else CRM), "value beats blank"
    if p_changed and not c_changed:
        return PARDOT, "changed in Pardot since the last sync"
    if c_changed and not p_changed:
        return CRM, "changed in the CRM since the last sync"
    winner = _master(rule.policy, *times)
    if first:
        why = "first sync, values differ"
    elif p_changed:
        why = "changed on both sides"
    else:
        why = "sides differ"
    if rule.policy is Policy.RECENT:
        master = "Pardot changed last" if winner == PARDOT else "the CRM changed last (or tie)"
    else:
        master = f"{'Pardot' if winner == PARDOT else 'the CRM'} is master"
    return winner, f"conflict ({why}): {master}"


def _side_name(side: str) -> str:
    return "Pardot" if side == PARDOT else "the CRM"


def _opt_out_winner(
    p: Scalar, c: Scalar, p_changed: bool, c_changed: bool, first: bool, opt_in_owner: str
) -> tuple[str, str]:
    """(winning side, reason) for an `opt_out_wins` flag whose sides differ (one is opted out)."""
    out_side, in_side = (PARDOT, CRM) if p is True else (CRM, PARDOT)
    if out_side == PARDOT:
        out_changed, in_changed = p_changed, c_changed
    else:
        out_changed, in_changed = c_changed, p_changed
    if first:
        return out_side, (
            f"opt_out_wins: first sync, opted out in {_side_name(out_side)}: both sides end "
            "opted out"
        )
    if out_changed or not in_changed:
        return out_side, (
            f"opt_out_wins: opted out in {_side_name(out_side)} since the last sync: "
            "an opt-out is never undone by a sync"
        )
    if in_side == opt_in_owner:
        return in_side, (
            f"opt_out_wins: opted in again in {_side_name(in_side)}, the opt-in owner "
            "(sync.opt_in_owner): the opt-in travels"
        )
    return out_side, (
        f"opt_out_wins: opt-in in {_side_name(in_side)} not applied: only "
        f"{_side_name(opt_in_owner)} (sync.opt_in_owner) may clear an opt-out; opted out again"
    )


def _one_way(
    rule: FieldRule, source_value: Scalar, target_value: Scalar, source_changed: bool
) -> str | None:
    """Reason to copy source -> target for a one-way field, or None to leave the target."""
    if source_value is None and not rule.blank_overwrites:
        return None  # a blank never overwrites a value
    if target_value is None:
        return "one-way: value fills blank"
    if source_changed:
        return "one-way: source changed since the last sync"
    return None


def merge_field(
    rule: FieldRule,
    crm_type: CrmType,
    *,
    pardot_raw: Any,
    crm_raw: Any,
    base_pardot: Any = MISSING,
    base_crm: Any = MISSING,
    pardot_updated_at: datetime,
    crm_last_modified: datetime,
    opt_in_owner: str = PARDOT,
) -> FieldMerge:
    """Merge one field; `base_*` omitted = the field was never merged (first sync).

    `opt_in_owner` ("pardot" or "crm") is the side whose opt-in travels for `opt_out_wins`.
    """
    crm_field = rule.crm_name(crm_type)
    if crm_field is None or not rule.synced:
        raise ValueError(f"fields.{rule.pardot} does not sync with {crm_type}")
    if rule.effective_policy is not rule.policy:
        rule = replace(rule, policy=rule.effective_policy)
    p = canonical(rule.kind, pardot_raw)
    c = canonical(rule.kind, crm_raw)
    if rule.policy is Policy.OPT_OUT_WINS:
        # A flag: blank reads as "not opted out", so an unset side never hides an opt-out.
        p, c = p is True, c is True
        pardot_raw, crm_raw = p, c
        if base_pardot is not MISSING:
            base_pardot = canonical(rule.kind, base_pardot) is True
        if base_crm is not MISSING:
            base_crm = canonical(rule.kind, base_crm) is True
    if p == c:
        return FieldMerge(base_pardot=p, base_crm=c)
    first = base_pardot is MISSING and base_crm is MISSING
    # A base value is compared in canonical form: a base written by an older release (or by
    # hand) still compares right.
    p_changed = base_pardot is MISSING or p != canonical(rule.kind, base_pardot)
    c_changed = base_crm is MISSING or c != canonical(rule.kind, base_crm)

    winner: str | None
    if rule.policy is Policy.TO_PARDOT:
        reason = _one_way(rule, c, p, c_changed)
        winner = CRM if reason else None
    elif rule.policy is Policy.TO_CRM:
        reason = _one_way(rule, p, c, p_changed)
        winner = PARDOT if reason else None
    elif rule.policy is Policy.OPT_OUT_WINS:
        winner, reason = _opt_out_winner(p, c, p_changed, c_changed, first, opt_in_owner)
    else:
        winner, reason = _two_way_winner(
            rule, p, c, p_changed, c_changed, first, (pardot_updated_at, crm_last_modified)
        )
    if winner is None or reason is None:
        return FieldMerge(base_pardot=p, base_crm=c)
    if winner == CRM:
        new = coerce(rule.kind, crm_raw)
        return FieldMerge(
            write_pardot=True,
            pardot_value=new,
            base_pardot=c,
            base_crm=c,
            decision=Decision(
                action="update_pardot",
                reason=reason,
                field=rule.pardot,
                old=coerce(rule.kind, pardot_raw),
                new=new,
                policy=rule.policy.value,
                side=PARDOT,
            ),
        )
    new = _crm_write_value(rule, crm_field, crm_type, pardot_raw)
    return FieldMerge(
        write_crm=True,
        crm_value=new,
        base_pardot=p,
        base_crm=p,
        decision=Decision(
            action="update_crm",
            reason=reason,
            field=rule.pardot,
            old=coerce(rule.kind, crm_raw),
            new=new,
            policy=rule.policy.value,
            side=CRM,
        ),
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class MergeResult:
    """The merge of a prospect with one record: writes per side, the new base, audit lines."""

    crm_update: Mapping[str, Scalar]
    pardot_update: Mapping[str, Scalar]
    base: Mapping[str, Any]
    decisions: tuple[Decision, ...]


def merge_record(
    field_map: FieldMap,
    prospect: Prospect,
    record: CrmRecord,
    base: Mapping[str, Any],
    *,
    opt_in_owner: str = PARDOT,
) -> MergeResult:
    """Merge every synced field of the prospect with the record against `base`.

    `opt_in_owner` is passed to `merge_field` for `opt_out_wins` fields.

    A field not loaded on either side is left alone (and keeps its base): an unknown value
    must never be mistaken for a blank.
    """
    base_p = base_side(base, BASE_PARDOT)
    base_c = base_side(base, BASE_CRM)
    new_p: dict[str, Scalar] = {}
    new_c: dict[str, Scalar] = {}
    crm_update: dict[str, Scalar] = {}
    pardot_update: dict[str, Scalar] = {}
    decisions: list[Decision] = []
    not_loaded: list[str] = []
    for rule in field_map.synced_rules(record.type):
        crm_field = rule.crm_name(record.type)
        if crm_field is None:  # synced_rules keeps only fields on this object
            continue
        p_raw = pardot_value(prospect, rule.pardot)
        c_raw = crm_value(record, crm_field)
        if p_raw is MISSING or c_raw is MISSING:
            not_loaded.append(rule.pardot)
            for side, new in ((base_p, new_p), (base_c, new_c)):
                if rule.pardot in side:
                    new[rule.pardot] = canonical(rule.kind, side[rule.pardot])
            continue
        outcome = merge_field(
            rule,
            record.type,
            pardot_raw=p_raw,
            crm_raw=c_raw,
            base_pardot=base_p.get(rule.pardot, MISSING),
            base_crm=base_c.get(rule.pardot, MISSING),
            pardot_updated_at=prospect.updated_at,
            crm_last_modified=record.last_modified,
            opt_in_owner=opt_in_owner,
        )
        new_p[rule.pardot] = outcome.base_pardot
        new_c[rule.pardot] = outcome.base_crm
        if outcome.write_pardot:
            pardot_update[rule.pardot] = outcome.pardot_value
        if outcome.write_crm:
            crm_update[crm_field] = outcome.crm_value
        if outcome.decision is not None:
            decisions.append(outcome.decision)
    if not_loaded:
        decisions.append(
            Decision(
                action="skip_fields",
                reason="not loaded, left alone: " + ", ".join(sorted(not_loaded)),
            )
        )
    return MergeResult(
        crm_update=MappingProxyType(dict(sorted(crm_update.items()))),
        pardot_update=MappingProxyType(dict(sorted(pardot_update.items()))),
        base={
            BASE_PARDOT: dict(sorted(new_p.items())),
            BASE_CRM: dict(sorted(new_c.items())),
        },
        decisions=tuple(decisions),
    )
