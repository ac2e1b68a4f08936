"""Reads: `fields`, typed filters, ordering, keyset page tokens, single-record reads."""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request

from syncd.simulators.pardot.limits import PardotLimits
from syncd.simulators.pardot.schema import (
    _RESERVED_PARAMS,
    _SUFFIXES,
    API_PREFIX,
    DEFAULT_LIMIT,
    MAX_FILTERED_FIELDS,
    MAX_LIMIT,
    MSG_NOT_FOUND,
    PAGE_TOKEN_TTL,
    WARNING_CHAIN_CAP,
    WARNING_RECYCLE_BIN,
    Kind,
    _Spec,
)
from syncd.simulators.pardot.table import (
    _Filter,
    _PageToken,
    _Query,
    _Table,
)
from syncd.simulators.pardot.wire import (
    ApiError,
    _Answer,
)


class QueryApi(PardotLimits):
    """Queries and reads of prospects, users and emails."""

    def _fields(self, spec: _Spec, raw: str | None, *, required: bool = True) -> list[str]:
        if raw is None or not raw.strip():
            if required:
                raise ApiError(400, 13, "One or more required parameters are missing: fields")
            return []
        names = [n.strip() for n in raw.split(",") if n.strip()]
        for name in names:
            if spec.kind(name) is None:
                raise ApiError(
                    400,
                    51,
                    f"Invalid parameter: fields. It contains an invalid or unknown field: {name}.",
                )
        return names

    def _query(self, request: Request, table: _Table) -> _Answer:
        params = dict(request.query_params)
        spec = table.spec
        fields = self._fields(spec, params.get("fields"))
        token = params.get("nextPageToken")
        if token is not None:
            extra = sorted(set(params) - {"fields", "nextPageToken"})
            if extra:
                raise ApiError(
                    400,
                    5,
                    "Invalid query parameters: only fields may be sent with nextPageToken "
                    f"(got {', '.join(extra)})",
                )
            state = self._page_tokens.get(token)
            if state is None or state.query.spec is not spec:
                raise ApiError(400, 211, "Page token is invalid.")
            if self.clock() - state.issued_at >= PAGE_TOKEN_TTL:
                self._page_tokens.pop(token, None)
                raise ApiError(400, 210, "Page token has expired.")
            return self._page(table, state.query, fields, state.last_key, state.served)
        return self._page(table, self._parse_query(spec, params), fields, None, 0)

    def _parse_query(self, spec: _Spec, params: dict[str, str]) -> _Query:
        limit = DEFAULT_LIMIT
        if "limit" in params:
            try:
                limit = int(params["limit"])
            except ValueError:
                limit = -1
            if not 1 <= limit <= MAX_LIMIT:
                raise ApiError(
                    400, 23, f"Invalid value specified for limit: must be 1 to {MAX_LIMIT}"
                )
        order_field, desc = self._order_by(spec, params.get("orderBy"))
        deleted = params.get("deleted", "false").lower()
        if deleted not in ("all", "true", "false"):
            raise ApiError(400, 27, "Parameter deleted must be all, true or false")
        filters = []
        for name, raw in params.items():
            if name in _RESERVED_PARAMS:
                continue
            filters.append(self._filter(spec, name, raw))
        distinct = {f.field for f in filters}
        if len(distinct) > MAX_FILTERED_FIELDS:
            raise ApiError(
                400,
                209,
                "Too many fields have filters: The max number of 3 distinct fields with filters "
                "was exceeded for this query.",
            )
        return _Query(spec, order_field, desc, tuple(filters), deleted, limit)

    def _order_by(self, spec: _Spec, raw: str | None) -> tuple[str, bool]:
        if raw is None or not raw.strip():
            return "id", False
        words = raw.split()
        direction = words[1].upper() if len(words) == 2 else "ASC"
        if len(words) > 2 or direction not in ("ASC", "DESC") or words[0] not in spec.sortable:
            raise ApiError(
                400,
                5,
                f"Invalid query parameters: unknown field name or direction in orderBy {raw!r}; "
                f"sortable: {', '.join(spec.sortable)}",
            )
        return words[0], direction == "DESC"

    def _filter(self, spec: _Spec, name: str, raw: str) -> _Filter:
        field_name, op = name, "eq"
        for suffix, suffix_op in _SUFFIXES:
            if name.endswith(suffix) and len(name) > len(suffix):
                field_name, op = name[: -len(suffix)], suffix_op
                break
        kind = spec.kind(field_name)
        if kind is None or field_name not in spec.filterable:
            raise ApiError(
                400, 5, f"Invalid query parameters: {name!r} is not a filter of {spec.name}"
            )
        is_time = op != "eq" and name[len(field_name) :].startswith(("After", "Before"))
        if op != "eq" and (kind == "datetime") != is_time:
            raise ApiError(
                400, 5, f"Invalid query parameters: {name!r} is not a filter of {spec.name}"
            )
        return _Filter(field_name, op, self._param_value(kind, name, raw))

    def _param_value(self, kind: Kind, name: str, raw: str) -> Any:
        if kind == "datetime":
            try:
                dt = datetime.fromisoformat(raw.strip())
            except ValueError:
                dt = None
            if dt is None or dt.tzinfo is None:
                raise ApiError(
                    400,
                    7,
                    f"Invalid timestamp for {name}: {raw!r}; use ISO 8601 with an offset "
                    "(URL-encode '+' as %2B)",
                )
            return dt.timestamp()
        if kind == "int":
            try:
                return int(raw)
            except ValueError:
                raise ApiError(400, 16, f"Invalid ID: {name} must be an integer") from None
        if kind == "bool":
            if raw not in ("true", "false"):
                raise ApiError(400, 50, f"Invalid boolean for {name}")
            return raw == "true"
        return raw

    def _page(
        self,
        table: _Table,
        query: _Query,
        fields: list[str],
        after: tuple[Any, int] | None,
        served: int,
    ) -> _Answer:
        rows = table.scan(query, after, query.limit + 1)
        more = len(rows) > query.limit
        rows = rows[: query.limit]
        served += len(rows)
        headers: list[tuple[str, str]] = []
        token: str | None = None
        if more and served >= self.page_token_record_cap:
            headers.append(("Pardot-Warning", WARNING_CHAIN_CAP))
        elif more:
            last = rows[-1]
            token = secrets.token_urlsafe(32)
            self._prune_tokens()
            self._page_tokens[token] = _PageToken(
                query, (last[query.order_field], last["id"]), self.clock(), served
            )
        next_url = None
        if token is not None:
            qs = urlencode({"fields": ",".join(fields), "nextPageToken": token})
            next_url = f"{self.base_url}{API_PREFIX}{table.spec.name}?{qs}"
        values = [self._render(table.spec, r, fields) for r in rows]
        return _Answer(
            200, {"values": values, "nextPageToken": token, "nextPageUrl": next_url}, headers
        )

    def _prune_tokens(self) -> None:
        if len(self._page_tokens) < 10_000:
            return
        now = self.clock()
        for key in [k for k, t in self._page_tokens.items() if now - t.issued_at >= PAGE_TOKEN_TTL]:
            del self._page_tokens[key]

    def _read(self, request: Request, table: _Table, row_id: int) -> _Answer:
        spec = table.spec
        fields = self._fields(spec, request.query_params.get("fields"))
        deleted = request.query_params.get("deleted", "false").lower()
        row = table.rows.get(row_id)
        if row is None:
            raise ApiError(404, 109, MSG_NOT_FOUND)
        if spec.has_deleted and row["isDeleted"] and deleted not in ("true", "all"):
            raise ApiError(
                404,
                192,
                "Object specified does not exist",
                (("Pardot-Warning", WARNING_RECYCLE_BIN),),
            )
        return _Answer(200, self._render(spec, row, fields))
