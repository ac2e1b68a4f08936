"""The seed, rendering, and a Pardot user's direct actions (not API calls, not counted)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from syncd.simulators.pardot.schema import (
    EMAILS,
    PROSPECTS,
    USER_FIELDS,
    USERS,
    Kind,
    _Spec,
)
from syncd.simulators.pardot.state import PardotState
from syncd.simulators.pardot.table import (
    _blank,
    _epoch,
    _unique,
)


class PardotRecords(PardotState):
    """Seeded rows, rendered as the API renders them."""

    def _load_seed(self, seed: dict[str, Any]) -> None:
        now = _epoch(self.clock())
        users = [self._seed_row(USERS, u, i, now) for i, u in enumerate(seed.get("users") or [])]
        self.users_table.load(_unique(users, "user"))
        prospects = []
        for i, raw in enumerate(seed.get("prospects") or []):
            row = self._seed_row(PROSPECTS, raw, i, now)
            if not row.get("email"):
                raise ValueError(f"pardot seed: prospect #{i} (id {row['id']}) has no email")
            if row.get("userId") is not None and row["userId"] not in self.users_table.rows:
                raise ValueError(
                    f"pardot seed: prospect #{i} (id {row['id']}): userId {row['userId']} "
                    "is not a seeded user"
                )
            row["assignedToId"] = row.get("userId")
            prospects.append(row)
        self.prospects_table.load(_unique(prospects, "prospect"))
        emails = []
        for i, raw in enumerate(seed.get("emails") or []):
            row = self._seed_row(EMAILS, raw, i, now)
            pid = row.get("prospectId")
            if pid is not None and pid not in self.prospects_table.rows:
                raise ValueError(
                    f"pardot seed: email #{i} (id {row['id']}): prospectId "
                    f"{pid} is not a seeded prospect (null is allowed: a send with no prospect)"
                )
            if row.get("sentAt") is None:
                row["sentAt"] = now
            row["updatedAt"] = row.get("updatedAt") or row["sentAt"]
            emails.append(row)
        self.emails_table.load(_unique(emails, "email"))

    def _seed_row(self, spec: _Spec, raw: Any, i: int, now: int) -> dict[str, Any]:
        if not isinstance(raw, dict):
            raise ValueError(f"pardot seed: {spec.name[:-1]} #{i} is not an object")
        row = _blank(spec)
        for name, value in raw.items():
            kind = spec.kind(name)
            if kind is None:
                raise ValueError(f"pardot seed: {spec.name[:-1]} #{i}: unknown field {name!r}")
            try:
                row[name] = self._coerce(kind, value)
            except (TypeError, ValueError) as exc:
                what = f"pardot seed: {spec.name[:-1]} #{i}"
                raise ValueError(f"{what}: field {name!r}: {exc}") from None
        if row.get("id") is None:
            row["id"] = 0  # numbered by _unique
        if "createdAt" in spec.fields:
            row["createdAt"] = row["createdAt"] or now
            row["updatedAt"] = row["updatedAt"] or row["createdAt"]
        for name in spec.booleans:
            if row[name] is None:
                row[name] = False
        return row

    def _coerce(self, kind: Kind, value: Any) -> Any:
        """A seed/user value in internal form (datetimes as epoch seconds)."""
        if value is None:
            return None
        if kind == "datetime":
            dt = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
            if dt.tzinfo is None:
                dt = dt.replace(tzinfo=self.tz)
            return _epoch(dt)
        if kind == "int":
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"expected an integer, got {value!r}")
            return value
        if kind == "bool":
            if not isinstance(value, bool):
                raise TypeError(f"expected true or false, got {value!r}")
            return value
        if kind == "float":
            return float(value)
        if not isinstance(value, str):
            raise TypeError(f"expected a string, got {value!r}")
        return value

    def render_time(self, epoch_s: int | None) -> str | None:
        if epoch_s is None:
            return None
        return datetime.fromtimestamp(epoch_s, self.tz).isoformat()

    def _render(self, spec: _Spec, row: dict[str, Any], fields: Iterable[str]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in fields:
            value = row.get(name)
            out[name] = self.render_time(value) if spec.kind(name) == "datetime" else value
        return out

    def _all_fields(self, spec: _Spec, row: dict[str, Any]) -> list[str]:
        return list(spec.fields) + sorted(k for k in row if k not in spec.fields)

    def prospects(self, include_deleted: bool = False) -> list[dict[str, Any]]:
        """Every prospect (rendered as the API would, all fields), by id."""
        with self._lock:
            rows = sorted(self.prospects_table.rows.values(), key=lambda r: r["id"])
            return [
                self._render(PROSPECTS, r, self._all_fields(PROSPECTS, r))
                for r in rows
                if include_deleted or not r["isDeleted"]
            ]

    def get_prospect(self, prospect_id: int) -> dict[str, Any] | None:
        """One prospect (deleted ones too, with isDeleted true), or None."""
        with self._lock:
            row = self.prospects_table.rows.get(prospect_id)
            return (
                None
                if row is None
                else self._render(PROSPECTS, row, self._all_fields(PROSPECTS, row))
            )

    def add_prospect(self, fields: dict[str, Any]) -> int:
        """Create a prospect as a Pardot user would (any field; createdAt/updatedAt set now)."""
        with self._lock:
            now = _epoch(self.clock())
            row = self._seed_row(PROSPECTS, fields, len(self.prospects_table.rows), now)
            if not fields.get("createdAt"):
                row["createdAt"] = now
            if not fields.get("updatedAt"):
                row["updatedAt"] = now
            if row["id"] == 0:
                row["id"] = self.prospects_table.next_id
            elif row["id"] in self.prospects_table.rows:
                raise ValueError(f"prospect id {row['id']} already exists")
            row["assignedToId"] = row.get("userId")
            self.prospects_table.insert(row)
            return int(row["id"])

    def edit_prospect(self, prospect_id: int, fields: dict[str, Any]) -> None:
        """Change a prospect as a Pardot user would; bumps updatedAt (KeyError if unknown)."""
        with self._lock:
            if prospect_id not in self.prospects_table.rows:
                raise KeyError(f"no prospect {prospect_id}")
            changes: dict[str, Any] = {}
            for name, value in fields.items():
                kind = PROSPECTS.kind(name)
                if kind is None:
                    raise ValueError(f"unknown prospect field {name!r}")
                changes[name] = self._coerce(kind, value)
            if "userId" in changes:
                changes["assignedToId"] = changes["userId"]
            changes.setdefault("updatedAt", _epoch(self.clock()))
            self.prospects_table.update(prospect_id, changes)

    def recycle_prospect(self, prospect_id: int) -> None:
        """Send a prospect to the recycle bin as a Pardot user would (KeyError if unknown).

        CHOICE (UNCONFIRMED): moving to and from the recycle bin moves `updatedAt`.
        """
        self._set_deleted(prospect_id, True)

    def restore_prospect(self, prospect_id: int) -> None:
        """Restore (undelete) a prospect from the recycle bin; it syncs again from now on."""
        self._set_deleted(prospect_id, False)

    def purge_prospect(self, prospect_id: int) -> None:
        """Delete a prospect for good, as a Pardot user emptying the recycle bin does: no read,
        not even `deleted=all`, finds it again (KeyError if unknown)."""
        with self._lock:
            del self.prospects_table.rows[prospect_id]

    def _set_deleted(self, prospect_id: int, deleted: bool) -> None:
        with self._lock:
            row = self.prospects_table.rows.get(prospect_id)
            if row is None:
                raise KeyError(f"no prospect {prospect_id}")
            if bool(row["isDeleted"]) is deleted:
                where = "already in" if deleted else "not in"
                raise ValueError(f"prospect {prospect_id} is {where} the recycle bin")
            now = max(_epoch(self.clock()), row["updatedAt"])
            self.prospects_table.update(prospect_id, {"isDeleted": deleted, "updatedAt": now})

    def add_email(self, fields: dict[str, Any]) -> int:
        """Record a sent email (prospectId, None allowed; subject; sentAt, default now)."""
        with self._lock:
            now = _epoch(self.clock())
            row = self._seed_row(EMAILS, fields, len(self.emails_table.rows), now)
            pid = row.get("prospectId")
            if pid is not None and pid not in self.prospects_table.rows:
                raise ValueError(f"email: prospectId {pid} is not a prospect")
            if row.get("sentAt") is None:
                row["sentAt"] = now
            row["updatedAt"] = row.get("updatedAt") or row["sentAt"]
            if row["id"] == 0:
                row["id"] = self.emails_table.next_id
            self.emails_table.insert(row)
            return int(row["id"])

    def users(self) -> list[dict[str, Any]]:
        """Every Pardot user, rendered as the API would."""
        with self._lock:
            rows = sorted(self.users_table.rows.values(), key=lambda r: r["id"])
            return [self._render(USERS, r, list(USER_FIELDS)) for r in rows]
