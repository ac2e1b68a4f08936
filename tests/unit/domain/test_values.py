"""Value normalisation: blanks, canonical forms per kind, coercion for writing."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from syncd.domain.values import KINDS, canonical, coerce, is_blank, parse_datetime


@pytest.mark.parametrize(
    ("value", "blank"),
    [
        pytest.param(None, True, id="none"),
        pytest.param("", True, id="empty"),
        pytest.param("   \t", True, id="whitespace"),
        pytest.param("[[unknown]]", True, id="unknown-placeholder"),
        pytest.param([], True, id="empty-list"),
        pytest.param(False, False, id="false-is-a-value"),
        pytest.param(0, False, id="zero-is-a-value"),
        pytest.param("x", False, id="text"),
    ],
)
def test_is_blank(value: Any, blank: bool) -> None:
    assert is_blank(value) is blank


@pytest.mark.parametrize(
    ("kind", "a", "b"),
    [
        pytest.param("str", " Jane ", "Jane", id="str-trimmed"),
        pytest.param("email", "Jane@ACME.example ", "jane@acme.example", id="email-case"),
        pytest.param("int", "10", 10.0, id="int-text-vs-float"),
        pytest.param("int", 10, "10.0", id="int-vs-float-text"),
        pytest.param("float", "2.50", 2.5, id="float-text"),
        pytest.param("bool", "true", True, id="bool-text"),
        pytest.param("bool", 0, False, id="bool-zero"),
        pytest.param(
            "datetime",
            "2024-05-01T10:22:33-04:00",
            "2024-05-01T14:22:33.000+0000",
            id="datetime-pardot-vs-salesforce",
        ),
        pytest.param(
            "datetime",
            datetime(2024, 5, 1, 14, 22, 33, 450000, tzinfo=UTC),
            "2024-05-01T14:22:33Z",
            id="datetime-subsecond",
        ),
        pytest.param("date", "2024-05-01", date(2024, 5, 1), id="date"),
        pytest.param("str", ["b", "a"], "a;b", id="multi-select"),
    ],
)
def test_same_value_in_both_spellings(kind: str, a: Any, b: Any) -> None:
    assert canonical(kind, a) == canonical(kind, b)


@pytest.mark.parametrize(
    ("kind", "a", "b"),
    [
        pytest.param("str", "Jane", "jane", id="str-case-matters"),
        pytest.param("email", "jane+x@acme.example", "jane@acme.example", id="email-plus"),
        pytest.param("email", "straße@acme.example", "strasse@acme.example", id="email-unicode"),
        pytest.param("int", 10, 10.5, id="int-fraction"),
        pytest.param("bool", False, None, id="false-vs-blank"),
        pytest.param("datetime", "2024-05-01T10:00:00Z", "2024-05-01T10:00:01Z", id="second"),
    ],
)
def test_different_values(kind: str, a: Any, b: Any) -> None:
    assert canonical(kind, a) != canonical(kind, b)


@pytest.mark.parametrize(
    ("kind", "value", "written"),
    [
        pytest.param("str", "  Acme ", "Acme", id="str"),
        pytest.param("email", " Jane@Acme.example", "Jane@Acme.example", id="email-keeps-case"),
        pytest.param("int", "42", 42, id="int"),
        pytest.param("int", "4.5", 4.5, id="int-keeps-fraction"),
        pytest.param("int", "n/a", "n/a", id="int-unparseable-kept"),
        pytest.param("float", 3, 3.0, id="float"),
        pytest.param("bool", "no", False, id="bool"),
        pytest.param("datetime", "2024-05-01T10:22:33-04:00", "2024-05-01T14:22:33Z", id="dt"),
        pytest.param("date", "2024-05-01T23:30:00-04:00", "2024-05-02", id="date-utc"),
        pytest.param("str", "", None, id="blank"),
    ],
)
def test_coerce(kind: str, value: Any, written: Any) -> None:
    assert coerce(kind, value) == written


def test_parse_datetime_naive_is_utc() -> None:
    assert parse_datetime("2024-05-01T10:00:00") == datetime(2024, 5, 1, 10, tzinfo=UTC)
    assert parse_datetime(
        datetime(2024, 5, 1, 12, tzinfo=timezone(timedelta(hours=2)))
    ) == datetime(2024, 5, 1, 10, tzinfo=UTC)
    assert parse_datetime("yesterday") is None


_values = st.one_of(
    st.none(),
    st.text(max_size=12),
    st.integers(min_value=-(10**12), max_value=10**12),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.datetimes(timezones=st.just(UTC)),
    st.dates(),
    st.lists(st.text(max_size=4), max_size=3),
)


@example(kind="date", value=73930201)  # once read back as 7393-02-01 (the basic ISO form)
@example(kind="datetime", value="73930201")
@given(kind=st.sampled_from(sorted(KINDS)), value=_values)
def test_writing_a_value_never_changes_it(kind: str, value: Any) -> None:
    """What we send reads back as the same value: an echo is never a change."""
    written = coerce(kind, value)
    assert canonical(kind, written) == canonical(kind, value)
    assert coerce(kind, written) == written
