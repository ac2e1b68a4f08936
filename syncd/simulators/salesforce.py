"""A faithful local Salesforce: OAuth token endpoint, REST API (SOQL, sObjects, collections,
composite, replication, limits) over Lead / Contact / Task / User / Group, as an ASGI app.

Shapes follow `/work/shared/reference/wire-formats.md` sections A and B. Choices the docs leave
open are marked "UNCONFIRMED" in comments. Notable behaviour a client must cope with, as on the
real server:

* ``Sforce-Auto-Assign`` defaults to TRUE on REST (Salesforce docs, "Assignment Rule Header"):
  with a seeded ``assignment_rule``, every Lead create *and update* without
  ``Sforce-Auto-Assign: FALSE`` gets the rule's owner, overriding any OwnerId sent.
* Timestamps are whole seconds, so several records share one SystemModstamp; poll with ``>=``.
* A query cursor holds a snapshot; at most 10 are open per user (the oldest is released) and
  each expires after 15 minutes unused (``INVALID_QUERY_LOCATOR``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
from bisect import bisect_left, bisect_right, insort
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from email.utils import format_datetime
from typing import Any
from urllib.parse import parse_qsl

import jwt

from syncd.simulators import soql
from syncd.simulators._base import (
    SIM_PREFIX,
    ASGIApp,
    CannedResponse,
    Clock,
    Counters,
    FaultBodies,
    Faults,
    Receive,
    Scope,
    Send,
    SimulatorMiddleware,
    TokenRegistry,
    json_bytes,
    update_faults,
    wall_clock,
)

BATCH_SIZE = 2000
MAX_COLLECTION = 200
MAX_COMPOSITE = 25
MAX_URI_BYTES = 16_384
CURSORS_PER_USER = 10
CURSOR_IDLE = timedelta(minutes=15)
UPDATED_WINDOW = timedelta(days=30)
DELETED_WINDOW = timedelta(days=15)
MIN_VERSION, MAX_VERSION = 20, 66
LOGIN_AUDIENCES = ("https://login.salesforce.com", "https://test.salesforce.com")

_VERSION = re.compile(r"^v(\d{2})\.(\d)$")
_EMAIL = re.compile(
    r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)+$"
)
_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_REF = re.compile(r"@\{([A-Za-z0-9_]+)\.([A-Za-z0-9_.\[\]]+)\}")


# ---------------------------------------------------------------------------------------------
# schema


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """One field as describe shows it, plus what the simulator enforces."""

    name: str
    type: str
    length: int = 0
    createable: bool = True
    updateable: bool = True
    nillable: bool = True
    label: str = ""
    filterable: bool = True
    picklist: tuple[str, ...] = ()
    restricted: bool = False
    reference_to: tuple[str, ...] = ()

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "label": self.label or _label(self.name),
            "type": self.type,
            "length": self.length,
            "createable": self.createable,
            "updateable": self.updateable,
            "nillable": self.nillable,
            "filterable": self.filterable,
            "custom": self.name.endswith("__c"),
            "defaultedOnCreate": not self.nillable and self.createable,
            "restrictedPicklist": self.restricted,
            "picklistValues": [
                {"active": True, "defaultValue": i == 0, "label": v, "validFor": None, "value": v}
                for i, v in enumerate(self.picklist)
            ],
            "referenceTo": list(self.reference_to),
        }


def _label(name: str) -> str:
    base = name.removesuffix("__c").removeprefix("pi__")
    return re.sub(r"(?<=[a-z])(?=[A-Z])", " ", base).replace("_", " ").strip().title()


def _ro(name: str, type_: str, length: int = 0, **kw: Any) -> FieldSpec:
    return FieldSpec(name, type_, length, createable=False, updateable=False, **kw)


_AUDIT = (
    _ro("CreatedDate", "datetime", nillable=False),
    _ro("CreatedById", "reference", 18, nillable=False, reference_to=("User",)),
    _ro("LastModifiedDate", "datetime", nillable=False),
    _ro("LastModifiedById", "reference", 18, nillable=False, reference_to=("User",)),
    _ro("SystemModstamp", "datetime", nillable=False),
    _ro("IsDeleted", "boolean", nillable=False),
)
_PARDOT = (
    FieldSpec("pi__score__c", "double", label="Pardot Score"),
    FieldSpec("pi__grade__c", "string", 10, label="Pardot Grade"),
    FieldSpec("pi__campaign__c", "string", 255, label="Pardot Campaign"),
    FieldSpec("pi__comments__c", "textarea", 32000, label="Pardot Comments", filterable=False),
    FieldSpec("pi__created_date__c", "datetime", label="Pardot Created Date"),
    FieldSpec("pi__last_activity__c", "datetime", label="Pardot Last Activity"),
)
_OWNER = FieldSpec("OwnerId", "reference", 18, nillable=False, reference_to=("Group", "User"))
_NAME_PARTS = (
    FieldSpec("FirstName", "string", 40),
    FieldSpec("LastName", "string", 80, nillable=False),
    FieldSpec("Salutation", "picklist", 40, picklist=("Mr.", "Ms.", "Mrs.", "Dr.", "Prof.")),
    _ro("Name", "string", 121),
    FieldSpec("Title", "string", 128),
    FieldSpec("Email", "email", 80),
    FieldSpec("Phone", "phone", 40),
    FieldSpec("MobilePhone", "phone", 40),
)
LEAD_STATUSES = ("Open - Not Contacted", "Working - Contacted", "Closed - Converted",
                 "Closed - Not Converted")  # fmt: skip

SCHEMA: dict[str, tuple[str, tuple[FieldSpec, ...]]] = {
    "Lead": (
        "00Q",
        (
            _ro("Id", "id", 18, nillable=False),
            *_NAME_PARTS,
            FieldSpec("Company", "string", 255, nillable=False),
            FieldSpec("Website", "url", 255),
            FieldSpec("Street", "textarea", 255),
            FieldSpec("City", "string", 40),
            FieldSpec("State", "string", 80),
            FieldSpec("PostalCode", "string", 20),
            FieldSpec("Country", "string", 80),
            FieldSpec("LeadSource", "picklist", 255, picklist=("Web", "Phone Inquiry", "Other")),
            FieldSpec("Status", "picklist", 255, nillable=False, picklist=LEAD_STATUSES),
            _OWNER,
            _ro("IsConverted", "boolean", nillable=False),
            _ro("ConvertedDate", "date"),
            _ro("ConvertedContactId", "reference", 18, reference_to=("Contact",)),
            _ro("ConvertedAccountId", "reference", 18, reference_to=("Account",)),
            FieldSpec("HasOptedOutOfEmail", "boolean", nillable=False),
            FieldSpec("Description", "textarea", 32000, filterable=False),
            *_AUDIT,
            *_PARDOT,
        ),
    ),
    "Contact": (
        "003",
        (
            _ro("Id", "id", 18, nillable=False),
            *_NAME_PARTS,
            FieldSpec("AccountId", "reference", 18, reference_to=("Account",)),
            FieldSpec("Department", "string", 80),
            FieldSpec("MailingStreet", "textarea", 255),
            FieldSpec("MailingCity", "string", 40),
            FieldSpec("MailingState", "string", 80),
            FieldSpec("MailingPostalCode", "string", 20),
            FieldSpec("MailingCountry", "string", 80),
            FieldSpec("LeadSource", "picklist", 255, picklist=("Web", "Phone Inquiry", "Other")),
            _OWNER,
            FieldSpec("HasOptedOutOfEmail", "boolean", nillable=False),
            FieldSpec("Description", "textarea", 32000, filterable=False),
            *_AUDIT,
            *_PARDOT,
        ),
    ),
    "Task": (
        "00T",
        (
            _ro("Id", "id", 18, nillable=False),
            FieldSpec("Subject", "combobox", 255),
            FieldSpec(
                "TaskSubtype",
                "picklist",
                40,
                updateable=False,
                restricted=True,
                picklist=("Task", "Email", "ListEmail", "Cadence", "Call", "LinkedIn"),
            ),
            FieldSpec(
                "Status",
                "picklist",
                255,
                nillable=False,
                picklist=(
                    "Not Started",
                    "In Progress",
                    "Completed",
                    "Waiting on someone else",
                    "Deferred",
                ),
            ),
            FieldSpec(
                "Priority", "picklist", 40, nillable=False, picklist=("High", "Normal", "Low")
            ),
            FieldSpec("ActivityDate", "date"),
            FieldSpec("WhoId", "reference", 18, reference_to=("Contact", "Lead")),
            FieldSpec("WhatId", "reference", 18),
            FieldSpec("OwnerId", "reference", 18, nillable=False, reference_to=("User",)),
            FieldSpec("Description", "textarea", 32000, filterable=False),
            _ro("IsClosed", "boolean", nillable=False),
            *_AUDIT,
        ),
    ),
    "User": (
        "005",
        (
            _ro("Id", "id", 18, nillable=False),
            _ro("Username", "string", 80, nillable=False),
            _ro("Email", "email", 128, nillable=False),
            _ro("FirstName", "string", 40),
            _ro("LastName", "string", 80, nillable=False),
            _ro("Name", "string", 121),
            _ro("IsActive", "boolean", nillable=False),
            *_AUDIT[:-1],
        ),
    ),
    "Group": (
        "00G",
        (
            _ro("Id", "id", 18, nillable=False),
            _ro("Name", "string", 40, nillable=False),
            _ro("DeveloperName", "string", 80),
            _ro("Type", "picklist", 40, nillable=False, picklist=("Queue", "Regular")),
            *_AUDIT[:-1],
        ),
    ),
}
WRITABLE = frozenset({"Lead", "Contact", "Task"})
_SEED_KEYS = {"leads": "Lead", "contacts": "Contact", "tasks": "Task"}
_TYPE_LABELS = {name: (name, name + "s") for name in SCHEMA}


# ---------------------------------------------------------------------------------------------
# helpers


def sf_datetime(value: datetime) -> str:
    """Salesforce's REST datetime form: ``2021-12-02T18:23:39.000+0000``."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + (
        f"{value.microsecond // 1000:03d}+0000"
    )


def parse_datetime(text: str) -> datetime:
    """An ISO-8601 date-time (``Z``, ``+0000`` or ``+00:00``) as aware UTC; ValueError if not."""
    iso = text.strip()
    if iso.endswith("Z"):
        iso = iso[:-1] + "+00:00"
    if re.search(r"[+-]\d{4}$", iso):
        iso = iso[:-2] + ":" + iso[-2:]
    value = datetime.fromisoformat(iso)
    if value.tzinfo is None or "T" not in iso:
        raise ValueError(f"not a date-time with an offset: {text!r}")
    return value.astimezone(UTC)


def _seconds(value: datetime) -> datetime:
    return value.astimezone(UTC).replace(microsecond=0)


def _render(value: Any) -> Any:
    if isinstance(value, datetime):
        return sf_datetime(value)
    if isinstance(value, date):
        return value.isoformat()
    return value


def _coerce_typed(t: str, value: Any) -> Any:
    """A JSON value as the Python value stored for field type `t`; TypeError/ValueError if not."""
    if t == "boolean":
        if not isinstance(value, bool):
            raise TypeError(t)
        return value
    if t in ("double", "int", "currency", "percent"):
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise TypeError(t)
        return float(value)
    if t == "datetime":
        if isinstance(value, datetime):
            return _seconds(value if value.tzinfo else value.replace(tzinfo=UTC))
        return _seconds(parse_datetime(str(value)))
    if t == "date":
        if isinstance(value, date) and not isinstance(value, datetime):
            return value
        return date.fromisoformat(str(value)[:10])
    if isinstance(value, dict | list):
        raise TypeError(t)
    text = value if isinstance(value, str) else json.dumps(value)
    return text if text != "" else None


class SalesforceError(Exception):
    """An error answer: HTTP status plus Salesforce's error array entries."""

    def __init__(self, status: int, code: str, message: str, fields: list[str] | None = None):
        super().__init__(f"{code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.fields = fields
        self.duplicate_result: dict[str, Any] | None = None

    def body(self) -> list[dict[str, Any]]:
        entry: dict[str, Any] = {"message": self.message, "errorCode": self.code}
        if self.fields is not None:
            entry["fields"] = self.fields
        return [entry]

    def item(self) -> dict[str, Any]:
        """The per-record form inside collections: `statusCode`, always `fields`."""
        return {"statusCode": self.code, "message": self.message, "fields": self.fields or []}


def _err(
    code: str, message: str, fields: list[str] | None = None, status: int = 400
) -> SalesforceError:
    return SalesforceError(status, code, message, fields)


def _not_found() -> SalesforceError:
    return SalesforceError(404, "NOT_FOUND", "The requested resource does not exist")


@dataclass
class _Response:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    raw: bytes | None = None
    content_type: str = "application/json;charset=UTF-8"


@dataclass
class _Request:
    method: str
    parts: list[str]  # path segments after /services/data/vXX.X
    version: str
    params: dict[str, str]
    headers: Mapping[str, str]
    body: Any  # parsed JSON (None when empty)
    user_id: str


@dataclass
class _SaveContext:
    user_id: str
    auto_assign: bool = True
    allow_duplicates: bool = False
    system: bool = False  # direct state access: read-only fields allowed, no org rules


@dataclass
class _Cursor:
    sobject: str
    fields: tuple[str, ...]
    rows: list[tuple[Any, ...]]
    ids: list[str]
    user_id: str
    last_used: datetime


# ---------------------------------------------------------------------------------------------
# storage


class _Table:
    """One sObject's records with the indexes SOQL uses (Id, Email, SystemModstamp)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.rows: dict[str, dict[str, Any]] = {}
        self.deleted: dict[str, tuple[dict[str, Any], datetime]] = {}
        self.by_email: dict[str, set[str]] = {}
        self.stamps: list[tuple[datetime, str]] = []
        self.by15: dict[str, str] = {}  # 15-char key -> stored id (live and deleted)

    def resolve(self, raw: str) -> str | None:
        """The stored id that a 15- or 18-character id names (live or deleted), or None."""
        key = soql.id15(raw)
        return self.by15.get(key) if key is not None else None

    # RecordSource ----------------------------------------------------------------------------
    def ids(self) -> Iterable[str]:
        return self.rows.keys()

    def get(self, record_id: str) -> Mapping[str, Any] | None:
        return self.rows.get(record_id)

    def lookup(self, field_name: str, values: Iterable[Any]) -> set[str] | None:
        if field_name == "Id":
            found_ids = (self.by15.get(v) for v in values)
            return {rid for rid in found_ids if rid is not None and rid in self.rows}
        if field_name == "Email":
            found: set[str] = set()
            for v in values:
                found.update(self.by_email.get(v, ()))
            return found
        return None

    def range(
        self, field_name: str, low: Any, low_inclusive: bool, high: Any, high_inclusive: bool
    ) -> list[str] | None:
        if field_name != "SystemModstamp":
            return None
        s = self.stamps
        if low is None:
            start = 0
        else:
            start = bisect_left(s, (low, "")) if low_inclusive else bisect_right(s, (low, "\uffff"))
        if high is None:
            end = len(s)
        else:
            end = (
                bisect_right(s, (high, "\uffff")) if high_inclusive else bisect_left(s, (high, ""))
            )
        return [rid for _, rid in s[start:end]]

    # mutation --------------------------------------------------------------------------------
    def put(self, rec: dict[str, Any]) -> None:
        rid = rec["Id"]
        old = self.rows.get(rid)
        if old is not None:
            self._unindex(old)
        self.rows[rid] = rec
        self.by15[rid[:15]] = rid
        email = rec.get("Email")
        if isinstance(email, str):
            self.by_email.setdefault(email.casefold(), set()).add(rid)
        stamp = rec.get("SystemModstamp")
        if isinstance(stamp, datetime):
            insort(self.stamps, (stamp, rid))

    def pop(self, rid: str) -> dict[str, Any] | None:
        rec = self.rows.pop(rid, None)
        if rec is not None:
            self._unindex(rec)
        return rec

    def _unindex(self, rec: dict[str, Any]) -> None:
        rid = rec["Id"]
        email = rec.get("Email")
        if isinstance(email, str):
            bucket = self.by_email.get(email.casefold())
            if bucket is not None:
                bucket.discard(rid)
                if not bucket:
                    del self.by_email[email.casefold()]
        stamp = rec.get("SystemModstamp")
        if isinstance(stamp, datetime):
            i = bisect_left(self.stamps, (stamp, rid))
            if i < len(self.stamps) and self.stamps[i] == (stamp, rid):
                del self.stamps[i]


# ---------------------------------------------------------------------------------------------
# the simulator


class SalesforceSimulator:
    """A seeded, in-memory Salesforce org served as an ASGI app (`app`).

    `seed` is the ``"salesforce"`` section of a seed file (see docs/interfaces.md) plus the optional
    keys ``tasks``, ``token_ttl_s``, ``faults``, ``drop_fields``, ``org_id`` and, under
    ``oauth``, ``password``, ``refresh_token``, ``rotate_refresh_tokens``, ``jwt_public_key``.
    The direct state methods (`records`, `get`, `insert`, `modify`, `remove`, `convert_lead`)
    model what a CRM user does in the UI; they are not API calls and are not counted.
    """

    def __init__(
        self,
        seed: dict[str, Any] | None = None,
        *,
        tokens: TokenRegistry | None = None,
        faults: Faults | None = None,
        clock: Clock = wall_clock,
        base_url: str = "http://127.0.0.1:8401",
    ) -> None:
        seed = dict(seed or {})
        self.clock = clock
        self.base_url = base_url
        self.tokens = tokens if tokens is not None else TokenRegistry(clock)
        if seed.get("token_ttl_s") is not None:
            self.tokens.ttl_s = float(seed["token_ttl_s"])
        self.counters = Counters()
        self.daily_api_limit = int(seed.get("daily_api_limit", 100_000))
        self.api_usage = 0
        self.assignment_owner_id: str | None = (seed.get("assignment_rule") or {}).get("owner_id")
        self.duplicate_rule = bool(seed.get("duplicate_rule", False))
        self._id_counter = 0
        self._last_stamp = datetime(2000, 1, 1, tzinfo=UTC)
        self._undo: list[Callable[[], None]] | None = None
        self._cursors: OrderedDict[str, _Cursor] = OrderedDict()
        self.tables = {name: _Table(name) for name in SCHEMA}
        self._dropped = {
            obj: {f.lower() for f in names}
            for obj, names in (seed.get("drop_fields") or {}).items()
        }
        self._build_schema()
        self.org_id = seed.get("org_id") or self.new_id("00D")
        oauth = dict(seed.get("oauth") or {})
        self.client_id: str = oauth.get("client_id", "syncd-sim-client")
        self.client_secret: str = oauth.get("client_secret", "syncd-sim-secret")
        self.oauth_password: str | None = oauth.get("password")
        self.rotate_refresh_tokens = bool(oauth.get("rotate_refresh_tokens", False))
        self.jwt_public_key: str | None = oauth.get("jwt_public_key")
        self._refresh_tokens: set[str] = set()
        if oauth.get("refresh_token"):
            self._refresh_tokens.add(str(oauth["refresh_token"]))
        self._load_seed(seed, oauth.get("username", "connector@sim.example"))
        fault_cfg = faults if faults is not None else Faults.from_seed(seed.get("faults"))
        self.faults = fault_cfg  # `POST /__sim__/faults` changes it in place
        self.app: ASGIApp = SimulatorMiddleware(
            self._asgi,
            counters=self.counters,
            faults=fault_cfg,
            bodies=FaultBodies(server_error=self._fault_5xx, rate_limited=self._fault_burst),
            exempt=lambda path: path.startswith("/services/oauth2/"),
        )

    # schema ----------------------------------------------------------------------------------
    def _build_schema(self) -> None:
        self.fields: dict[str, dict[str, FieldSpec]] = {}
        objects: dict[str, soql.ObjectInfo] = {}
        for name, (_, specs) in SCHEMA.items():
            dropped = self._dropped.get(name, set())
            live = {s.name.lower(): s for s in specs if s.name.lower() not in dropped}
            self.fields[name] = live
            objects[name.lower()] = soql.ObjectInfo(
                name,
                {k: soql.FieldInfo(s.name, s.type, s.filterable) for k, s in live.items()},
            )
        self.soql_objects = objects
        unknown = set(self._dropped) - set(SCHEMA)
        if unknown:
            raise ValueError(f"salesforce.drop_fields names unknown objects {sorted(unknown)}")

    # ids and time ----------------------------------------------------------------------------
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

    # seed ------------------------------------------------------------------------------------
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
        for key, sobject in _SEED_KEYS.items():
            for i, raw in enumerate(seed.get(key) or []):
                where = f"salesforce.{key}[{i}]"
                if not isinstance(raw, dict):
                    raise ValueError(f"{where}: expected an object, got {type(raw).__name__}")
                try:
                    self._create(sobject, dict(raw), ctx, seeded_id=raw.get("Id"))
                except SalesforceError as exc:
                    raise ValueError(
                        f"{where} ({raw.get('Email') or raw.get('Id')}): {exc.message}"
                    ) from None

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

    # direct state access (not API calls) ----------------------------------------------------------
    def records(self, sobject: str) -> list[dict[str, Any]]:
        """Copies of the live (not deleted) records of `sobject`, raw Python values."""
        return [dict(r) for r in self._table(sobject).rows.values()]

    def get(self, sobject: str, record_id: str) -> dict[str, Any] | None:
        """A copy of one live record, or None."""
        table = self._table(sobject)
        rid = table.resolve(record_id)
        rec = table.rows.get(rid) if rid is not None else None
        return dict(rec) if rec is not None else None

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

    def _user_ctx(self) -> _SaveContext:
        return _SaveContext(self.connector_user_id, auto_assign=False, system=True)

    def _table(self, sobject: str) -> _Table:
        table = self.tables.get(sobject)
        if table is None:
            raise ValueError(f"unknown sObject {sobject!r}; known: {sorted(self.tables)}")
        return table

    # record rules ----------------------------------------------------------------------------
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

    # core writes -----------------------------------------------------------------------------
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

    def _delete(self, sobject: str, record_id: str) -> None:
        if sobject not in WRITABLE:
            raise _err("INVALID_TYPE", f"Cannot delete {sobject} records through this API")
        old = self._find(sobject, record_id)
        table = self.tables[sobject]
        rid = old["Id"]
        table.pop(rid)
        gone = dict(old, IsDeleted=True, SystemModstamp=self._stamp())
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

    # faults ----------------------------------------------------------------------------------
    def _limit_header(self) -> tuple[str, str]:
        return ("Sforce-Limit-Info", f"api-usage={self.api_usage}/{self.daily_api_limit}")

    def _fault_5xx(self, status: int) -> CannedResponse:
        if status == 503:
            # UNCONFIRMED: the body of a maintenance 503; Salesforce documents only the status.
            body = [{"errorCode": "SERVER_UNAVAILABLE", "message": "Server Unavailable"}]
        else:
            n = secrets.randbelow
            ref = f"{n(10**9)}-{n(10**5)} ({-n(10**9)})"
            body = [
                {
                    "errorCode": "UNKNOWN_EXCEPTION",
                    "message": f"An unexpected error occurred. Please include this ErrorId if you"
                    f" contact support: {ref}",
                }
            ]
        return CannedResponse(status, json_bytes(body), headers=(self._limit_header(),))

    def _fault_burst(self) -> CannedResponse:
        body = [
            {
                "message": "ConcurrentPerOrgLongTxn Limit exceeded.",
                "errorCode": "REQUEST_LIMIT_EXCEEDED",
            }
        ]
        return CannedResponse(403, json_bytes(body), headers=(self._limit_header(),))

    # ASGI ------------------------------------------------------------------------------------
    async def _asgi(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        response = self._handle(scope, body)
        await _send(send, response)

    def _handle(self, scope: Scope, body: bytes) -> _Response:
        raw_path: bytes = scope.get("raw_path") or scope["path"].encode()
        query_string: bytes = scope.get("query_string", b"")
        if len(raw_path) + len(query_string) + 1 > MAX_URI_BYTES:
            return _Response(
                414,
                raw=b"<html><body><h1>414 URI Too Long</h1></body></html>",
                content_type="text/html",
            )
        path: str = scope["path"]
        method: str = scope["method"]
        headers = {
            k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])
        }
        params = dict(parse_qsl(query_string.decode("latin-1"), keep_blank_values=True))
        if path.startswith(SIM_PREFIX):
            return self._control(method, path, body)
        if path == "/services/oauth2/token":
            if method != "POST":
                return _Response(
                    405, [{"errorCode": "METHOD_NOT_ALLOWED", "message": "HTTP Method not allowed"}]
                )
            return self._token(body, headers)
        if path.startswith("/id/"):
            return self._identity(path, headers, params)
        if path.rstrip("/") == "/services/data":
            return _Response(200, _versions())
        if path.startswith("/services/data/"):
            return self._rest(method, path, params, headers, body)
        return _Response(404, _not_found().body())

    def _control(self, method: str, path: str, body: bytes = b"") -> _Response:
        if path == f"{SIM_PREFIX}/faults" and method in ("GET", "POST"):
            try:
                now = update_faults(self.faults, body if method == "POST" else b"{}")
            except ValueError as exc:
                return _Response(400, [{"errorCode": "INVALID_FAULTS", "message": str(exc)}])
            return _Response(200, now)
        if path == f"{SIM_PREFIX}/counters" and method == "GET":
            return _Response(200, {**self.counters.snapshot(), "api_usage": self.api_usage})
        if path == f"{SIM_PREFIX}/reset-counters" and method == "POST":
            self.counters.reset()
            self.api_usage = 0
            return _Response(200, {"ok": True})
        return _Response(404, _not_found().body())

    # OAuth -----------------------------------------------------------------------------------
    def _token(self, body: bytes, headers: Mapping[str, str]) -> _Response:
        form = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
        grant = form.get("grant_type", "")
        flows: dict[str, Callable[[dict[str, str]], tuple[str, dict[str, Any]]]] = {
            "client_credentials": self._grant_client_credentials,
            "password": self._grant_password,
            "refresh_token": self._grant_refresh,
            "urn:ietf:params:oauth:grant-type:jwt-bearer": self._grant_jwt,
        }
        flow = flows.get(grant)
        if flow is None:
            return _oauth_error("unsupported_grant_type", "grant type not supported")
        try:
            user_id, extra = flow(form)
        except _OAuthError as exc:
            return _oauth_error(exc.error, exc.description)
        issued = self.tokens.issue(user_id, self.org_id)
        issued_at = str(int(issued.issued_at.timestamp() * 1000))
        ident = f"{self.base_url}/id/{self.org_id}/{user_id}"
        signature = base64.b64encode(
            hmac.new(
                self.client_secret.encode(), (ident + issued_at).encode(), hashlib.sha256
            ).digest()
        ).decode()
        answer = {
            "access_token": issued.token,
            **extra,
            "signature": signature,
            "scope": "api",
            "instance_url": self.base_url,
            "id": ident,
            "token_type": "Bearer",
            "issued_at": issued_at,
        }
        return _Response(
            200, answer, {"Cache-Control": "no-cache,must-revalidate,max-age=0,no-store,private"}
        )

    def _check_client(self, form: Mapping[str, str], *, secret_required: bool) -> None:
        if form.get("client_id") != self.client_id:
            raise _OAuthError("invalid_client_id", "client identifier invalid")
        secret = form.get("client_secret")
        if (secret_required or secret is not None) and secret != self.client_secret:
            raise _OAuthError("invalid_client", "invalid client credentials")

    def _user_by_username(self, username: str | None) -> dict[str, Any] | None:
        for user in self.tables["User"].rows.values():
            if username and user.get("Username", "").casefold() == username.casefold():
                return user
        return None

    def _grant_client_credentials(self, form: dict[str, str]) -> tuple[str, dict[str, Any]]:
        self._check_client(form, secret_required=True)
        return self.connector_user_id, {}

    def _grant_password(self, form: dict[str, str]) -> tuple[str, dict[str, Any]]:
        self._check_client(form, secret_required=True)
        user = self._user_by_username(form.get("username"))
        password = form.get("password", "")
        if (
            user is None
            or not user.get("IsActive")
            or not password
            or (self.oauth_password is not None and password != self.oauth_password)
        ):
            raise _OAuthError("invalid_grant", "authentication failure")
        return user["Id"], {}

    def _grant_refresh(self, form: dict[str, str]) -> tuple[str, dict[str, Any]]:
        self._check_client(form, secret_required=False)
        token = form.get("refresh_token", "")
        if token not in self._refresh_tokens:
            raise _OAuthError("invalid_grant", "expired access/refresh token")
        extra: dict[str, Any] = {}
        if self.rotate_refresh_tokens:
            self._refresh_tokens.discard(token)
            fresh = f"5Aep{secrets.token_urlsafe(60)}"
            self._refresh_tokens.add(fresh)
            extra["refresh_token"] = fresh
        return self.connector_user_id, extra

    def _grant_jwt(self, form: dict[str, str]) -> tuple[str, dict[str, Any]]:
        assertion = form.get("assertion", "")
        try:
            header = jwt.get_unverified_header(assertion)
            if header.get("alg") != "RS256":
                raise _OAuthError("invalid_grant", "invalid assertion")
            if self.jwt_public_key:
                claims = jwt.decode(
                    assertion, self.jwt_public_key, algorithms=["RS256"],
                    options={"verify_aud": False, "verify_exp": False, "verify_iat": False,
                             "verify_nbf": False},
                )  # fmt: skip
            else:
                claims = jwt.decode(assertion, options={"verify_signature": False})
        except jwt.PyJWTError:
            raise _OAuthError("invalid_grant", "invalid assertion") from None
        if claims.get("iss") != self.client_id:
            raise _OAuthError("invalid_client_id", "client identifier invalid")
        aud = claims.get("aud")
        audiences = aud if isinstance(aud, list) else [aud]
        allowed = {*LOGIN_AUDIENCES, self.base_url.rstrip("/")}
        if not any(isinstance(a, str) and a.rstrip("/") in allowed for a in audiences):
            raise _OAuthError("invalid_grant", "audience is invalid")
        exp = claims.get("exp")
        if not isinstance(exp, int | float) or exp <= self.clock().timestamp():
            raise _OAuthError("invalid_grant", "expired authorization code")
        user = self._user_by_username(claims.get("sub"))
        if user is None or not user.get("IsActive"):
            raise _OAuthError("invalid_grant", "user hasn't approved this consumer")
        return user["Id"], {}

    def _bearer(
        self, headers: Mapping[str, str], params: Mapping[str, str] | None = None
    ) -> str | None:
        auth = headers.get("authorization", "")
        scheme, _, token = auth.partition(" ")
        if scheme.lower() in ("bearer", "oauth") and token:
            issued = self.tokens.validate(token.strip())
            return issued.user_id if issued is not None and issued.org_id == self.org_id else None
        if params and params.get("oauth_token"):
            issued = self.tokens.validate(params["oauth_token"])
            return issued.user_id if issued is not None else None
        return None

    def _identity(
        self, path: str, headers: Mapping[str, str], params: Mapping[str, str]
    ) -> _Response:
        user_id = self._bearer(headers, params)
        parts = path.strip("/").split("/")
        if user_id is None:
            return _Response(403, raw=b"Bad_OAuth_Token", content_type="text/plain")
        if (
            len(parts) != 3
            or parts[1] != self.org_id
            or self.tables["User"].resolve(parts[2]) != user_id
        ):
            return _Response(403, raw=b"Forbidden", content_type="text/plain")
        user = self.tables["User"].rows[user_id]
        base = self.base_url
        return _Response(
            200,
            {
                "id": f"{base}/id/{self.org_id}/{user_id}",
                "asserted_user": True,
                "user_id": user_id,
                "organization_id": self.org_id,
                "username": user["Username"],
                "nick_name": user["Username"].split("@")[0],
                "display_name": user.get("Name"),
                "email": user.get("Email"),
                "email_verified": True,
                "first_name": user.get("FirstName"),
                "last_name": user.get("LastName"),
                "timezone": "GMT",
                "active": bool(user.get("IsActive")),
                "user_type": "STANDARD",
                "language": "en_US",
                "locale": "en_US",
                "utcOffset": 0,
                "last_modified_date": sf_datetime(user["LastModifiedDate"]),
                "is_app_installed": True,
                "urls": {
                    "rest": f"{base}/services/data/v{{version}}/",
                    "sobjects": f"{base}/services/data/v{{version}}/sobjects/",
                    "query": f"{base}/services/data/v{{version}}/query/",
                    "limits": f"{base}/services/data/v{{version}}/limits/",
                    "profile": f"{base}/{user_id}",
                },
            },
        )

    # REST ------------------------------------------------------------------------------------
    def _rest(
        self,
        method: str,
        path: str,
        params: dict[str, str],
        headers: Mapping[str, str],
        body: bytes,
    ) -> _Response:
        segments = path[len("/services/data/") :].strip("/").split("/")
        m = _VERSION.match(segments[0])
        if m is None or not MIN_VERSION <= int(m.group(1)) <= MAX_VERSION:
            return _Response(404, _not_found().body())
        version = f"{m.group(1)}.{m.group(2)}"
        user_id = self._bearer(headers)
        if user_id is None:
            return self._with_limit(
                _Response(
                    401,
                    [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}],
                )
            )
        if self.api_usage >= self.daily_api_limit:
            return self._with_limit(
                _Response(
                    403,
                    [
                        {
                            "message": "TotalRequests Limit exceeded.",
                            "errorCode": "REQUEST_LIMIT_EXCEEDED",
                        }
                    ],
                )
            )
        self.api_usage += 1
        try:
            parsed = json.loads(body) if body.strip() else None
        except (ValueError, UnicodeDecodeError) as exc:
            return self._with_limit(
                _Response(400, _err("JSON_PARSER_ERROR", f"Unexpected character: {exc}").body())
            )
        req = _Request(method, segments[1:], version, params, headers, parsed, user_id)
        return self._with_limit(self._dispatch(req))

    def _with_limit(self, response: _Response) -> _Response:
        name, value = self._limit_header()
        response.headers[name] = value
        return response

    def _dispatch(self, req: _Request) -> _Response:
        try:
            return self._route(req)
        except SalesforceError as exc:
            body: list[dict[str, Any]] = exc.body()
            if exc.duplicate_result is not None:
                # The real server spells this key "duplicateResut" (wire-formats B.9).
                body = [{"duplicateResut": exc.duplicate_result, **body[0]}]
            return _Response(exc.status, body)
        except soql.SoqlError as exc:
            return _Response(400, [{"message": exc.message, "errorCode": exc.code}])

    def _route(self, req: _Request) -> _Response:
        p, m = req.parts, req.method
        if p == [""] or not p:
            return self._allow(m, "GET") or _Response(200, _resources(req.version))
        head = p[0]
        if head == "limits" and len(p) == 1:
            return self._allow(m, "GET") or self._limits()
        if head in ("query", "queryAll") and len(p) <= 2:
            return self._allow(m, "GET") or (
                self._query(req, include_deleted=head == "queryAll")
                if len(p) == 1
                else self._query_more(req, p[1])
            )
        if head == "sobjects":
            return self._sobjects(req)
        if head == "composite" and p[1:] == ["sobjects"]:
            return self._collections(req)
        if head == "composite" and len(p) == 1:
            return self._allow(m, "POST") or self._composite(req)
        raise _not_found()

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

    def _limits(self) -> _Response:
        remaining = max(self.daily_api_limit - self.api_usage, 0)
        return _Response(
            200,
            {
                "DailyApiRequests": {"Max": self.daily_api_limit, "Remaining": remaining},
                "DailyBulkApiBatches": {"Max": 15000, "Remaining": 15000},
                "DataStorageMB": {"Max": 1024, "Remaining": 1024},
            },
        )

    # query -----------------------------------------------------------------------------------
    def _batch_size(self, headers: Mapping[str, str]) -> int:
        option = headers.get("sforce-query-options", "")
        m = re.search(r"batchSize=(\d+)", option)
        if m is None:
            return BATCH_SIZE
        return min(max(int(m.group(1)), 200), BATCH_SIZE)

    def _query(self, req: _Request, *, include_deleted: bool = False) -> _Response:
        text = req.params.get("q")
        if text is None:
            raise _err("MALFORMED_QUERY", "A query string has to be specified")
        bound = soql.bind(soql.parse(text), self.soql_objects)
        table = self.tables[bound.sobject]
        source: soql.RecordSource = _WithDeleted(table) if include_deleted else table
        ids = soql.execute(bound, source)
        if bound.count:
            return _Response(200, {"totalSize": len(ids), "done": True, "records": []})
        get = source.get
        rows = [tuple(get(rid)[f] for f in bound.fields) for rid in ids]  # type: ignore[index]
        cursor = _Cursor(bound.sobject, bound.fields, rows, ids, req.user_id, self.clock())
        return _Response(200, self._page(cursor, 0, req))

    def _page(self, cursor: _Cursor, offset: int, req: _Request) -> dict[str, Any]:
        size = self._batch_size(req.headers)
        end = min(offset + size, len(cursor.rows))
        obj, version, names = cursor.sobject, req.version, cursor.fields
        records = []
        for rid, row in zip(cursor.ids[offset:end], cursor.rows[offset:end], strict=True):
            rec: dict[str, Any] = {
                "attributes": {
                    "type": obj,
                    "url": f"/services/data/v{version}/sobjects/{obj}/{rid}",
                }
            }
            for name, value in zip(names, row, strict=True):
                rec[name] = _render(value)
            records.append(rec)
        answer: dict[str, Any] = {"totalSize": len(cursor.rows), "done": end >= len(cursor.rows)}
        if end < len(cursor.rows):
            locator = self._store_cursor(cursor)
            answer["nextRecordsUrl"] = f"/services/data/v{version}/query/{locator}-{end}"
        answer["records"] = records
        return answer

    def _store_cursor(self, cursor: _Cursor) -> str:
        for loc, existing in self._cursors.items():
            if existing is cursor:
                self._cursors.move_to_end(loc)
                return loc
        mine = [loc for loc, c in self._cursors.items() if c.user_id == cursor.user_id]
        while len(mine) >= CURSORS_PER_USER:
            del self._cursors[mine.pop(0)]
        loc = "01g5g" + "".join(secrets.choice(_BASE62) for _ in range(13))
        self._cursors[loc] = cursor
        return loc

    def _query_more(self, req: _Request, token: str) -> _Response:
        loc, _, off = token.rpartition("-")
        cursor = self._cursors.get(loc)
        now = self.clock()
        if cursor is not None and now - cursor.last_used > CURSOR_IDLE:
            del self._cursors[loc]
            cursor = None
        if (
            cursor is None
            or cursor.user_id != req.user_id
            or not off.isdigit()
            or int(off) > len(cursor.rows)
        ):
            raise _err("INVALID_QUERY_LOCATOR", "invalid query locator")
        cursor.last_used = now
        answer = self._page(cursor, int(off), req)
        if answer["done"]:
            self._cursors.pop(loc, None)
        return _Response(200, answer)

    # sObjects --------------------------------------------------------------------------------
    def _sobject_name(self, name: str) -> str:
        for known in SCHEMA:
            if known.lower() == name.lower():
                return known
        raise _not_found()

    def _sobjects(self, req: _Request) -> _Response:
        p, m = req.parts, req.method
        if len(p) == 1:
            return self._allow(m, "GET") or _Response(
                200,
                {
                    "encoding": "UTF-8",
                    "maxBatchSize": 200,
                    "sobjects": [self._describe_head(n, req.version) for n in SCHEMA],
                },
            )
        sobject = self._sobject_name(p[1])
        if len(p) == 2:
            if m == "POST":
                return self._create_one(req, sobject)
            return self._allow(m, "GET", "POST") or _Response(
                200,
                {"objectDescribe": self._describe_head(sobject, req.version), "recentItems": []},
            )
        if len(p) == 3 and p[2] == "describe":
            return self._allow(m, "GET") or _Response(200, self._describe(sobject, req.version))
        if len(p) == 3 and p[2] in ("updated", "deleted"):
            return self._allow(m, "GET") or self._replication(req, sobject, p[2])
        if len(p) == 3:
            return self._record(req, sobject, p[2])
        raise _not_found()

    def _save_ctx(self, req: _Request) -> _SaveContext:
        assign = req.headers.get("sforce-auto-assign", "TRUE").strip().upper() != "FALSE"
        dup = req.headers.get("sforce-duplicate-rule-header", "").replace(" ", "").lower()
        return _SaveContext(
            req.user_id, auto_assign=assign, allow_duplicates="allowsave=true" in dup
        )

    def _create_one(self, req: _Request, sobject: str) -> _Response:
        rid = self._create(sobject, req.body, self._save_ctx(req), version=req.version)
        return _Response(
            201,
            {"id": rid, "success": True, "errors": []},
            {"Location": f"/services/data/v{req.version}/sobjects/{sobject}/{rid}"},
        )

    def _record(self, req: _Request, sobject: str, record_id: str) -> _Response:
        if req.method == "GET":
            rec = self._find(sobject, record_id)
            return _Response(
                200,
                self._full_record(sobject, rec, req.version),
                {"Last-Modified": format_datetime(rec["LastModifiedDate"], usegmt=True)},
            )
        if req.method == "PATCH":
            self._update(sobject, record_id, req.body, self._save_ctx(req))
            return _Response(204)
        if req.method == "DELETE":
            self._delete(sobject, record_id)
            return _Response(204)
        return self._allow(req.method, "GET", "PATCH", "DELETE") or _Response(204)

    def _full_record(self, sobject: str, rec: Mapping[str, Any], version: str) -> dict[str, Any]:
        out: dict[str, Any] = {
            "attributes": {
                "type": sobject,
                "url": f"/services/data/v{version}/sobjects/{sobject}/{rec['Id']}",
            }
        }
        for spec in self.fields[sobject].values():
            out[spec.name] = _render(rec.get(spec.name))
        return out

    def _describe_head(self, sobject: str, version: str) -> dict[str, Any]:
        label, plural = _TYPE_LABELS[sobject]
        writable = sobject in WRITABLE
        return {
            "name": sobject,
            "label": label,
            "labelPlural": plural,
            "keyPrefix": SCHEMA[sobject][0],
            "custom": False,
            "createable": writable,
            "updateable": writable,
            "deletable": writable,
            "queryable": True,
            "replicateable": True,
            "urls": {
                "sobject": f"/services/data/v{version}/sobjects/{sobject}",
                "describe": f"/services/data/v{version}/sobjects/{sobject}/describe",
                "rowTemplate": f"/services/data/v{version}/sobjects/{sobject}/{{ID}}",
            },
        }

    def _describe(self, sobject: str, version: str) -> dict[str, Any]:
        head = self._describe_head(sobject, version)
        fields = []
        for spec in self.fields[sobject].values():
            entry = spec.describe()
            if sobject not in WRITABLE:
                entry.update(createable=False, updateable=False)
            fields.append(entry)
        return {**head, "fields": fields}

    # replication -----------------------------------------------------------------------------
    def _window(self, req: _Request, kind: str) -> tuple[datetime, datetime, datetime]:
        values: dict[str, datetime] = {}
        for name in ("start", "end"):
            raw = req.params.get(name)
            if not raw:
                raise _err("MISSING_ARGUMENT", f"Missing required parameter: {name}")
            try:
                values[name] = parse_datetime(raw)
            except ValueError:
                # UNCONFIRMED: the errorCode for an unparseable date parameter.
                raise _err(
                    "INVALID_REPLICATION_DATE", f"Unable to parse the {name} date: {raw}"
                ) from None
        now = self.clock().astimezone(UTC)
        floor = (now - (UPDATED_WINDOW if kind == "updated" else DELETED_WINDOW)).replace(
            second=0, microsecond=0
        )
        start = values["start"].replace(second=0, microsecond=0)
        end = min(values["end"], now).replace(second=0, microsecond=0)
        if start >= end:
            raise _err(
                "INVALID_REPLICATION_DATE",
                "startDate must chronologically precede endDate by more than one minute",
            )
        if start < floor:
            days = (UPDATED_WINDOW if kind == "updated" else DELETED_WINDOW).days
            raise _err("INVALID_REPLICATION_DATE", f"startDate cannot be more than {days} days ago")
        return start, end, floor

    def _replication(self, req: _Request, sobject: str, kind: str) -> _Response:
        start, end, floor = self._window(req, kind)
        table = self.tables[sobject]
        if kind == "updated":
            ids = table.range("SystemModstamp", start, True, end, False) or []
            return _Response(200, {"ids": ids, "latestDateCovered": sf_datetime(end)})
        gone = sorted(
            ((rid, when) for rid, (_, when) in table.deleted.items() if start <= when < end),
            key=lambda pair: (pair[1], pair[0]),
        )
        return _Response(
            200,
            {
                "deletedRecords": [
                    {"id": rid, "deletedDate": sf_datetime(when)} for rid, when in gone
                ],
                "earliestDateAvailable": sf_datetime(floor),
                "latestDateCovered": sf_datetime(end),
            },
        )

    # collections -----------------------------------------------------------------------------
    def _collections(self, req: _Request) -> _Response:
        if req.method == "DELETE":
            ids = [i for i in req.params.get("ids", "").split(",") if i]
            all_or_none = req.params.get("allOrNone", "false").lower() == "true"
            items: list[Any] = ids
        elif req.method in ("POST", "PATCH"):
            if not isinstance(req.body, dict) or not isinstance(req.body.get("records"), list):
                raise _err(
                    "JSON_PARSER_ERROR", "The request body must be an object with a records array"
                )
            items = req.body["records"]
            all_or_none = bool(req.body.get("allOrNone", False))
        else:
            return self._allow(req.method, "POST", "PATCH", "DELETE") or _Response(200)
        if len(items) > MAX_COLLECTION:
            raise _err(
                "EXCEEDED_ID_LIMIT",
                "record limit reached. cannot submit more than 200 records into this call",
            )
        ctx = self._save_ctx(req)
        results: list[dict[str, Any]] = []
        failed = False
        with self._transaction() as tx:
            for item in items:
                try:
                    rid = self._collection_item(req, item, ctx)
                    results.append({"id": rid, "success": True, "errors": []})
                except SalesforceError as exc:
                    failed = True
                    results.append({"success": False, "errors": [self._item_error(exc)]})
            if failed and all_or_none:
                tx.rollback()
                results = [
                    r
                    if not r["success"]
                    else {
                        "success": False,
                        "errors": [
                            {
                                "statusCode": "ALL_OR_NONE_OPERATION_ROLLED_BACK",
                                "message": "Record rolled back because not all records were valid"
                                " and the"
                                " request was using AllOrNone header",
                                "fields": [],
                            }
                        ],
                    }
                    for r in results
                ]
        return _Response(200, results)

    @staticmethod
    def _item_error(exc: SalesforceError) -> dict[str, Any]:
        item = exc.item()
        if exc.duplicate_result is not None:
            item["duplicateResult"] = exc.duplicate_result
        return item

    def _collection_item(self, req: _Request, item: Any, ctx: _SaveContext) -> str:
        if req.method == "DELETE":
            raw = str(item)
            if soql.id15(raw) is None:
                raise _err("MALFORMED_ID", f"malformed id {item}", [])
            sobject = {SCHEMA[n][0]: n for n in SCHEMA}.get(raw[:3])
            stored = self.tables[sobject].resolve(raw) if sobject is not None else None
            if sobject is None or stored is None:
                raise _err("INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id", [])
            self._delete(sobject, stored)
            return stored
        if not isinstance(item, dict):
            raise _err("JSON_PARSER_ERROR", "Each record must be a JSON object")
        attrs = item.get("attributes")
        type_name = attrs.get("type") if isinstance(attrs, dict) else None
        if not type_name:
            # UNCONFIRMED: the exact wording; the real server rejects records without a type.
            raise _err("INVALID_TYPE", "Must specify a type in the attributes map of a sObject", [])
        sobject = self._sobject_name_or_type_error(str(type_name))
        body = {k: v for k, v in item.items() if k != "attributes"}
        if req.method == "POST":
            return self._create(sobject, body, ctx, version=req.version)
        key = next((k for k in body if k.lower() == "id"), None)
        record_id = body.pop(key) if key is not None else None
        if not record_id:
            raise _err("MISSING_ARGUMENT", "Id not specified in an update call", [])
        rec = self._find_for_item(sobject, str(record_id))
        self._update(sobject, rec, body, ctx)
        return rec

    def _find_for_item(self, sobject: str, record_id: str) -> str:
        if soql.id15(record_id) is None:
            raise _err(
                "MALFORMED_ID", f"{sobject} ID: id value of incorrect type: {record_id}", ["Id"]
            )
        table = self.tables[sobject]
        stored = table.resolve(record_id)
        if stored is not None and stored in table.deleted:
            raise _err("ENTITY_IS_DELETED", "entity is deleted", [])
        if stored is None or stored not in table.rows:
            raise _err("INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id", [])
        return stored

    def _sobject_name_or_type_error(self, name: str) -> str:
        try:
            return self._sobject_name(name)
        except SalesforceError:
            raise _err("INVALID_TYPE", f"sObject type '{name}' is not supported.", []) from None

    # composite -------------------------------------------------------------------------------
    def _composite(self, req: _Request) -> _Response:
        body = req.body
        if not isinstance(body, dict) or not isinstance(body.get("compositeRequest"), list):
            raise _err(
                "JSON_PARSER_ERROR",
                "The request body must be an object with a compositeRequest array",
            )
        subs: list[Any] = body["compositeRequest"]
        if len(subs) > MAX_COMPOSITE:
            # UNCONFIRMED: the errorCode for too many subrequests.
            raise _err(
                "INVALID_BATCH_REQUEST",
                f"Received invalid composite request: at most {MAX_COMPOSITE} subrequests",
            )
        all_or_none = bool(body.get("allOrNone", False))
        results: dict[str, Any] = {}
        answers: list[dict[str, Any]] = []
        halted = False
        with self._transaction() as tx:
            for sub in subs:
                ref = str(sub.get("referenceId", "")) if isinstance(sub, dict) else ""
                if halted:
                    answers.append(_halted(ref))
                    continue
                if isinstance(sub, dict):
                    self.counters.record_subrequest(
                        str(sub.get("method", "GET")).upper(), str(sub.get("url", "")).split("?")[0]
                    )
                answer = self._subrequest(req, sub, results)
                answers.append({**answer, "referenceId": ref})
                results[ref] = answer["body"]
                if answer["httpStatusCode"] >= 400 and all_or_none:
                    halted = True
            if halted:
                tx.rollback()
                answers = [
                    a if a["httpStatusCode"] >= 400 else _halted(a["referenceId"]) for a in answers
                ]
        return _Response(200, {"compositeResponse": answers})

    def _subrequest(self, req: _Request, sub: Any, results: Mapping[str, Any]) -> dict[str, Any]:
        try:
            if not isinstance(sub, dict) or "method" not in sub or "url" not in sub:
                raise _err(
                    "INVALID_BATCH_REQUEST", "Each subrequest needs method, url and referenceId"
                )
            url = _resolve_refs(str(sub["url"]), results)
            body = _resolve_refs(sub.get("body"), results)
        except SalesforceError as exc:
            return {"body": exc.body(), "httpHeaders": {}, "httpStatusCode": exc.status}
        path, _, query = url.partition("?")
        segments = (
            path[len("/services/data/") :].strip("/").split("/")
            if path.startswith("/services/data/")
            else []
        )
        m = _VERSION.match(segments[0]) if segments else None
        if m is None:
            return {"body": _not_found().body(), "httpHeaders": {}, "httpStatusCode": 404}
        sub_req = _Request(
            str(sub["method"]).upper(),
            segments[1:],
            f"{m.group(1)}.{m.group(2)}",
            dict(parse_qsl(query, keep_blank_values=True)),
            {
                **req.headers,
                **{k.lower(): str(v) for k, v in (sub.get("httpHeaders") or {}).items()},
            },
            body,
            req.user_id,
        )
        response = self._dispatch(sub_req)
        return {
            "body": response.body,
            "httpHeaders": response.headers,
            "httpStatusCode": response.status,
        }


class _Transaction:
    """Collects undo steps while open; `rollback` undoes every write since it opened."""

    def __init__(self, sim: SalesforceSimulator) -> None:
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


class _WithDeleted:
    """A table's live and deleted records together (for queryAll); no indexes beyond Id."""

    def __init__(self, table: _Table) -> None:
        self.table = table

    def ids(self) -> Iterable[str]:
        return [*self.table.rows, *self.table.deleted]

    def get(self, record_id: str) -> Mapping[str, Any] | None:
        rec = self.table.rows.get(record_id)
        if rec is None and record_id in self.table.deleted:
            return self.table.deleted[record_id][0]
        return rec

    def lookup(self, field_name: str, values: Iterable[Any]) -> set[str] | None:
        if field_name == "Id":
            found_ids = (self.table.by15.get(v) for v in values)
            return {rid for rid in found_ids if rid is not None}
        return None

    def range(
        self, field_name: str, low: Any, low_inclusive: bool, high: Any, high_inclusive: bool
    ) -> list[str] | None:
        return None


class _OAuthError(Exception):
    def __init__(self, error: str, description: str) -> None:
        super().__init__(f"{error}: {description}")
        self.error = error
        self.description = description


def _oauth_error(error: str, description: str) -> _Response:
    return _Response(400, {"error": error, "error_description": description})


def _halted(ref: str) -> dict[str, Any]:
    return {
        "body": [
            {
                "errorCode": "PROCESSING_HALTED",
                "message": "The transaction was rolled back since another operation in"
                " the same transaction failed.",
            }
        ],
        "httpHeaders": {},
        "httpStatusCode": 400,
        "referenceId": ref,
    }


def _resolve_refs(value: Any, results: Mapping[str, Any]) -> Any:
    if isinstance(value, str):

        def sub(m: re.Match[str]) -> str:
            ref, path = m.group(1), m.group(2)
            target = results.get(ref)
            for part in re.findall(r"[^.\[\]]+", path):
                if isinstance(target, dict):
                    target = target.get(part)
                elif isinstance(target, list) and part.isdigit() and int(part) < len(target):
                    target = target[int(part)]
                else:
                    target = None
            if target is None:
                raise _err(
                    "PROCESSING_HALTED",
                    f"Invalid reference specified. No value for {ref}.{path} found in {ref}.",
                )
            return str(target)

        return _REF.sub(sub, value)
    if isinstance(value, dict):
        return {k: _resolve_refs(v, results) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve_refs(v, results) for v in value]
    return value


def _versions() -> list[dict[str, str]]:
    out = []
    for v in range(31, MAX_VERSION + 1):
        k = v - 57  # v57.0 is Spring '23; three releases a year
        season = ("Spring", "Summer", "Winter")[k % 3]
        year = 23 + (k + 1) // 3
        out.append(
            {"label": f"{season} '{year:02d}", "url": f"/services/data/v{v}.0", "version": f"{v}.0"}
        )
    return out


def _resources(version: str) -> dict[str, str]:
    base = f"/services/data/v{version}"
    return {
        name: f"{base}/{name}" for name in ("sobjects", "query", "queryAll", "limits", "composite")
    }


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def _send(send: Send, response: _Response) -> None:
    if response.raw is not None:
        payload = response.raw
    elif response.body is None:
        payload = b""
    else:
        payload = json_bytes(response.body)
    headers = [
        (k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in response.headers.items()
    ]
    if payload or response.status != 204:
        headers.append((b"content-type", response.content_type.encode()))
    headers.append((b"content-length", str(len(payload)).encode()))
    await send({"type": "http.response.start", "status": response.status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})
