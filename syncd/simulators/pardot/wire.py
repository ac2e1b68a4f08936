"""Answers on the wire: the v5 error shape, JSON bodies, ASGI output, fault bodies."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from syncd.simulators._base import (
    CannedResponse,
    Send,
    json_bytes,
)


class ApiError(Exception):
    """An answer in the Pardot v5 error shape (raised inside handlers, rendered by the app)."""

    def __init__(
        self, status: int, code: int, message: str, headers: tuple[tuple[str, str], ...] = ()
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers


@dataclass
class _Answer:
    status: int
    body: Any = None  # JSON value; None: no body
    headers: list[tuple[str, str]] = field(default_factory=list)
    raw: bytes | None = None  # a non-JSON body (the Import API's error CSV), sent as is
    content_type: str = "application/json"


def _json_object(body: bytes) -> dict[str, Any]:
    if not body.strip():
        raise ApiError(400, 152, "Request body can't be empty")
    try:
        value = json.loads(body)
    except ValueError:
        raise ApiError(400, 150, "Input needs to be valid JSON") from None
    if not isinstance(value, dict):
        raise ApiError(400, 150, "Input needs to be valid JSON: expected an object")
    return value


SERVICE_UNAVAILABLE_HTML = (
    b"<!DOCTYPE html><html><head><title>503 Service Unavailable</title></head><body>"
    b"<h1>Service Unavailable</h1><p>The server is temporarily unable to service your request."
    b" Please try again later.</p></body></html>"
)


def _server_error(status: int) -> CannedResponse:
    if status == 503:
        return CannedResponse(503, SERVICE_UNAVAILABLE_HTML, "text/html; charset=utf-8")
    body = {"code": 183, "message": "An internal error occurred, please try your request again"}
    return CannedResponse(status, json_bytes(body))


async def _send_answer(send: Send, answer: _Answer) -> None:
    if answer.raw is not None:
        body = answer.raw
    else:
        body = b"" if answer.body is None else json_bytes(answer.body)
    headers = [(k.lower().encode(), v.encode()) for k, v in answer.headers]
    if answer.body is not None or answer.raw is not None:
        headers.append((b"content-type", answer.content_type.encode()))
    headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": answer.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
