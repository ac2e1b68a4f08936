"""Field values by kind: what counts as blank, the canonical form to compare, the form to write.

Both APIs spell the same value differently: Pardot gives `"10"` where Salesforce gives `10.0`,
`"2024-05-01T10:22:33-04:00"` where Salesforce gives `"2024-05-01T14:22:33.000+0000"`, an email
in another case, a name with a trailing space. `canonical` maps all spellings of one value to
one JSON-serialisable value, so an echo of our own write never looks like a change (and never
causes a write). `coerce` gives the value to send; `canonical(coerce(v)) == canonical(v)` always.

Kinds: str, email, int, float, bool, datetime, date. Values that do not parse as their kind are
kept as trimmed text (never dropped, never an exception): a bad value is still a value.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Final

__all__ = [
    "KINDS",
    "UNKNOWN_PLACEHOLDER",
    "Scalar",
    "canonical",
    "coerce",
    "is_blank",
    "parse_datetime",
]

Scalar = str | int | float | bool | None

KINDS: Final = frozenset({"str", "email", "int", "float", "bool", "datetime", "date"})

# What a Lead gets for a required field the prospect has no value for (Salesforce requires
# LastName and Company). It is a blank for comparisons, so it is never copied back to Pardot.
UNKNOWN_PLACEHOLDER: Final = "[[unknown]]"

_TRUE: Final = frozenset({"true", "1", "yes", "y", "on", "t"})
_FALSE: Final = frozenset({"false", "0", "no", "n", "off", "f"})


def _text(value: Any) -> str:
    if isinstance(value, list | tuple | set | frozenset):
        # Multi-select values: order-insensitive, Salesforce's ';' spelling.
        return ";".join(sorted(_text(v) for v in value if not _blank_text(_text(v))))
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value).strip()


def _blank_text(text: str) -> bool:
    return text == "" or text.lower() == UNKNOWN_PLACEHOLDER


def parse_datetime(value: Any) -> datetime | None:
    """Parse an API datetime (ISO 8601, `Z`, `+0000`, or a `datetime`) to an aware UTC value.

    Naive values are taken as UTC. Returns None when the value is not a datetime.
    """
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, date):
        parsed = datetime(value.year, value.month, value.day, tzinfo=UTC)
    elif isinstance(value, str):
        text = value.strip()
        # Both APIs send the extended form (2024-05-01...). Python also reads the basic form
        # (20240501), which would turn a number's text into a date: "73930201" read back as
        # 7393-02-01 made an echo of our own write look like an edit.
        if len(text) < 10 or text[4:5] != "-":
            return None
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            return None
    else:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def _number(value: Any) -> int | float | str:
    """Canonical number: an int when integral, else a float; unparseable -> trimmed text."""
    if isinstance(value, bool):
        return int(value)
    text = repr(value) if isinstance(value, float) else _text(value)
    try:
        number = Decimal(text)
    except (InvalidOperation, ValueError):
        return text
    if not number.is_finite():
        return text
    if number == number.to_integral_value():
        return int(number)
    return float(number)


def _bool(value: Any) -> bool | str:
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float) and value in (0, 1):
        return bool(value)
    text = _text(value)
    if text.lower() in _TRUE:
        return True
    if text.lower() in _FALSE:
        return False
    return text


def _datetime_text(value: Any) -> str:
    parsed = parse_datetime(value)
    if parsed is None:
        return _text(value)
    # Whole seconds: Pardot keeps seconds, Salesforce milliseconds; comparing at the coarser
    # precision stops a round trip through Pardot from looking like an edit.
    return parsed.replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def _date_text(value: Any) -> str:
    if isinstance(value, date) and not isinstance(value, datetime):
        return value.isoformat()
    text = _text(value)
    if len(text) == 10:
        try:
            return date.fromisoformat(text).isoformat()
        except ValueError:
            return text
    parsed = parse_datetime(value)
    return parsed.date().isoformat() if parsed is not None else text


def is_blank(value: Any) -> bool:
    """True for None, empty or whitespace-only text, empty lists, and `[[unknown]]`.

    `False` and `0` are values, not blanks: clearing a checkbox is an edit.
    """
    if value is None:
        return True
    if isinstance(value, str):
        return _blank_text(value.strip())
    if isinstance(value, list | tuple | set | frozenset):
        return _blank_text(_text(value))
    return False


def canonical(kind: str, value: Any) -> Scalar:
    """The comparable, JSON-serialisable form of `value` for its kind; None when blank."""
    if is_blank(value):
        return None
    if kind == "email":
        return _text(value).lower()
    if kind in ("int", "float"):
        return _number(value)
    if kind == "bool":
        return _bool(value)
    if kind == "datetime":
        return _datetime_text(value)
    if kind == "date":
        return _date_text(value)
    return _text(value)


def coerce(kind: str, value: Any) -> Scalar:
    """The value to send to either API for its kind; None when blank.

    Text is trimmed (emails keep their case), numbers become numbers, datetimes ISO 8601 UTC
    (`2024-05-01T14:22:33Z`), dates `YYYY-MM-DD`.
    """
    if is_blank(value):
        return None
    if kind == "email":
        return _text(value)
    if kind == "int":
        return _number(value)
    if kind == "float":
        number = _number(value)
        return float(number) if isinstance(number, int) else number
    return canonical(kind, value)
