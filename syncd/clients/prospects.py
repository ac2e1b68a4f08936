"""Pardot v5 wire -> domain: prospects and users as the runtime's domain values."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from syncd.domain.fieldmap import PARDOT_LINK_FIELDS
from syncd.domain.models import PardotUser, Prospect
from syncd.domain.values import parse_datetime

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def prospect_from(raw: Mapping[str, Any]) -> Prospect:
    """A domain `Prospect` from a Pardot v5 record (the feed's snapshot or a GET).

    Raises ValueError naming the field when the record's id, email or userId has a type the
    API never sends (the caller parks that one record instead of failing its batch).
    """
    updated = parse_datetime(raw.get("updatedAt")) or EPOCH
    user = raw.get("userId")
    email = raw.get("email")
    if email is not None and not isinstance(email, str):
        raise ValueError(f"email is a {type(email).__name__}, not text")
    if isinstance(user, bool) or not isinstance(user, int | str | None):
        raise ValueError(f"userId is a {type(user).__name__}, not a number")
    try:
        user_id = int(user) if user not in (None, "") else None
    except ValueError:
        raise ValueError(f"userId {str(user)[:40]!r} is not a number") from None
    return Prospect(
        id=int(raw["id"]),
        email=email,
        user_id=user_id,
        fields={k: v for k, v in raw.items()},
        updated_at=updated,
        crm_id=native_link(raw),
        is_deleted=bool(raw.get("isDeleted")),
    )


def native_link(raw: Mapping[str, Any]) -> str | None:
    """The CRM record Salesforce's own connector linked the prospect to, if any: a matching
    hint only (syncd never writes these read-only fields; its own link lives in the store)."""
    for name in PARDOT_LINK_FIELDS:
        value = raw.get(name)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None


def pardot_user_from(raw: Mapping[str, Any]) -> PardotUser:
    """A domain `PardotUser` from a Pardot v5 user record (`salesforceId` is its CRM username)."""
    return PardotUser(
        id=int(raw["id"]),
        email=raw.get("email"),
        salesforce_id=raw.get("salesforceId") or None,
        is_deleted=bool(raw.get("isDeleted")),
    )
