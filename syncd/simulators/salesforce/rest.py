"""The REST routes under `/services/data/vXX.X`: versions, limits, sObjects and describe, and the
dispatch to the query, replication and composite layers."""

from __future__ import annotations

import json
from collections.abc import Mapping
from email.utils import format_datetime
from typing import Any

from syncd.simulators import soql
from syncd.simulators.salesforce.oauth import OAuthApi
from syncd.simulators.salesforce.schema import (
    _TYPE_LABELS,
    _VERSION,
    MAX_VERSION,
    MIN_VERSION,
    SCHEMA,
    WRITABLE,
    _render,
)
from syncd.simulators.salesforce.wire import (
    SalesforceError,
    _err,
    _not_found,
    _Request,
    _resources,
    _Response,
)


class RestApi(OAuthApi):
    """Routing of REST calls, sObject resources and describe."""

    def _rest(
        self,
        method: str,
        path: str,
        params: dict[str, str],
        headers: Mapping[str, str],
        body: bytes,
    ) -> _Response:
        segments = path[len("/services/data/") :].strip("/").split("/")
        m = _VERSION.match(segments[0])
        if m is None or not MIN_VERSION <= int(m.group(1)) <= MAX_VERSION:
            return _Response(404, _not_found().body())
        version = f"{m.group(1)}.{m.group(2)}"
        user_id = self._bearer(headers)
        if user_id is None:
            return self._with_limit(
                _Response(
                    401,
                    [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}],
                )
            )
        if self.api_usage >= self.daily_api_limit:
            return self._with_limit(
                _Response(
                    403,
                    [
                        {
                            "message": "TotalRequests Limit exceeded.",
                            "errorCode": "REQUEST_LIMIT_EXCEEDED",
                        }
                    ],
                )
            )
        self.api_usage += 1
        try:
            parsed = json.loads(body) if body.strip() else None
        except (ValueError, UnicodeDecodeError) as exc:
            return self._with_limit(
                _Response(400, _err("JSON_PARSER_ERROR", f"Unexpected character: {exc}").body())
            )
        req = _Request(method, segments[1:], version, params, headers, parsed, user_id)
        return self._with_limit(self._dispatch(req))

    def _with_limit(self, response: _Response) -> _Response:
        name, value = self._limit_header()
        response.headers[name] = value
        return response

    def _dispatch(self, req: _Request) -> _Response:
        try:
            return self._route(req)
        except SalesforceError as exc:
            body: list[dict[str, Any]] = exc.body()
            if exc.duplicate_result is not None:
                # The real server spells this key "duplicateResut" (wire-formats B.9).
                body = [{"duplicateResut": exc.duplicate_result, **body[0]}]
            return _Response(exc.status, body)
        except soql.SoqlError as exc:
            return _Response(400, [{"message": exc.message, "errorCode": exc.code}])

    def _route(self, req: _Request) -> _Response:
        p, m = req.parts, req.method
        if p == [""] or not p:
            return self._allow(m, "GET") or _Response(200, _resources(req.version))
        head = p[0]
        if head == "limits" and len(p) == 1:
            return self._allow(m, "GET") or self._limits()
        if head in ("query", "queryAll") and len(p) <= 2:
            return self._allow(m, "GET") or (
                self._query(req, include_deleted=head == "queryAll")
                if len(p) == 1
                else self._query_more(req, p[1])
            )
        if head == "sobjects":
            return self._sobjects(req)
        if head == "composite" and p[1:] == ["sobjects"]:
            return self._collections(req)
        if head == "composite" and len(p) == 1:
            return self._allow(m, "POST") or self._composite(req)
        raise _not_found()

    def _limits(self) -> _Response:
        remaining = max(self.daily_api_limit - self.api_usage, 0)
        return _Response(
            200,
            {
                "DailyApiRequests": {"Max": self.daily_api_limit, "Remaining": remaining},
                "DailyBulkApiBatches": {"Max": 15000, "Remaining": 15000},
                "DataStorageMB": {"Max": 1024, "Remaining": 1024},
            },
        )

    def _sobjects(self, req: _Request) -> _Response:
        p, m = req.parts, req.method
        if len(p) == 1:
            return self._allow(m, "GET") or _Response(
                200,
                {
                    "encoding": "UTF-8",
                    "maxBatchSize": 200,
                    "sobjects": [self._describe_head(n, req.version) for n in SCHEMA],
                },
            )
        sobject = self._sobject_name(p[1])
        if len(p) == 2:
            if m == "POST":
                return self._create_one(req, sobject)
            return self._allow(m, "GET", "POST") or _Response(
                200,
                {"objectDescribe": self._describe_head(sobject, req.version), "recentItems": []},
            )
        if len(p) == 3 and p[2] == "describe":
            return self._allow(m, "GET") or _Response(200, self._describe(sobject, req.version))
        if len(p) == 3 and p[2] in ("updated", "deleted"):
            return self._allow(m, "GET") or self._replication(req, sobject, p[2])
        if len(p) == 3:
            return self._record(req, sobject, p[2])
        raise _not_found()

    def _create_one(self, req: _Request, sobject: str) -> _Response:
        self._note_write(sobject, req.body)
        rid = self._create(sobject, req.body, self._save_ctx(req), version=req.version)
        return _Response(
            201,
            {"id": rid, "success": True, "errors": []},
            {"Location": f"/services/data/v{req.version}/sobjects/{sobject}/{rid}"},
        )

    def _record(self, req: _Request, sobject: str, record_id: str) -> _Response:
        if req.method == "GET":
            rec = self._find(sobject, record_id)
            return _Response(
                200,
                self._full_record(sobject, rec, req.version),
                {"Last-Modified": format_datetime(rec["LastModifiedDate"], usegmt=True)},
            )
        if req.method == "PATCH":
            self._note_write(sobject, req.body)
            self._update(sobject, record_id, req.body, self._save_ctx(req))
            return _Response(204)
        if req.method == "DELETE":
            self._delete(sobject, record_id)
            return _Response(204)
        return self._allow(req.method, "GET", "PATCH", "DELETE") or _Response(204)

    def _full_record(self, sobject: str, rec: Mapping[str, Any], version: str) -> dict[str, Any]:
        out: dict[str, Any] = {
            "attributes": {
                "type": sobject,
                "url": f"/services/data/v{version}/sobjects/{sobject}/{rec['Id']}",
            }
        }
        for spec in self.fields[sobject].values():
            out[spec.name] = _render(rec.get(spec.name))
        return out

    def _describe_head(self, sobject: str, version: str) -> dict[str, Any]:
        label, plural = _TYPE_LABELS[sobject]
        writable = sobject in WRITABLE
        return {
            "name": sobject,
            "label": label,
            "labelPlural": plural,
            "keyPrefix": SCHEMA[sobject][0],
            "custom": False,
            "createable": writable,
            "updateable": writable,
            "deletable": writable,
            "queryable": True,
            "replicateable": True,
            "urls": {
                "sobject": f"/services/data/v{version}/sobjects/{sobject}",
                "describe": f"/services/data/v{version}/sobjects/{sobject}/describe",
                "rowTemplate": f"/services/data/v{version}/sobjects/{sobject}/{{ID}}",
            },
        }

    def _describe(self, sobject: str, version: str) -> dict[str, Any]:
        head = self._describe_head(sobject, version)
        fields = []
        for spec in self.fields[sobject].values():
            entry = spec.describe()
            if sobject not in WRITABLE:
                entry.update(createable=False, updateable=False)
            fields.append(entry)
        return {**head, "fields": fields}
