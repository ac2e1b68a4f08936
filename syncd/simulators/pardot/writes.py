"""Prospect writes: create, update, delete, upsertLatestByEmail, and their checks."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from starlette.requests import Request

from syncd.simulators import written
from syncd.simulators._base import route_of
from syncd.simulators.pardot.queries import QueryApi
from syncd.simulators.pardot.schema import (
    _EMAIL,
    API_PREFIX,
    MSG_NOT_FOUND,
    PROSPECT_READ_ONLY,
    PROSPECTS,
    UPSERT_PROPERTIES,
)
from syncd.simulators.pardot.table import (
    _blank,
    _epoch,
)
from syncd.simulators.pardot.wire import (
    ApiError,
    _Answer,
)


class WriteApi(QueryApi):
    """Prospect writes, refused whole on any bad property; every attempt counted per field."""

    prospect_writes: Counter[int]  # per prospect id, the writes applied to it (tests read it)

    def written(self) -> dict[str, dict[str, int]]:
        """Per object, how many write attempts carried each field (refused ones included)."""
        return self._written.snapshot()

    def _note_write(self, method: str, path: str, body: bytes) -> None:
        """Count the prospect fields a write carried, before any check (refused writes count)."""
        parts = path[len(API_PREFIX) :].strip("/").split("/")
        if parts[0] != "prospects" or method not in ("POST", "PATCH"):
            return
        try:
            data = json.loads(body) if body.strip() else None
        except ValueError:
            return
        if not isinstance(data, dict):
            return
        if parts[1:] == ["do", "upsertLatestByEmail"]:
            data = data.get("prospect")
            if not isinstance(data, dict):
                return
        elif not (len(parts) == 1 and method == "POST") and not (
            len(parts) == 2 and method == "PATCH"
        ):
            return
        self._written.note("Prospect", data)
        read_only = [name for name in data if name in PROSPECT_READ_ONLY]
        if read_only:
            written.report_read_only("pardot", "Prospect", read_only, f"{method} {route_of(path)}")

    def _write_values(self, data: dict[str, Any], current: dict[str, Any] | None) -> dict[str, Any]:
        """Validated internal values for a prospect create/update body (or ApiError)."""
        unknown = next((k for k in data if PROSPECTS.kind(k) is None), None)
        if unknown is not None:
            raise ApiError(400, 154, f"Invalid property in request: {unknown}")
        read_only = sorted(k for k in data if k in PROSPECT_READ_ONLY)
        if read_only:
            # UNCONFIRMED code (see the module docstring): 180.
            raise ApiError(
                400,
                180,
                "One or more of the specified fields are invalid: "
                + ", ".join(read_only)
                + (" is" if len(read_only) == 1 else " are")
                + " read-only",
            )
        if "userId" in data and "salesforceOwnerId" in data:
            raise ApiError(400, 125, "Cannot accept both userId and salesforceOwnerId.")
        values: dict[str, Any] = {}
        for name, value in data.items():
            kind = PROSPECTS.kind(name)
            assert kind is not None
            try:
                values[name] = self._coerce(kind, value)
            except (TypeError, ValueError):
                code = {"int": 56, "bool": 50, "datetime": 57}.get(kind, 154)
                raise ApiError(400, code, f"Invalid value for field {name}") from None
        if "email" in values and (not values["email"] or not _EMAIL.match(values["email"])):
            raise ApiError(400, 4, "Invalid prospect email address")
        if values.get("userId") is not None:
            user = self.users_table.rows.get(values["userId"])
            if user is None or user["isDeleted"]:
                raise ApiError(400, 10, "Invalid user ID")
        if "userId" in values:
            values["assignedToId"] = values["userId"]
        owner = values.get("salesforceOwnerId")
        if owner:
            for user in self.users_table.rows.values():
                if user.get("salesforceId") == owner and not user["isDeleted"]:
                    values["userId"] = values["assignedToId"] = user["id"]
                    break
        if not self.ampsea and "email" in values:
            others = self.prospects_table.by_email.get(values["email"].lower(), set())
            if any(
                i != (current or {}).get("id") and not self.prospects_table.rows[i]["isDeleted"]
                for i in others
            ):
                raise ApiError(400, 54, "Email address is already in use")
        return values

    def _new_prospect(self, values: dict[str, Any], actor: int | None) -> dict[str, Any]:
        now = _epoch(self.clock())
        row = _blank(PROSPECTS)
        row.update(values)
        row.update(
            id=self.prospects_table.next_id,
            createdAt=now,
            updatedAt=now,
            createdById=actor,
            updatedById=actor,
            isDeleted=False,
        )
        row["assignedToId"] = row.get("userId")
        self.prospects_table.insert(row)
        return row

    def _refuse_recycled_email(self, email: str) -> None:
        """A new prospect whose email only a prospect in the recycle bin holds is refused.

        UNCONFIRMED: what the real v5 API does here. The v5 reference gives deleted prospects
        their own operations (`do/undelete`, and `secondaryDeletedSearch` on the upsert), so a
        plain create or upsert does not reach into the recycle bin; whether it then makes a
        second prospect beside the deleted one or refuses is undocumented. CHOICE (strict):
        refused, with or without AMPSEA: 400 code 54 naming the recycle bin. A client must
        look in the recycle bin first and leave the marketer's delete alone, or undelete.
        """
        table = self.prospects_table
        ids = table.by_email.get(email.lower(), set())
        rows = [table.rows[i] for i in ids]
        if rows and all(r["isDeleted"] for r in rows):
            raise ApiError(
                400,
                54,
                "Email address is already in use by a prospect in the recycle bin "
                f"({', '.join(str(r['id']) for r in sorted(rows, key=lambda r: r['id']))}); "
                "undelete it instead",
            )

    def _create(self, request: Request, data: dict[str, Any], actor: int | None) -> _Answer:
        fields = self._fields(PROSPECTS, request.query_params.get("fields"), required=False)
        if not data.get("email"):
            raise ApiError(400, 153, "Missing required property in request: email")
        values = self._write_values(data, None)
        self._refuse_recycled_email(values["email"])
        row = self._new_prospect(values, actor)
        return self._created(row, fields)

    def _created(self, row: dict[str, Any], fields: list[str]) -> _Answer:
        location = f"{self.base_url}{API_PREFIX}prospects/{row['id']}"
        body = self._render(PROSPECTS, row, fields) if fields else {"id": row["id"]}
        return _Answer(201, body, [("Location", location)])

    def _apply_update(self, row: dict[str, Any], values: dict[str, Any], actor: int | None) -> None:
        values = dict(values)
        self.prospect_writes[row["id"]] += 1  # applied writes per prospect (PATCH, import row...)
        values["updatedAt"] = max(_epoch(self.clock()), row["updatedAt"])
        if actor is not None:
            values["updatedById"] = actor
        self.prospects_table.update(row["id"], values)

    def _update(
        self, request: Request, row_id: int, data: dict[str, Any], actor: int | None
    ) -> _Answer:
        fields = self._fields(PROSPECTS, request.query_params.get("fields"), required=False)
        row = self.prospects_table.rows.get(row_id)
        if row is None:
            raise ApiError(404, 109, MSG_NOT_FOUND)
        if row["isDeleted"]:
            raise ApiError(
                400, 219, "Deleted records can't be updated. Please undelete before updating."
            )
        self._apply_update(row, self._write_values(data, row), actor)
        if not fields:
            return _Answer(204)
        return _Answer(200, self._render(PROSPECTS, row, fields))

    def _delete(self, row_id: int, actor: int | None) -> _Answer:
        row = self.prospects_table.rows.get(row_id)
        if row is None:
            raise ApiError(404, 109, MSG_NOT_FOUND)
        if row["isDeleted"]:
            raise ApiError(404, 192, "Object specified does not exist")
        self._apply_update(row, {"isDeleted": True}, actor)
        return _Answer(204)

    def _undelete(self, request: Request, data: dict[str, Any], actor: int | None) -> _Answer:
        """`POST /prospects/do/undelete`: restore the deleted prospect with the latest activity
        for an email (the v5 reference names the operation "Undelete (Record in deleted state
        with Latest Activity At by Email)").

        UNCONFIRMED: the body and the answer. CHOICE: `{"matchEmail": ..., "fields": [...]}`
        like upsertLatestByEmail; 200 with the requested fields; no deleted prospect with that
        email: 404 code 109; ties on `lastActivityAt` go to the later `updatedAt`, then id.
        """
        unknown = next((k for k in data if k not in ("matchEmail", "fields")), None)
        if unknown is not None:
            raise ApiError(400, 154, f"Invalid property in request: {unknown}")
        match_email = data.get("matchEmail")
        if not isinstance(match_email, str) or not match_email:
            raise ApiError(400, 153, "Missing required property in request: matchEmail")
        raw_fields = data.get("fields", request.query_params.get("fields"))
        if isinstance(raw_fields, list):
            raw_fields = ",".join(str(f) for f in raw_fields)
        fields = self._fields(PROSPECTS, raw_fields, required=False)
        table = self.prospects_table
        ids = table.by_email.get(match_email.lower(), set())
        deleted = [table.rows[i] for i in ids if table.rows[i]["isDeleted"]]
        if not deleted:
            raise ApiError(404, 109, MSG_NOT_FOUND)
        row = max(deleted, key=lambda r: (r.get("lastActivityAt") or 0, r["updatedAt"], r["id"]))
        self._apply_update(row, {"isDeleted": False}, actor)
        body = self._render(PROSPECTS, row, fields) if fields else {"id": row["id"]}
        return _Answer(200, body)

    def _upsert(self, request: Request, data: dict[str, Any], actor: int | None) -> _Answer:
        unknown = next((k for k in data if k not in UPSERT_PROPERTIES), None)
        if unknown is not None:
            raise ApiError(400, 154, f"Invalid property in request: {unknown}")
        match_email = data.get("matchEmail")
        prospect = data.get("prospect")
        if not isinstance(match_email, str) or not match_email:
            raise ApiError(400, 153, "Missing required property in request: matchEmail")
        if not isinstance(prospect, dict):
            raise ApiError(400, 153, "Missing required property in request: prospect")
        raw_fields = data.get("fields", request.query_params.get("fields"))
        if isinstance(raw_fields, list):
            raw_fields = ",".join(str(f) for f in raw_fields)
        fields = self._fields(PROSPECTS, raw_fields, required=False)
        if not _EMAIL.match(match_email):
            raise ApiError(400, 4, "Invalid prospect email address")
        table = self.prospects_table
        ids = table.by_email.get(match_email.lower(), set())
        live = [table.rows[i] for i in ids if not table.rows[i]["isDeleted"]]
        if not live and data.get("secondaryDeletedSearch"):
            live = [table.rows[i] for i in ids]
        if live:
            row = max(live, key=lambda r: (r["updatedAt"], r["id"]))
            values = self._write_values(prospect, row)
            if row["isDeleted"]:
                values["isDeleted"] = False
            self._apply_update(row, values, actor)
            body = self._render(PROSPECTS, row, fields) if fields else {"id": row["id"]}
            return _Answer(200, body)
        values = self._write_values({"email": match_email, **prospect}, None)
        self._refuse_recycled_email(values["email"])
        created = self._new_prospect(values, actor)
        return self._created(created, fields)
