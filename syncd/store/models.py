"""Store rows as frozen values: what the repositories take and return.

Every datetime here is timezone-aware UTC, in and out, on SQLite and PostgreSQL alike. A naive
datetime handed to the store is a bug and raises `ValueError` (see `tables.UTCDateTime`).
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


class Reason(enum.IntFlag):
    """Why an item is queued. Stored as a bit set so that coalescing merges with one SQL `|`."""

    PARDOT_CHANGE = 1
    CRM_CHANGE = 2
    CRM_DELETE = 4
    EMAIL_SENT = 8
    REPROCESS = 16

    @classmethod
    def names(cls, bits: int) -> frozenset[str]:
        """The lower-case names of the reasons set in `bits` (`{"pardot_change", ...}`)."""
        return _reason_names(int(bits))

    @classmethod
    def from_names(cls, names: Iterable[str]) -> Reason:
        """Parse lower-case names back into a bit set; an unknown name raises ValueError."""
        bits = cls(0)
        for name in names:
            try:
                bits |= cls[name.upper()]
            except KeyError:
                raise ValueError(f"unknown queue reason {name!r}") from None
        return bits


@functools.lru_cache(maxsize=64)
def _reason_names(bits: int) -> frozenset[str]:
    # Cached: enum iteration is slow, and a claim decodes hundreds of rows.
    return frozenset(r.name.lower() for r in Reason if r.name and bits & r.value)


class State(enum.StrEnum):
    """A queue row's state. Completed items are deleted: the audit keeps what happened."""

    PENDING = "pending"
    CLAIMED = "claimed"
    ERROR = "error"


def prospect_key(prospect_id: int) -> str:
    return f"p:{prospect_id}"


def crm_key(crm_id: str) -> str:
    return f"c:{crm_id}"


def email_key(email: str) -> str:
    return f"e:{email.strip().lower()}"


@dataclass(frozen=True, slots=True, kw_only=True)
class NewItem:
    """A change to queue. Build it with `for_prospect`, `for_crm` or `for_email`.

    `key` names the unit of work: items with one key coalesce, and two workers never hold
    items of one key at once. `snapshot` is the newest payload the poller saw (or None).
    `first_seen_at` is when the change was first observed (for latency); None means `now`.
    """

    key: str
    reasons: Reason
    prospect_id: int | None = None
    crm_id: str | None = None
    email: str | None = None
    snapshot: Mapping[str, Any] | None = None
    first_seen_at: datetime | None = None

    @classmethod
    def for_prospect(
        cls,
        prospect_id: int,
        reasons: Reason,
        *,
        crm_id: str | None = None,
        email: str | None = None,
        snapshot: Mapping[str, Any] | None = None,
        first_seen_at: datetime | None = None,
    ) -> NewItem:
        """An item keyed by the Pardot prospect id (the usual case)."""
        return cls(
            key=prospect_key(prospect_id),
            reasons=reasons,
            prospect_id=prospect_id,
            crm_id=crm_id,
            email=email,
            snapshot=snapshot,
            first_seen_at=first_seen_at,
        )

    @classmethod
    def for_crm(
        cls,
        crm_id: str,
        reasons: Reason,
        *,
        email: str | None = None,
        snapshot: Mapping[str, Any] | None = None,
        first_seen_at: datetime | None = None,
    ) -> NewItem:
        """An item for a CRM record with no known prospect (key by the prospect when linked)."""
        return cls(
            key=crm_key(crm_id),
            reasons=reasons,
            crm_id=crm_id,
            email=email,
            snapshot=snapshot,
            first_seen_at=first_seen_at,
        )

    @classmethod
    def for_email(cls, email: str, reasons: Reason = Reason.REPROCESS) -> NewItem:
        """An item naming an email address (`syncd reprocess --email`); the key is lower-cased."""
        return cls(key=email_key(email), reasons=reasons, email=email.strip())


@dataclass(frozen=True, slots=True, kw_only=True)
class QueueItem:
    """One queue row. `reasons` are lower-case names; `attempts` counts claims."""

    id: int
    key: str
    prospect_id: int | None
    crm_id: str | None
    email: str | None
    reasons: frozenset[str]
    snapshot: Mapping[str, Any] | None
    state: State
    attempts: int
    available_at: datetime
    first_seen_at: datetime
    enqueued_at: datetime
    updated_at: datetime
    lease_until: datetime | None = None
    claimed_by: str | None = None
    last_error_code: str | None = None
    last_error_message: str | None = None
    first_failed_at: datetime | None = None
    last_failed_at: datetime | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class QueueCounts:
    """The queue at a glance for `syncd status`."""

    pending: int
    due: int
    claimed: int
    error: int
    expired_leases: int
    oldest_pending_first_seen_at: datetime | None
    oldest_due_available_at: datetime | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Cursor:
    """A feed's position: the last timestamp read and the tie-break id at that timestamp.

    `extra` holds feed-specific state (JSON-serialisable), e.g. a paging token.
    """

    position: datetime
    last_id: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)
    updated_at: datetime | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Link:
    """A prospect's pairing with a CRM Lead or Contact, and the merge base.

    `base` maps each synced field to its last-synced value (the common ancestor of the
    three-way merge). `email` is stored lower-cased for lookup. `recycled_at`: since when the
    prospect is known to be in Pardot's recycle bin (None: it is not); a link written without
    it (the prospect synced again) clears it.
    """

    prospect_id: int
    crm_type: str  # "Lead" | "Contact"
    crm_id: str
    email: str | None
    base: Mapping[str, Any]
    synced_at: datetime
    crm_deleted: bool = False
    recycled_at: datetime | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Activity:
    """An email Task reservation: `pending` before the Task is created, `done` with its id."""

    email_id: int
    crm_id: str
    prospect_id: int | None
    state: str  # "pending" | "done"
    task_id: str | None
    reserved_at: datetime
    done_at: datetime | None
    held_until: datetime | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditLine:
    """One decision taken for a prospect: what changed, by which policy, and why."""

    at: datetime
    action: str
    prospect_id: int | None = None
    crm_id: str | None = None
    field: str | None = None
    old: Any = None
    new: Any = None
    policy: str | None = None
    reason: str | None = None
    detail: Mapping[str, Any] | None = None
    id: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class OrgUsage:
    """The org-wide API usage last seen (Salesforce `Sforce-Limit-Info`, Pardot limits)."""

    system: str
    used: int
    limit: int
    observed_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class Heartbeat:
    """A running syncd process: who it is and when it last said it was alive."""

    process_id: str
    host: str
    pid: int
    role: str
    started_at: datetime
    last_beat_at: datetime
