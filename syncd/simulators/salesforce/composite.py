"""sObject Collections (`composite/sobjects`) and Composite (`composite`) requests."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl

from syncd.simulators import soql
from syncd.simulators.salesforce.replication import ReplicationApi
from syncd.simulators.salesforce.schema import (
    _REF,
    _VERSION,
    MAX_COLLECTION,
    MAX_COMPOSITE,
    MAX_COMPOSITE_QUERIES_AND_COLLECTIONS,
    SCHEMA,
)
from syncd.simulators.salesforce.storage import _SaveContext
from syncd.simulators.salesforce.wire import (
    SalesforceError,
    _err,
    _not_found,
    _Request,
    _Response,
)


class CompositeApi(ReplicationApi):
    """Batches of writes and subrequests, with their limits and all-or-none rollback."""

    def _dispatch(self, req: _Request) -> _Response:
        """Answer one REST request; the REST layer (`rest.RestApi`) routes it."""
        raise NotImplementedError

    def _collections(self, req: _Request) -> _Response:
        if req.method == "DELETE":
            ids = [i for i in req.params.get("ids", "").split(",") if i]
            all_or_none = req.params.get("allOrNone", "false").lower() == "true"
            items: list[Any] = ids
        elif req.method in ("POST", "PATCH"):
            if not isinstance(req.body, dict) or not isinstance(req.body.get("records"), list):
                raise _err(
                    "JSON_PARSER_ERROR", "The request body must be an object with a records array"
                )
            items = req.body["records"]
            all_or_none = bool(req.body.get("allOrNone", False))
        else:
            return self._allow(req.method, "POST", "PATCH", "DELETE") or _Response(200)
        if len(items) > MAX_COLLECTION:
            raise _err(
                "EXCEEDED_ID_LIMIT",
                "record limit reached. cannot submit more than 200 records into this call",
            )
        ctx = self._save_ctx(req)
        results: list[dict[str, Any]] = []
        failed = False
        with self._transaction() as tx:
            for item in items:
                try:
                    rid = self._collection_item(req, item, ctx)
                    results.append({"id": rid, "success": True, "errors": []})
                except SalesforceError as exc:
                    failed = True
                    results.append({"success": False, "errors": [self._item_error(exc)]})
            if failed and all_or_none:
                tx.rollback()
                results = [
                    r
                    if not r["success"]
                    else {
                        "success": False,
                        "errors": [
                            {
                                "statusCode": "ALL_OR_NONE_OPERATION_ROLLED_BACK",
                                "message": "Record rolled back because not all records were valid"
                                " and the"
                                " request was using AllOrNone header",
                                "fields": [],
                            }
                        ],
                    }
                    for r in results
                ]
        return _Response(200, results)

    @staticmethod
    def _item_error(exc: SalesforceError) -> dict[str, Any]:
        item = exc.item()
        if exc.duplicate_result is not None:
            item["duplicateResult"] = exc.duplicate_result
        return item

    def _collection_item(self, req: _Request, item: Any, ctx: _SaveContext) -> str:
        if req.method == "DELETE":
            raw = str(item)
            if soql.id15(raw) is None:
                raise _err("MALFORMED_ID", f"malformed id {item}", [])
            sobject = {SCHEMA[n][0]: n for n in SCHEMA}.get(raw[:3])
            stored = self.tables[sobject].resolve(raw) if sobject is not None else None
            if sobject is None or stored is None:
                raise _err("INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id", [])
            self._delete(sobject, stored)
            return stored
        if not isinstance(item, dict):
            raise _err("JSON_PARSER_ERROR", "Each record must be a JSON object")
        attrs = item.get("attributes")
        type_name = attrs.get("type") if isinstance(attrs, dict) else None
        self._note_write(
            self._known_name(str(type_name or "?")), item, address=req.method == "PATCH"
        )
        if not type_name:
            # UNCONFIRMED: the exact wording; the real server rejects records without a type.
            raise _err("INVALID_TYPE", "Must specify a type in the attributes map of a sObject", [])
        sobject = self._sobject_name_or_type_error(str(type_name))
        body = {k: v for k, v in item.items() if k != "attributes"}
        if req.method == "POST":
            return self._create(sobject, body, ctx, version=req.version)
        key = next((k for k in body if k.lower() == "id"), None)
        record_id = body.pop(key) if key is not None else None
        if not record_id:
            raise _err("MISSING_ARGUMENT", "Id not specified in an update call", [])
        rec = self._find_for_item(sobject, str(record_id))
        self._update(sobject, rec, body, ctx)
        return rec

    def _find_for_item(self, sobject: str, record_id: str) -> str:
        if soql.id15(record_id) is None:
            raise _err(
                "MALFORMED_ID", f"{sobject} ID: id value of incorrect type: {record_id}", ["Id"]
            )
        table = self.tables[sobject]
        stored = table.resolve(record_id)
        if stored is not None and stored in table.deleted:
            raise _err("ENTITY_IS_DELETED", "entity is deleted", [])
        if stored is None or stored not in table.rows:
            raise _err("INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id", [])
        return stored

    def _sobject_name_or_type_error(self, name: str) -> str:
        try:
            return self._sobject_name(name)
        except SalesforceError:
            raise _err("INVALID_TYPE", f"sObject type '{name}' is not supported.", []) from None

    def _composite(self, req: _Request) -> _Response:
        body = req.body
        if not isinstance(body, dict) or not isinstance(body.get("compositeRequest"), list):
            raise _err(
                "JSON_PARSER_ERROR",
                "The request body must be an object with a compositeRequest array",
            )
        subs: list[Any] = body["compositeRequest"]
        if len(subs) > MAX_COMPOSITE:
            # UNCONFIRMED: the errorCode for too many subrequests (module docstring).
            raise _err(
                "INVALID_BATCH_REQUEST",
                f"Received invalid composite request: at most {MAX_COMPOSITE} subrequests",
            )
        heavy = sum(1 for sub in subs if _is_query_or_collection(sub))
        if heavy > MAX_COMPOSITE_QUERIES_AND_COLLECTIONS:
            # UNCONFIRMED: the status and errorCode (module docstring).
            raise _err(
                "INVALID_BATCH_REQUEST",
                "Received invalid composite request: at most"
                f" {MAX_COMPOSITE_QUERIES_AND_COLLECTIONS} subrequests may be queries or sObject"
                f" Collections; got {heavy}",
            )
        all_or_none = bool(body.get("allOrNone", False))
        results: dict[str, Any] = {}
        answers: list[dict[str, Any]] = []
        halted = False
        with self._transaction() as tx:
            for sub in subs:
                ref = str(sub.get("referenceId", "")) if isinstance(sub, dict) else ""
                if halted:
                    answers.append(_halted(ref))
                    continue
                if isinstance(sub, dict):
                    self.counters.record_subrequest(
                        str(sub.get("method", "GET")).upper(), str(sub.get("url", "")).split("?")[0]
                    )
                answer = self._subrequest(req, sub, results)
                answers.append({**answer, "referenceId": ref})
                results[ref] = answer["body"]
                if answer["httpStatusCode"] >= 400 and all_or_none:
                    halted = True
            if halted:
                tx.rollback()
                answers = [
                    a if a["httpStatusCode"] >= 400 else _halted(a["referenceId"]) for a in answers
                ]
        return _Response(200, {"compositeResponse": answers})

    def _subrequest(self, req: _Request, sub: Any, results: Mapping[str, Any]) -> dict[str, Any]:
        try:
            if not isinstance(sub, dict) or "method" not in sub or "url" not in sub:
                raise _err(
                    "INVALID_BATCH_REQUEST", "Each subrequest needs method, url and referenceId"
                )
            url = _resolve_refs(str(sub["url"]), results)
            body = _resolve_refs(sub.get("body"), results)
        except SalesforceError as exc:
            return {"body": exc.body(), "httpHeaders": {}, "httpStatusCode": exc.status}
        path, _, query = url.partition("?")
        segments = (
            path[len("/services/data/") :].strip("/").split("/")
            if path.startswith("/services/data/")
            else []
        )
        m = _VERSION.match(segments[0]) if segments else None
        if m is None:
            return {"body": _not_found().body(), "httpHeaders": {}, "httpStatusCode": 404}
        sub_req = _Request(
            str(sub["method"]).upper(),
            segments[1:],
            f"{m.group(1)}.{m.group(2)}",
            dict(parse_qsl(query, keep_blank_values=True)),
            {
                **req.headers,
                **{k.lower(): str(v) for k, v in (sub.get("httpHeaders") or {}).items()},
            },
            body,
            req.user_id,
        )
        response = self._dispatch(sub_req)
        return {
            "body": response.body,
            "httpHeaders": response.headers,
            "httpStatusCode": response.status,
        }


def _is_query_or_collection(sub: Any) -> bool:
    """A composite subrequest that counts against the limit of 5: a query or a collection."""
    if not isinstance(sub, dict):
        return False
    path = str(sub.get("url", "")).split("?")[0]
    segments = path[len("/services/data/") :].strip("/").split("/")[1:]
    return bool(segments) and (
        segments[0] in ("query", "queryAll") or segments[:2] == ["composite", "sobjects"]
    )


def _halted(ref: str) -> dict[str, Any]:
    return {
        "body": [
            {
                "errorCode": "PROCESSING_HALTED",
                "message": "The transaction was rolled back since another operation in"
                " the same transaction failed.",
            }
        ],
        "httpHeaders": {},
        "httpStatusCode": 400,
        "referenceId": ref,
    }


def _resolve_refs(value: Any, results: Mapping[str, Any]) -> Any:
    if isinstance(value, str):

        def sub(m: re.Match[str]) -> str:
            ref, path = m.group(1), m.group(2)
            target = results.get(ref)
            for part in re.findall(r"[^.\[\]]+", path):
                if isinstance(target, dict):
                    target = target.get(part)
                elif isinstance(target, list) and part.isdigit() and int(part) < len(target):
                    target = target[int(part)]
                else:
                    target = None
            if target is None:
                raise _err(
                    "PROCESSING_HALTED",
                    f"Invalid reference specified. No value for {ref}.{path} found in {ref}.",
                )
            return str(target)

        return _REF.sub(sub, value)
    if isinstance(value, dict):
        return {k: _resolve_refs(v, results) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve_refs(v, results) for v in value]
    return value
