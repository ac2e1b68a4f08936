"""What each collection holds: fields and their kinds, the read-only list, sorts, filters."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from functools import cached_property
from typing import Any, Literal

Kind = Literal["int", "str", "bool", "datetime", "float"]

API_PREFIX = "/api/v5/objects/"

DEFAULT_BUSINESS_UNIT_ID = "0Uv000000000001AAA"

DEFAULT_PAGE_TOKEN_RECORD_CAP = 100_000

PAGE_TOKEN_TTL = timedelta(hours=4)

DEFAULT_LIMIT = 200

MAX_LIMIT = 1000

MAX_FILTERED_FIELDS = 3

MSG_CONCURRENT = "You have exceeded your concurrent request limit. Please wait, before trying again"

MSG_DAILY = "Daily API rate limit met"

WARNING_CHAIN_CAP = (
    "203;Record count for nextPageToken sequence has been exceeded. No page token returned."
)

WARNING_RECYCLE_BIN = "201;Record In Recycle Bin"

MSG_NOT_FOUND = "The requested record was not found."

UPSERT_PROPERTIES = frozenset({"matchEmail", "prospect", "fields", "secondaryDeletedSearch"})

_BU_ID = re.compile(r"^0Uv[a-zA-Z0-9]{12}(?:[a-zA-Z0-9]{3})?$")

_EMAIL = re.compile(
    r"^[^@\s,;<>()\[\]\"]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9-]+)+$"
)

_CUSTOM_FIELD = re.compile(r"^[A-Za-z][A-Za-z0-9_]*__c$")

PROSPECT_FIELDS: dict[str, Kind] = {
    "id": "int",
    "email": "str",
    "firstName": "str",
    "lastName": "str",
    "salutation": "str",
    "jobTitle": "str",
    "company": "str",
    "website": "str",
    "phone": "str",
    "fax": "str",
    "addressOne": "str",
    "addressTwo": "str",
    "city": "str",
    "state": "str",
    "zip": "str",
    "country": "str",
    "territory": "str",
    "score": "int",
    "grade": "str",
    "campaignId": "int",
    "salesforceCampaignId": "str",
    "prospectAccountId": "int",
    "profileId": "int",
    "lifecycleStageId": "int",
    "recentInteraction": "str",
    "convertedAt": "datetime",
    "convertedFromObjectName": "str",
    "convertedFromObjectType": "str",
    "emailBouncedAt": "datetime",
    "password": "str",
    "campaignParameter": "str",
    "contentParameter": "str",
    "mediumParameter": "str",
    "sourceParameter": "str",
    "termParameter": "str",
    "userId": "int",
    "assignedToId": "int",
    "salesforceId": "str",
    "salesforceLeadId": "str",
    "salesforceContactId": "str",
    "salesforceAccountId": "str",
    "salesforceOwnerId": "str",
    "salesforceUrl": "str",
    "salesforceLastSync": "datetime",
    "isDoNotEmail": "bool",
    "optedOut": "bool",
    "isDoNotCall": "bool",
    "isEmailHardBounced": "bool",
    "isReviewed": "bool",
    "isStarred": "bool",
    "doNotSell": "bool",
    "isDeleted": "bool",
    "lastActivityAt": "datetime",
    "firstActivityAt": "datetime",
    "firstAssignedAt": "datetime",
    "comments": "str",
    "notes": "str",
    "source": "str",
    "createdAt": "datetime",
    "updatedAt": "datetime",
    "createdById": "int",
    "updatedById": "int",
}

PROSPECT_READ_ONLY = frozenset(
    {
        # set by Salesforce's own connector
        "salesforceId",
        "salesforceLeadId",
        "salesforceContactId",
        "salesforceAccountId",
        "salesforceUrl",
        "salesforceLastSync",
        "salesforceCampaignId",
        # computed
        "grade",
        "doNotSell",
        "lifecycleStageId",
        "recentInteraction",
        "convertedAt",
        "emailBouncedAt",
        "password",
        "campaignParameter",
        "contentParameter",
        "mediumParameter",
        "sourceParameter",
        "termParameter",
        # system
        "id",
        "createdAt",
        "updatedAt",
        "createdById",
        "updatedById",
        "isDeleted",
        "assignedToId",
        "lastActivityAt",
        "firstActivityAt",
        "firstAssignedAt",
        "isEmailHardBounced",
    }
)

USER_FIELDS: dict[str, Kind] = {
    "id": "int",
    "email": "str",
    "firstName": "str",
    "lastName": "str",
    "username": "str",
    "jobTitle": "str",
    "role": "str",
    "roleName": "str",
    "salesforceId": "str",
    "isDeleted": "bool",
    "createdAt": "datetime",
    "updatedAt": "datetime",
    "createdById": "int",
    "updatedById": "int",
}

EMAIL_FIELDS: dict[str, Kind] = {
    "id": "int",
    "prospectId": "int",
    "name": "str",
    "subject": "str",
    "type": "str",
    "sentAt": "datetime",
    "listId": "int",
    "listEmailId": "int",
    "emailTemplateId": "int",
    "campaignId": "int",
    "isOperational": "bool",
    "clientType": "str",
    "createdById": "int",
    "updatedAt": "datetime",
}


@dataclass(frozen=True)
class _Spec:
    """What one collection accepts: fields, sortable fields, filterable fields."""

    name: str
    fields: dict[str, Kind]
    sortable: tuple[str, ...]
    filterable: frozenset[str]
    has_deleted: bool
    custom_fields: bool = False

    @cached_property
    def blank(self) -> dict[str, Any]:
        return {name: (False if kind == "bool" else None) for name, kind in self.fields.items()}

    @cached_property
    def booleans(self) -> tuple[str, ...]:
        return tuple(name for name, kind in self.fields.items() if kind == "bool")

    def kind(self, name: str) -> Kind | None:
        kind = self.fields.get(name)
        if kind is not None:
            return kind
        if self.custom_fields and _CUSTOM_FIELD.match(name):
            return "str"
        return None


PROSPECTS = _Spec(
    "prospects",
    PROSPECT_FIELDS,
    ("id", "createdAt", "updatedAt"),
    frozenset(
        {"id", "createdAt", "updatedAt", "lastActivityAt", "email", "userId", "assignedToId"}
    ),
    has_deleted=True,
    custom_fields=True,
)

USERS = _Spec(
    "users",
    USER_FIELDS,
    ("id", "createdAt", "updatedAt"),
    frozenset({"id", "createdAt", "updatedAt", "email"}),
    has_deleted=True,
)

EMAILS = _Spec(
    "emails",
    EMAIL_FIELDS,
    ("id", "sentAt"),
    frozenset({"id", "sentAt", "prospectId", "listEmailId"}),
    has_deleted=False,
)

_SUFFIXES: tuple[tuple[str, str], ...] = (
    ("GreaterThanOrEqualTo", "ge"),
    ("LessThanOrEqualTo", "le"),
    ("AfterOrEqualTo", "ge"),
    ("BeforeOrEqualTo", "le"),
    ("GreaterThan", "gt"),
    ("LessThan", "lt"),
    ("After", "gt"),
    ("Before", "lt"),
)

_RESERVED_PARAMS = frozenset({"fields", "limit", "orderBy", "deleted", "nextPageToken"})
