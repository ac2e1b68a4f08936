"""The Salesforce simulator: construction from a seed, the ASGI app, control routes."""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

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
from syncd.simulators.salesforce.faults import FaultAnswers
from syncd.simulators.salesforce.schema import (
    MAX_URI_BYTES,
    SCHEMA,
    UPDATED_ID_LIMIT,
    custom_fields,
)
from syncd.simulators.salesforce.storage import (
    _Cursor,
    _Table,
)
from syncd.simulators.salesforce.wire import (
    _lifespan,
    _not_found,
    _Response,
    _send,
    _versions,
)


class SalesforceSimulator(FaultAnswers):
    """A seeded, in-memory Salesforce org served as an ASGI app (`app`).

    `seed` is the ``"salesforce"`` section of a seed file (see docs/interfaces.md) plus the optional
    keys ``tasks``, ``token_ttl_s``, ``faults``, ``drop_fields``, ``custom_fields`` (per object, a
    list of ``{"name": "X__c", "type": "string", "length": 18, "updateable": true}``: an org's own
    fields, such as the link's mirror `sync.crm_link_field`), ``org_id``,
    ``updated_id_limit`` and, under
    ``oauth``, ``password``, ``refresh_token``, ``rotate_refresh_tokens``, ``jwt_public_key``.
    A Lead or Contact may be seeded with ``"IsDeleted": true`` (and ``"MasterRecordId"``, a
    merge loser): only ``queryAll`` and ``sobjects/X/deleted`` see it.
    The direct state methods (`records`, `get`, `insert`, `modify`, `remove`, `convert_lead`,
    `merge`) model what a CRM user does in the UI; they are not API calls and are not counted.
    `POST /__sim__/merge` runs `merge` over HTTP.
    """

    def __init__(
        self,
        seed: dict[str, Any] | None = None,
        *,
        tokens: TokenRegistry | None = None,
        faults: Faults | None = None,
        clock: Clock = wall_clock,
        base_url: str = "http://127.0.0.1:8401",
        updated_id_limit: int | None = None,
    ) -> None:
        seed = dict(seed or {})
        self.clock = clock
        self.base_url = base_url
        self.updated_id_limit = int(
            updated_id_limit
            if updated_id_limit is not None
            else seed.get("updated_id_limit", UPDATED_ID_LIMIT)
        )
        self._written = written.WrittenCounter()
        self.tokens = tokens if tokens is not None else TokenRegistry(clock)
        if seed.get("token_ttl_s") is not None:
            self.tokens.ttl_s = float(seed["token_ttl_s"])
        self.counters = Counters()
        self.daily_api_limit = int(seed.get("daily_api_limit", 100_000))
        self.api_usage = 0
        self.assignment_owner_id: str | None = (seed.get("assignment_rule") or {}).get("owner_id")
        self.duplicate_rule = bool(seed.get("duplicate_rule", False))
        self._id_counter = 0
        self._last_stamp = datetime(2000, 1, 1, tzinfo=UTC)
        self._undo: list[Callable[[], None]] | None = None
        self._cursors: OrderedDict[str, _Cursor] = OrderedDict()
        self.tables = {name: _Table(name) for name in SCHEMA}
        self._dropped = {
            obj: {f.lower() for f in names}
            for obj, names in (seed.get("drop_fields") or {}).items()
        }
        self._custom = custom_fields(seed.get("custom_fields") or {})
        self._build_schema()
        self.org_id = seed.get("org_id") or self.new_id("00D")
        oauth = dict(seed.get("oauth") or {})
        self.client_id: str = oauth.get("client_id", "syncd-sim-client")
        self.client_secret: str = oauth.get("client_secret", "syncd-sim-secret")
        self.oauth_password: str | None = oauth.get("password")
        self.rotate_refresh_tokens = bool(oauth.get("rotate_refresh_tokens", False))
        self.jwt_public_key: str | None = oauth.get("jwt_public_key")
        self._refresh_tokens: set[str] = set()
        if oauth.get("refresh_token"):
            self._refresh_tokens.add(str(oauth["refresh_token"]))
        self._load_seed(seed, oauth.get("username", "connector@sim.example"))
        fault_cfg = faults if faults is not None else Faults.from_seed(seed.get("faults"))
        self.faults = fault_cfg  # `POST /__sim__/faults` changes it in place
        self.app: ASGIApp = SimulatorMiddleware(
            self._asgi,
            counters=self.counters,
            faults=fault_cfg,
            bodies=FaultBodies(server_error=self._fault_5xx, rate_limited=self._fault_burst),
            exempt=lambda path: path.startswith("/services/oauth2/"),
        )

    async def _asgi(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        response = self._handle(scope, body)
        await _send(send, response)

    def _handle(self, scope: Scope, body: bytes) -> _Response:
        raw_path: bytes = scope.get("raw_path") or scope["path"].encode()
        query_string: bytes = scope.get("query_string", b"")
        if len(raw_path) + len(query_string) + 1 > MAX_URI_BYTES:
            return _Response(
                414,
                raw=b"<html><body><h1>414 URI Too Long</h1></body></html>",
                content_type="text/html",
            )
        path: str = scope["path"]
        method: str = scope["method"]
        headers = {
            k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])
        }
        params = dict(parse_qsl(query_string.decode("latin-1"), keep_blank_values=True))
        if path.startswith(SIM_PREFIX):
            return self._control(method, path, body)
        if path == "/services/oauth2/token":
            if method != "POST":
                return _Response(
                    405, [{"errorCode": "METHOD_NOT_ALLOWED", "message": "HTTP Method not allowed"}]
                )
            return self._token(body, headers)
        if path.startswith("/id/"):
            return self._identity(path, headers, params)
        if path.rstrip("/") == "/services/data":
            return _Response(200, _versions())
        if path.startswith("/services/data/"):
            return self._rest(method, path, params, headers, body)
        return _Response(404, _not_found().body())

    def _control(self, method: str, path: str, body: bytes = b"") -> _Response:
        if path == f"{SIM_PREFIX}/faults" and method in ("GET", "POST"):
            try:
                now = update_faults(self.faults, body if method == "POST" else b"{}")
            except ValueError as exc:
                return _Response(400, [{"errorCode": "INVALID_FAULTS", "message": str(exc)}])
            return _Response(200, now)
        if path == f"{SIM_PREFIX}/counters" and method == "GET":
            return _Response(200, {**self.counters.snapshot(), "api_usage": self.api_usage})
        if path == f"{SIM_PREFIX}/reset-counters" and method == "POST":
            self.counters.reset()
            self.api_usage = 0
            return _Response(200, {"ok": True})
        if path == f"{SIM_PREFIX}/written" and method == "GET":
            return _Response(200, self.written())
        if path == f"{SIM_PREFIX}/merge" and method == "POST":
            return self._merge_control(body)
        return _Response(404, _not_found().body())

    def _merge_control(self, body: bytes) -> _Response:
        """`POST /__sim__/merge` `{"sobject", "masterId", "mergedIds"}` -> 200 the merge."""
        try:
            data = json.loads(body) if body.strip() else None
        except ValueError:
            data = None
        if (
            not isinstance(data, dict)
            or not isinstance(data.get("masterId"), str)
            or not isinstance(data.get("mergedIds"), list)
        ):
            return _Response(
                400,
                [
                    {
                        "errorCode": "INVALID_MERGE",
                        "message": 'send JSON {"sobject": "Lead", "masterId": "00Q...", '
                        '"mergedIds": ["00Q..."]}',
                    }
                ],
            )
        try:
            done = self.merge(
                str(data.get("sobject") or "Lead"),
                data["masterId"],
                [str(i) for i in data["mergedIds"]],
            )
        except ValueError as exc:
            return _Response(400, [{"errorCode": "INVALID_MERGE", "message": str(exc)}])
        return _Response(200, done)
