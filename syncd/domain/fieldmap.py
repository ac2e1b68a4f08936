"""Which Pardot field syncs with which Salesforce field, of what kind, under which policy.

The default map follows the seed ("Things to Know Before Activating Your CRM Connector"): the
CRM is master for conflicts, except Pardot Campaign, Comments, Created Date, Last Activity,
Score and Grade, where Pardot is master. The email opt-out pair (`optedOut` <->
`HasOptedOutOfEmail`) is `opt_out_wins`: an opt-out on either side is never undone by a sync, and
an opt-in travels only from `sync.opt_in_owner` (Salesforce's own connector dropped "most
recent" for Opted Out; `recent` stays available as a `[fields]` policy).
Settings `[fields]` entries override or add rules (`FieldMap.with_overrides`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from syncd.domain.models import CrmType, Policy
from syncd.domain.values import KINDS

__all__ = [
    "CRM_RECORD_FIELDS",
    "PARDOT_LINK_FIELDS",
    "PARDOT_OWNER_FIELDS",
    "PARDOT_READ_ONLY_FIELDS",
    "PARDOT_RECORD_FIELDS",
    "REQUIRED_CRM_FIELDS",
    "FieldMap",
    "FieldRule",
    "is_read_only_pardot_field",
]

# The prospect's CRM link as Salesforce's own connector keeps it. Pardot API v5 lets no API
# client write these (RULES.md 2a, wire-formats C.3a): syncd keeps the link in its store and only
# READS them, as a matching hint for prospects the native connector linked before syncd.
PARDOT_LINK_FIELDS: Final = ("salesforceId", "salesforceLeadId", "salesforceContactId")

# Pardot prospect fields the v5 API refuses to write (wire-formats C.3a: the prospect reference's
# read-only tables). `salesforceId` is absent from that table, but it is the native connector's
# link all the same: treated as read-only. Fields ending in `Parameter` (the UTM fields) too.
PARDOT_READ_ONLY_FIELDS: Final = frozenset(
    {
        # set by Salesforce's own connector
        *PARDOT_LINK_FIELDS,
        "salesforceAccountId",
        "salesforceUrl",
        "salesforceLastSync",
        "salesforceCampaignId",
        # computed or system
        "grade",
        "doNotSell",
        "lifecycleStageId",
        "recentInteraction",
        "convertedAt",
        "emailBouncedAt",
        "password",
        "id",
        "createdAt",
        "updatedAt",
        "createdById",
        "updatedById",
        "isDeleted",
        "assignedToId",
        "lastActivityAt",
        "firstActivityAt",
        "firstAssignedAt",
        "isEmailHardBounced",
    }
)

# Kept by the sync itself (owners, RULES.md 6): never a `[fields]` entry. Send `userId` or
# `salesforceOwnerId`, never both (C.3a); syncd sends `userId`.
PARDOT_OWNER_FIELDS: Final = ("userId", "salesforceOwnerId")


def is_read_only_pardot_field(name: str) -> bool:
    """True when Pardot API v5 refuses a write of this prospect field (C.3a)."""
    return name in PARDOT_READ_ONLY_FIELDS or name.endswith("Parameter")


# Policies that may send a value to Pardot (a read-only Pardot field cannot have them).
_WRITES_PARDOT: Final = frozenset(
    {Policy.CRM, Policy.RECENT, Policy.TO_PARDOT, Policy.OPT_OUT_WINS}
)


# Pardot fields every sync reads besides the mapped ones.
PARDOT_RECORD_FIELDS: Final = (
    "id",
    "email",
    "userId",
    "updatedAt",
    "isDeleted",
    *PARDOT_LINK_FIELDS,
)

# Salesforce fields every sync reads besides the mapped ones. `MasterRecordId` is null on live
# records; read through `queryAll` on a deleted one it names the survivor of a merge.
CRM_RECORD_FIELDS: Final[Mapping[CrmType, tuple[str, ...]]] = {
    CrmType.LEAD: (
        "Id",
        "Email",
        "OwnerId",
        "CreatedDate",
        "LastModifiedDate",
        "SystemModstamp",
        "IsDeleted",
        "MasterRecordId",
        "IsConverted",
        "ConvertedContactId",
    ),
    CrmType.CONTACT: (
        "Id",
        "Email",
        "OwnerId",
        "CreatedDate",
        "LastModifiedDate",
        "SystemModstamp",
        "IsDeleted",
        "MasterRecordId",
    ),
}

# Salesforce rejects a create or an update that leaves these empty.
REQUIRED_CRM_FIELDS: Final[Mapping[CrmType, frozenset[str]]] = {
    CrmType.LEAD: frozenset({"LastName", "Company"}),
    CrmType.CONTACT: frozenset({"LastName"}),
}


@dataclass(frozen=True, slots=True, kw_only=True)
class FieldRule:
    """One mapped field: Pardot v5 name, Salesforce names per object (None = not on it)."""

    pardot: str
    crm_lead: str | None
    crm_contact: str | None
    policy: Policy = Policy.CRM
    blank_overwrites: bool = False
    kind: str = "str"

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(
                f"fields.{self.pardot}: kind {self.kind!r} is not one of {', '.join(sorted(KINDS))}"
            )
        object.__setattr__(self, "policy", Policy(self.policy))
        if self.policy is Policy.OPT_OUT_WINS and self.kind != "bool":
            raise ValueError(
                f'fields.{self.pardot}: policy "opt_out_wins" is for an opt-out flag; set '
                f'kind = "bool" (not {self.kind!r}) or choose another policy'
            )

    def crm_name(self, crm_type: CrmType) -> str | None:
        """The Salesforce field for that object, or None when the field is not on it."""
        return self.crm_lead if crm_type is CrmType.LEAD else self.crm_contact

    @property
    def effective_policy(self) -> Policy:
        """The policy the merge applies: `policy`, except that a field Pardot will not let us
        write (createdAt, lastActivityAt, ...) only flows to the CRM (Pardot is its only
        writer, so it is master in fact): two-way -> `to_crm`, `to_pardot` -> `none`."""
        if not is_read_only_pardot_field(self.pardot):
            return self.policy
        if self.policy in (Policy.TO_PARDOT, Policy.NONE):
            return Policy.NONE
        return Policy.TO_CRM

    @property
    def synced(self) -> bool:
        """False when the field does not sync (`policy = "none"`, in effect or as configured)."""
        return self.effective_policy is not Policy.NONE


def _rule(
    pardot: str,
    lead: str | None,
    contact: str | None = "",
    policy: Policy = Policy.CRM,
    kind: str = "str",
) -> FieldRule:
    # contact "" means "same name as on the Lead".
    return FieldRule(
        pardot=pardot,
        crm_lead=lead,
        crm_contact=lead if contact == "" else contact,
        policy=policy,
        kind=kind,
    )


_DEFAULT_RULES: Final = (
    _rule("email", "Email", kind="email"),
    _rule("firstName", "FirstName"),
    _rule("lastName", "LastName"),
    _rule("salutation", "Salutation"),
    _rule("jobTitle", "Title"),
    _rule("company", "Company", None),
    _rule("website", "Website", None),
    _rule("phone", "Phone"),
    _rule("addressOne", "Street", "MailingStreet"),
    _rule("city", "City", "MailingCity"),
    _rule("state", "State", "MailingState"),
    _rule("zip", "PostalCode", "MailingPostalCode"),
    _rule("country", "Country", "MailingCountry"),
    _rule("source", "LeadSource"),
    _rule("optedOut", "HasOptedOutOfEmail", policy=Policy.OPT_OUT_WINS, kind="bool"),
    _rule("score", "pi__score__c", policy=Policy.PARDOT, kind="int"),
    _rule("grade", "pi__grade__c", policy=Policy.PARDOT),
    _rule("campaignId", "pi__campaign__c", policy=Policy.PARDOT),
    _rule("comments", "pi__comments__c", policy=Policy.PARDOT),
    _rule("createdAt", "pi__created_date__c", policy=Policy.PARDOT, kind="datetime"),
    _rule("lastActivityAt", "pi__last_activity__c", policy=Policy.PARDOT, kind="datetime"),
)

_MISSING: Final = object()


def _setting(entry: Any, name: str) -> Any:
    """Read one key of a `[fields]` entry: a dict or an object with attributes."""
    if isinstance(entry, Mapping):
        return entry.get(name, _MISSING)
    return getattr(entry, name, _MISSING)


@dataclass(frozen=True, slots=True, kw_only=True)
class FieldMap:
    """The mapped fields, in a stable order (the order plans list their writes in)."""

    rules: tuple[FieldRule, ...]

    def __post_init__(self) -> None:
        rules = tuple(self.rules)
        object.__setattr__(self, "rules", rules)
        seen: set[str] = set()
        for rule in rules:
            if rule.pardot in seen:
                raise ValueError(f"fields.{rule.pardot} is mapped twice")
            seen.add(rule.pardot)
            if rule.pardot in PARDOT_LINK_FIELDS or rule.pardot in PARDOT_OWNER_FIELDS:
                raise ValueError(
                    f"fields.{rule.pardot} is kept by the sync itself (the link lives in "
                    "syncd's store, owners follow the CRM owner); remove it from [fields]"
                )
            if is_read_only_pardot_field(rule.pardot) and rule.policy in _WRITES_PARDOT:
                raise ValueError(
                    f"fields.{rule.pardot}: Pardot API v5 makes {rule.pardot} read-only, so "
                    f'policy "{rule.policy.value}" would write it to Pardot and be refused; use '
                    'policy "pardot" or "to_crm" (Pardot -> CRM only) or "none"'
                )
        for crm_type in CrmType:
            targets: dict[str, str] = {}
            for rule in rules:
                name = rule.crm_name(crm_type)
                if not rule.synced or name is None:
                    continue
                if name in targets:
                    raise ValueError(
                        f"fields.{rule.pardot} and fields.{targets[name]} both map to "
                        f"{crm_type}.{name}; map each Salesforce field once"
                    )
                targets[name] = rule.pardot

    @classmethod
    def default(cls) -> FieldMap:
        """The seed's default mapping of the standard Lead and Contact fields."""
        return cls(rules=_DEFAULT_RULES)

    def rule(self, pardot_field: str) -> FieldRule | None:
        """The rule of a Pardot field, or None when it is not mapped."""
        for rule in self.rules:
            if rule.pardot == pardot_field:
                return rule
        return None

    def synced_rules(self, crm_type: CrmType) -> tuple[FieldRule, ...]:
        """Rules that sync with that object (policy not `none`, field exists on the object)."""
        return tuple(r for r in self.rules if r.synced and r.crm_name(crm_type) is not None)

    def with_overrides(self, overrides: Mapping[str, Any]) -> FieldMap:
        """Apply settings `[fields]`: `{pardot_field: {crm, policy, blank_overwrites[, kind]}}`.

        Entries may be dicts or objects with those attributes. `crm` names the Salesforce field
        on both Lead and Contact (optional `crm_lead` / `crm_contact` set one side); `policy =
        "none"` stops syncing the field. A new field needs `crm`. Raises ValueError naming the
        field for an unknown policy or kind.
        """
        rules = {r.pardot: r for r in self.rules}
        for pardot_field in sorted(overrides):
            entry = overrides[pardot_field]
            current = rules.get(pardot_field)
            policy_raw = _setting(entry, "policy")
            if policy_raw is _MISSING or policy_raw is None:
                policy = current.policy if current else Policy.CRM
            else:
                try:
                    policy = Policy(str(policy_raw))
                except ValueError:
                    allowed = ", ".join(p.value for p in Policy)
                    raise ValueError(
                        f"fields.{pardot_field}: policy {policy_raw!r} is not one of {allowed}"
                    ) from None
            crm = _setting(entry, "crm")
            lead = _setting(entry, "crm_lead")
            contact = _setting(entry, "crm_contact")
            crm_lead = current.crm_lead if current else None
            crm_contact = current.crm_contact if current else None
            if crm is not _MISSING and crm is not None:
                crm_lead = crm_contact = str(crm)
            if lead is not _MISSING:
                crm_lead = lead
            if contact is not _MISSING:
                crm_contact = contact
            if policy is not Policy.NONE and crm_lead is None and crm_contact is None:
                raise ValueError(
                    f'fields.{pardot_field}: set crm = "<Salesforce field>" (or policy = "none")'
                )
            blank = _setting(entry, "blank_overwrites")
            kind = _setting(entry, "kind")
            rules[pardot_field] = FieldRule(
                pardot=pardot_field,
                crm_lead=crm_lead,
                crm_contact=crm_contact,
                policy=policy,
                blank_overwrites=(
                    bool(blank)
                    if blank is not _MISSING and blank is not None
                    else (current.blank_overwrites if current else False)
                ),
                kind=(
                    str(kind)
                    if kind is not _MISSING and kind is not None
                    # a new opt_out_wins field is a flag: no kind to spell out
                    else (
                        current.kind
                        if current
                        else ("bool" if policy is Policy.OPT_OUT_WINS else "str")
                    )
                ),
            )
        ordered = [rules.pop(r.pardot) for r in self.rules]
        ordered.extend(rules[name] for name in sorted(rules))
        return FieldMap(rules=tuple(ordered))

    def crm_fields(self, crm_type: CrmType) -> tuple[str, ...]:
        """Salesforce field names to SELECT for that object (mapped, synced fields only)."""
        names: list[str] = []
        for rule in self.synced_rules(crm_type):
            name = rule.crm_name(crm_type)
            if name is not None and name not in names:
                names.append(name)
        return tuple(names)

    def crm_select_fields(self, crm_type: CrmType) -> tuple[str, ...]:
        """Everything to SELECT for that object: the record fields plus the mapped ones."""
        names = list(CRM_RECORD_FIELDS[crm_type])
        names.extend(n for n in self.crm_fields(crm_type) if n not in names)
        return tuple(names)

    def pardot_fields(self) -> tuple[str, ...]:
        """Pardot field names to request: id, email, userId, updatedAt, isDeleted, the link
        fields (salesforceId, salesforceLeadId, salesforceContactId), then the mapped fields."""
        names = list(PARDOT_RECORD_FIELDS)
        names.extend(r.pardot for r in self.rules if r.synced and r.pardot not in names)
        return tuple(names)
