"""What both simulators share: the token registry, fault injection, request counters and the clock.

The Salesforce and Pardot simulators are ASGI apps. Each is wrapped in `SimulatorMiddleware`, which
counts every request, adds latency, and injects the configured faults before (5xx, rate limits) or
after (lost responses) the simulator handles the request. The fault *bodies* are the simulator's
own (Salesforce error arrays, Pardot `{code, message}`), supplied through `FaultBodies`.
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import threading
from collections import Counter
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from random import Random
from typing import Any

import httpx

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

Clock = Callable[[], datetime]

WRITE_METHODS = frozenset({"POST", "PATCH", "PUT", "DELETE"})
SIM_PREFIX = "/__sim__"


def wall_clock() -> datetime:
    """The real time, in UTC (the default simulator clock)."""
    return datetime.now(UTC)


class ManualClock:
    """A clock tests move by hand: `clock.advance(seconds=5)`."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime(2026, 1, 5, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        self.now = self.now + timedelta(**delta)
        return self.now


@dataclass(frozen=True, slots=True)
class IssuedToken:
    """An access token the Salesforce simulator issued (Pardot accepts the same tokens)."""

    token: str
    user_id: str
    org_id: str
    issued_at: datetime
    expires_at: datetime | None


class TokenRegistry:
    """Access tokens issued by the Salesforce simulator and accepted by both simulators.

    `ttl_s` (None: tokens never expire) is the "token expiry after N seconds" fault.
    """

    def __init__(self, clock: Clock = wall_clock, ttl_s: float | None = None) -> None:
        self._clock = clock
        self.ttl_s = ttl_s
        self._tokens: dict[str, IssuedToken] = {}
        self._lock = threading.Lock()

    def issue(self, user_id: str, org_id: str) -> IssuedToken:
        now = self._clock()
        expires = now + timedelta(seconds=self.ttl_s) if self.ttl_s is not None else None
        # Real Salesforce tokens look like "<org id>!<opaque>"; clients must treat them as opaque.
        tok = IssuedToken(
            token=f"{org_id}!{secrets.token_urlsafe(48)}",
            user_id=user_id,
            org_id=org_id,
            issued_at=now,
            expires_at=expires,
        )
        with self._lock:
            self._tokens[tok.token] = tok
        return tok

    def validate(self, token: str) -> IssuedToken | None:
        """The token's record if it was issued and has not expired, else None."""
        with self._lock:
            tok = self._tokens.get(token)
        if tok is None:
            return None
        if tok.expires_at is not None and self._clock() >= tok.expires_at:
            return None
        return tok

    def expire_all(self) -> None:
        """Invalidate every token (what a session timeout or a password reset does)."""
        with self._lock:
            self._tokens.clear()


@dataclass
class Faults:
    """Fault injection settings for one simulator (all shares are 0..1 per request).

    Attributes:
        latency_ms: added to every request before it is handled.
        error_rate: share answered 500 or 503 without being handled.
        rate_limit_rate: share answered with the API's rate-limit error (Salesforce 403
            REQUEST_LIMIT_EXCEEDED burst, Pardot code 66) without being handled.
        lost_response_rate: share of writes that are handled (committed) but whose answer is lost:
            the client sees a 502 HTML page or a dropped connection.
        seed: seed of the random generator, for repeatable fault sequences.
    """

    latency_ms: float = 0.0
    error_rate: float = 0.0
    rate_limit_rate: float = 0.0
    lost_response_rate: float = 0.0
    seed: int | None = None

    @classmethod
    def from_rate(cls, rate: float, latency_ms: float = 0.0, seed: int | None = None) -> Faults:
        """The `--fault-rate F` preset: F errors, F/2 rate limits, F/5 lost responses."""
        return cls(
            latency_ms=latency_ms,
            error_rate=rate,
            rate_limit_rate=rate / 2,
            lost_response_rate=rate / 5,
            seed=seed,
        )

    @classmethod
    def from_seed(cls, section: dict[str, Any] | None) -> Faults:
        """Faults from a seed file's `"faults"` object (keys as the attribute names)."""
        if not section:
            return cls()
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(section) - known
        if unknown:
            raise ValueError(f"unknown fault settings {sorted(unknown)}; known: {sorted(known)}")
        return cls(**section)


def update_faults(faults: Faults, body: bytes) -> dict[str, Any]:
    """Apply a `POST /__sim__/faults` JSON object to `faults` in place; the new settings.

    Keys are the `Faults` attribute names (`{"error_rate": 0}` turns 5xx answers off); the
    middleware reads the object on every request, so the change applies to the next one.
    Raises ValueError naming an unknown key or a share outside 0..1.
    """
    try:
        update = json.loads(body or b"{}")
    except json.JSONDecodeError as exc:
        raise ValueError(f"fault settings must be a JSON object: {exc}") from None
    if not isinstance(update, dict):
        raise ValueError("fault settings must be a JSON object")
    known = {f for f in Faults.__dataclass_fields__} - {"seed"}
    unknown = set(update) - known
    if unknown:
        raise ValueError(f"unknown fault settings {sorted(unknown)}; known: {sorted(known)}")
    for key, value in update.items():
        if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
            raise ValueError(f"fault setting {key} must be a number >= 0")
        if key != "latency_ms" and value > 1:
            raise ValueError(f"fault setting {key} is a share: between 0 and 1")
        setattr(faults, key, float(value))
    return {k: getattr(faults, k) for k in sorted(known)}


@dataclass
class Counters:
    """Requests seen by a simulator, by method and route, readable in-process and over HTTP.

    A batch envelope (Salesforce `POST /composite`) carries reads and writes alike, so its
    subrequests are counted too (`subrequests`), and `writes` counts the envelope's write
    subrequests instead of the envelope itself: a composite of queries writes nothing.
    """

    requests: Counter[str] = field(default_factory=Counter)
    faults: Counter[str] = field(default_factory=Counter)
    subrequests: Counter[str] = field(default_factory=Counter)

    def record(self, method: str, path: str) -> None:
        self.requests[f"{method} {route_of(path)}"] += 1

    def record_subrequest(self, method: str, path: str) -> None:
        """One subrequest of a batch envelope (see the class docstring)."""
        self.subrequests[f"{method} {route_of(path)}"] += 1

    @property
    def total(self) -> int:
        return sum(self.requests.values())

    @property
    def writes(self) -> int:
        envelope = sum(
            n
            for key, n in self.requests.items()
            if key.split(" ", 1)[0] in WRITE_METHODS and not _is_envelope(key)
        )
        inside = sum(
            n for key, n in self.subrequests.items() if key.split(" ", 1)[0] in WRITE_METHODS
        )
        return envelope + inside

    def count(self, method: str | None = None, contains: str = "") -> int:
        """Requests whose method is `method` (any if None) and whose route contains `contains`."""
        return sum(
            n
            for key, n in self.requests.items()
            if (method is None or key.startswith(method + " ")) and contains in key
        )

    def reset(self) -> None:
        self.requests.clear()
        self.faults.clear()
        self.subrequests.clear()

    def snapshot(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "writes": self.writes,
            "requests": dict(sorted(self.requests.items())),
            "faults": dict(sorted(self.faults.items())),
            "subrequests": dict(sorted(self.subrequests.items())),
        }


def _is_envelope(key: str) -> bool:
    # "POST /services/data/v60.0/composite" (not ".../composite/sobjects", a collection write)
    return key.rstrip("/").endswith("/composite")


# Salesforce ids (15/18 chars with a 3-char key prefix), numbers, and query locators become {id}.
_ID_SEGMENT = re.compile(r"^(?:[a-zA-Z0-9]{3}[a-zA-Z0-9]{12}(?:[a-zA-Z0-9]{3})?|\d+|01g[\w-]+)$")
_VERSION = re.compile(r"^v\d+(?:\.\d+)?$")


def route_of(path: str) -> str:
    """A path with record ids replaced by `{id}`, so counters group by endpoint."""
    parts = []
    for seg in path.split("/"):
        if seg and not _VERSION.match(seg) and _ID_SEGMENT.match(seg) and not seg.isalpha():
            parts.append("{id}")
        else:
            parts.append(seg)
    return "/".join(parts)


@dataclass(frozen=True, slots=True)
class CannedResponse:
    status: int
    body: bytes
    content_type: str = "application/json"
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class FaultBodies:
    """The simulator-specific answers for injected faults."""

    server_error: Callable[[int], CannedResponse]
    rate_limited: Callable[[], CannedResponse]


BAD_GATEWAY_HTML = (
    b"<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head>"
    b"<body><h1>Bad Gateway</h1><p>The upstream server did not answer.</p></body></html>"
)


class SimulatorMiddleware:
    """Counts requests, adds latency, injects faults; exempts `/__sim__` control routes."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        counters: Counters,
        faults: Faults,
        bodies: FaultBodies,
        exempt: Callable[[str], bool] = lambda path: False,
    ) -> None:
        self.app = app
        self.counters = counters
        self.faults = faults
        self.bodies = bodies
        self.exempt = exempt
        self.rng = Random(faults.seed)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        method: str = scope["method"]
        if path.startswith(SIM_PREFIX):
            await self.app(scope, receive, send)
            return
        self.counters.record(method, path)
        f = self.faults
        if f.latency_ms > 0:
            await asyncio.sleep(f.latency_ms / 1000.0)
        if self.exempt(path):
            await self.app(scope, receive, send)
            return
        roll = self.rng.random()
        if roll < f.error_rate:
            status = 500 if self.rng.random() < 0.5 else 503
            self.counters.faults[f"http_{status}"] += 1
            await _send_canned(send, self.bodies.server_error(status))
            return
        if roll < f.error_rate + f.rate_limit_rate:
            self.counters.faults["rate_limited"] += 1
            await _send_canned(send, self.bodies.rate_limited())
            return
        if method in WRITE_METHODS and self.rng.random() < f.lost_response_rate:
            await self._lose_response(scope, receive, send)
            return
        await self.app(scope, receive, send)

    async def _lose_response(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Handle the request (the write commits), then lose the answer on its way back."""

        async def swallow(message: Message) -> None:
            return None

        await self.app(scope, receive, swallow)
        if self.rng.random() < 0.5:
            self.counters.faults["lost_502"] += 1
            await _send_canned(send, CannedResponse(502, BAD_GATEWAY_HTML, "text/html"))
            return
        self.counters.faults["lost_dropped"] += 1
        # Under uvicorn this closes the connection mid-answer; under httpx.ASGITransport the
        # exception reaches the client exactly as a dropped connection does.
        await send({"type": "http.response.start", "status": 200, "headers": []})
        raise httpx.RemoteProtocolError("peer closed connection without sending complete message")


async def _send_canned(send: Send, canned: CannedResponse) -> None:
    headers = [
        (b"content-type", canned.content_type.encode()),
        (b"content-length", str(len(canned.body)).encode()),
        *((k.lower().encode(), v.encode()) for k, v in canned.headers),
    ]
    await send({"type": "http.response.start", "status": canned.status, "headers": headers})
    await send({"type": "http.response.body", "body": canned.body})


def json_bytes(value: Any) -> bytes:
    """Compact JSON, as the real APIs send it."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()
