"""A SOQL parser and evaluator for the subset a sync needs (used by the Salesforce simulator).

Supported: ``SELECT f1, f2 | COUNT() FROM Object [WHERE cond] [ORDER BY f [ASC|DESC]
[NULLS FIRST|LAST], ...] [LIMIT n] [OFFSET n]``. Conditions: ``= != <> < <= > >=``, ``IN`` /
``NOT IN (...)``, ``LIKE`` (``%`` and ``_``, case-insensitive), ``AND`` / ``OR`` / ``NOT`` and
parentheses; literals: strings with the SOQL backslash escapes, numbers, ``NULL``, ``TRUE`` /
``FALSE``, date-times (``2024-05-01T00:00:00Z``, ``.000``, ``+hh:mm`` offsets) and dates.
Anything else is a ``MALFORMED_QUERY``, as on the real server.

The module is pure: `parse` turns text into a `Query`; `bind` checks it against the object
schemas the caller supplies (unknown object: ``INVALID_TYPE``, unknown field: ``INVALID_FIELD``)
and `execute` runs it over a `RecordSource`, using its indexes (equality on ``Id`` / ``Email``,
ranges on ``SystemModstamp``) so filters over hundreds of thousands of records stay fast.
"""

from __future__ import annotations

import heapq
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, Protocol

MAX_QUERY_CHARS = 100_000
MAX_OFFSET = 2000

# ---------------------------------------------------------------------------------------------
# errors


class SoqlError(Exception):
    """A query the server rejects: `code` is the Salesforce errorCode, `message` its text."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


def _located(text: str, pos: int, detail: str) -> str:
    """The real server's error layout: the query line, a caret, row/column, the detail."""
    line_start = text.rfind("\n", 0, pos) + 1
    line_end = text.find("\n", pos)
    line = text[line_start : line_end if line_end >= 0 else len(text)]
    row = text.count("\n", 0, pos) + 1
    col = pos - line_start + 1
    return f"\n{line}\n{' ' * (col - 1)}^\nERROR at Row:{row}:Column:{col}\n{detail}"


# ---------------------------------------------------------------------------------------------
# tokens

_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<string>'(?:[^'\\]|\\.)*')
  | (?P<unterminated>'(?:[^'\\]|\\.)*\\?$)
  | (?P<datetime>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,3})?(?:Z|[+-]\d{2}:?\d{2}))
  | (?P<date>\d{4}-\d{2}-\d{2}(?![\dT]))
  | (?P<number>[+-]?\d+(?:\.\d+)?(?![\w.]))
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)
  | (?P<op><=|>=|!=|<>|=|<|>)
  | (?P<punct>[(),])
    """,
    re.VERBOSE | re.DOTALL,
)

_KEYWORDS = frozenset(
    {
        "select", "from", "where", "and", "or", "not", "in", "like", "null", "true", "false",
        "order", "by", "asc", "desc", "nulls", "first", "last", "limit", "offset", "count",
        "includes", "excludes", "group", "having", "with", "for", "using", "scope",
    }
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Token:
    kind: str  # string, datetime, date, number, ident, kw, op, punct, eof
    text: str
    pos: int
    value: Any = None


def tokenize(text: str) -> list[Token]:
    """Split `text` into tokens; keywords are lower-cased into kind ``kw``."""
    tokens: list[Token] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise SoqlError(
                "MALFORMED_QUERY", _located(text, pos, f"unexpected token: '{text[pos]}'")
            )
        kind = m.lastgroup or ""
        raw = m.group()
        if kind == "unterminated":
            raise SoqlError("MALFORMED_QUERY", _located(text, pos, f"unexpected token: {raw}"))
        if kind != "ws":
            tokens.append(_make_token(kind, raw, pos, text))
        pos = m.end()
    tokens.append(Token("eof", "<EOF>", len(text)))
    return tokens


def _make_token(kind: str, raw: str, pos: int, text: str) -> Token:
    if kind == "ident" and raw.lower() in _KEYWORDS:
        return Token("kw", raw.lower(), pos)
    if kind == "datetime":
        return Token(kind, raw, pos, _parse_datetime_literal(raw, pos, text))
    if kind == "date":
        try:
            return Token(kind, raw, pos, date.fromisoformat(raw))
        except ValueError:
            raise SoqlError(
                "MALFORMED_QUERY",
                _located(text, pos, f"line 1:{pos} no viable alternative at character '{raw}'"),
            ) from None
    if kind == "number":
        value: float | int = float(raw) if "." in raw else int(raw)
        return Token(kind, raw, pos, value)
    return Token(kind, raw, pos)


def _parse_datetime_literal(raw: str, pos: int, text: str) -> datetime:
    iso = raw[:-1] + "+00:00" if raw.endswith("Z") else raw
    if re.search(r"[+-]\d{4}$", iso):
        iso = iso[:-2] + ":" + iso[-2:]
    try:
        value = datetime.fromisoformat(iso)
    except ValueError:
        raise SoqlError(
            "MALFORMED_QUERY",
            _located(text, pos, f"line 1:{pos} no viable alternative at character '{raw}'"),
        ) from None
    return value.astimezone(UTC)


_SIMPLE_ESCAPES = {
    "n": "\n", "N": "\n", "r": "\r", "R": "\r", "t": "\t", "T": "\t",
    "b": "\b", "B": "\b", "f": "\f", "F": "\f", '"': '"', "'": "'", "\\": "\\",
}  # fmt: skip


def decode_string(body: str, *, like: bool = False) -> list[tuple[str, bool]]:
    """Decode a quoted literal's body into (text, is_wildcard) pieces.

    Outside LIKE every piece is literal text. In LIKE, unescaped ``%`` / ``_`` are wildcards and
    ``\\%`` / ``\\_`` are literal; those two escapes are an error anywhere else (B.3).
    Raises ValueError naming the illegal escape.
    """
    out: list[tuple[str, bool]] = []
    i = 0
    n = len(body)
    while i < n:
        ch = body[i]
        if ch != "\\":
            out.append((ch, like and ch in "%_"))
            i += 1
            continue
        nxt = body[i + 1] if i + 1 < n else ""
        if nxt in _SIMPLE_ESCAPES:
            out.append((_SIMPLE_ESCAPES[nxt], False))
            i += 2
        elif nxt == "u" and re.fullmatch(r"[0-9A-Fa-f]{4}", body[i + 2 : i + 6]):
            out.append((chr(int(body[i + 2 : i + 6], 16)), False))
            i += 6
        elif like and nxt in "%_":
            out.append((nxt, False))
            i += 2
        else:
            raise ValueError(f"\\{nxt}")
    return out


def escape_string(value: str) -> str:
    """`value` escaped for a SOQL quoted literal (non-LIKE context), without the quotes."""
    return (
        value.replace("\\", "\\\\")
        .replace("'", "\\'")
        .replace('"', '\\"')
        .replace("\n", "\\n")
        .replace("\r", "\\r")
        .replace("\t", "\\t")
        .replace("\b", "\\b")
        .replace("\f", "\\f")
    )


# ---------------------------------------------------------------------------------------------
# syntax tree


@dataclass(frozen=True, slots=True)
class StrLit:
    """A quoted literal, kept raw: its decoding depends on whether it is a LIKE pattern."""

    body: str
    pos: int


Literal = StrLit | int | float | bool | datetime | date | None


@dataclass(frozen=True, slots=True)
class Compare:
    field: str
    op: str  # = != < <= > >=
    value: Literal
    pos: int


@dataclass(frozen=True, slots=True)
class InList:
    field: str
    values: tuple[Literal, ...]
    negated: bool
    pos: int


@dataclass(frozen=True, slots=True)
class Like:
    field: str
    pattern: StrLit
    pos: int


@dataclass(frozen=True, slots=True)
class BoolOp:
    op: str  # and / or
    items: tuple[Expr, ...]


@dataclass(frozen=True, slots=True)
class Not:
    item: Expr


Expr = Compare | InList | Like | BoolOp | Not


@dataclass(frozen=True, slots=True)
class OrderItem:
    field: str
    descending: bool = False
    nulls_last: bool = False  # default: NULLS FIRST for ASC, NULLS LAST for DESC
    pos: int = 0


@dataclass(frozen=True, slots=True)
class Query:
    """A parsed (not yet bound) query; field and object names are as written."""

    text: str
    fields: tuple[tuple[str, int], ...]  # (name, position); empty for COUNT()
    count: bool
    sobject: str
    sobject_pos: int
    where: Expr | None
    order_by: tuple[OrderItem, ...]
    limit: int | None
    offset: int | None


# ---------------------------------------------------------------------------------------------
# parser


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = tokenize(text)
        self.i = 0

    @property
    def tok(self) -> Token:
        return self.tokens[self.i]

    def fail(self, tok: Token | None = None, detail: str | None = None) -> SoqlError:
        tok = tok or self.tok
        return SoqlError(
            "MALFORMED_QUERY",
            _located(self.text, tok.pos, detail or f"unexpected token: {tok.text}"),
        )

    def take(self) -> Token:
        tok = self.tok
        self.i += 1
        return tok

    def is_kw(self, *words: str) -> bool:
        return self.tok.kind == "kw" and self.tok.text in words

    def expect_kw(self, word: str) -> Token:
        if not self.is_kw(word):
            raise self.fail()
        return self.take()

    def expect_punct(self, ch: str) -> Token:
        if self.tok.kind != "punct" or self.tok.text != ch:
            raise self.fail()
        return self.take()

    def parse(self) -> Query:
        self.expect_kw("select")
        fields, count = self.select_list()
        self.expect_kw("from")
        obj = self.take()
        if obj.kind == "kw" and obj.text == "group":  # the Group object shares a keyword's name
            obj = Token("ident", self.text[obj.pos : obj.pos + 5], obj.pos)
        if obj.kind != "ident" or "." in obj.text:
            raise self.fail(obj)
        where = None
        if self.is_kw("where"):
            self.take()
            where = self.or_expr()
        order: tuple[OrderItem, ...] = ()
        if self.is_kw("order"):
            self.take()
            self.expect_kw("by")
            order = self.order_list()
        limit = self.int_clause("limit")
        offset = self.int_clause("offset")
        if self.tok.kind != "eof":
            raise self.fail()
        return Query(self.text, fields, count, obj.text, obj.pos, where, order, limit, offset)

    def select_list(self) -> tuple[tuple[tuple[str, int], ...], bool]:
        if self.is_kw("count"):
            self.take()
            self.expect_punct("(")
            self.expect_punct(")")
            return (), True
        fields: list[tuple[str, int]] = []
        while True:
            tok = self.take()
            if tok.kind != "ident":
                raise self.fail(tok)
            fields.append((tok.text, tok.pos))
            if self.tok.kind == "punct" and self.tok.text == ",":
                self.take()
                continue
            return tuple(fields), False

    def int_clause(self, word: str) -> int | None:
        if not self.is_kw(word):
            return None
        self.take()
        tok = self.take()
        if tok.kind != "number" or not isinstance(tok.value, int) or tok.value < 0:
            raise self.fail(tok)
        return int(tok.value)

    def order_list(self) -> tuple[OrderItem, ...]:
        items: list[OrderItem] = []
        while True:
            tok = self.take()
            if tok.kind != "ident":
                raise self.fail(tok)
            desc = False
            if self.is_kw("asc", "desc"):
                desc = self.take().text == "desc"
            nulls_last = desc
            if self.is_kw("nulls"):
                self.take()
                if not self.is_kw("first", "last"):
                    raise self.fail()
                nulls_last = self.take().text == "last"
            items.append(OrderItem(tok.text, desc, nulls_last, tok.pos))
            if self.tok.kind == "punct" and self.tok.text == ",":
                self.take()
                continue
            return tuple(items)

    def or_expr(self) -> Expr:
        items = [self.and_expr()]
        while self.is_kw("or"):
            self.take()
            items.append(self.and_expr())
        return items[0] if len(items) == 1 else BoolOp("or", tuple(items))

    def and_expr(self) -> Expr:
        items = [self.unary()]
        while self.is_kw("and"):
            self.take()
            items.append(self.unary())
        return items[0] if len(items) == 1 else BoolOp("and", tuple(items))

    def unary(self) -> Expr:
        if self.is_kw("not"):
            self.take()
            return Not(self.unary())
        if self.tok.kind == "punct" and self.tok.text == "(":
            self.take()
            inner = self.or_expr()
            self.expect_punct(")")
            return inner
        return self.condition()

    def condition(self) -> Expr:
        ftok = self.take()
        if ftok.kind != "ident":
            raise self.fail(ftok)
        if self.tok.kind == "op":
            op = self.take().text
            op = "!=" if op == "<>" else op
            return Compare(ftok.text, op, self.literal(), ftok.pos)
        if self.is_kw("like"):
            self.take()
            lit = self.literal()
            if not isinstance(lit, StrLit):
                raise self.fail(self.tokens[self.i - 1])
            return Like(ftok.text, lit, ftok.pos)
        negated = False
        if self.is_kw("not"):
            self.take()
            negated = True
            if not self.is_kw("in"):
                raise self.fail()
        if self.is_kw("in"):
            self.take()
            return InList(ftok.text, self.literal_list(), negated, ftok.pos)
        raise self.fail()

    def literal_list(self) -> tuple[Literal, ...]:
        self.expect_punct("(")
        values = [self.literal()]
        while self.tok.kind == "punct" and self.tok.text == ",":
            self.take()
            values.append(self.literal())
        self.expect_punct(")")
        return tuple(values)

    def literal(self) -> Literal:
        tok = self.take()
        if tok.kind == "string":
            return StrLit(tok.text[1:-1], tok.pos)
        if tok.kind in ("datetime", "date", "number"):
            value: Literal = tok.value
            return value
        if tok.kind == "kw" and tok.text in ("null", "true", "false"):
            return {"null": None, "true": True, "false": False}[tok.text]
        raise self.fail(tok)


def parse(text: str) -> Query:
    """Parse SOQL text; raises `SoqlError` (MALFORMED_QUERY) for anything outside the subset."""
    if len(text) > MAX_QUERY_CHARS:
        raise SoqlError(
            "MALFORMED_QUERY",
            f"SOQL statements cannot be longer than {MAX_QUERY_CHARS} characters.",
        )
    return _Parser(text).parse()


# ---------------------------------------------------------------------------------------------
# schema and binding

STRING_TYPES = frozenset(
    {"string", "email", "phone", "url", "picklist", "textarea", "id", "reference", "combobox"}
)
ID_TYPES = frozenset({"id", "reference"})


@dataclass(frozen=True, slots=True)
class FieldInfo:
    """What the query engine needs to know about one field."""

    name: str  # canonical spelling
    type: str  # string, email, id, reference, boolean, double, int, datetime, date, textarea...
    filterable: bool = True


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    """An sObject's name and fields (`fields` keyed by lower-cased name)."""

    name: str
    fields: Mapping[str, FieldInfo]


@dataclass(frozen=True, slots=True)
class Cond:
    """A bound leaf condition: canonical field, operator, typed value(s)."""

    field: FieldInfo
    op: str  # = != < <= > >= in notin like
    value: Any  # scalar, frozenset/tuple for in/notin, compiled regex for like


@dataclass(frozen=True, slots=True)
class BoundBool:
    op: str  # and / or / not
    items: tuple[BoundExpr, ...]


BoundExpr = Cond | BoundBool


@dataclass(frozen=True, slots=True)
class BoundQuery:
    """A query checked against the schema: canonical names and typed values."""

    sobject: str
    fields: tuple[str, ...]
    count: bool
    where: BoundExpr | None
    order_by: tuple[tuple[FieldInfo, bool, bool], ...]  # (field, descending, nulls_last)
    limit: int | None
    offset: int | None


_ID15 = re.compile(r"^[a-zA-Z0-9]{15}$")
_ID18 = re.compile(r"^[a-zA-Z0-9]{18}$")
_ID_SUFFIX = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"


def id15(value: str) -> str | None:
    """The case-sensitive 15-character key of a 15- or 18-character id; None if malformed.

    Salesforce ids are unique in their first 15 characters, so comparisons use this key.
    """
    return value[:15] if _ID15.match(value) or _ID18.match(value) else None


def id18(value: str) -> str | None:
    """The 18-character form of a 15- or 18-character Salesforce id; None if malformed."""
    if _ID18.match(value):
        return value[:15] + value[15:].upper()
    if not _ID15.match(value):
        return None
    suffix = ""
    for chunk in range(3):
        bits = 0
        for j, ch in enumerate(value[chunk * 5 : chunk * 5 + 5]):
            if "A" <= ch <= "Z":
                bits |= 1 << j
        suffix += _ID_SUFFIX[bits]
    return value + suffix


class _Binder:
    def __init__(self, query: Query, obj: ObjectInfo) -> None:
        self.q = query
        self.obj = obj

    def field(self, name: str, pos: int) -> FieldInfo:
        if "." in name:
            rel = name.split(".", 1)[0]
            raise SoqlError(
                "INVALID_FIELD",
                _located(
                    self.q.text,
                    pos,
                    f"Didn't understand relationship '{rel}' in field path. If you are attempting"
                    " to use a custom relationship, be sure to append the '__r' after the custom"
                    " relationship name. Please reference your WSDL or the describe call for the"
                    " appropriate names.",
                ),
            )
        info = self.obj.fields.get(name.lower())
        if info is None:
            raise SoqlError(
                "INVALID_FIELD",
                _located(
                    self.q.text,
                    pos,
                    f"No such column '{name}' on entity '{self.obj.name}'. If you are attempting"
                    " to use a custom field, be sure to append the '__c' after the custom field"
                    " name. Please reference your WSDL or the describe call for the appropriate"
                    " names.",
                ),
            )
        return info

    def filter_field(self, name: str, pos: int) -> FieldInfo:
        info = self.field(name, pos)
        if not info.filterable:
            raise SoqlError(
                "INVALID_FIELD",
                _located(
                    self.q.text, pos, f"field '{info.name}' can not be filtered in a query call"
                ),
            )
        return info

    def expr(self, e: Expr) -> BoundExpr:
        if isinstance(e, BoolOp):
            return BoundBool(e.op, tuple(self.expr(x) for x in e.items))
        if isinstance(e, Not):
            return BoundBool("not", (self.expr(e.item),))
        if isinstance(e, Like):
            return self.like(e)
        if isinstance(e, InList):
            info = self.filter_field(e.field, e.pos)
            values = tuple(self.value(info, v, e.pos) for v in e.values)
            return Cond(info, "notin" if e.negated else "in", _value_set(info, values))
        info = self.filter_field(e.field, e.pos)
        value = self.value(info, e.value, e.pos)
        if e.op not in ("=", "!=") and info.type in ("boolean", *ID_TYPES) and value is not None:
            raise SoqlError(
                "INVALID_QUERY_FILTER_OPERATOR",
                _located(self.q.text, e.pos, f"invalid operator on {info.type} field"),
            )
        if e.op not in ("=", "!=") and value is None:
            raise SoqlError(
                "INVALID_QUERY_FILTER_OPERATOR",
                _located(self.q.text, e.pos, "invalid operator for null value"),
            )
        return Cond(info, e.op, _fold(info, value))

    def like(self, e: Like) -> Cond:
        info = self.filter_field(e.field, e.pos)
        if info.type not in STRING_TYPES:
            raise SoqlError(
                "INVALID_QUERY_FILTER_OPERATOR",
                _located(self.q.text, e.pos, f"invalid operator on {info.type} field"),
            )
        try:
            pieces = decode_string(e.pattern.body, like=True)
        except ValueError as exc:
            raise self.bad_escape(e.pattern, str(exc)) from None
        regex = "".join(
            (".*" if ch == "%" else ".") if wild else re.escape(ch) for ch, wild in pieces
        )
        return Cond(info, "like", re.compile(regex, re.IGNORECASE | re.DOTALL))

    def bad_escape(self, lit: StrLit, seq: str) -> SoqlError:
        return SoqlError(
            "MALFORMED_QUERY",
            _located(
                self.q.text,
                lit.pos,
                f"Invalid string literal '{lit.body}'. Illegal character sequence '{seq}' in"
                " string literal.",
            ),
        )

    def value(self, info: FieldInfo, lit: Literal, pos: int) -> Any:
        if lit is None:
            return None
        t = info.type
        if t in STRING_TYPES:
            if not isinstance(lit, StrLit):
                raise self.type_error(info, pos, "string", quoted=True)
            try:
                text = "".join(ch for ch, _ in decode_string(lit.body))
            except ValueError as exc:
                raise self.bad_escape(lit, str(exc)) from None
            if t in ID_TYPES:
                norm = id15(text)
                if norm is None:
                    raise SoqlError(
                        "INVALID_QUERY_FILTER_OPERATOR",
                        _located(self.q.text, pos, f"invalid ID field: {text}"),
                    )
                return norm
            return text
        expected: dict[str, tuple[type | tuple[type, ...], str]] = {
            "boolean": (bool, "boolean"),
            "double": ((int, float), "double"),
            "int": ((int, float), "integer"),
            "currency": ((int, float), "currency"),
            "percent": ((int, float), "percent"),
            "datetime": (datetime, "dateTime"),
            "date": (date, "date"),
        }
        py_type, label = expected.get(t, (object, t))
        ok = isinstance(lit, py_type) and not isinstance(lit, StrLit)
        if ok and t == "date" and isinstance(lit, datetime):
            ok = False
        if ok and t in ("double", "int", "currency", "percent") and isinstance(lit, bool):
            ok = False
        if not ok:
            raise self.type_error(info, pos, label, quoted=False)
        if t in ("double", "currency", "percent") and isinstance(lit, int | float):
            return float(lit)
        return lit

    def type_error(self, info: FieldInfo, pos: int, label: str, *, quoted: bool) -> SoqlError:
        how = "should be enclosed in quotes" if quoted else "should not be enclosed in quotes"
        return SoqlError(
            "INVALID_FIELD",
            _located(
                self.q.text,
                pos,
                f"value of filter criterion for field '{info.name}' must be of type {label}"
                f" and {how}",
            ),
        )

    def bind(self) -> BoundQuery:
        q = self.q
        names: list[str] = []
        seen: set[str] = set()
        for name, pos in q.fields:
            info = self.field(name, pos)
            if info.name in seen:
                raise SoqlError("DUPLICATE_FIELD", f"duplicate field selected: {info.name}")
            seen.add(info.name)
            names.append(info.name)
        order = tuple(
            (self.filter_field(o.field, o.pos), o.descending, o.nulls_last) for o in q.order_by
        )
        if q.offset is not None and q.offset > MAX_OFFSET:
            raise SoqlError(
                "NUMBER_OUTSIDE_VALID_RANGE",
                f"Maximum SOQL offset allowed is {MAX_OFFSET}",
            )
        where = self.expr(q.where) if q.where is not None else None
        return BoundQuery(self.obj.name, tuple(names), q.count, where, order, q.limit, q.offset)


def _fold(info: FieldInfo, value: Any) -> Any:
    """Comparison key for a literal: strings (except ids) compare case-insensitively."""
    if isinstance(value, str) and info.type not in ID_TYPES:
        return value.casefold()
    return value


def _value_set(info: FieldInfo, values: Iterable[Any]) -> frozenset[Any]:
    return frozenset(_fold(info, v) for v in values)


def bind(query: Query, objects: Mapping[str, ObjectInfo]) -> BoundQuery:
    """Resolve `query` against `objects` (keyed by lower-cased object name)."""
    obj = objects.get(query.sobject.lower())
    if obj is None:
        raise SoqlError(
            "INVALID_TYPE",
            _located(
                query.text,
                query.sobject_pos,
                f"sObject type '{query.sobject}' is not supported. If you are attempting to use a"
                " custom object, be sure to append the '__c' after the entity name. Please"
                " reference your WSDL or the describe call for the appropriate names.",
            ),
        )
    return _Binder(query, obj).bind()


# ---------------------------------------------------------------------------------------------
# evaluation

Record = Mapping[str, Any]
Predicate = Callable[[Record], bool]


class RecordSource(Protocol):
    """The records of one sObject, with optional indexes.

    `lookup` answers equality on an indexed field (None: no index for that field); values are
    the folded keys (lower-cased strings, 15-character id keys). `range` answers an indexed
    range as ids in ascending field order (None: no index).
    """

    def ids(self) -> Iterable[str]: ...

    def get(self, record_id: str) -> Record | None: ...

    def lookup(self, field: str, values: Iterable[Any]) -> set[str] | None: ...

    def range(
        self, field: str, low: Any, low_inclusive: bool, high: Any, high_inclusive: bool
    ) -> list[str] | None: ...


def _getter(info: FieldInfo) -> Callable[[Record], Any]:
    name = info.name
    if info.type in ID_TYPES:

        def id_key(r: Record) -> Any:
            v = r.get(name)
            return v[:15] if isinstance(v, str) else v

        return id_key
    if info.type in STRING_TYPES:

        def folded(r: Record) -> Any:
            v = r.get(name)
            return v.casefold() if isinstance(v, str) else v

        return folded
    return lambda r: r.get(name)


_CMP: dict[str, Callable[[Any, Any], bool]] = {
    "<": lambda a, b: bool(a < b),
    "<=": lambda a, b: bool(a <= b),
    ">": lambda a, b: bool(a > b),
    ">=": lambda a, b: bool(a >= b),
}


def compile_predicate(expr: BoundExpr) -> Predicate:
    """A fast closure evaluating `expr` on a record (SOQL null semantics)."""
    if isinstance(expr, BoundBool):
        parts = [compile_predicate(x) for x in expr.items]
        if expr.op == "and":
            return lambda r: all(p(r) for p in parts)
        if expr.op == "or":
            return lambda r: any(p(r) for p in parts)
        inner = parts[0]
        return lambda r: not inner(r)
    get = _getter(expr.field)
    op, val = expr.op, expr.value
    if op == "=":
        return lambda r: get(r) == val
    if op == "!=":
        return lambda r: get(r) != val
    if op == "in":
        return lambda r: get(r) in val
    if op == "notin":
        return lambda r: get(r) not in val
    if op == "like":
        rx = val
        return lambda r: (
            isinstance(v := r.get(expr.field.name), str) and rx.fullmatch(v) is not None
        )
    cmp = _CMP[op]
    return lambda r: (v := get(r)) is not None and cmp(v, val)


_INDEX_RANGE_OPS = {
    ">": (True, False),
    ">=": (True, True),
    "<": (False, False),
    "<=": (False, True),
}


@dataclass
class _Plan:
    ids: Iterable[str] | None  # None: scan everything
    ordered_by: str | None = None  # field the ids are already sorted on (ascending)


def _plan(expr: BoundExpr | None, source: RecordSource) -> _Plan:
    if expr is None:
        return _Plan(None)
    if isinstance(expr, Cond):
        return _plan_cond(expr, source)
    if expr.op == "and":
        return _plan_and(expr, source)
    if expr.op == "or":
        found: set[str] = set()
        for item in expr.items:
            sub = _plan(item, source)
            if sub.ids is None:
                return _Plan(None)
            found.update(sub.ids)
        return _Plan(found)
    return _Plan(None)


def _plan_cond(cond: Cond, source: RecordSource) -> _Plan:
    name = cond.field.name
    if cond.op == "=" and cond.value is not None:
        hit = source.lookup(name, (cond.value,))
        if hit is not None:
            return _Plan(hit)
    if cond.op == "in":
        hit = source.lookup(name, [v for v in cond.value if v is not None])
        if hit is not None and None not in cond.value:
            return _Plan(hit)
    if cond.op in _INDEX_RANGE_OPS:
        is_low, inclusive = _INDEX_RANGE_OPS[cond.op]
        args = (
            (cond.value, inclusive, None, False) if is_low else (None, False, cond.value, inclusive)
        )
        ranged = source.range(name, *args)
        if ranged is not None:
            return _Plan(ranged, ordered_by=name)
    return _Plan(None)


def _plan_and(expr: BoundBool, source: RecordSource) -> _Plan:
    # Merge range conditions on the same indexed field into one window; else take the
    # smallest equality lookup. The full predicate is re-checked on every candidate anyway.
    lows: dict[str, tuple[Any, bool]] = {}
    highs: dict[str, tuple[Any, bool]] = {}
    best: set[str] | None = None
    for item in expr.items:
        if isinstance(item, Cond) and item.op in _INDEX_RANGE_OPS:
            is_low, inclusive = _INDEX_RANGE_OPS[item.op]
            (lows if is_low else highs)[item.field.name] = (item.value, inclusive)
            continue
        sub = _plan(item, source)
        if isinstance(sub.ids, set) and (best is None or len(sub.ids) < len(best)):
            best = sub.ids
    if best is not None:
        return _Plan(best)
    for name in {*lows, *highs}:
        low, low_inc = lows.get(name, (None, False))
        high, high_inc = highs.get(name, (None, False))
        ranged = source.range(name, low, low_inc, high, high_inc)
        if ranged is not None:
            return _Plan(ranged, ordered_by=name)
    return _Plan(None)


class _Desc:
    """Reverses the ordering of a wrapped key (for DESC items in a mixed ORDER BY)."""

    __slots__ = ("v",)

    def __init__(self, v: Any) -> None:
        self.v = v

    def __lt__(self, other: _Desc) -> bool:
        return bool(other.v < self.v)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Desc) and self.v == other.v

    def __hash__(self) -> int:
        return hash(self.v)


def _sort_key(order: Sequence[tuple[FieldInfo, bool, bool]]) -> Callable[[Record], tuple[Any, ...]]:
    getters = [(_getter(f), desc, nulls_last) for f, desc, nulls_last in order]

    def key(r: Record) -> tuple[Any, ...]:
        parts: list[Any] = []
        for get, desc, nulls_last in getters:
            v = get(r)
            # (null rank, value); a null's rank puts it first or last whatever the direction.
            null_rank = (1 if nulls_last else 0) if v is None else (0 if nulls_last else 1)
            if desc:
                null_rank = -null_rank
            item = (null_rank, 0 if v is None else v)
            parts.append(_Desc(item) if desc else item)
        return tuple(parts)

    return key


def execute(query: BoundQuery, source: RecordSource) -> list[str]:
    """The ids of the records matching `query`, in its order, after OFFSET and LIMIT."""
    plan = _plan(query.where, source)
    predicate = compile_predicate(query.where) if query.where is not None else None
    candidates: Iterable[str]
    if plan.ids is None:
        candidates = source.ids()
    elif isinstance(plan.ids, list):
        candidates = plan.ids
    else:
        candidates = sorted(plan.ids)  # index sets are unordered; answer in creation order
    order = query.order_by
    presorted = (
        plan.ordered_by is not None
        and len(order) == 1
        and order[0][0].name == plan.ordered_by
        and not order[0][1]
    )
    stop = None if query.limit is None else query.limit + (query.offset or 0)
    if stop == 0:
        return []
    get = source.get
    if not order or presorted:
        out: list[str] = []
        for rid in candidates:
            rec = get(rid)
            if rec is not None and (predicate is None or predicate(rec)):
                out.append(rid)
                if stop is not None and len(out) >= stop:
                    break
        return out[query.offset or 0 :]
    matched = [
        (rid, rec)
        for rid in candidates
        if (rec := get(rid)) is not None and (predicate is None or predicate(rec))
    ]
    key = _sort_key(order)
    if stop is not None and stop < len(matched) // 4:
        ranked = heapq.nsmallest(stop, matched, key=lambda p: (key(p[1]), p[0]))
    else:
        ranked = sorted(matched, key=lambda p: (key(p[1]), p[0]))
    ids = [rid for rid, _ in ranked]
    if stop is not None:
        ids = ids[:stop]
    return ids[query.offset or 0 :]
