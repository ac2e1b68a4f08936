"""Business rules of a save: field access and types, lengths, required fields, owners, who ids,
duplicate rules. Each refusal is the real error code and message."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from syncd.simulators import soql
from syncd.simulators.salesforce.schema import (
    _EMAIL,
    FieldSpec,
    _coerce_typed,
    _label,
)
from syncd.simulators.salesforce.state import OrgState
from syncd.simulators.salesforce.storage import _SaveContext
from syncd.simulators.salesforce.wire import (
    SalesforceError,
    _err,
)


class RecordRules(OrgState):
    """The checks a save runs, as Salesforce runs them."""

    def _coerce(self, spec: FieldSpec, value: Any) -> Any:
        t = spec.type
        if value is None:
            return None
        if isinstance(value, str) and t in soql.STRING_TYPES:
            return value if value != "" else None  # Salesforce stores "" as null
        try:
            return _coerce_typed(t, value)
        except (TypeError, ValueError):
            raise _err(
                "JSON_PARSER_ERROR",
                f"Cannot deserialize instance of {t} from {type(value).__name__.upper()} value"
                f" {value} or request may be missing a required field",
            ) from None

    def _parse_fields(
        self, sobject: str, body: Any, ctx: _SaveContext, *, creating: bool
    ) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise _err(
                "JSON_PARSER_ERROR", "Cannot deserialize instance of sObject from non-object value"
            )
        specs = self.fields[sobject]
        out: dict[str, Any] = {}
        locked: list[str] = []
        for key, value in body.items():
            if key == "attributes":
                continue
            spec = specs.get(key.lower())
            if spec is None:
                raise _err(
                    "INVALID_FIELD", f"No such column '{key}' on sobject of type {sobject}", [key]
                )
            if spec.name == "Id" and not ctx.system:
                raise _err(
                    "INVALID_FIELD", "The Id field should not be specified in the sobject data."
                )
            allowed = spec.createable if creating else spec.updateable
            if not allowed and not ctx.system:
                locked.append(spec.name)
                continue
            out[spec.name] = self._coerce(spec, value)
        if locked:
            raise _err(
                "INVALID_FIELD_FOR_INSERT_UPDATE",
                f"Unable to create/update fields: {', '.join(locked)}. Please check the security"
                " settings of this field and verify that it is read/write for your profile or"
                " permission set.",
                locked,
            )
        self._check_values(sobject, out)
        return out

    def _check_values(self, sobject: str, values: dict[str, Any]) -> None:
        specs = self.fields[sobject]
        for name, value in values.items():
            spec = specs[name.lower()]
            if not isinstance(value, str):
                continue
            if spec.length and len(value) > spec.length:
                raise _err(
                    "STRING_TOO_LONG",
                    f"{_label(name)}: data value too large: {value[:40]}"
                    f" (max length={spec.length})",
                    [name],
                )
            if spec.type == "email" and not _EMAIL.match(value):
                raise _err(
                    "INVALID_EMAIL_ADDRESS",
                    f"{_label(name)}: invalid email address: {value}",
                    [name],
                )
            if spec.restricted and value not in spec.picklist:
                raise _err(
                    "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
                    f"{_label(name)}: bad value for restricted picklist field: {value}",
                    [name],
                )

    def _check_required(self, sobject: str, rec: dict[str, Any]) -> None:
        specs = self.fields[sobject].values()
        missing = [
            s.name
            for s in specs
            if not s.nillable and s.createable and s.type != "boolean" and rec.get(s.name) is None
        ]
        if missing:
            raise _err(
                "REQUIRED_FIELD_MISSING",
                f"Required fields are missing: [{', '.join(missing)}]",
                missing,
            )

    def _is_owner(self, owner_id: str, allow_queue: bool) -> bool:
        users, groups = self.tables["User"], self.tables["Group"]
        uid = users.resolve(owner_id)
        if uid is not None and uid in users.rows:
            return bool(users.rows[uid].get("IsActive"))
        gid = groups.resolve(owner_id)
        return allow_queue and gid is not None and gid in groups.rows

    def _check_owner(self, sobject: str, owner_id: Any) -> str:
        """The stored id of a valid owner, else the real error for the bad one."""
        if owner_id is None:
            raise _err(
                "INVALID_CROSS_REFERENCE_KEY", "Owner ID: owner cannot be blank", ["OwnerId"]
            )
        raw = str(owner_id)
        if soql.id15(raw) is None:
            raise _err(
                "MALFORMED_ID", f"Owner ID: id value of incorrect type: {owner_id}", ["OwnerId"]
            )
        allow_queue = sobject not in ("Task", "Contact")
        ok_prefixes = ("005", "00G") if allow_queue else ("005",)
        if not raw.startswith(ok_prefixes):
            raise _err(
                "FIELD_INTEGRITY_EXCEPTION",
                f"Owner ID: id value of incorrect type: {owner_id}",
                ["OwnerId"],
            )
        table = self.tables["User" if raw.startswith("005") else "Group"]
        stored = table.resolve(raw)
        user = table.rows.get(stored) if stored is not None and table.name == "User" else None
        if user is not None and not user.get("IsActive"):
            raise _err(
                "INACTIVE_OWNER_OR_USER",
                f"operation performed with inactive user [{stored}] as owner of {sobject.lower()}",
                ["OwnerId"],
            )
        if stored is None or not self._is_owner(stored, allow_queue):
            raise _err("INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id", ["OwnerId"])
        return stored

    def _check_who(self, who_id: Any) -> str | None:
        """The stored id of a valid Task WhoId (Lead or Contact), else the real error."""
        if who_id is None:
            return None
        raw = str(who_id)
        if soql.id15(raw) is None:
            raise _err("MALFORMED_ID", f"Name ID: id value of incorrect type: {who_id}", ["WhoId"])
        name = {"00Q": "Lead", "003": "Contact"}.get(raw[:3])
        if name is None:
            raise _err(
                "FIELD_INTEGRITY_EXCEPTION",
                f"Name ID: id value of incorrect type: {who_id}",
                ["WhoId"],
            )
        table = self.tables[name]
        stored = table.resolve(raw)
        if stored is not None and stored in table.deleted:
            raise _err("ENTITY_IS_DELETED", "entity is deleted", ["WhoId"])
        if stored is None or stored not in table.rows:
            raise _err("INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id", ["WhoId"])
        return stored

    def _check_references(self, sobject: str, rec: dict[str, Any], changed: Iterable[str]) -> None:
        changed = set(changed)
        if "OwnerId" in changed:
            rec["OwnerId"] = self._check_owner(sobject, rec.get("OwnerId"))
        if sobject == "Task" and "WhoId" in changed:
            rec["WhoId"] = self._check_who(rec.get("WhoId"))

    def _duplicates(self, rec: dict[str, Any]) -> list[tuple[str, str]]:
        email = rec.get("Email")
        if not isinstance(email, str):
            return []
        key = email.casefold()
        found: list[tuple[str, str]] = []
        for obj in ("Lead", "Contact"):
            found.extend(
                (obj, rid)
                for rid in sorted(self.tables[obj].by_email.get(key, ()))
                if rid != rec.get("Id")
            )
        return found

    def _duplicate_error(self, matches: list[tuple[str, str]], version: str) -> SalesforceError:
        exc = _err("DUPLICATES_DETECTED", "Use one of these records?", [])
        by_type: dict[str, list[str]] = {}
        for obj, rid in matches:
            by_type.setdefault(obj, []).append(rid)
        exc.duplicate_result = {
            "allowSave": True,
            "duplicateRule": "Standard_Rule_for_Leads_with_Duplicate_Leads",
            "duplicateRuleEntityType": "Lead",
            "errorMessage": "Use one of these records?",
            "matchResults": [
                {
                    "entityType": obj,
                    "errors": [],
                    "matchEngine": "ExactMatchEngine",
                    "matchRecords": [
                        {
                            "additionalInformation": [],
                            "fieldDiffs": [],
                            "matchConfidence": 100.0,
                            "record": {
                                "attributes": {
                                    "type": obj,
                                    "url": f"/services/data/v{version}/sobjects/{obj}/{rid}",
                                },
                                "Id": rid,
                            },
                        }
                        for rid in ids
                    ],
                    "rule": f"Standard_{obj}_Match_Rule_v1_0",
                    "size": len(ids),
                    "success": True,
                }
                for obj, ids in by_type.items()
            ],
        }
        return exc
