"""Is a change-feed row syncd's own write coming back (an echo), so the poller need not queue it?

After a sync, each side holds exactly the merge base (`Link.base`: what each side held after
the last sync, in canonical form). syncd's own writes move `updatedAt` (Pardot) and
`SystemModstamp` (Salesforce), so both feeds read them again; processing them again only
re-confirms the base. A row is an echo when nothing the pipeline would act on differs from
what syncd left:

- Pardot (`is_pardot_echo`): the prospect is linked (not `crm_deleted`), its `updatedAt` is not
  newer than the stamp syncd's last Pardot write produced, every mapped field that syncs with
  the linked object equals the stored Pardot side of the base, and (when syncd recorded it) the
  assignee is the one syncd left. Pardot stamps `updatedAt` in whole seconds, so another edit
  in the same second as syncd's write carries the same stamp: the values tell it apart.
- Salesforce (`is_crm_echo`): the record is the linked one, live and not converted, every
  mapped field equals the stored CRM side of the base, and the owner is the one syncd recorded.
  No time stamp: sObject Collections do not answer with the `SystemModstamp` of a write, and
  syncd's clock is not Salesforce's, so a stamp comparison would be a guess; the values are the
  test (a row equal to the base on every input the merge and the owner rule read has nothing
  for the pipeline to do, whoever wrote it).

When unsure (no link, no stamp, a field not in the base or not read, a malformed value) the
answer is "not an echo": queueing a row twice costs CPU, skipping a real change loses it.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final

from syncd.domain.fieldmap import FieldMap, FieldRule
from syncd.domain.merge import BASE_CRM, BASE_PARDOT, MISSING, base_side, crm_value, pardot_value
from syncd.domain.models import CrmRecord, CrmType, Policy, Prospect
from syncd.domain.values import canonical, parse_datetime

__all__ = ["SYNC_META", "EchoMeta", "echo_meta", "is_crm_echo", "is_pardot_echo"]

# Key in the stored merge base for syncd's own bookkeeping (never a field name).
SYNC_META: Final = "_sync"
META_PARDOT_UPDATED_AT: Final = "pardot_updated_at"
META_PARDOT_USER_ID: Final = "pardot_user_id"
META_CRM_OWNER_ID: Final = "crm_owner_id"
_UNSET: Final = object()


class EchoMeta:
    """What syncd recorded of its last write, read from a stored base's `_sync` entry."""

    __slots__ = ("crm_owner_id", "pardot_updated_at", "pardot_user_id")

    def __init__(self, base: Mapping[str, Any]) -> None:
        meta = base.get(SYNC_META) if isinstance(base, Mapping) else None
        meta = meta if isinstance(meta, Mapping) else {}
        self.pardot_updated_at: datetime | None = parse_datetime(meta.get(META_PARDOT_UPDATED_AT))
        # _UNSET: not recorded (a link stored by an older release, or a record not read):
        # unknown, which is never taken for "no owner".
        self.pardot_user_id: Any = meta.get(META_PARDOT_USER_ID, _UNSET)
        self.crm_owner_id: Any = meta.get(META_CRM_OWNER_ID, _UNSET)


def echo_meta(base: Mapping[str, Any]) -> EchoMeta:
    return EchoMeta(base)


def _same(rule: FieldRule, now: Any, base: Any) -> bool:
    if now is MISSING:
        return False  # not read: unknown
    try:
        a, b = canonical(rule.kind, now), canonical(rule.kind, base)
    except (TypeError, ValueError):
        return False
    if rule.effective_policy is Policy.OPT_OUT_WINS:  # the merge reads blank as "not opted out"
        return (a is True) == (b is True)
    return a == b


def _side_matches(
    field_map: FieldMap, crm_type: CrmType, side: Mapping[str, Any], value_of: Any
) -> bool:
    rules = field_map.synced_rules(crm_type)
    if not rules:
        return False
    for rule in rules:
        if rule.pardot not in side:
            return False  # never merged (a field mapped since): the pipeline must see it
        if not _same(rule, value_of(rule), side[rule.pardot]):
            return False
    return True


def is_pardot_echo(
    prospect: Prospect,
    *,
    base: Mapping[str, Any],
    crm_type: CrmType,
    crm_deleted: bool,
    field_map: FieldMap,
) -> bool:
    """True when this Pardot feed row is syncd's own write coming back (see the module doc).

    `base` is the stored link's merge base (with syncd's `_sync` entry), `crm_type` the linked
    object's type.
    """
    if crm_deleted or prospect.is_deleted:
        return False
    meta = EchoMeta(base)
    if meta.pardot_updated_at is None or prospect.updated_at > meta.pardot_updated_at:
        return False
    if meta.pardot_user_id is _UNSET or meta.pardot_user_id != prospect.user_id:
        return False
    side = base_side(base, BASE_PARDOT)
    return _side_matches(
        field_map, crm_type, side, lambda rule: pardot_value(prospect, rule.pardot)
    )


def is_crm_echo(
    record: CrmRecord,
    *,
    linked_crm_id: str,
    base: Mapping[str, Any],
    crm_deleted: bool,
    field_map: FieldMap,
) -> bool:
    """True when this Salesforce feed row is syncd's own write coming back (see the module doc).

    `linked_crm_id` is the CRM id the stored link names (18 or 15 characters), `base` its
    merge base (with syncd's `_sync` entry).
    """
    if crm_deleted or record.is_deleted or record.is_converted:
        return False
    if record.id[:15] != linked_crm_id[:15]:
        return False
    meta = EchoMeta(base)
    if meta.crm_owner_id is _UNSET or meta.crm_owner_id != record.owner_id:
        return False
    side = base_side(base, BASE_CRM)
    return _side_matches(
        field_map,
        record.type,
        side,
        lambda rule: crm_value(record, rule.crm_name(record.type) or ""),
    )
