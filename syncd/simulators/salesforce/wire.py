"""Requests and answers on the wire: Salesforce's error shapes, the parsed request, ASGI output."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from syncd.simulators._base import (
    Receive,
    Send,
    json_bytes,
)
from syncd.simulators.salesforce.schema import MAX_VERSION


class SalesforceError(Exception):
    """An error answer: HTTP status plus Salesforce's error array entries."""

    def __init__(self, status: int, code: str, message: str, fields: list[str] | None = None):
        super().__init__(f"{code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.fields = fields
        self.duplicate_result: dict[str, Any] | None = None

    def body(self) -> list[dict[str, Any]]:
        entry: dict[str, Any] = {"message": self.message, "errorCode": self.code}
        if self.fields is not None:
            entry["fields"] = self.fields
        return [entry]

    def item(self) -> dict[str, Any]:
        """The per-record form inside collections: `statusCode`, always `fields`."""
        return {"statusCode": self.code, "message": self.message, "fields": self.fields or []}


def _err(
    code: str, message: str, fields: list[str] | None = None, status: int = 400
) -> SalesforceError:
    return SalesforceError(status, code, message, fields)


def _not_found() -> SalesforceError:
    return SalesforceError(404, "NOT_FOUND", "The requested resource does not exist")


@dataclass
class _Response:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    raw: bytes | None = None
    content_type: str = "application/json;charset=UTF-8"


@dataclass
class _Request:
    method: str
    parts: list[str]  # path segments after /services/data/vXX.X
    version: str
    params: dict[str, str]
    headers: Mapping[str, str]
    body: Any  # parsed JSON (None when empty)
    user_id: str


class _OAuthError(Exception):
    def __init__(self, error: str, description: str) -> None:
        super().__init__(f"{error}: {description}")
        self.error = error
        self.description = description


def _oauth_error(error: str, description: str) -> _Response:
    return _Response(400, {"error": error, "error_description": description})


def _versions() -> list[dict[str, str]]:
    out = []
    for v in range(31, MAX_VERSION + 1):
        k = v - 57  # v57.0 is Spring '23; three releases a year
        season = ("Spring", "Summer", "Winter")[k % 3]
        year = 23 + (k + 1) // 3
        out.append(
            {"label": f"{season} '{year:02d}", "url": f"/services/data/v{v}.0", "version": f"{v}.0"}
        )
    return out


def _resources(version: str) -> dict[str, str]:
    base = f"/services/data/v{version}"
    return {
        name: f"{base}/{name}" for name in ("sobjects", "query", "queryAll", "limits", "composite")
    }


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def _send(send: Send, response: _Response) -> None:
    if response.raw is not None:
        payload = response.raw
    elif response.body is None:
        payload = b""
    else:
        payload = json_bytes(response.body)
    headers = [
        (k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in response.headers.items()
    ]
    if payload or response.status != 204:
        headers.append((b"content-type", response.content_type.encode()))
    headers.append((b"content-length", str(len(payload)).encode()))
    await send({"type": "http.response.start", "status": response.status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})
