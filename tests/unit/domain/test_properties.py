"""Properties of `reconcile` over generated prospects, records, bases and policies.

1. A plan applied and reconciled again is a no-op (no echo loops, no flip-flops).
2. A blank never overwrites a value unless the field is `blank_overwrites`.
3. On conflicts (both sides changed) the CRM wins `crm` fields and Pardot wins `pardot` fields.
4. `reconcile` is deterministic, whatever the order of its inputs.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from syncd.domain.fieldmap import FieldMap, FieldRule, is_read_only_pardot_field
from syncd.domain.models import (
    CrmRecord,
    CrmType,
    Link,
    LinkAction,
    Policy,
    Prospect,
    ProspectInput,
    SentEmail,
    SyncConfig,
)
from syncd.domain.plan import Plan, reconcile
from syncd.domain.values import canonical

from . import (
    CONFIG,
    DIRECTORY,
    FIELD_MAP,
    NOW,
    QUEUE,
    T0,
    apply_plan,
    contact,
    lead,
    prospect,
    user_id,
)

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

POOLS: dict[str, list[Any]] = {
    "str": [None, "", " ", "A", " A ", "B", "b", "[[unknown]]"],
    "email": ["jane@acme.example", "JANE@acme.example ", "joe@acme.example", "j@a.example", None],
    "int": [None, 1, "1", 1.0, 2, "2.5", "x"],
    "bool": [None, True, False, "true", 0],
    "datetime": [
        None,
        "2026-01-05T10:00:00Z",
        "2026-01-05T05:00:00-05:00",
        "2026-01-05T10:00:00.000+0000",
        "2026-02-01T00:00:00Z",
    ],
}
# A few fields of each kind keep the examples small while covering every kind and policy.
FIELDS = ("email", "lastName", "company", "city", "phone", "score", "optedOut", "createdAt")
MISSING_BASE = object()


def _pool(kind: str) -> list[Any]:
    return POOLS.get(kind, POOLS["str"])


@dataclass(frozen=True)
class World:
    inp: ProspectInput
    field_map: FieldMap

    @property
    def config(self) -> SyncConfig:
        return replace(CONFIG, field_map=self.field_map)


@st.composite
def field_maps(draw: st.DrawFn) -> FieldMap:
    overrides: dict[str, dict[str, Any]] = {}
    for name in FIELDS:
        # A read-only Pardot field (createdAt) only takes the policies that never write Pardot.
        allowed = (
            [Policy.PARDOT, Policy.TO_CRM, Policy.NONE]
            if is_read_only_pardot_field(name)
            else list(Policy)
        )
        rule = FIELD_MAP.rule(name)
        if rule is None or rule.kind != "bool":  # opt_out_wins is for opt-out flags only
            allowed = [p for p in allowed if p is not Policy.OPT_OUT_WINS]
        policy = draw(st.sampled_from([p.value for p in allowed]))
        overrides[name] = {"policy": policy, "blank_overwrites": draw(st.booleans())}
    return FieldMap(rules=tuple(r for r in FIELD_MAP.rules if r.pardot in FIELDS)).with_overrides(
        overrides
    )


@st.composite
def worlds(draw: st.DrawFn, *, linked: bool = True) -> World:
    fmap = draw(field_maps())
    crm_type = draw(st.sampled_from(list(CrmType)))
    p_values: dict[str, Any] = {}
    c_values: dict[str, Any] = {}
    base_p: dict[str, Any] = {}
    base_c: dict[str, Any] = {}
    first_sync = draw(st.booleans())
    for rule in fmap.rules:
        pool = _pool(rule.kind)
        p_values[rule.pardot] = draw(st.sampled_from(pool))
        crm_name = rule.crm_name(crm_type)
        if crm_name is not None:
            c_values[crm_name] = draw(st.sampled_from(pool))
        if not first_sync:
            for side in (base_p, base_c):
                value = draw(st.sampled_from([*pool, MISSING_BASE]))
                if value is not MISSING_BASE:
                    side[rule.pardot] = canonical(rule.kind, value)
    p_later = draw(st.booleans())
    p_at, c_at = (T0 + timedelta(minutes=1), T0) if p_later else (T0, T0 + timedelta(minutes=1))
    rec_n = draw(st.integers(min_value=1, max_value=3))
    owner = draw(st.sampled_from([user_id(10), user_id(14), user_id(15), QUEUE]))
    email = p_values.pop("email", "jane@acme.example")
    make = lead if crm_type is CrmType.LEAD else contact
    rec = make(rec_n, email=c_values.pop("Email", email), owner=owner, modified=c_at, **c_values)
    crm_id = rec.id if linked and draw(st.booleans()) else None
    p = prospect(
        email=email,
        user=draw(st.sampled_from([None, 10, 12, 15])),
        updated_at=p_at,
        crm_id=crm_id,
        **p_values,
    )
    emails = tuple(
        SentEmail(id=500 + i, prospect_id=p.id, subject=f"s{i}", sent_at=T0 - timedelta(hours=i))
        for i in range(draw(st.integers(min_value=0, max_value=2)))
    )
    if linked:
        link = Link(
            prospect_id=p.id,
            crm_type=rec.type,
            crm_id=rec.id,
            base={} if first_sync else {"pardot": base_p, "crm": base_c},
        )
        return World(
            inp=ProspectInput(prospect=p, link=link, linked=rec, emails=emails), field_map=fmap
        )
    others = tuple(
        make(n, email=email, owner=owner, created=T0 - timedelta(days=n))
        for n in range(4, 4 + rec_n)
    )
    candidates = draw(st.sampled_from([(), (rec,), (rec, *others)]))
    return World(
        inp=ProspectInput(prospect=p, link=None, linked=None, candidates=candidates, emails=emails),
        field_map=fmap,
    )


def _run(world: World, inp: ProspectInput | None = None) -> Plan:
    return reconcile(inp or world.inp, config=world.config, directory=DIRECTORY, now=NOW)


def _settle(world: World) -> tuple[Plan, ProspectInput]:
    """Apply plans until one is a no-op; a create takes one follow-up (link fields, owner)."""
    inp = world.inp
    plan = _run(world, inp)
    for _ in range(2 if plan.action is LinkAction.CREATE_LEAD else 1):
        inp = apply_plan(plan, inp, field_map=world.field_map)
        plan = _run(world, inp)
    return plan, inp


@SETTINGS
@given(world=st.one_of(worlds(linked=True), worlds(linked=False)))
def test_applied_plan_reconciled_again_is_a_noop(world: World) -> None:
    plan, _ = _settle(world)
    assert plan.is_noop, (plan.crm_update, plan.pardot_update, plan.decisions)


@SETTINGS
@given(world=worlds(linked=True))
def test_a_blank_never_overwrites_a_value_unless_configured(world: World) -> None:
    plan = _run(world)
    p, rec = world.inp.prospect, world.inp.linked
    assert p is not None and rec is not None
    for rule in world.field_map.synced_rules(rec.type):
        crm_name = rule.crm_name(rec.type)
        assert crm_name is not None
        if rule.pardot in plan.pardot_update:
            written = canonical(rule.kind, plan.pardot_update[rule.pardot])
            current = canonical(
                rule.kind, p.email if rule.pardot == "email" else p.fields[rule.pardot]
            )
            if written is None and current is not None:
                assert rule.blank_overwrites, rule
        if crm_name in plan.crm_update:
            written = canonical(rule.kind, plan.crm_update[crm_name])
            current = canonical(
                rule.kind, rec.email if crm_name == "Email" else rec.fields[crm_name]
            )
            if written is None and current is not None:
                assert rule.blank_overwrites, rule


@SETTINGS
@given(world=worlds(linked=True), data=st.data())
def test_conflicts_go_to_the_master(world: World, data: st.DataObject) -> None:
    p, rec, link = world.inp.prospect, world.inp.linked, world.inp.link
    assert p is not None and rec is not None and link is not None
    # Make every field a true conflict: both sides changed to different non-blank values.
    base: dict[str, dict[str, Any]] = {"pardot": {}, "crm": {}}
    p_fields = dict(p.fields)
    c_fields = dict(rec.fields)
    unconflicted: set[str] = set()
    for rule in world.field_map.synced_rules(rec.type):
        crm_name = rule.crm_name(rec.type)
        assert crm_name is not None
        values = [v for v in _pool(rule.kind) if canonical(rule.kind, v) is not None]
        distinct = list({canonical(rule.kind, v): v for v in values}.values())
        if len(distinct) < 3:  # a bool cannot change on both sides to different values
            distinct = [distinct[0]] * 3
            unconflicted.add(rule.pardot)
        old, p_new, c_new = data.draw(st.permutations(distinct))[:3]
        base["pardot"][rule.pardot] = canonical(rule.kind, old)
        base["crm"][rule.pardot] = canonical(rule.kind, old)
        p_fields[rule.pardot] = p_new
        c_fields[crm_name] = c_new
    p2 = replace(p, fields=p_fields, email=p_fields.get("email", p.email))
    rec2 = replace(rec, fields=c_fields, email=c_fields.get("Email", rec.email))
    inp = replace(world.inp, prospect=p2, linked=rec2, link=replace(link, base=base))
    plan = _run(world, inp)
    for rule in world.field_map.synced_rules(rec.type):
        crm_name = rule.crm_name(rec.type)
        assert crm_name is not None
        if rule.pardot in unconflicted:
            continue
        p_value = p2.email if rule.pardot == "email" else p_fields[rule.pardot]
        if rule.effective_policy in (Policy.CRM, Policy.TO_PARDOT):
            assert crm_name not in plan.crm_update
            assert canonical(rule.kind, plan.pardot_update[rule.pardot]) == canonical(
                rule.kind, c_fields[crm_name]
            )
        if rule.effective_policy in (Policy.PARDOT, Policy.TO_CRM):
            assert rule.pardot not in plan.pardot_update
            assert canonical(rule.kind, plan.crm_update[crm_name]) == canonical(rule.kind, p_value)


@SETTINGS
@given(world=st.one_of(worlds(linked=True), worlds(linked=False)), data=st.data())
def test_reconcile_is_deterministic(world: World, data: st.DataObject) -> None:
    plan = _run(world)
    shuffled = replace(
        world.inp,
        candidates=data.draw(st.permutations(world.inp.candidates)),
        emails=data.draw(st.permutations(world.inp.emails)),
    )
    again = _run(world, shuffled)
    assert again == plan
    assert list(again.crm_update) == sorted(plan.crm_update)
    assert list(again.pardot_update) == sorted(plan.pardot_update)
    assert [d.field for d in again.decisions] == [d.field for d in plan.decisions]


def test_properties_use_every_kind() -> None:
    kinds = {r.kind for r in FIELD_MAP.rules if r.pardot in FIELDS}
    assert kinds == {"str", "email", "int", "bool", "datetime"}
    assert isinstance(FIELD_MAP.rule("email"), FieldRule)
    assert isinstance(lead(), CrmRecord) and isinstance(prospect(), Prospect)
