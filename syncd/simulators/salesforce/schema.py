"""The simulated org's schema (objects, fields, what describe shows) and value conversions."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

BATCH_SIZE = 2000

MAX_COLLECTION = 200

MAX_COMPOSITE = 25

MAX_COMPOSITE_QUERIES_AND_COLLECTIONS = 5

UPDATED_ID_LIMIT = 600_000

MAX_URI_BYTES = 16_384

CURSORS_PER_USER = 10

CURSOR_IDLE = timedelta(minutes=15)

UPDATED_WINDOW = timedelta(days=30)

DELETED_WINDOW = timedelta(days=15)

MIN_VERSION = 20

MAX_VERSION = 66

LOGIN_AUDIENCES = ("https://login.salesforce.com", "https://test.salesforce.com")

_VERSION = re.compile(r"^v(\d{2})\.(\d)$")

_EMAIL = re.compile(
    r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)+$"
)

_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

_REF = re.compile(r"@\{([A-Za-z0-9_]+)\.([A-Za-z0-9_.\[\]]+)\}")


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


def custom_fields(spec: Mapping[str, Any]) -> dict[str, tuple[FieldSpec, ...]]:
    """Seed `custom_fields`: `{"Lead": [{"name": "X__c", "type": "string", ...}]}`."""
    out: dict[str, tuple[FieldSpec, ...]] = {}
    for obj, fields in spec.items():
        specs = []
        for f in fields:
            name = str(f["name"])
            if not name.endswith("__c"):
                raise ValueError(f"salesforce.custom_fields.{obj}: {name!r} must end in __c")
            editable = bool(f.get("updateable", True))
            specs.append(
                FieldSpec(
                    name,
                    str(f.get("type", "string")),
                    int(f.get("length", 255)),
                    createable=editable,
                    updateable=editable,
                )
            )
        out[str(obj)] = tuple(specs)
    return out


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
            _ro("MasterRecordId", "reference", 18, reference_to=("Lead",)),
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
            _ro("MasterRecordId", "reference", 18, reference_to=("Contact",)),
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
