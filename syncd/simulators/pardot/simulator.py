"""The Pardot simulator: construction from a seed, the ASGI app, auth, routing."""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

from starlette.requests import Request

from syncd.simulators import written
from syncd.simulators._base import (
    SIM_PREFIX,
    ASGIApp,
    Clock,
    Counters,
    FaultBodies,
    Faults,
    Receive,
    Scope,
    Send,
    SimulatorMiddleware,
    TokenRegistry,
    update_faults,
    wall_clock,
)
from syncd.simulators.pardot.import_values import IMPORTS_PREFIX
from syncd.simulators.pardot.imports import ImportApi
from syncd.simulators.pardot.limits import _ConcurrencyGate
from syncd.simulators.pardot.schema import (
    _BU_ID,
    API_PREFIX,
    DEFAULT_BUSINESS_UNIT_ID,
    DEFAULT_PAGE_TOKEN_RECORD_CAP,
    EMAILS,
    PROSPECTS,
    USERS,
)
from syncd.simulators.pardot.table import (
    _PageToken,
    _parse_offset,
    _Table,
)
from syncd.simulators.pardot.wire import (
    ApiError,
    _Answer,
    _json_object,
    _send_answer,
    _server_error,
)


class PardotSimulator(ImportApi):
    """The Pardot v5 simulator: seeded state, the ASGI `app`, counters, limits and faults."""

    def __init__(
        self,
        seed: dict[str, Any] | None = None,
        *,
        tokens: TokenRegistry | None = None,
        faults: Faults | None = None,
        clock: Clock = wall_clock,
        base_url: str = "http://127.0.0.1:8402",
    ) -> None:
        seed = dict(seed or {})
        self.clock = clock
        self.base_url = base_url.rstrip("/")
        self.tokens = tokens if tokens is not None else TokenRegistry(clock)
        self.counters = Counters()
        self._written = written.WrittenCounter()
        self.prospect_writes = Counter()
        self.business_unit_id: str = str(seed.get("business_unit_id") or DEFAULT_BUSINESS_UNIT_ID)
        self.daily_api_limit: int = int(seed.get("daily_api_limit", 25_000))
        self.max_concurrency: int = int(seed.get("max_concurrency", 5))
        self.rate_limit_status: int = int(seed.get("rate_limit_status", 429))
        if self.rate_limit_status not in (400, 429):
            raise ValueError("pardot seed: rate_limit_status must be 429 or 400")
        self.page_token_record_cap: int = int(
            seed.get("page_token_record_cap", DEFAULT_PAGE_TOKEN_RECORD_CAP)
        )
        self.ampsea: bool = bool(seed.get("ampsea", True))
        self.tz = _parse_offset(str(seed.get("timezone", "-04:00")))
        self.api_usage: int = 0
        self._usage_day = self._today()
        self.in_flight = 0
        self._lock = threading.RLock()
        self._page_tokens: dict[str, _PageToken] = {}
        self.users_table = _Table(USERS)
        self.prospects_table = _Table(PROSPECTS)
        self.emails_table = _Table(EMAILS)
        self._load_seed(seed)
        self._init_imports(seed)
        self.faults = faults if faults is not None else Faults.from_seed(seed.get("faults"))
        inner = SimulatorMiddleware(
            self._asgi,
            counters=self.counters,
            faults=self.faults,
            bodies=FaultBodies(server_error=_server_error, rate_limited=self._rate_limited),
        )
        self.app: ASGIApp = _ConcurrencyGate(self, inner)

    async def _asgi(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        request = Request(scope, receive)
        try:
            if scope["path"].startswith(SIM_PREFIX):
                answer = self._control(request, await request.body())
            else:
                body = await request.body()
                with self._lock:
                    answer = self._handle(request, body)
        except ApiError as exc:
            answer = _Answer(
                exc.status, {"code": exc.code, "message": exc.message}, list(exc.headers)
            )
        await _send_answer(send, answer)

    def _control(self, request: Request, body: bytes = b"") -> _Answer:
        path = request.url.path
        if path == f"{SIM_PREFIX}/faults" and request.method in ("GET", "POST"):
            try:
                now = update_faults(self.faults, body if request.method == "POST" else b"{}")
            except ValueError as exc:
                raise ApiError(400, 1, str(exc)) from None
            return _Answer(200, now)
        if path == f"{SIM_PREFIX}/counters" and request.method == "GET":
            snap = self.counters.snapshot()
            snap["api_usage"] = self.api_usage
            snap["daily_api_limit"] = self.daily_api_limit
            return _Answer(200, snap)
        if path == f"{SIM_PREFIX}/reset-counters" and request.method == "POST":
            self.counters.reset()
            return _Answer(200, {"ok": True})
        if path == f"{SIM_PREFIX}/written" and request.method == "GET":
            return _Answer(200, self.written())
        if path == f"{SIM_PREFIX}/imports" and request.method == "POST":
            try:
                with self._lock:
                    return _Answer(200, self.imports_control(body))
            except ValueError as exc:
                raise ApiError(400, 1, str(exc)) from None
        raise ApiError(404, 198, "Endpoint not found")

    def _authenticate(self, request: Request) -> int | None:
        """The Pardot user id behind the request's token (None if it maps to none), or ApiError."""
        auth = request.headers.get("authorization")
        if not auth or not auth.lower().startswith("bearer "):
            raise ApiError(401, 49, "Access Denied")
        issued = self.tokens.validate(auth[7:].strip())
        if issued is None:
            raise ApiError(
                401, 184, "access_token is invalid, unknown, or malformed: Inactive token"
            )
        bu = request.headers.get("pardot-business-unit-id")
        if bu is None or not bu.strip():
            raise ApiError(400, 181, "A required header is missing: Pardot-Business-Unit-Id")
        if not _BU_ID.match(bu.strip()):
            raise ApiError(400, 182, "Invalid header value: Pardot-Business-Unit-Id")
        if bu.strip() != self.business_unit_id:
            raise ApiError(
                401,
                201,
                "Business Unit specified in Pardot-Business-Unit-Id header not found or inactive.",
            )
        for user in self.users_table.rows.values():
            if user.get("salesforceId") and user["salesforceId"] == issued.user_id:
                return int(user["id"])
        return None

    def _handle(self, request: Request, body: bytes) -> _Answer:
        path = request.url.path
        is_import = path == IMPORTS_PREFIX or path.startswith(IMPORTS_PREFIX + "/")
        if not path.startswith(API_PREFIX) and not is_import:
            raise ApiError(404, 198, "Endpoint not found")
        self._note_write(request.method, path, body)
        actor = self._authenticate(request)
        self._charge_call()
        if is_import:
            rest = path[len(IMPORTS_PREFIX) :].strip("/")
            answer = self._route_imports(request, rest.split("/") if rest else [], body, actor)
        else:
            parts = path[len(API_PREFIX) :].strip("/").split("/")
            answer = self._route(request, parts, body, actor)
        if request.headers.get("x-return-api-usage") == "1":
            answer.headers.append(("x-api-usage", str(self.api_usage)))
        return answer

    def _route(self, request: Request, parts: list[str], body: bytes, actor: int | None) -> _Answer:
        method = request.method
        tables = {
            "prospects": self.prospects_table,
            "users": self.users_table,
            "emails": self.emails_table,
        }
        table = tables.get(parts[0])
        if table is None:
            raise ApiError(404, 198, "Endpoint not found")
        if len(parts) == 1:
            if method == "GET":
                return self._query(request, table)
            if method == "POST" and table is self.prospects_table:
                return self._create(request, _json_object(body), actor)
            raise ApiError(405, 60, "Invalid HTTP request method")
        if parts[1:] == ["do", "upsertLatestByEmail"] and table is self.prospects_table:
            if method != "POST":
                raise ApiError(405, 60, "Invalid HTTP request method")
            return self._upsert(request, _json_object(body), actor)
        if parts[1:] == ["do", "undelete"] and table is self.prospects_table:
            if method != "POST":
                raise ApiError(405, 60, "Invalid HTTP request method")
            return self._undelete(request, _json_object(body), actor)
        if len(parts) != 2 or not parts[1].isdigit():
            raise ApiError(404, 198, "Endpoint not found")
        row_id = int(parts[1])
        if method == "GET":
            return self._read(request, table, row_id)
        if table is not self.prospects_table or method not in ("PATCH", "DELETE"):
            raise ApiError(405, 60, "Invalid HTTP request method")
        if method == "PATCH":
            return self._update(request, row_id, _json_object(body), actor)
        return self._delete(row_id, actor)
