"""Builders shared by the domain tests: prospects, records, a directory, and plan application.

`apply_plan` plays a plan against the inputs (purely, as the pipeline would against the APIs)
so tests can check that reconciling again is a no-op.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from syncd.domain.fieldmap import FieldMap
from syncd.domain.models import (
    CrmRecord,
    CrmType,
    CrmUser,
    Directory,
    Link,
    PardotUser,
    Prospect,
    ProspectInput,
    SyncConfig,
    thaw,
)
from syncd.domain.plan import LinkAction, Plan, reconcile

T0 = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)
NOW = T0 + timedelta(days=1)


def lead_id(n: int) -> str:
    return f"00Q{n:012d}AAA"


def contact_id(n: int) -> str:
    return f"003{n:012d}AAA"


def user_id(n: int) -> str:
    return f"005{n:012d}AAA"


CONNECTOR = user_id(1)
QUEUE = "00G000000000001AAA"

# Pardot users: 10 -> active CRM user; 11 -> inactive CRM user; 12 -> no CRM user;
# 13 -> deleted. CRM user 14 has no Pardot user.
DIRECTORY = Directory(
    pardot_users={
        10: PardotUser(id=10, email="ann@acme.example", salesforce_id=user_id(10)),
        11: PardotUser(id=11, email="bob@acme.example", salesforce_id=user_id(11)),
        12: PardotUser(id=12, email="cat@acme.example", salesforce_id=None),
        13: PardotUser(id=13, email="dan@acme.example", salesforce_id=user_id(13), is_deleted=True),
        15: PardotUser(id=15, email="eve@acme.example", salesforce_id=user_id(15)),
    },
    crm_users={
        CONNECTOR: CrmUser(id=CONNECTOR, username="connector@acme.example", is_active=True),
        user_id(10): CrmUser(id=user_id(10), username="ann@acme.example", is_active=True),
        user_id(11): CrmUser(id=user_id(11), username="bob@acme.example", is_active=False),
        user_id(13): CrmUser(id=user_id(13), username="dan@acme.example", is_active=True),
        user_id(14): CrmUser(id=user_id(14), username="fay@acme.example", is_active=True),
        user_id(15): CrmUser(id=user_id(15), username="eve@acme.example", is_active=True),
    },
    queue_ids=frozenset({QUEUE}),
    connector_user_id=CONNECTOR,
)

FIELD_MAP = FieldMap.default()
CONFIG = SyncConfig(field_map=FIELD_MAP)
LINK_FIELDS = ("salesforceId", "salesforceLeadId", "salesforceContactId")


def prospect(
    *,
    id: int = 1001,
    email: str | None = "jane@acme.example",
    user: int | None = 10,
    updated_at: datetime = T0,
    crm_id: str | None = None,
    is_deleted: bool = False,
    **fields: Any,
) -> Prospect:
    """A prospect with every mapped field loaded (blank unless given)."""
    values: dict[str, Any] = {r.pardot: None for r in FIELD_MAP.rules}
    values.update({name: None for name in LINK_FIELDS})
    values["email"] = email
    values["salesforceId"] = crm_id
    values.update(fields)
    return Prospect(
        id=id,
        email=email,
        user_id=user,
        fields=values,
        updated_at=updated_at,
        crm_id=crm_id,
        is_deleted=is_deleted,
    )


def record(
    crm_type: CrmType,
    n: int = 1,
    *,
    email: str | None = "jane@acme.example",
    owner: str | None = None,
    created: datetime = T0,
    modified: datetime = T0,
    is_converted: bool = False,
    converted_contact_id: str | None = None,
    is_deleted: bool = False,
    **fields: Any,
) -> CrmRecord:
    """A Lead or Contact with every mapped field loaded (blank unless given)."""
    values: dict[str, Any] = {name: None for name in FIELD_MAP.crm_fields(crm_type)}
    values["Email"] = email
    values.update(fields)
    return CrmRecord(
        type=crm_type,
        id=lead_id(n) if crm_type is CrmType.LEAD else contact_id(n),
        email=email,
        fields=values,
        owner_id=owner if owner is not None else user_id(10),
        created_date=created,
        last_modified=modified,
        is_converted=is_converted,
        converted_contact_id=converted_contact_id,
        is_deleted=is_deleted,
    )


def lead(n: int = 1, **kw: Any) -> CrmRecord:
    return record(CrmType.LEAD, n, **kw)


def contact(n: int = 1, **kw: Any) -> CrmRecord:
    return record(CrmType.CONTACT, n, **kw)


def link_to(rec: CrmRecord, p: Prospect, base: Mapping[str, Any] | None = None) -> Link:
    return Link(prospect_id=p.id, crm_type=rec.type, crm_id=rec.id, base=base or {})


def run(
    inp: ProspectInput, *, config: SyncConfig = CONFIG, directory: Directory = DIRECTORY
) -> Plan:
    return reconcile(inp, config=config, directory=directory, now=NOW)


def _crm_name(field: str, crm_type: CrmType) -> str | None:
    rule = FIELD_MAP.rule(field)
    return None if rule is None else rule.crm_name(crm_type)


def apply_plan(
    plan: Plan,
    inp: ProspectInput,
    *,
    field_map: FieldMap = FIELD_MAP,
    new_id: int = 999,
) -> ProspectInput:
    """Play `plan` against the inputs like the pipeline would; return the next input.

    Written values land as given (the APIs store what they are sent); both sides' modification
    times move forward; the link is stored with `plan.new_base` (through JSON, like the store).
    """
    later = NOW
    p = inp.prospect
    if plan.action in (
        LinkAction.SKIP,
        LinkAction.MARK_DELETED,
        LinkAction.RECYCLE_PROSPECT,
        LinkAction.FAIL,
    ):
        return inp
    if plan.action is LinkAction.CREATE_PROSPECT:
        assert plan.pardot_create is not None and inp.crm_record is not None
        created = dict(plan.pardot_create)
        p = Prospect(
            id=new_id,
            email=created.get("email"),
            user_id=created.pop("userId", None),
            fields={**{r.pardot: None for r in field_map.rules}, **created},
            updated_at=later,
        )
        rec = inp.crm_record
        return ProspectInput(prospect=p, link=_stored_link(plan, p.id, rec), linked=rec)
    assert p is not None
    rec = inp.linked if plan.action is not LinkAction.MOVE_TO_CONTACT else inp.converted_contact
    if plan.action is LinkAction.MOVE_TO_SURVIVOR:
        rec = next(
            (c for c in (inp.survivor, inp.converted_contact) if c and c.id == plan.crm_id), None
        )
    if plan.action is LinkAction.LINK and (rec is None or rec.id != plan.crm_id):
        rec = next(
            (c for c in (*inp.candidates, inp.converted_contact) if c and c.id == plan.crm_id),
            None,
        )
    if plan.action is LinkAction.CREATE_LEAD:
        assert plan.create_lead is not None
        values = dict(plan.create_lead)
        owner = values.pop("OwnerId", None) or user_id(14)  # the assignment rule's choice
        rec = CrmRecord(
            type=CrmType.LEAD,
            id=lead_id(900),
            email=values.get("Email"),
            fields={**{n: None for n in field_map.crm_fields(CrmType.LEAD)}, **values},
            owner_id=owner,
            created_date=later,
            last_modified=later,
        )
    assert rec is not None
    if plan.crm_update:
        update = dict(plan.crm_update)
        rec = replace(
            rec,
            fields={**rec.fields, **update},
            email=update.get("Email", rec.email),
            last_modified=later,
        )
    if plan.pardot_update:
        update = dict(plan.pardot_update)
        p = replace(
            p,
            fields={**p.fields, **update},
            email=update.get("email", p.email),
            user_id=update.get("userId", p.user_id),
            crm_id=update.get("salesforceId", p.crm_id),
            updated_at=later,
        )
    return ProspectInput(prospect=p, link=_stored_link(plan, p.id, rec), linked=rec, emails=())


def _stored_link(plan: Plan, prospect_id: int, rec: CrmRecord) -> Link:
    import json

    base = json.loads(json.dumps(thaw(plan.new_base))) if plan.new_base is not None else {}
    return Link(prospect_id=prospect_id, crm_type=rec.type, crm_id=rec.id, base=base)
