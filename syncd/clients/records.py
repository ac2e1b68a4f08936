"""Named Salesforce reads: the SOQL text of every query syncd makes, and wire -> domain mapping.

The runtime asks in domain words (`records_by_email`, `email_tasks`, `changed_records`, ...)
and gets domain values back (`CrmRecord`, `CrmUser`); no SOQL is written outside this module
(the simulators, which parse SOQL, aside). `IN (...)` lists go through ONE chunker,
`in_queries`, which keeps every query's URL under Salesforce's URI limit.

`CrmRecords.lookup` is the batched variant the pipeline's load stage uses: its queries ride in
`/composite` calls of up to 5 (one API call each, `SalesforceClient.query_many`). With
`composite=False` every query is a plain GET (`syncd preflight`, which only reads with GETs).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from syncd import errors
from syncd.clients.salesforce import (
    MAX_URI_BYTES,
    SalesforceClient,
    chunked_in_lists,
    parse_sf_datetime,
    soql_datetime,
    soql_in,
)
from syncd.domain.models import CrmRecord, CrmType, CrmUser, crm_type_of_id, sf_id_key
from syncd.domain.plan import mirror_value, parse_task_marker

SOQL_IN_BUDGET = MAX_URI_BYTES - 2_000  # room for the SELECT list and the rest of the URL
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

SelectFields = Callable[[CrmType], Sequence[str]]


# -- wire -> domain ------------------------------------------------------------------------------


def record_from(raw: Mapping[str, Any], crm_type: CrmType | None = None) -> CrmRecord:
    """A domain `CrmRecord` from a Salesforce Lead/Contact record.

    Raises ValueError when `Id` or `Email` has a type the API never sends.
    """
    for name in ("Id", "Email"):
        value = raw.get(name)
        if value is not None and not isinstance(value, str):
            raise ValueError(f"{name} is a {type(value).__name__}, not text")
    attrs = raw.get("attributes")
    kind = crm_type
    if kind is None and isinstance(attrs, Mapping) and attrs.get("type") in ("Lead", "Contact"):
        kind = CrmType(attrs["type"])
    if kind is None:
        kind = crm_type_of_id(str(raw["Id"])) or CrmType.LEAD
    fields = {k: v for k, v in raw.items() if k != "attributes"}

    def when(name: str) -> datetime:
        value = raw.get(name)
        if isinstance(value, str) and value:
            return parse_sf_datetime(value)
        return EPOCH

    return CrmRecord(
        type=kind,
        id=str(raw["Id"]),
        email=raw.get("Email"),
        fields=fields,
        owner_id=raw.get("OwnerId"),
        created_date=when("CreatedDate"),
        last_modified=when("LastModifiedDate"),
        is_converted=bool(raw.get("IsConverted")),
        converted_contact_id=raw.get("ConvertedContactId") or None,
        is_deleted=bool(raw.get("IsDeleted")),
    )


def readable_record(raw: Mapping[str, Any], crm_type: CrmType) -> CrmRecord:
    """`record_from`, with a malformed answer as a retriable API error of the caller's read.

    The record cannot be skipped (it may be the match that keeps a duplicate Lead from being
    created), so the reader waits and retries; nothing crashes or spins.
    """
    try:
        return record_from(raw, crm_type)
    except (KeyError, TypeError, ValueError) as exc:
        raise errors.RetriableAPIError(
            system="salesforce",
            status=200,
            code="BAD_RESPONSE",
            message=f"{crm_type.value} {str(raw.get('Id'))[:18]} cannot be read: {exc}",
        ) from None


# -- the one IN-chunker --------------------------------------------------------------------------


def in_queries(
    select: Sequence[str], sobject: str, field: str, values: Iterable[str], *, where: str = ""
) -> list[str]:
    """`SELECT select FROM sobject WHERE field IN (...) [AND where]`, one query per chunk of
    `values` small enough for the URI limit (no query at all for no values)."""
    names = ", ".join(select)
    extra = f" AND {where}" if where else ""
    return [
        f"SELECT {names} FROM {sobject} WHERE {soql_in(field, chunk)}{extra}"
        for chunk in chunked_in_lists(values, max_chars=SOQL_IN_BUDGET)
    ]


def in_query_count(values: Iterable[str]) -> int:
    """How many queries `in_queries` makes for `values` (for estimates)."""
    return sum(1 for _ in chunked_in_lists(values, max_chars=SOQL_IN_BUDGET))


async def merge_loser_count(salesforce: SalesforceClient, crm_type: CrmType) -> int:
    """Merge losers of `crm_type` still in the recycle bin (one `queryAll` COUNT)."""
    soql = f"SELECT COUNT() FROM {crm_type.value} WHERE IsDeleted = true AND MasterRecordId != null"
    return await salesforce.count(soql, include_deleted=True)


def ids_by_type(ids: Iterable[str]) -> dict[CrmType, list[str]]:
    """Lead and Contact ids apart (by key prefix), duplicates dropped, order kept."""
    out: dict[CrmType, list[str]] = {CrmType.LEAD: [], CrmType.CONTACT: []}
    for crm_id in ids:
        kind = crm_type_of_id(crm_id)
        if kind is not None and crm_id not in out[kind]:
            out[kind].append(crm_id)
    return out


def _emails(emails: Iterable[str | None]) -> list[str]:
    return sorted({e.strip() for e in emails if e and e.strip()})


@dataclass(frozen=True)
class RecordLookup:
    """The CRM records one batch needs, read together (see `CrmRecords.lookup`).

    `by_id` is keyed by `sf_id_key` and includes the Contacts of converted Leads; `by_email`
    holds every Contact and Lead with one of the emails asked for (converted ones too);
    `mirrored` the records whose mirror field names one of the prospect ids asked for.
    """

    by_id: Mapping[str, CrmRecord]
    by_email: tuple[CrmRecord, ...] = ()
    mirrored: tuple[CrmRecord, ...] = ()


class CrmRecords:
    """Named reads of Leads, Contacts, Tasks and Users over a `SalesforceClient`.

    `select` names the fields to read from Lead or Contact (the runtime's field map plus the
    mirror field); `mirror_field` is `sync.crm_link_field` (None: no mirror).
    """

    def __init__(
        self, salesforce: SalesforceClient, select: SelectFields, mirror_field: str | None = None
    ) -> None:
        self.salesforce = salesforce
        self._select = select
        self.mirror_field = mirror_field

    async def _run(self, soqls: Sequence[str], *, composite: bool) -> list[list[dict[str, Any]]]:
        if composite:
            return await self.salesforce.query_many(soqls) if soqls else []
        return [await self.salesforce.query_all(q) for q in soqls]

    async def _records(
        self, crm_type: CrmType, field: str, values: Sequence[str]
    ) -> list[CrmRecord]:
        soqls = in_queries(self._select(crm_type), crm_type.value, field, values)
        out: list[CrmRecord] = []
        for soql in soqls:
            async for raw in self.salesforce.query(soql):
                out.append(readable_record(raw, crm_type))
        return out

    async def records_by_ids(self, ids: Iterable[str]) -> dict[str, CrmRecord]:
        """Leads and Contacts by id (15 or 18 characters), keyed by `sf_id_key`."""
        out: dict[str, CrmRecord] = {}
        for kind, values in ids_by_type(ids).items():
            for rec in await self._records(kind, "Id", values):
                out[sf_id_key(rec.id)] = rec
        return out

    async def records_by_email(
        self,
        emails: Iterable[str | None],
        types: Sequence[CrmType] = (CrmType.CONTACT, CrmType.LEAD),
    ) -> list[CrmRecord]:
        """Every record of `types` (Contacts first by default) holding one of `emails`."""
        wanted = _emails(emails)
        out: list[CrmRecord] = []
        for kind in types:
            out.extend(await self._records(kind, "Email", wanted))
        return out

    async def records_mirroring(self, prospect_ids: Iterable[int]) -> list[CrmRecord]:
        """Contacts and Leads whose mirror field names one of `prospect_ids`."""
        if not self.mirror_field:
            return []
        named = sorted({str(pid) for pid in prospect_ids})
        out: list[CrmRecord] = []
        for kind in (CrmType.CONTACT, CrmType.LEAD):
            out.extend(await self._records(kind, self.mirror_field, named))
        return out

    async def lookup(
        self,
        ids: Iterable[str],
        emails: Iterable[str | None],
        mirrored: Iterable[int] = (),
        *,
        composite: bool = True,
    ) -> RecordLookup:
        """`records_by_ids`, `records_by_email` and `records_mirroring` in one go, plus the
        Contacts of the converted Leads found.

        With `composite` the queries ride in `/composite` calls of up to 5 (one API call each)
        instead of one call per query.
        """
        wanted = _emails(emails)
        mirror = self.mirror_field
        named = sorted({str(pid) for pid in mirrored}) if mirror else []
        jobs: list[tuple[CrmType, str]] = []  # (type, what the query looks up) per query
        soqls: list[str] = []

        def add(kind: CrmType, what: str, field: str, values: Sequence[str]) -> None:
            for q in in_queries(self._select(kind), kind.value, field, values):
                jobs.append((kind, what))
                soqls.append(q)

        for kind, values in ids_by_type(ids).items():
            add(kind, "id", "Id", values)
        for kind in (CrmType.CONTACT, CrmType.LEAD):
            add(kind, "email", "Email", wanted)
            if mirror:
                add(kind, "mirror", mirror, named)
        by_id: dict[str, CrmRecord] = {}
        candidates: list[CrmRecord] = []
        mirrors: list[CrmRecord] = []
        results = await self._run(soqls, composite=composite)
        for (kind, what), rows in zip(jobs, results, strict=True):
            for raw in rows:
                rec = readable_record(raw, kind)
                if what == "email":
                    candidates.append(rec)
                elif what == "mirror":
                    mirrors.append(rec)
                else:
                    by_id[sf_id_key(rec.id)] = rec
        converted = [
            r.converted_contact_id
            for r in [*by_id.values(), *candidates, *mirrors]
            if r.is_converted and r.converted_contact_id
        ]
        missing = [c for c in converted if sf_id_key(c) not in by_id]
        if missing:
            by_id.update(await self.records_by_ids(missing))
        return RecordLookup(by_id=by_id, by_email=tuple(candidates), mirrored=tuple(mirrors))

    async def records_with_mirror(self) -> dict[int, list[CrmRecord]]:
        """Every Contact and Lead whose mirror field is set, by the prospect id it names."""
        out: dict[int, list[CrmRecord]] = {}
        field = self.mirror_field
        if not field:
            return out
        for crm_type in (CrmType.CONTACT, CrmType.LEAD):
            select = ", ".join(self._select(crm_type))
            soql = f"SELECT {select} FROM {crm_type.value} WHERE {field} != null"
            async for raw in self.salesforce.query(soql):
                record = record_from(raw, crm_type)
                pid = mirror_value(record.fields.get(field))
                if pid is not None:
                    out.setdefault(pid, []).append(record)
        return out

    async def existing_ids(self, crm_ids: Iterable[str]) -> set[str]:
        """Which of `crm_ids` name a live Lead or Contact (as 15-character keys)."""
        found: set[str] = set()
        for kind, wanted in ids_by_type(crm_ids).items():
            for soql in in_queries(["Id"], kind.value, "Id", wanted):
                found.update([str(r["Id"])[:15] async for r in self.salesforce.query(soql)])
        return found

    async def email_known(self, email: str) -> bool:
        """Whether a Contact or Lead holds `email` (one row read at most per object)."""
        for kind in (CrmType.CONTACT, CrmType.LEAD):
            soql = f"SELECT Id FROM {kind.value} WHERE {soql_in('Email', [email])} LIMIT 1"
            if await self.salesforce.query_all(soql):
                return True
        return False

    async def email_tasks(self, who_ids: Iterable[str]) -> dict[tuple[int, str], str]:
        """Existing email Tasks of these records: (Pardot email id, `sf_id_key(WhoId)`) -> Task id.

        `Task.Description` cannot be filtered in SOQL, so Tasks are selected by `WhoId` and
        `TaskSubtype` and the marker is matched here.
        """
        out: dict[tuple[int, str], str] = {}
        soqls = in_queries(
            ["Id", "WhoId", "Description"], "Task", "WhoId", sorted(set(who_ids)),
            where="TaskSubtype = 'Email'",
        )  # fmt: skip
        for soql in soqls:
            async for raw in self.salesforce.query(soql):
                email_id = parse_task_marker(raw.get("Description"))
                if email_id is not None and raw.get("WhoId"):
                    out[(email_id, sf_id_key(str(raw["WhoId"])))] = str(raw["Id"])
        return out

    async def users(self) -> dict[str, CrmUser]:
        """Every Salesforce User, by id."""
        out: dict[str, CrmUser] = {}
        async for r in self.salesforce.query("SELECT Id, Username, IsActive FROM User"):
            out[r["Id"]] = CrmUser(
                id=r["Id"], username=r.get("Username"), is_active=bool(r.get("IsActive"))
            )
        return out

    def changed_records(
        self, crm_type: CrmType, since: datetime, until: datetime
    ) -> AsyncIterator[dict[str, Any]]:
        """Raw records of `crm_type` whose `SystemModstamp` is in [since, until), oldest first
        (ties by Id): the CRM change feed's read. Rows stay raw: the feed keeps snapshots."""
        fields = ", ".join(self._select(crm_type))
        soql = (
            f"SELECT {fields} FROM {crm_type.value} "
            f"WHERE SystemModstamp >= {soql_datetime(since)} "
            f"AND SystemModstamp < {soql_datetime(until)} "
            "ORDER BY SystemModstamp, Id"
        )
        return self.salesforce.query(soql)

    def compact_records(
        self, crm_type: CrmType, names: Sequence[str]
    ) -> AsyncIterator[dict[str, Any]]:
        """Every record of `crm_type`, only the fields `names` (raw rows, streamed)."""
        return self.salesforce.query(f"SELECT {', '.join(names)} FROM {crm_type.value}")
