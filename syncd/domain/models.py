"""The domain's values: prospects, CRM records, links, users and the inputs of one reconcile.

Every value is a frozen, slotted, keyword-only dataclass. Mappings handed in are copied into
read-only `MappingProxyType`s so a value can be shared between the pipeline and the rules
without anyone changing it underneath the other. `thaw` turns them back into plain JSON-ready
dicts (the pipeline stores `Link.base` / `Plan.new_base` as JSON).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from syncd.domain.fieldmap import FieldMap

__all__ = [
    "CrmRecord",
    "CrmType",
    "CrmUser",
    "Decision",
    "Directory",
    "Link",
    "LinkAction",
    "PardotUser",
    "Policy",
    "Prospect",
    "ProspectInput",
    "SentEmail",
    "SyncConfig",
    "crm_type_of_id",
    "freeze",
    "same_sf_id",
    "sf_id_key",
    "thaw",
]

EMPTY: Mapping[str, Any] = MappingProxyType({})


class CrmType(StrEnum):
    """The Salesforce object a prospect syncs with."""

    LEAD = "Lead"
    CONTACT = "Contact"


class Policy(StrEnum):
    """Who wins for one mapped field (RULES.md section 4)."""

    CRM = "crm"  # two-way; the CRM is master on conflicts
    PARDOT = "pardot"  # two-way; Pardot is master on conflicts
    RECENT = "recent"  # two-way; the side modified last wins on conflicts (ties: CRM)
    # two-way, for an opt-out flag: an opt-out recorded on either side wins; an opt-in (clearing)
    # travels only from `SyncConfig.opt_in_owner` (merge.py says how)
    OPT_OUT_WINS = "opt_out_wins"
    TO_PARDOT = "to_pardot"  # CRM -> Pardot only
    TO_CRM = "to_crm"  # Pardot -> CRM only
    NONE = "none"  # not synced


class LinkAction(StrEnum):
    """What a plan does to the pairing of a prospect with a CRM record."""

    KEEP = "keep"  # already linked; merge with the linked record
    LINK = "link"  # link to an existing record (matched by CRM id or email), then merge
    CREATE_LEAD = "create_lead"  # create a Lead from the prospect, then link
    MOVE_TO_CONTACT = "move_to_contact"  # the linked Lead was converted: link to its Contact
    MARK_DELETED = "mark_deleted"  # the record was deleted in the CRM: flag, never re-create
    # the linked record was merged into another (MasterRecordId): the link follows the survivor
    MOVE_TO_SURVIVOR = "move_to_survivor"
    # the record was deleted in the CRM and `sync.crm_delete_action = "recycle"`: flag the link
    # as `MARK_DELETED` does and send the prospect to Pardot's recycle bin (DELETE)
    RECYCLE_PROSPECT = "recycle_prospect"
    # nothing is written; the item goes to the sync error queue (`Plan.error` says why)
    FAIL = "fail"
    SKIP = "skip"  # nothing is synced now (`Plan.skip_reason` says why)
    CREATE_PROSPECT = "create_prospect"  # CRM-only record with auto-create on: new prospect


@dataclass(frozen=True, slots=True, kw_only=True)
class Decision:
    """One audit line: what was decided and why (`syncd history` shows these).

    `action` names the effect (see `plan.DecisionAction`), `field` the Pardot field name for
    field writes, `old`/`new` the values before and after, `policy` the field's policy, `side`
    the system written ("crm" or "pardot").
    """

    action: str
    reason: str
    field: str | None = None
    old: Any = None
    new: Any = None
    policy: str | None = None
    side: str | None = None


def freeze(value: Any) -> Any:
    """Return `value` with every mapping made read-only and every list a tuple (recursively)."""
    if isinstance(value, Mapping):
        return MappingProxyType({k: freeze(v) for k, v in value.items()})
    if isinstance(value, list | tuple):
        return tuple(freeze(v) for v in value)
    return value


def thaw(value: Any) -> Any:
    """Inverse of `freeze`: plain dicts and lists for `json.dumps` (datetimes as ISO text)."""
    if isinstance(value, Mapping):
        return {str(k): thaw(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [thaw(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def sf_id_key(sf_id: str) -> str:
    """The case-sensitive 15-character form of a Salesforce id (18-character ids add a checksum)."""
    return sf_id.strip()[:15]


def same_sf_id(a: str | None, b: str | None) -> bool:
    """True when two Salesforce ids name the same record (15- and 18-character forms agree)."""
    if not a or not b:
        return False
    return sf_id_key(a) == sf_id_key(b)


def crm_type_of_id(sf_id: str) -> CrmType | None:
    """The object type a Salesforce id's key prefix names (00Q Lead, 003 Contact), else None."""
    prefix = sf_id.strip()[:3]
    if prefix == "00Q":
        return CrmType.LEAD
    if prefix == "003":
        return CrmType.CONTACT
    return None


def _set_frozen(obj: object, name: str, value: Any) -> None:
    # Frozen dataclasses allow this only through object.__setattr__ (used in __post_init__).
    object.__setattr__(obj, name, value)


@dataclass(frozen=True, slots=True, kw_only=True)
class Prospect:
    """A Pardot prospect as read from API v5.

    `fields` maps v5 field names to values exactly as the API gave them; `crm_id` is the
    prospect's `salesforceId` (the record Pardot believes it syncs with).
    """

    id: int
    email: str | None
    user_id: int | None
    fields: Mapping[str, Any]
    updated_at: datetime
    crm_id: str | None = None
    is_deleted: bool = False

    def __post_init__(self) -> None:
        _set_frozen(self, "fields", freeze(self.fields))


@dataclass(frozen=True, slots=True, kw_only=True)
class CrmRecord:
    """A Salesforce Lead or Contact as read now; `fields` maps Salesforce field names to values."""

    type: CrmType
    id: str
    email: str | None
    fields: Mapping[str, Any]
    owner_id: str | None
    created_date: datetime
    last_modified: datetime
    is_converted: bool = False
    converted_contact_id: str | None = None
    is_deleted: bool = False
    # A deleted record merged into another: the survivor's id (Salesforce `MasterRecordId`,
    # read with the `queryAll` resource); None for a plain delete or a live record.
    master_record_id: str | None = None

    def __post_init__(self) -> None:
        _set_frozen(self, "fields", freeze(self.fields))


@dataclass(frozen=True, slots=True, kw_only=True)
class Link:
    """The stored pairing of a prospect with a CRM record, and the merge base.

    `base` is what each side held after the last sync, keyed by Pardot field name:
    `{"pardot": {field: value}, "crm": {field: value}}` with values in the canonical,
    JSON-serialisable form of `values.canonical` (see `merge.BASE_*`). An empty base means
    "never merged" (first sync). `crm_deleted` is set once the record was deleted in the CRM.
    """

    prospect_id: int
    crm_type: CrmType
    crm_id: str
    base: Mapping[str, Any] = field(default_factory=lambda: EMPTY)
    crm_deleted: bool = False

    def __post_init__(self) -> None:
        _set_frozen(self, "base", freeze(self.base))


@dataclass(frozen=True, slots=True, kw_only=True)
class PardotUser:
    """A Pardot user; `salesforce_id` is the CRM user (005...) it maps to (v5 `salesforceId`)."""

    id: int
    email: str | None
    salesforce_id: str | None
    is_deleted: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class CrmUser:
    """A Salesforce user."""

    id: str
    username: str | None
    is_active: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class SentEmail:
    """One email Pardot sent to a prospect (list email or one-to-one)."""

    id: int
    prospect_id: int
    subject: str
    sent_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class Directory:
    """Users on both sides and how they map (RULES.md section 6)."""

    pardot_users: Mapping[int, PardotUser]
    crm_users: Mapping[str, CrmUser]
    queue_ids: frozenset[str]
    connector_user_id: str
    # Indexes derived once; keyed by the 15-character id so 15/18-character ids agree.
    _crm_by_key: Mapping[str, CrmUser] = field(init=False, repr=False, compare=False)
    _pardot_by_sf_key: Mapping[str, int] = field(init=False, repr=False, compare=False)
    _queue_keys: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _set_frozen(self, "pardot_users", MappingProxyType(dict(self.pardot_users)))
        _set_frozen(self, "crm_users", MappingProxyType(dict(self.crm_users)))
        _set_frozen(self, "queue_ids", frozenset(self.queue_ids))
        crm_by_key = {sf_id_key(u.id): u for u in self.crm_users.values()}
        by_sf: dict[str, int] = {}
        # Lowest Pardot user id wins when two users name the same CRM user: deterministic.
        for user in sorted(self.pardot_users.values(), key=lambda u: u.id):
            if user.is_deleted or not user.salesforce_id:
                continue
            by_sf.setdefault(sf_id_key(user.salesforce_id), user.id)
        _set_frozen(self, "_crm_by_key", MappingProxyType(crm_by_key))
        _set_frozen(self, "_pardot_by_sf_key", MappingProxyType(by_sf))
        _set_frozen(self, "_queue_keys", frozenset(sf_id_key(q) for q in self.queue_ids))

    def crm_owner_for(self, pardot_user_id: int | None) -> str | None:
        """The active CRM user of that (non-deleted) Pardot user, else None."""
        if pardot_user_id is None:
            return None
        user = self.pardot_users.get(pardot_user_id)
        if user is None or user.is_deleted or not user.salesforce_id:
            return None
        crm_user = self._crm_by_key.get(sf_id_key(user.salesforce_id))
        if crm_user is None or not crm_user.is_active:
            return None
        return crm_user.id

    def pardot_user_for(self, crm_owner_id: str | None) -> int | None:
        """The (non-deleted) Pardot user whose `salesforce_id` is that CRM owner, else None."""
        if not crm_owner_id:
            return None
        return self._pardot_by_sf_key.get(sf_id_key(crm_owner_id))

    def is_queue(self, owner_id: str | None) -> bool:
        """True when the owner id is a Salesforce queue (a Group, key prefix 00G)."""
        if not owner_id:
            return False
        return sf_id_key(owner_id) in self._queue_keys or owner_id.startswith("00G")


@dataclass(frozen=True, slots=True, kw_only=True)
class SyncConfig:
    """The sync settings the rules depend on.

    `assignment`: how new Leads get an owner: "user" (the assignee's CRM user, else the
    connector user), "queue" (`assignment_queue_id`), "rule" (Salesforce active assignment
    rule: created without an owner, header `Sforce-Auto-Assign: TRUE`).
    `auto_create_since`: with `auto_create_prospects`, only CRM records created at or after
    this instant get a prospect (the real setting is not retroactive); None = no limit.
    `crm_link_field`: the Salesforce custom field on Lead and Contact that mirrors the link (it
    holds the prospect id; RULES.md 2a); None = no mirror.
    `crm_delete_action`: what a linked record deleted in the CRM (not merged) does to its
    prospect: "mark" (the link is marked `crm_deleted`, nothing is written) or "recycle" (also
    send the prospect to Pardot's recycle bin, as Salesforce's own connector does). A merge is
    never a delete: the link follows the survivor.
    `opt_in_owner`: the side whose opt-in (clearing an opt-out) travels to the other side for
    `opt_out_wins` fields: "pardot" (where the email preference center lives) or "crm".
    """

    field_map: FieldMap
    assignment: Literal["user", "queue", "rule"] = "user"
    assignment_queue_id: str | None = None
    email_activities: bool = True
    auto_create_prospects: bool = False
    auto_create_since: datetime | None = None
    crm_link_field: str | None = None
    crm_delete_action: Literal["mark", "recycle"] = "mark"
    opt_in_owner: Literal["pardot", "crm"] = "pardot"

    def __post_init__(self) -> None:
        if self.crm_delete_action not in ("mark", "recycle"):
            raise ValueError(
                f"sync.crm_delete_action must be mark or recycle, not {self.crm_delete_action!r}"
            )
        if self.opt_in_owner not in ("pardot", "crm"):
            raise ValueError(f"sync.opt_in_owner must be pardot or crm, not {self.opt_in_owner!r}")
        if self.assignment not in ("user", "queue", "rule"):
            raise ValueError(
                f"sync.assignment must be user, queue or rule, not {self.assignment!r}"
            )
        if self.assignment == "queue" and not self.assignment_queue_id:
            raise ValueError(
                "sync.assignment = queue needs sync.assignment_queue_id (a 00G... queue id)"
            )


@dataclass(frozen=True, slots=True, kw_only=True)
class ProspectInput:
    """Everything `reconcile` needs to decide about one queued item.

    - `prospect`: None for CRM-only items (a CRM change with no prospect).
    - `link`: the stored link, if any.
    - `linked`: the record the link (or, with no link, `prospect.crm_id`) points at, read now;
      None = not found (deleted).
    - `converted_contact`: when `linked` is a converted Lead, the Contact it became.
    - `candidates`: non-converted Contacts and Leads with the prospect's email (any order).
    - `emails`: sent emails of this prospect not yet logged as Tasks.
    - `crm_record`: for CRM-only items, the changed record.
    - `taken_crm_ids`: candidates already linked to ANOTHER prospect (only possible when the
      business unit allows multiple prospects with one email, AMPSEA). They are not matched;
      per the seed, such a prospect gets a Lead of its own when assigned.
    - `mirrored`: records whose mirror field (`SyncConfig.crm_link_field`) names this prospect:
      with no stored link, the link is rebuilt from them before any matching by email.
    - `survivor`: when `linked` is deleted with a `master_record_id` (a merge loser), the live
      record at the end of the MasterRecordId chain, read now (None = not loaded / not found).
    - `email_owners`: for the emails this item may write (the prospect's and the linked
      record's, keyed by `match.email_key`), the id of ANOTHER prospect whose stored link holds
      that email. A write of such an email is refused (FAIL), never a silent relink.
    - `recycled_prospect_ids`: for CRM-only items, prospects in Pardot's recycle bin that the
      record is linked to or that have its email: auto-create never re-creates them.
    - `merged_prospect_ids`: for CRM-only items, prospects linked to records that were merged
      into this one (losers with `MasterRecordId` = this record): their links follow it, so
      auto-create must not make it a prospect of its own.
    """

    prospect: Prospect | None
    link: Link | None
    linked: CrmRecord | None
    converted_contact: CrmRecord | None = None
    candidates: Sequence[CrmRecord] = ()
    emails: Sequence[SentEmail] = ()
    crm_record: CrmRecord | None = None
    taken_crm_ids: frozenset[str] = frozenset()
    mirrored: Sequence[CrmRecord] = ()
    survivor: CrmRecord | None = None
    email_owners: Mapping[str, int] = field(default_factory=lambda: EMPTY)
    recycled_prospect_ids: frozenset[int] = frozenset()
    merged_prospect_ids: frozenset[int] = frozenset()

    def __post_init__(self) -> None:
        _set_frozen(self, "mirrored", tuple(self.mirrored))
        _set_frozen(self, "email_owners", MappingProxyType(dict(self.email_owners)))
        _set_frozen(self, "recycled_prospect_ids", frozenset(self.recycled_prospect_ids))
        _set_frozen(self, "merged_prospect_ids", frozenset(self.merged_prospect_ids))
        _set_frozen(self, "candidates", tuple(self.candidates))
        _set_frozen(self, "emails", tuple(self.emails))
        _set_frozen(self, "taken_crm_ids", frozenset(self.taken_crm_ids))
