"""Preflight checks: describes, field access, the link mirror field, the connector, limits."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from syncd import errors, logs
from syncd.domain.fieldmap import REQUIRED_CRM_FIELDS
from syncd.domain.models import (
    CrmType,
    Policy,
    sf_id_key,
)
from syncd.runtime.preflight.state import (
    MANAGED_PACKAGE_FIELDS,
    _State,
)

log = logs.get(__name__)


class _Checks(_State):
    # -- describe and fields -------------------------------------------------------------------

    async def _describe(self) -> None:
        for name in ("Lead", "Contact", "Task"):
            try:
                answer = await self.timer.timed("salesforce", self.rt.salesforce.describe(name))
            except errors.APIError as exc:
                self.report.problem(
                    "blocker", "connector", f"cannot describe {name}: {exc.code} {exc.message}"
                )
                continue
            self.describes[name] = answer
            self.field_info[name] = {
                str(f.get("name")): dict(f)
                for f in answer.get("fields") or []
                if isinstance(f, Mapping)
            }
        for crm_type in CrmType:
            info = self.field_info.get(crm_type.value)
            wanted = self.rt.crm_select_fields(crm_type)
            # A field the org lacks would fail every SOQL: read what exists (reported below).
            self.select[crm_type] = (
                wanted if info is None else tuple(f for f in wanted if f in info)
            )

    def _check_fields(self) -> None:
        out = self.report.fields
        for crm_type in CrmType:
            info = self.field_info.get(crm_type.value)
            if info is None:
                continue
            out.managed_package[crm_type.value] = all(f in info for f in MANAGED_PACKAGE_FIELDS)
            for rule in self.rt.field_map.synced_rules(crm_type):
                name = rule.crm_name(crm_type)
                if name is None:
                    continue
                out.checked += 1
                problem = self._field_problem(crm_type, name, rule.effective_policy, info)
                if problem is not None:
                    text, blocker = problem
                    out.problems.append(
                        {
                            "object": crm_type.value,
                            "field": name,
                            "pardot_field": rule.pardot,
                            "problem": text,
                            "blocker": blocker,
                        }
                    )

        mirror = self.rt.config.crm_link_field
        if mirror:
            self._check_mirror(mirror)

    def _check_mirror(self, name: str) -> None:
        """The link's mirror must exist on Lead and Contact, hold text, and be editable by the
        connector user (it is written when a link is made or moves)."""
        out = self.report.fields
        for crm_type in CrmType:
            info = self.field_info.get(crm_type.value)
            if info is None:
                continue
            spec = info.get(name)
            if spec is None:
                problem = (
                    f"not on {crm_type.value}: create it (Text, 18) or unset sync.crm_link_field"
                )
            elif spec.get("type") not in ("string", "textarea"):
                problem = f"is a {spec.get('type')} field: make it Text (the prospect id as text)"
            elif not (spec.get("createable") and spec.get("updateable")):
                problem = (
                    "not editable by the connector user (field-level security): grant Edit, "
                    "or the link cannot be mirrored"
                )
            else:
                out.link_mirror[crm_type.value] = "ok"
                continue
            out.link_mirror[crm_type.value] = problem
            out.problems.append(
                {
                    "object": crm_type.value,
                    "field": name,
                    "pardot_field": "(sync.crm_link_field)",
                    "problem": problem,
                    "blocker": True,
                }
            )

    @staticmethod
    def _field_problem(
        crm_type: CrmType, name: str, policy: Policy, info: Mapping[str, Mapping[str, Any]]
    ) -> tuple[str, bool] | None:
        spec = info.get(name)
        if spec is None:
            hint = (
                "install the Account Engagement (Pardot) managed package"
                if name.startswith("pi__")
                else 'create it, or set its policy to "none" in [fields]'
            )
            return f"not on {crm_type.value} (every SOQL naming it fails): {hint}", True
        writes_crm = policy not in (Policy.TO_PARDOT, Policy.NONE)
        if writes_crm and not spec.get("updateable"):
            return (
                "not updateable for the connector user (field-level security or a read-only "
                'field): Pardot values cannot be written; grant Edit or set policy "to_pardot"',
                False,
            )
        if crm_type is CrmType.LEAD and writes_crm and not spec.get("createable"):
            return "not createable: new Leads are created without it", False
        return None

    def _check_connector(self, user_id: str) -> None:
        c = self.report.connector
        c.user_id = user_id
        user = next(
            (u for u in self.directory.crm_users.values() if sf_id_key(u.id) == sf_id_key(user_id)),
            None,
        )
        if user is not None:
            c.username, c.active = user.username, user.is_active
        heads = self.describes
        if "Lead" in heads:
            c.can_create_leads = bool(heads["Lead"].get("createable"))
            c.can_update_leads = bool(heads["Lead"].get("updateable"))
            lead_fields = self.field_info.get("Lead", {})
            for required in sorted(REQUIRED_CRM_FIELDS[CrmType.LEAD]):
                if not (lead_fields.get(required) or {}).get("createable"):
                    c.can_create_leads = False
                    c.problems.append(f"Lead.{required} is not createable")
        if "Contact" in heads:
            c.can_update_contacts = bool(heads["Contact"].get("updateable"))
        if "Task" in heads:
            c.can_create_tasks = bool(heads["Task"].get("createable"))
        for flag, text in (
            (c.can_create_leads, "cannot create Leads"),
            (c.can_update_leads, "cannot edit Leads"),
            (c.can_update_contacts, "cannot edit Contacts"),
            (c.can_create_tasks, "cannot create Tasks"),
        ):
            if flag is False:
                c.problems.append(text)

    async def _limits(self) -> None:
        sf = self.report.api.salesforce
        try:
            answer = await self.timer.timed("salesforce", self.rt.salesforce.limits())
        except errors.APIError as exc:
            log.warning("preflight_limits_unavailable", code=exc.code)
            answer = {}
        daily = answer.get("DailyApiRequests") if isinstance(answer, Mapping) else None
        if isinstance(daily, Mapping) and daily.get("Max") is not None:
            sf.daily_limit = int(daily["Max"])
            if daily.get("Remaining") is not None:
                sf.used_today = sf.daily_limit - int(daily["Remaining"])
        usage = self.rt.salesforce.usage  # Sforce-Limit-Info of the last answer
        if usage is not None:
            sf.daily_limit = sf.daily_limit or usage.limit
            sf.used_today = usage.used
        pd = self.report.api.pardot
        pd.daily_limit = self.rt.settings.pardot.daily_api_limit
