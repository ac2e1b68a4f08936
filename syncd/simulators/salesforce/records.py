"""Records and the writes that change them (the business rules are in `rules`)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from syncd.simulators import soql
from syncd.simulators.salesforce.rules import RecordRules
from syncd.simulators.salesforce.schema import (
    _BASE62,
    _PARDOT,
    LEAD_STATUSES,
    SCHEMA,
    WRITABLE,
    _seconds,
)
from syncd.simulators.salesforce.state import OrgState
from syncd.simulators.salesforce.storage import (
    _SaveContext,
    _Table,
)
from syncd.simulators.salesforce.wire import (
    SalesforceError,
    _err,
    _not_found,
    _Request,
    _Response,
)


class Org(RecordRules):
    """Records: the schema as seeded, ids and stamps, the seed, saves, direct CRM-user actions."""

    def new_id(self, prefix: str) -> str:
        """A fresh, real-looking 18-character id with `prefix`; ids sort in creation order."""
        self._id_counter += 1
        n = self._id_counter
        digits = ""
        for _ in range(9):
            n, r = divmod(n, 62)
            digits = _BASE62[r] + digits
        ident = soql.id18(f"{prefix}5g0{digits}")
        assert ident is not None
        return ident

    def _stamp(self) -> datetime:
        now = _seconds(self.clock())
        self._last_stamp = max(self._last_stamp, now)
        return self._last_stamp

    def records(self, sobject: str) -> list[dict[str, Any]]:
        """Copies of the live (not deleted) records of `sobject`, raw Python values."""
        return [dict(r) for r in self._table(sobject).rows.values()]

    def get(self, sobject: str, record_id: str) -> dict[str, Any] | None:
        """A copy of one live record, or None."""
        table = self._table(sobject)
        rid = table.resolve(record_id)
        rec = table.rows.get(rid) if rid is not None else None
        return dict(rec) if rec is not None else None

    def get_deleted(self, sobject: str, record_id: str) -> dict[str, Any] | None:
        """A copy of one deleted record (IsDeleted, MasterRecordId for a merge loser), or None."""
        table = self._table(sobject)
        rid = table.resolve(record_id)
        gone = table.deleted.get(rid) if rid is not None else None
        return dict(gone[0]) if gone is not None else None

    def insert(self, sobject: str, fields: dict[str, Any]) -> str:
        """Create a record as a CRM user would; returns its id. Raises ValueError if invalid."""
        try:
            return self._create(sobject, dict(fields), self._user_ctx(), seeded_id=fields.get("Id"))
        except SalesforceError as exc:
            raise ValueError(f"{sobject}: {exc.code}: {exc.message}") from None

    def modify(self, sobject: str, record_id: str, fields: dict[str, Any]) -> None:
        """Update a record as a CRM user would (bumps LastModifiedDate and SystemModstamp)."""
        try:
            self._update(sobject, record_id, dict(fields), self._user_ctx())
        except SalesforceError as exc:
            raise ValueError(f"{sobject} {record_id}: {exc.code}: {exc.message}") from None

    def remove(self, sobject: str, record_id: str) -> None:
        """Delete a record (it then appears in getDeleted)."""
        try:
            self._delete(sobject, record_id)
        except SalesforceError as exc:
            raise ValueError(f"{sobject} {record_id}: {exc.code}: {exc.message}") from None

    def convert_lead(self, lead_id: str, contact_fields: dict[str, Any] | None = None) -> str:
        """Convert a Lead: create its Contact, mark the Lead converted; returns the Contact id."""
        lead = self.get("Lead", lead_id)
        if lead is None:
            raise ValueError(f"Lead {lead_id} does not exist")
        if lead["IsConverted"]:
            raise ValueError(f"Lead {lead_id} is already converted")
        account_id = self.new_id("001")
        carried = {
            name: lead.get(name)
            for name in ("FirstName", "LastName", "Salutation", "Title", "Email", "Phone",
                         "MobilePhone", "LeadSource", "HasOptedOutOfEmail", "Description",
                         "OwnerId", *(f.name for f in _PARDOT))
            if name.lower() in self.fields["Contact"]
        }  # fmt: skip
        for src, dst in (("Street", "MailingStreet"), ("City", "MailingCity"),
                         ("State", "MailingState"), ("PostalCode", "MailingPostalCode"),
                         ("Country", "MailingCountry")):  # fmt: skip
            carried[dst] = lead.get(src)
        carried["AccountId"] = account_id
        carried.update(contact_fields or {})
        contact_id = self.insert("Contact", carried)
        ctx = _SaveContext(self.connector_user_id, auto_assign=False, system=True)
        self._update(
            "Lead",
            lead["Id"],
            {
                "IsConverted": True,
                "ConvertedContactId": contact_id,
                "ConvertedAccountId": account_id,
                "ConvertedDate": self.clock().astimezone(UTC).date(),
                "Status": "Closed - Converted",
            },
            ctx,
            allow_converted=True,
        )
        return contact_id

    def merge(self, sobject: str, master_id: str, merged_ids: list[str]) -> dict[str, Any]:
        """Merge records as a CRM user does (Lead or Contact; 1 or 2 losers into the master).

        As Salesforce does: each loser is deleted with `MasterRecordId` = the master (visible to
        `queryAll` and `sobjects/X/deleted`), the Tasks naming a loser (`WhoId`) move to the
        master, and the master's `LastModifiedDate` and `SystemModstamp` move. Returns
        `{"masterId": ..., "mergedIds": [...]}`; raises ValueError naming what is wrong.
        UNCONFIRMED: which of the losers' field values the master keeps is chosen in the UI;
        here the master keeps its own values.
        """
        name = self._known_name(sobject)
        if name not in ("Lead", "Contact"):
            raise ValueError(f"merge: sobject must be Lead or Contact, not {sobject!r}")
        table = self._table(name)
        master = self.get(name, master_id)
        if master is None:
            raise ValueError(f"merge: master {master_id!r} is not a live {name}")
        if not merged_ids or len(merged_ids) > 2:
            raise ValueError("merge: name 1 or 2 mergedIds (Salesforce merges up to 3 records)")
        losers: list[str] = []
        for raw in merged_ids:
            loser = self.get(name, str(raw))
            if loser is None:
                raise ValueError(f"merge: {raw!r} is not a live {name}")
            if loser["Id"] == master["Id"] or loser["Id"] in losers:
                raise ValueError(f"merge: {raw!r} is named twice (or is the master)")
            losers.append(loser["Id"])
        for rid in (master["Id"], *losers):
            if name == "Lead" and table.rows[rid].get("IsConverted"):
                raise ValueError(f"merge: Lead {rid} is converted; converted Leads cannot merge")
        ctx = _SaveContext(self.connector_user_id, auto_assign=False, system=True)
        tasks = self.tables["Task"]
        for task in list(tasks.rows.values()):
            if task.get("WhoId") in losers:
                self._update("Task", task["Id"], {"WhoId": master["Id"]}, ctx)
        self._update(name, master["Id"], {}, ctx)  # the master's stamps move
        for rid in losers:
            self._delete(name, rid, master_id=master["Id"])
        return {"masterId": master["Id"], "mergedIds": losers}

    def _user_ctx(self) -> _SaveContext:
        return _SaveContext(self.connector_user_id, auto_assign=False, system=True)

    def _table(self, sobject: str) -> _Table:
        table = self.tables.get(sobject)
        if table is None:
            raise ValueError(f"unknown sObject {sobject!r}; known: {sorted(self.tables)}")
        return table

    def _create(
        self,
        sobject: str,
        body: Any,
        ctx: _SaveContext,
        *,
        seeded_id: Any = None,
        version: str = "60.0",
    ) -> str:
        if sobject not in WRITABLE:
            raise _err("INVALID_TYPE", f"Cannot create {sobject} records through this API")
        values = self._parse_fields(sobject, body, ctx, creating=True)
        values.pop("Id", None)
        prefix = SCHEMA[sobject][0]
        if seeded_id is not None:
            raw = str(seeded_id)
            rid = soql.id18(raw) if len(raw) == 15 else raw
            if (
                rid is None
                or soql.id15(rid) is None
                or not rid.startswith(prefix)
                or self.tables[sobject].resolve(rid) is not None
            ):
                raise _err(
                    "MALFORMED_ID",
                    f"Id {seeded_id!r} is malformed, duplicated or not a {sobject} id",
                )
        else:
            rid = self.new_id(prefix)
        now = self._stamp()
        rec: dict[str, Any] = {s.name: None for s in self.fields[sobject].values()}
        rec.update(self._defaults(sobject, ctx.user_id))
        rec.update(values)
        rec["Id"] = rid
        if sobject == "Lead" and ctx.auto_assign and self.assignment_owner_id:
            rec["OwnerId"] = self.assignment_owner_id
        rec["CreatedDate"] = rec.get("CreatedDate") or now
        rec["LastModifiedDate"] = rec.get("LastModifiedDate") or rec["CreatedDate"]
        rec["SystemModstamp"] = rec.get("SystemModstamp") or rec["LastModifiedDate"]
        rec["CreatedById"] = rec.get("CreatedById") or ctx.user_id
        rec["LastModifiedById"] = rec.get("LastModifiedById") or ctx.user_id
        self._derive(sobject, rec)
        self._check_required(sobject, rec)
        self._check_references(sobject, rec, ("OwnerId", "WhoId"))
        if (
            sobject == "Lead"
            and self.duplicate_rule
            and not ctx.allow_duplicates
            and not ctx.system
            and (matches := self._duplicates(rec))
        ):
            raise self._duplicate_error(matches, version)
        if ctx.system:  # seeded or hand-set stamps: later writes must not go below them
            self._last_stamp = max(self._last_stamp, rec["SystemModstamp"])
        self._write(sobject, rec, None)
        return rid

    def _defaults(self, sobject: str, user_id: str) -> dict[str, Any]:
        common = {"IsDeleted": False, "OwnerId": user_id}
        if sobject == "Lead":
            return {
                **common,
                "Status": LEAD_STATUSES[0],
                "IsConverted": False,
                "HasOptedOutOfEmail": False,
            }
        if sobject == "Contact":
            return {**common, "HasOptedOutOfEmail": False}
        return {**common, "Status": "Not Started", "Priority": "Normal", "IsClosed": False}

    def _derive(self, sobject: str, rec: dict[str, Any]) -> None:
        if sobject in ("Lead", "Contact"):
            rec["Name"] = (
                " ".join(p for p in (rec.get("FirstName"), rec.get("LastName")) if p) or None
            )
        if sobject == "Task":
            rec["IsClosed"] = rec.get("Status") == "Completed"

    def _find(self, sobject: str, record_id: str) -> dict[str, Any]:
        table = self.tables[sobject]
        if soql.id15(record_id) is None:
            raise SalesforceError(
                404,
                "NOT_FOUND",
                f"Provided external ID field does not exist or is not accessible: {record_id}",
            )
        stored = table.resolve(record_id)
        if stored is not None and stored in table.deleted:
            raise SalesforceError(404, "ENTITY_IS_DELETED", "entity is deleted", [])
        rec = table.rows.get(stored) if stored is not None else None
        if rec is None:
            raise _not_found()
        return rec

    def _update(
        self,
        sobject: str,
        record_id: str,
        body: Any,
        ctx: _SaveContext,
        *,
        allow_converted: bool = False,
    ) -> None:
        if sobject not in WRITABLE:
            raise _err("INVALID_TYPE", f"Cannot update {sobject} records through this API")
        old = self._find(sobject, record_id)
        if sobject == "Lead" and old.get("IsConverted") and not allow_converted:
            raise _err("CANNOT_UPDATE_CONVERTED_LEAD", "cannot reference converted lead", [])
        values = self._parse_fields(sobject, body, ctx, creating=False)
        values.pop("Id", None)
        rec = dict(old)
        rec.update(values)
        if sobject == "Lead" and ctx.auto_assign and self.assignment_owner_id:
            values["OwnerId"] = rec["OwnerId"] = self.assignment_owner_id
        self._derive(sobject, rec)
        self._check_required(sobject, rec)
        self._check_references(sobject, rec, values)
        now = self._stamp()
        explicit = {k for k in values if k in ("LastModifiedDate", "SystemModstamp")}
        if "LastModifiedDate" not in explicit:
            rec["LastModifiedDate"] = now
        if "SystemModstamp" not in explicit:
            rec["SystemModstamp"] = now
        rec["LastModifiedById"] = ctx.user_id
        self._write(sobject, rec, old)

    def _delete(self, sobject: str, record_id: str, *, master_id: str | None = None) -> None:
        if sobject not in WRITABLE:
            raise _err("INVALID_TYPE", f"Cannot delete {sobject} records through this API")
        old = self._find(sobject, record_id)
        table = self.tables[sobject]
        rid = old["Id"]
        table.pop(rid)
        gone = dict(old, IsDeleted=True, SystemModstamp=self._stamp())
        if master_id is not None:
            gone["MasterRecordId"] = master_id
        table.deleted[rid] = (gone, gone["SystemModstamp"])
        if self._undo is not None:

            def undo() -> None:
                table.deleted.pop(rid, None)
                table.put(old)

            self._undo.append(undo)

    def _write(self, sobject: str, rec: dict[str, Any], old: dict[str, Any] | None) -> None:
        table = self.tables[sobject]
        table.put(rec)
        if self._undo is not None:
            rid = rec["Id"]
            if old is None:

                def undo_insert() -> None:
                    table.pop(rid)

                self._undo.append(undo_insert)
            else:
                self._undo.append(lambda: table.put(old))

    def _transaction(self) -> _Transaction:
        return _Transaction(self)

    def _limit_header(self) -> tuple[str, str]:
        return ("Sforce-Limit-Info", f"api-usage={self.api_usage}/{self.daily_api_limit}")

    def written(self) -> dict[str, dict[str, int]]:
        """Per sObject, how many write attempts carried each field (refused ones included)."""
        return self._written.snapshot()

    def _note_write(self, sobject: str, body: Any, *, address: bool = False) -> None:
        """Count the fields a write body carried (`address`: its Id names the record)."""
        if not isinstance(body, dict):
            return
        self._written.note(
            sobject,
            (
                k
                for k in body
                if k != "attributes" and not (address and isinstance(k, str) and k.lower() == "id")
            ),
        )

    def _sobject_name(self, name: str) -> str:
        for known in SCHEMA:
            if known.lower() == name.lower():
                return known
        raise _not_found()

    @staticmethod
    def _known_name(name: str) -> str:
        """The schema's spelling of an sObject name, or the name as sent."""
        return next((known for known in SCHEMA if known.lower() == name.lower()), name)

    def _save_ctx(self, req: _Request) -> _SaveContext:
        assign = req.headers.get("sforce-auto-assign", "TRUE").strip().upper() != "FALSE"
        dup = req.headers.get("sforce-duplicate-rule-header", "").replace(" ", "").lower()
        return _SaveContext(
            req.user_id, auto_assign=assign, allow_duplicates="allowsave=true" in dup
        )

    @staticmethod
    def _allow(method: str, *allowed: str) -> _Response | None:
        if method in allowed:
            return None
        return _Response(
            405,
            [
                {
                    "errorCode": "METHOD_NOT_ALLOWED",
                    "message": f"HTTP Method '{method}' not allowed."
                    f" Allowed are {','.join(allowed)}",
                }
            ],
        )


class _Transaction:
    """Collects undo steps while open; `rollback` undoes every write since it opened."""

    def __init__(self, sim: OrgState) -> None:
        self.sim = sim
        self.outer: list[Callable[[], None]] | None = None

    def __enter__(self) -> _Transaction:
        self.outer = self.sim._undo
        self.sim._undo = []
        return self

    def rollback(self) -> None:
        steps = self.sim._undo or []
        while steps:
            steps.pop()()

    def __exit__(self, *exc: object) -> None:
        steps = self.sim._undo or []
        if self.outer is not None:
            self.outer.extend(steps)
        self.sim._undo = self.outer
