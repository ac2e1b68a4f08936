"""SOQL parser and evaluator: the subset the Salesforce simulator serves, table-driven."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from syncd.simulators import soql

LEAD = soql.ObjectInfo(
    "Lead",
    {
        f.name.lower(): f
        for f in (
            soql.FieldInfo("Id", "id"),
            soql.FieldInfo("Email", "email"),
            soql.FieldInfo("LastName", "string"),
            soql.FieldInfo("Company", "string"),
            soql.FieldInfo("IsConverted", "boolean"),
            soql.FieldInfo("pi__score__c", "double"),
            soql.FieldInfo("SystemModstamp", "datetime"),
            soql.FieldInfo("ConvertedDate", "date"),
            soql.FieldInfo("Description", "textarea", filterable=False),
        )
    },
)
OBJECTS = {"lead": LEAD}


class ListSource:
    """A plain record list with the same indexes the simulator offers (Id, Email, modstamp)."""

    def __init__(self, records: list[dict[str, Any]]) -> None:
        self.rows = {r["Id"]: r for r in records}
        self.index_calls = 0

    def ids(self) -> Iterable[str]:
        return self.rows.keys()

    def get(self, record_id: str) -> Mapping[str, Any] | None:
        return self.rows.get(record_id)

    def lookup(self, field: str, values: Iterable[Any]) -> set[str] | None:
        self.index_calls += 1
        if field == "Id":  # keys are the 15-character id form
            wanted = set(values)
            return {i for i in self.rows if i[:15] in wanted}
        if field == "Email":
            wanted = set(values)
            return {i for i, r in self.rows.items() if (r["Email"] or "").casefold() in wanted}
        return None

    def range(
        self, field: str, low: Any, low_inc: bool, high: Any, high_inc: bool
    ) -> list[str] | None:
        if field != "SystemModstamp":
            return None
        self.index_calls += 1
        out = []
        for rid, r in sorted(self.rows.items(), key=lambda p: (p[1]["SystemModstamp"], p[0])):
            v = r["SystemModstamp"]
            if low is not None and (v < low or (v == low and not low_inc)):
                continue
            if high is not None and (v > high or (v == high and not high_inc)):
                continue
            out.append(rid)
        return out


T0 = datetime(2024, 5, 1, tzinfo=UTC)


def _id(n: int) -> str:
    ident = soql.id18(f"00Q5g0000000{n:03d}")
    assert ident is not None
    return ident


RECORDS = [
    {"Id": _id(1), "Email": "Ann@Example.com", "LastName": "Ann", "Company": "Acme",
     "IsConverted": False, "pi__score__c": 10.0, "SystemModstamp": T0, "ConvertedDate": None},
    {"Id": _id(2), "Email": "bob@example.com", "LastName": "Bob", "Company": "Bob's BBQ",
     "IsConverted": True, "pi__score__c": 55.5, "SystemModstamp": T0 + timedelta(hours=1),
     "ConvertedDate": date(2024, 5, 2)},
    {"Id": _id(3), "Email": None, "LastName": "Cy", "Company": "100%_Pure",
     "IsConverted": False, "pi__score__c": None, "SystemModstamp": T0 + timedelta(hours=2),
     "ConvertedDate": None},
    {"Id": _id(4), "Email": "dee@other.org", "LastName": "dee", "Company": "Acme",
     "IsConverted": False, "pi__score__c": 0.0, "SystemModstamp": T0 + timedelta(hours=1),
     "ConvertedDate": None},
]  # fmt: skip


def run(text: str, records: list[dict[str, Any]] | None = None) -> list[str]:
    bound = soql.bind(soql.parse(text), OBJECTS)
    ids = soql.execute(bound, ListSource(records if records is not None else RECORDS))
    by_id = {r["Id"]: r["LastName"] for r in RECORDS}
    return [by_id[i] for i in ids]


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        ("Email = 'ann@example.com'", ["Ann"]),  # string = is case-insensitive
        ("Email = 'ANN@EXAMPLE.COM'", ["Ann"]),
        ("Email != 'ann@example.com'", ["Bob", "Cy", "dee"]),
        ("Email <> 'ann@example.com'", ["Bob", "Cy", "dee"]),
        ("Email = null", ["Cy"]),
        ("Email != NULL", ["Ann", "Bob", "dee"]),
        ("Email IN ('BOB@example.com', 'dee@other.org', 'nobody@x.y')", ["Bob", "dee"]),
        ("Email NOT IN ('bob@example.com')", ["Ann", "Cy", "dee"]),
        ("Email LIKE '%@example.com'", ["Ann", "Bob"]),
        ("Email LIKE 'a__@%'", ["Ann"]),
        ("Company LIKE '100\\%\\_%'", ["Cy"]),
        ("Company LIKE '100%'", ["Cy"]),
        ("Company = 'Bob\\'s BBQ'", ["Bob"]),
        ("IsConverted = true", ["Bob"]),
        ("IsConverted = FALSE AND Company = 'acme'", ["Ann", "dee"]),
        ("pi__score__c > 5", ["Ann", "Bob"]),
        ("pi__score__c >= 0 AND pi__score__c < 50.5", ["Ann", "dee"]),
        ("pi__score__c = null", ["Cy"]),
        ("SystemModstamp > 2024-05-01T00:00:00Z", ["Bob", "Cy", "dee"]),
        ("SystemModstamp >= 2024-05-01T01:00:00.000Z", ["Bob", "Cy", "dee"]),
        ("SystemModstamp >= 2024-05-01T02:00:00+01:00", ["Bob", "Cy", "dee"]),
        ("SystemModstamp < 2024-04-30T21:00:01-03:00", ["Ann"]),
        ("SystemModstamp >= 2024-05-01T01:00:00Z AND SystemModstamp < 2024-05-01T02:00:00Z",
         ["Bob", "dee"]),
        ("ConvertedDate = 2024-05-02", ["Bob"]),
        ("ConvertedDate > 2024-01-01", ["Bob"]),
        ("NOT (Company = 'Acme' OR IsConverted = true)", ["Cy"]),
        ("(Email = 'ann@example.com' OR Email = 'bob@example.com') AND IsConverted = false",
         ["Ann"]),
        (f"Id = '{_id(2)}'", ["Bob"]),
        (f"Id = '{_id(2)[:15]}'", ["Bob"]),  # 15-char ids match their 18-char form
        (f"Id IN ('{_id(1)}', '{_id(4)}')", ["Ann", "dee"]),
        (f"Id != '{_id(1)}'", ["Bob", "Cy", "dee"]),
    ],
)  # fmt: skip
def test_where(where: str, expected: list[str]) -> None:
    # Without ORDER BY the order is unspecified (as in Salesforce): compare as sets.
    assert sorted(run(f"SELECT Id FROM Lead WHERE {where}")) == sorted(expected)


@pytest.mark.parametrize(
    ("tail", "expected"),
    [
        ("ORDER BY LastName", ["Ann", "Bob", "Cy", "dee"]),  # case-insensitive ordering
        ("ORDER BY LastName DESC", ["dee", "Cy", "Bob", "Ann"]),
        ("ORDER BY pi__score__c", ["Cy", "dee", "Ann", "Bob"]),  # ASC: nulls first by default
        ("ORDER BY pi__score__c NULLS LAST", ["dee", "Ann", "Bob", "Cy"]),
        ("ORDER BY pi__score__c DESC", ["Bob", "Ann", "dee", "Cy"]),  # DESC: nulls last
        ("ORDER BY pi__score__c DESC NULLS FIRST", ["Cy", "Bob", "Ann", "dee"]),
        ("ORDER BY SystemModstamp, LastName DESC", ["Ann", "dee", "Bob", "Cy"]),
        ("ORDER BY SystemModstamp DESC, LastName", ["Cy", "Bob", "dee", "Ann"]),
        ("ORDER BY LastName LIMIT 2", ["Ann", "Bob"]),
        ("ORDER BY LastName LIMIT 2 OFFSET 1", ["Bob", "Cy"]),
        ("LIMIT 1", ["Ann"]),
        ("LIMIT 0", []),
        ("WHERE SystemModstamp >= 2024-05-01T01:00:00Z ORDER BY SystemModstamp LIMIT 2",
         ["Bob", "dee"]),
    ],
)  # fmt: skip
def test_order_limit(tail: str, expected: list[str]) -> None:
    assert run(f"select Id from lead {tail}") == expected


def test_count_and_canonical_names() -> None:
    q = soql.bind(soql.parse("SELECT COUNT() FROM lead WHERE isconverted = false"), OBJECTS)
    assert q.count and q.sobject == "Lead"
    assert len(soql.execute(q, ListSource(RECORDS))) == 3
    q = soql.bind(soql.parse("SeLeCt id, EMAIL, Pi__Score__C FrOm LEAD"), OBJECTS)
    assert q.fields == ("Id", "Email", "pi__score__c")


def test_indexes_are_used_for_id_email_and_modstamp() -> None:
    for where in (
        "Email IN ('a@b.c')",
        f"Id = '{_id(1)}'",
        "SystemModstamp > 2024-01-01T00:00:00Z",
    ):
        source = ListSource(RECORDS)
        soql.execute(soql.bind(soql.parse(f"SELECT Id FROM Lead WHERE {where}"), OBJECTS), source)
        assert source.index_calls == 1, where


@pytest.mark.parametrize(
    "text",
    [
        "",
        "SELECT FROM Lead",
        "SELECT Id Lead",
        "SELECT Id, FROM Lead",
        "SELECT Id FROM Lead WHERE",
        "SELECT Id FROM Lead WHERE Email",
        "SELECT Id FROM Lead WHERE Email = ",
        "SELECT Id FROM Lead WHERE Email = 'unterminated",
        'SELECT Id FROM Lead WHERE Email = "double"',
        "SELECT Id FROM Lead WHERE Email == 'x'",
        "SELECT Id FROM Lead WHERE (Email = 'x'",
        "SELECT Id FROM Lead WHERE Email IN ()",
        "SELECT Id FROM Lead WHERE Email IN 'x'",
        "SELECT Id FROM Lead WHERE Email NOT 'x'",
        "SELECT Id FROM Lead WHERE Email LIKE 5",
        "SELECT Id FROM Lead LIMIT",
        "SELECT Id FROM Lead LIMIT -1",
        "SELECT Id FROM Lead LIMIT 1.5",
        "SELECT Id FROM Lead ORDER Id",
        "SELECT Id FROM Lead ORDER BY Id NULLS",
        "SELECT Id FROM Lead GROUP BY Id",
        "SELECT Id FROM Lead WHERE SystemModstamp > TODAY",
        "SELECT Id FROM Lead WHERE SystemModstamp > 2024-13-01T00:00:00Z",
        "SELECT Id FROM Lead, Contact",
        "SELECT COUNT(Id) FROM Lead",
        "SELECT Id FROM Lead WHERE Email = 'a\\qb'",  # illegal escape
        "SELECT Id FROM Lead WHERE Email = 'a\\_b'",  # \\_ is for LIKE only
        "SELECT Id FROM Lead WHERE Email = 'a\\u12'",
        "SELECT Id FROM Lead WHERE Email = 'trailing\\'",
        "SELECT Id FROM Lead extra",
        "SELECT Id FROM Lead WHERE Email = 'x' ;",
        "SELECT Id FROM Lead WHERE Email = 'x' LIMIT 5 ORDER BY Id",
        "SELECT Id FROM Lead WHERE " + "Email = 'x' OR " * 10_000 + "Email = 'y'",  # > 100k chars
    ],
)
def test_malformed(text: str) -> None:
    with pytest.raises(soql.SoqlError) as info:
        soql.bind(soql.parse(text), OBJECTS)
    assert info.value.code == "MALFORMED_QUERY", info.value.message


@pytest.mark.parametrize(
    ("text", "code", "fragment"),
    [
        ("SELECT Foo FROM Lead", "INVALID_FIELD", "No such column 'Foo' on entity 'Lead'"),
        ("SELECT Id FROM Lead WHERE Foo = 1", "INVALID_FIELD", "No such column 'Foo'"),
        ("SELECT Id FROM Lead ORDER BY Foo", "INVALID_FIELD", "No such column 'Foo'"),
        ("SELECT Id FROM Leed", "INVALID_TYPE", "sObject type 'Leed' is not supported"),
        ("SELECT Owner.Name FROM Lead", "INVALID_FIELD", "Didn't understand relationship 'Owner'"),
        ("SELECT Id FROM Lead WHERE Description = 'x'", "INVALID_FIELD",
         "field 'Description' can not be filtered in a query call"),
        ("SELECT Id FROM Lead WHERE Email = 5", "INVALID_FIELD", "must be of type string"),
        ("SELECT Id FROM Lead WHERE IsConverted = 'true'", "INVALID_FIELD",
         "must be of type boolean and should not be enclosed in quotes"),
        ("SELECT Id FROM Lead WHERE SystemModstamp > '2024-01-01'", "INVALID_FIELD",
         "must be of type dateTime"),
        ("SELECT Id FROM Lead WHERE SystemModstamp > 2024-01-01", "INVALID_FIELD",
         "must be of type dateTime"),
        ("SELECT Id FROM Lead WHERE ConvertedDate > 2024-01-01T00:00:00Z", "INVALID_FIELD",
         "must be of type date"),
        ("SELECT Id FROM Lead WHERE Id = 'nope'", "INVALID_QUERY_FILTER_OPERATOR",
         "invalid ID field: nope"),
        ("SELECT Id FROM Lead WHERE IsConverted > true", "INVALID_QUERY_FILTER_OPERATOR",
         "invalid operator"),
        ("SELECT Id FROM Lead WHERE pi__score__c LIKE '1%'", "INVALID_QUERY_FILTER_OPERATOR",
         "invalid operator"),
        ("SELECT Id, id FROM Lead", "DUPLICATE_FIELD", "duplicate field selected: Id"),
        ("SELECT Id FROM Lead OFFSET 2001", "NUMBER_OUTSIDE_VALID_RANGE", "2000"),
    ],
)  # fmt: skip
def test_schema_errors(text: str, code: str, fragment: str) -> None:
    with pytest.raises(soql.SoqlError) as info:
        soql.bind(soql.parse(text), OBJECTS)
    assert info.value.code == code
    assert fragment in info.value.message


def test_malformed_message_points_at_the_token() -> None:
    with pytest.raises(soql.SoqlError) as info:
        soql.parse("SELECT Id FROM Lead WHERE")
    assert "ERROR at Row:1:Column:26" in info.value.message
    assert "unexpected token: <EOF>" in info.value.message


@pytest.mark.parametrize(
    ("literal", "expected"),
    [
        ("2024-05-01T00:00:00Z", datetime(2024, 5, 1, tzinfo=UTC)),
        ("2024-05-01T00:00:00.000Z", datetime(2024, 5, 1, tzinfo=UTC)),
        ("2024-05-01T00:00:00.123Z", datetime(2024, 5, 1, 0, 0, 0, 123000, tzinfo=UTC)),
        ("2024-05-01T02:30:00+02:30", datetime(2024, 5, 1, tzinfo=UTC)),
        ("2024-04-30T19:00:00-05:00", datetime(2024, 5, 1, tzinfo=UTC)),
        ("2024-05-01T00:00:00+0000", datetime(2024, 5, 1, tzinfo=UTC)),
    ],
)
def test_datetime_literals(literal: str, expected: datetime) -> None:
    q = soql.bind(soql.parse(f"SELECT Id FROM Lead WHERE SystemModstamp = {literal}"), OBJECTS)
    assert isinstance(q.where, soql.Cond)
    assert q.where.value == expected
    assert q.where.value.tzinfo is not None
    assert q.where.value.utcoffset() == UTC.utcoffset(None)


@pytest.mark.parametrize(
    ("escaped", "decoded"),
    [
        ("a\\'b", "a'b"),
        ('a\\"b', 'a"b'),
        ("a\\\\b", "a\\b"),
        ("\\n\\N\\r\\R\\t\\T\\b\\B\\f\\F", "\n\n\r\r\t\t\b\b\f\f"),
        ("\\u00e9t\\u00C9", "\u00e9t\u00c9"),
        ("plain_100%", "plain_100%"),  # wildcards are plain characters outside LIKE
    ],
)
def test_string_escapes(escaped: str, decoded: str) -> None:
    q = soql.bind(soql.parse(f"SELECT Id FROM Lead WHERE LastName = '{escaped}'"), OBJECTS)
    assert isinstance(q.where, soql.Cond)
    assert q.where.value == decoded.casefold()


@given(st.text(max_size=60))
def test_escaped_email_round_trips(value: str) -> None:
    """Any string escaped per B.3 and put in `Email = '...'` parses back to exactly itself."""
    query = soql.parse(f"SELECT Id FROM Lead WHERE Email = '{soql.escape_string(value)}'")
    assert isinstance(query.where, soql.Compare)
    assert isinstance(query.where.value, soql.StrLit)
    decoded = "".join(ch for ch, _ in soql.decode_string(query.where.value.body))
    assert decoded == value
    # and the bound query matches a record holding that exact value
    record = {**RECORDS[0], "Email": value or None}
    bound = soql.bind(query, OBJECTS)
    assert soql.execute(bound, ListSource([record])) == ([record["Id"]] if value else [])


def test_id18_checksum() -> None:
    # a well-known example: 15-char 001A0000006Vm9r -> 18-char 001A0000006Vm9rIAC
    assert soql.id18("001A0000006Vm9r") == "001A0000006Vm9rIAC"
    assert soql.id18("001A0000006Vm9rIAC") == "001A0000006Vm9rIAC"
    assert soql.id18("short") is None


def test_large_in_list_over_many_records_uses_index() -> None:
    records = [
        {**RECORDS[0], "Id": soql.id18(f"00Q5g{n:010d}"), "Email": f"user{n}@example.com"}
        for n in range(50_000)
    ]
    source = ListSource(records)
    source.lookup = lambda field, values: (  # type: ignore[method-assign]
        {r["Id"] for r in records if r["Email"] in set(values)} if field == "Email" else None
    )
    emails = ", ".join(f"'USER{n}@example.com'" for n in range(0, 50_000, 250))
    bound = soql.bind(soql.parse(f"SELECT Id FROM Lead WHERE Email IN ({emails})"), OBJECTS)
    assert len(soql.execute(bound, source)) == 200
