"""The seed: a seed file's `salesforce` section loaded into the org (users, queues, records)."""

from __future__ import annotations

import re
from typing import Any

from syncd.simulators import soql
from syncd.simulators.salesforce.records import Org
from syncd.simulators.salesforce.schema import (
    _SEED_KEYS,
    SCHEMA,
    FieldSpec,
)
from syncd.simulators.salesforce.storage import _SaveContext
from syncd.simulators.salesforce.wire import SalesforceError


class SeededOrg(Org):
    """The org as its seed describes it: the schema (minus dropped fields) and the records."""

    def _build_schema(self) -> None:
        self.fields: dict[str, dict[str, FieldSpec]] = {}
        objects: dict[str, soql.ObjectInfo] = {}
        for name, (_, specs) in SCHEMA.items():
            dropped = self._dropped.get(name, set())
            specs = (*specs, *self._custom.get(name, ()))
            live = {s.name.lower(): s for s in specs if s.name.lower() not in dropped}
            self.fields[name] = live
            objects[name.lower()] = soql.ObjectInfo(
                name,
                {k: soql.FieldInfo(s.name, s.type, s.filterable) for k, s in live.items()},
            )
        self.soql_objects = objects
        unknown = (set(self._dropped) | set(self._custom)) - set(SCHEMA)
        if unknown:
            raise ValueError(
                f"salesforce.drop_fields / custom_fields name unknown objects {sorted(unknown)}"
            )

    def _load_seed(self, seed: dict[str, Any], username: str) -> None:
        users = seed.get("users") or [
            {"Username": username, "Email": username, "LastName": "Connector", "FirstName": "Sync"}
        ]
        for i, raw in enumerate(users):
            self._seed_simple("User", f"salesforce.users[{i}]", raw, {"IsActive": True})
        for i, raw in enumerate(seed.get("queues") or []):
            self._seed_simple("Group", f"salesforce.queues[{i}]", raw, {"Type": "Queue"})
        match = [r for r in self.tables["User"].rows.values() if r.get("Username") == username]
        if not match:
            raise ValueError(
                f"salesforce.oauth.username {username!r} names no seeded user; add it to"
                " salesforce.users"
            )
        self.connector_user_id: str = match[0]["Id"]
        if self.assignment_owner_id is not None and not self._is_owner(
            self.assignment_owner_id, True
        ):
            raise ValueError(
                f"salesforce.assignment_rule.owner_id {self.assignment_owner_id!r} is not a"
                " seeded active user or queue"
            )
        ctx = _SaveContext(self.connector_user_id, auto_assign=False, system=True)
        buried: list[tuple[str, str, str]] = []
        for key, sobject in _SEED_KEYS.items():
            for i, raw in enumerate(seed.get(key) or []):
                where = f"salesforce.{key}[{i}]"
                if not isinstance(raw, dict):
                    raise ValueError(f"{where}: expected an object, got {type(raw).__name__}")
                try:
                    rid = self._create(sobject, dict(raw), ctx, seeded_id=raw.get("Id"))
                except SalesforceError as exc:
                    raise ValueError(
                        f"{where} ({raw.get('Email') or raw.get('Id')}): {exc.message}"
                    ) from None
                if raw.get("IsDeleted") is True:
                    buried.append((sobject, rid, where))
        for sobject, rid, where in buried:
            self._seed_deleted(sobject, rid, where)

    def _seed_deleted(self, sobject: str, rid: str, where: str) -> None:
        """A seeded `"IsDeleted": true` record: in the recycle bin, seen only by `queryAll` and
        the deleted feed (deleted at its SystemModstamp); its `MasterRecordId`, if any, must
        name a live record of the same object (a merge loser)."""
        table = self.tables[sobject]
        rec = table.rows[rid]
        master = rec.get("MasterRecordId")
        if master is not None:
            stored = table.resolve(str(master))
            if stored is None or stored not in table.rows or stored == rid:
                raise ValueError(
                    f"{where}: MasterRecordId {master!r} names no live {sobject} of the seed"
                )
            rec["MasterRecordId"] = stored
        elif sobject not in ("Lead", "Contact", "Task"):
            raise ValueError(f"{where}: IsDeleted is only seeded on Lead, Contact and Task")
        table.pop(rid)
        table.deleted[rid] = (rec, rec["SystemModstamp"])

    def _seed_simple(self, sobject: str, where: str, raw: Any, defaults: dict[str, Any]) -> None:
        if not isinstance(raw, dict):
            raise ValueError(f"{where}: expected an object")
        specs = self.fields[sobject]
        prefix = SCHEMA[sobject][0]
        rec: dict[str, Any] = {s.name: None for s in specs.values()}
        rec.update(defaults)
        for key, value in raw.items():
            spec = specs.get(key.lower())
            if spec is None:
                raise ValueError(f"{where}: unknown {sobject} field {key!r}")
            try:
                rec[spec.name] = self._coerce(spec, value)
            except SalesforceError as exc:
                raise ValueError(f"{where}: {spec.name}: {exc.message}") from None
        rid = str(rec.get("Id") or self.new_id(prefix))
        norm = soql.id18(rid) if len(rid) == 15 else rid
        table = self.tables[sobject]
        if (
            norm is None
            or soql.id15(norm) is None
            or not norm.startswith(prefix)
            or table.resolve(norm)
        ):
            raise ValueError(f"{where}: Id {rid!r} is malformed, duplicated or not a {sobject} id")
        rec["Id"] = norm
        if sobject == "User":
            if not rec.get("Username"):
                raise ValueError(f"{where}: Username is required")
            rec["Email"] = rec.get("Email") or rec["Username"]
            if not rec.get("Name"):
                rec["Name"] = (
                    " ".join(p for p in (rec.get("FirstName"), rec.get("LastName")) if p)
                    or rec["Username"]
                )
            rec["LastName"] = rec.get("LastName") or rec["Name"].split(" ")[-1]
        elif not rec.get("Name"):
            raise ValueError(f"{where}: Name is required")
        elif not rec.get("DeveloperName"):
            rec["DeveloperName"] = re.sub(r"\W+", "_", rec["Name"]).strip("_")
        now = self._stamp()
        for audit in ("CreatedDate", "LastModifiedDate", "SystemModstamp"):
            rec[audit] = rec.get(audit) or now
        self.tables[sobject].put(rec)
