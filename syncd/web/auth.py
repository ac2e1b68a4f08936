"""Who is asking: admin and viewer tokens, the sign-in cookie, and CSRF tokens.

- With `ops.bearer_token` (and optionally `ops.viewer_token`) set, every route but `/healthz`
  needs `Authorization: Bearer <token>` or the session cookie that signing in with a token
  sets. The admin token may act; the viewer token may only look (actions answer 403).
- With no token set, anyone who can reach the (loopback by default) address is admin, named
  "anonymous"; the browser still gets a session cookie so that CSRF protection works the same.
- The cookie is `role.expiry.nonce.mac`: an HMAC-SHA256 over the rest, keyed by a hash of the
  token of that role, so rotating a token signs its sessions out, and every host sharing the
  tokens accepts the cookie. HttpOnly, SameSite=Strict, `Secure` when served over TLS.
- CSRF: each form carries `HMAC(key, "csrf" + nonce)` of the session; every POST authenticated
  by the cookie must present it (form field `csrf` or header `X-CSRF-Token`). A request signed
  with an `Authorization` header is not forgeable by another site and needs none.
- Tokens are compared in constant time and never echoed or logged.
- Guessing is throttled (`SignInThrottle`): after `REFUSALS_ALLOWED` refused tokens from one
  client address within `REFUSAL_WINDOW_S` (sign-in form or `Authorization` header alike),
  every attempt from that address is answered 429 with `Retry-After` until the oldest refusal
  leaves the window, even one with the right token (or guessing would go on, only slower).
  Signed cookies are not throttled: they cannot be guessed. Behind a reverse proxy every
  client has the proxy's address, so a guesser there delays everyone's sign-in, never a
  session already open.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

COOKIE = "syncd_session"
LOGIN_COOKIE = "syncd_login"
SESSION_S = 12 * 3600
REFUSALS_ALLOWED = 10
REFUSAL_WINDOW_S = 600.0
THROTTLE_ADDRESSES = 10_000  # addresses remembered at most (the oldest is forgotten first)


class Role(StrEnum):
    ADMIN = "admin"
    VIEWER = "viewer"


@dataclass(frozen=True, slots=True)
class Principal:
    """A signed-in caller: its role, its name in the audit, and its CSRF token (or None)."""

    role: Role
    who: str
    csrf: str | None
    via_header: bool = False

    @property
    def can_act(self) -> bool:
        return self.role is Role.ADMIN


class Auth:
    """Token checks and session cookies for one console (see the module docstring)."""

    def __init__(self, admin_token: str | None, viewer_token: str | None) -> None:
        self._tokens: dict[Role, bytes] = {}
        if admin_token:
            self._tokens[Role.ADMIN] = admin_token.encode()
        if viewer_token:
            self._tokens[Role.VIEWER] = viewer_token.encode()
        # open mode (no token): sessions are signed with a key of this process
        self._open_key = secrets.token_bytes(32)
        self._keys = {
            role: hashlib.sha256(b"syncd-console-session\0" + tok).digest()
            for role, tok in self._tokens.items()
        }

    @property
    def required(self) -> bool:
        """True when a token is configured: callers must sign in."""
        return bool(self._tokens)

    def _key(self, role: Role) -> bytes | None:
        if not self.required:
            return self._open_key
        return self._keys.get(role)

    def role_of_token(self, presented: str) -> Role | None:
        """The role whose token this is, compared in constant time; None when none matches."""
        got = presented.strip().encode("utf-8", "surrogateescape")
        found = None
        for role, token in self._tokens.items():
            if hmac.compare_digest(got, token):
                found = role
        return found

    def from_header(self, header: str) -> Principal | None:
        scheme, _, credentials = header.partition(" ")
        if scheme.lower() != "bearer" or not credentials:
            return None
        role = self.role_of_token(credentials)
        return None if role is None else Principal(role, role.value, None, via_header=True)

    def new_session(self, role: Role, *, now_s: float | None = None) -> str:
        """A fresh cookie value for `role`."""
        key = self._key(role)
        if key is None:
            raise ValueError(f"no {role} token is configured")
        expiry = int((now_s if now_s is not None else time.time()) + SESSION_S)
        body = f"{role.value}.{expiry}.{secrets.token_urlsafe(16)}"
        return f"{body}.{_mac(key, body)}"

    def from_cookie(self, value: str, *, now_s: float | None = None) -> Principal | None:
        """The principal of a valid, unexpired cookie; None otherwise."""
        parts = value.split(".")
        if len(parts) != 4:
            return None
        role_text, expiry, nonce, mac = parts
        try:
            role = Role(role_text)
        except ValueError:
            return None
        key = self._key(role)
        if key is None or not expiry.isdigit():
            return None
        body = f"{role_text}.{expiry}.{nonce}"
        if not hmac.compare_digest(mac.encode(), _mac(key, body).encode()):
            return None
        if int(expiry) < (now_s if now_s is not None else time.time()):
            return None
        who = role.value if self.required else "anonymous"
        role = role if self.required else Role.ADMIN
        return Principal(role, who, _mac(key, "csrf\0" + nonce))

    def open_principal(self) -> Principal | None:
        """Without tokens, everyone is admin (but still needs a session for CSRF)."""
        return None if self.required else Principal(Role.ADMIN, "anonymous", None)

    @staticmethod
    def csrf_ok(principal: Principal, presented: str | None) -> bool:
        if principal.via_header:
            return True
        if principal.csrf is None or not presented:
            return False
        return hmac.compare_digest(presented.encode(), principal.csrf.encode())


def _mac(key: bytes, body: str) -> str:
    return hmac.new(key, body.encode(), hashlib.sha256).hexdigest()[:43]


class SignInThrottle:
    """Refused tokens per client address, in a sliding window (see the module docstring).

    `wait_s(address)`: None when the address may try, else the seconds until it may;
    `refused(address)` counts a wrong token. A right token does not clear the count: a
    scraper's valid requests from the guesser's address (one proxy) would otherwise reset it
    every few seconds. `clock` gives seconds (the console's clock).
    """

    def __init__(
        self,
        *,
        allowed: int = REFUSALS_ALLOWED,
        window_s: float = REFUSAL_WINDOW_S,
        clock: Callable[[], float] = time.monotonic,
        max_addresses: int = THROTTLE_ADDRESSES,
    ) -> None:
        self.allowed, self.window_s, self.clock = allowed, window_s, clock
        self.max_addresses = max_addresses
        self._refusals: OrderedDict[str, deque[float]] = OrderedDict()

    def _recent(self, address: str, now: float) -> deque[float] | None:
        times = self._refusals.get(address)
        if times is None:
            return None
        while times and times[0] <= now - self.window_s:
            times.popleft()
        if not times:
            del self._refusals[address]
            return None
        return times

    def wait_s(self, address: str) -> float | None:
        now = self.clock()
        times = self._recent(address, now)
        if times is None or len(times) < self.allowed:
            return None
        return max(1.0, times[0] + self.window_s - now)

    def refused(self, address: str) -> bool:
        """Count a refusal; True when it is the one that starts the throttling."""
        now = self.clock()
        times = self._recent(address, now)
        if times is None:
            times = self._refusals[address] = deque(maxlen=self.allowed)
            while len(self._refusals) > self.max_addresses:
                self._refusals.popitem(last=False)
        self._refusals.move_to_end(address)
        times.append(now)
        return len(times) == self.allowed
