"""Salesforce OAuth: obtains, shares and renews the access token every API client uses.

One `SalesforceAuth` per process runs the configured flow (`salesforce.auth_flow`) against
`{salesforce.login_url}/services/oauth2/token` and hands the token to `SalesforceClient` and
`PardotClient` (Pardot accepts Salesforce tokens). It implements `syncd.clients.http.TokenSource`.

Flows (form-encoded POST, JSON answer; wire-formats.md section A):

- `client_credentials`: `client_id` + `client_secret`; the connected app's "Run As" user is the
  connector user. `login_url` must be the org's My Domain URL.
- `password`: `client_id`, `client_secret`, `username`, `password` (the password followed by the
  security token, exactly as configured). No refresh token is issued.
- `refresh_token`: `client_id` (+ `client_secret` when set) and the refresh token. When the
  connected app rotates refresh tokens, each answer carries a new one: it is handed to
  `on_refresh_token` so the caller can store it, and used for the next refresh.
- `jwt`: an RS256 JWT signed with `private_key_file` (iss = client id, sub = username,
  aud = the login host, exp = now + 3 min). No refresh token is issued.

Renewal: the token is renewed when an API answers 401 (`refresh(stale)`; concurrent callers share
one login) and proactively once it is older than `max_session_age_s` (Salesforce sessions last
about 2 h by default). A refused login (HTTP 4xx, e.g. `invalid_grant`) raises `AuthError` at once,
naming what to fix; 5xx answers and timeouts are retried under the `RetryPolicy`. Every token
obtained is registered with `syncd.logs.register_secret`, and no message carries a secret.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
import jwt

from syncd import errors, logs
from syncd.clients import http
from syncd.settings import SalesforceSettings

log = logs.get(__name__)

SYSTEM = "salesforce"
TOKEN_PATH = "/services/oauth2/token"
JWT_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
JWT_LIFETIME_S = 180  # what Salesforce's own examples and simple-salesforce use: now + 3 min
DEFAULT_MAX_SESSION_AGE_S = 90 * 60.0  # default session timeout is 2 h; renew well before

Clock = Callable[[], datetime]
RefreshTokenSink = Callable[[str], Awaitable[None]]


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Session:
    """One successful login: the bearer token, where to call, and who the connector user is."""

    access_token: str = field(repr=False)
    instance_url: str
    user_id: str
    org_id: str
    issued_at: datetime
    refresh_token: str | None = field(default=None, repr=False)


class SalesforceAuth:
    """The Salesforce access token for the configured OAuth flow; see the module docstring.

    Args:
        settings: the `[salesforce]` section.
        transport: an httpx transport (tests pass `httpx.ASGITransport(app=sim.app)`).
        on_refresh_token: awaited with each rotated refresh token so it can be stored.
        refresh_token: a stored (rotated) refresh token; overrides `settings.refresh_token`.
        clock: the time source (UTC) for session age and JWT expiry.
        retry: retry policy for 5xx answers and timeouts of the token endpoint.
        max_session_age_s: renew the token once it is this old, before Salesforce expires it.
        jwt_audience: the JWT `aud` claim; by default derived from `settings.login_url`.
    """

    def __init__(
        self,
        settings: SalesforceSettings,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        on_refresh_token: RefreshTokenSink | None = None,
        refresh_token: str | None = None,
        clock: Clock = _utc_now,
        retry: http.RetryPolicy | None = None,
        max_session_age_s: float = DEFAULT_MAX_SESSION_AGE_S,
        jwt_audience: str | None = None,
    ) -> None:
        self._settings = settings
        self._on_refresh_token = on_refresh_token
        self._clock = clock
        self._retry = retry if retry is not None else http.RetryPolicy()
        self._max_age = timedelta(seconds=max_session_age_s)
        self._jwt_audience = jwt_audience or jwt_audience_for(settings.login_url)
        configured = settings.refresh_token.get_secret_value() if settings.refresh_token else None
        self._refresh_token = refresh_token or configured
        self._session: Session | None = None
        self._obtained_at: datetime | None = None  # our clock, not Salesforce's issued_at
        self._lock = asyncio.Lock()
        self.logins = 0  # successful token requests, for tests and metrics
        logs.register_secrets(
            [settings.client_secret, settings.password, settings.refresh_token, refresh_token]
        )
        self._http = http.build_http_client(
            settings.login_url,
            transport=transport,
            timeout_s=settings.timeout_s,
            verify=settings.verify_tls,
            max_connections=2,
        )

    async def __aenter__(self) -> SalesforceAuth:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the token endpoint's HTTP connections."""
        await self._http.aclose()

    # -- TokenSource -----------------------------------------------------------------------

    async def session(self) -> Session:
        """The current session; logs in on first use and renews it once it is too old."""
        current = self._session
        if current is None:
            async with self._lock:
                if self._session is None:
                    await self._login()
                current = self._session
            assert current is not None
            return current
        if self._too_old():
            return await self._renew_early(current)
        return current

    async def token(self) -> str:
        """The current access token (see `session`)."""
        return (await self.session()).access_token

    async def instance_url(self) -> str:
        """The org's instance URL (`https://acme.my.salesforce.com`), where the REST API lives."""
        return (await self.session()).instance_url

    async def refresh(self, stale: str) -> str:
        """A new access token after `stale` was refused.

        Concurrent callers share one login: whoever comes second finds a token different from
        its `stale` one and gets it without a new login.
        """
        async with self._lock:
            current = self._session
            if current is not None and current.access_token != stale:
                return current.access_token
            session = await self._login()
            return session.access_token

    # -- internals ---------------------------------------------------------------------------

    def _too_old(self) -> bool:
        return self._obtained_at is not None and self._clock() - self._obtained_at >= self._max_age

    async def _renew_early(self, current: Session) -> Session:
        try:
            await self.refresh(current.access_token)
        except errors.RetriableAPIError as exc:
            # The old token usually has time left: keep using it, try again on the next call.
            log.warning("salesforce_early_renewal_failed", code=exc.code, status=exc.status)
        session = self._session
        assert session is not None
        return session

    async def _login(self) -> Session:
        """Run the configured flow once (with retries for transient failures); caller holds lock."""
        flow = self._settings.auth_flow
        form = await self._form(flow)
        answer = await self._retry.call(lambda: self._post_token(flow, form))
        session = self._session_from(answer)
        logs.register_secret(session.access_token)
        rotated = session.refresh_token
        if rotated:
            logs.register_secret(rotated)
            if rotated != self._refresh_token:
                self._refresh_token = rotated
                await self._store_refresh_token(rotated)
        self._session = session
        self._obtained_at = self._clock()
        self.logins += 1
        log.info(
            "salesforce_login",
            flow=flow,
            instance_url=session.instance_url,
            user_id=session.user_id,
            org_id=session.org_id,
        )
        return session

    async def _store_refresh_token(self, token: str) -> None:
        if self._on_refresh_token is None:
            log.warning(
                "salesforce_refresh_token_rotated_not_stored",
                hint="pass on_refresh_token to keep rotated refresh tokens across restarts",
            )
            return
        try:
            await self._on_refresh_token(token)
        except Exception as exc:
            # The session is good and the new token stays in memory; storing is retried on the
            # next rotation. Failing the login here would throw away a valid session.
            log.error("salesforce_refresh_token_store_failed", error=type(exc).__name__)

    async def _form(self, flow: str) -> dict[str, str]:
        s = self._settings
        client_id = s.client_id or ""
        secret = s.client_secret.get_secret_value() if s.client_secret else ""
        if flow == "client_credentials":
            return {
                "grant_type": "client_credentials",
                "client_id": client_id,
                "client_secret": secret,
            }
        if flow == "password":
            return {
                "grant_type": "password",
                "client_id": client_id,
                "client_secret": secret,
                "username": s.username or "",
                "password": s.password.get_secret_value() if s.password else "",
            }
        if flow == "refresh_token":
            if not self._refresh_token:
                raise errors.ConfigError(
                    "salesforce.auth_flow = 'refresh_token' needs salesforce.refresh_token: set "
                    "SYNCD_SALESFORCE__REFRESH_TOKEN or [salesforce] refresh_token in syncd.toml"
                )
            form = {
                "grant_type": "refresh_token",
                "refresh_token": self._refresh_token,
                "client_id": client_id,
                "format": "json",
            }
            if secret:
                form["client_secret"] = secret
            return form
        if flow == "jwt":
            return {"grant_type": JWT_GRANT, "assertion": await self._jwt_assertion()}
        raise errors.ConfigError(f"salesforce.auth_flow = {flow!r} is not a known flow")

    async def _jwt_assertion(self) -> str:
        s = self._settings
        if s.private_key_file is None:
            raise errors.ConfigError(
                "salesforce.auth_flow = 'jwt' needs salesforce.private_key_file (the connected "
                "app's PEM private key): set SYNCD_SALESFORCE__PRIVATE_KEY_FILE or "
                "[salesforce] private_key_file in syncd.toml"
            )
        try:
            # Read on each login so a rotated key file is picked up without a restart.
            key = await asyncio.to_thread(s.private_key_file.read_bytes)
        except OSError as exc:
            raise errors.ConfigError(
                f"salesforce.private_key_file: cannot read {s.private_key_file} "
                f"({exc.strerror or type(exc).__name__})"
            ) from None
        now = self._clock()
        claims = {
            "iss": s.client_id,
            "sub": s.username,
            "aud": self._jwt_audience,
            "exp": int(now.timestamp()) + JWT_LIFETIME_S,
        }
        try:
            return jwt.encode(claims, key, algorithm="RS256")
        except (ValueError, TypeError, jwt.PyJWTError):
            raise errors.ConfigError(
                f"salesforce.private_key_file: {s.private_key_file} is not a usable RSA private "
                "key in PEM format (unencrypted)"
            ) from None

    async def _post_token(self, flow: str, form: dict[str, str]) -> dict[str, Any]:
        started = time.monotonic()
        try:
            response = await self._http.post(
                TOKEN_PATH, data=form, headers={"Accept": "application/json"}
            )
        except httpx.HTTPError as exc:
            log.warning("salesforce_token_endpoint_unreachable", error=type(exc).__name__)
            raise http.transport_failure(SYSTEM, exc) from None
        log.debug(
            "salesforce_token_request",
            flow=flow,
            status=response.status_code,
            duration_s=round(time.monotonic() - started, 3),
        )
        status = response.status_code
        if status == 200:
            return http.expect_dict(SYSTEM, http.read_json(SYSTEM, response), "token answer")
        if status >= 500 or status == 429:
            raise errors.RetriableAPIError(
                system=SYSTEM,
                status=status,
                code=f"HTTP_{status}",
                message="the token endpoint is unavailable; retrying",
                retry_after_s=http.retry_after_s(response),
            )
        raise self._refusal(flow, response)

    def _refusal(self, flow: str, response: httpx.Response) -> errors.AuthError:
        """An `AuthError` for a 4xx answer of the token endpoint, saying what to fix."""
        code, description = f"HTTP_{response.status_code}", ""
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, dict) and isinstance(body.get("error"), str):
            code = body["error"]
            description = str(body.get("error_description") or "")
        description = logs.redact(description)[:300]
        hint = refusal_hint(flow, code)
        message = f"{description}: {hint}" if description else hint
        log.error("salesforce_login_refused", flow=flow, code=code, status=response.status_code)
        return errors.AuthError(
            system=SYSTEM,
            status=response.status_code,
            code=code,
            message=message,
            details=(errors.ErrorDetail(code=code, message=description),),
        )

    def _session_from(self, answer: dict[str, Any]) -> Session:
        token = answer.get("access_token")
        instance_url = answer.get("instance_url")
        identity = answer.get("id")
        if not (isinstance(token, str) and token):
            raise _bad_answer("no access_token")
        if not (isinstance(instance_url, str) and instance_url.startswith(("https://", "http://"))):
            raise _bad_answer("no usable instance_url")
        if not isinstance(identity, str):
            raise _bad_answer("no id URL")
        org_id, user_id = parse_identity_url(identity)
        refresh = answer.get("refresh_token")
        return Session(
            access_token=token,
            instance_url=instance_url.rstrip("/"),
            user_id=user_id,
            org_id=org_id,
            issued_at=_issued_at(answer.get("issued_at")) or self._clock(),
            refresh_token=refresh if isinstance(refresh, str) and refresh else None,
        )


def parse_identity_url(url: str) -> tuple[str, str]:
    """(org id, user id) from the token answer's `id`: `https://login.../id/00D.../005...`."""
    parts = [p for p in urlsplit(url).path.split("/") if p]
    if len(parts) >= 3 and parts[-3] == "id":
        return parts[-2], parts[-1]
    raise _bad_answer("an id URL without /id/<org id>/<user id>")


def jwt_audience_for(login_url: str) -> str:
    """The JWT `aud` Salesforce expects for `login_url`.

    Production (login.salesforce.com and production My Domains) -> https://login.salesforce.com;
    sandboxes (test.salesforce.com, `*.sandbox.my.salesforce.com`) -> https://test.salesforce.com;
    any other host (an Experience Cloud site, a simulator) -> the login URL itself.
    """
    host = (urlsplit(login_url).hostname or "").lower()
    if host == "test.salesforce.com" or host.endswith(".sandbox.my.salesforce.com"):
        return "https://test.salesforce.com"
    if host == "login.salesforce.com" or host.endswith(".salesforce.com"):
        return "https://login.salesforce.com"
    return login_url.rstrip("/")


_FLOW_HINTS = {
    "client_credentials": (
        "check salesforce.client_secret or the connected app's Run As user (the client "
        "credentials flow must be enabled with an active Run As user), and that "
        "salesforce.login_url is the org's My Domain URL"
    ),
    "password": (
        "check salesforce.username and salesforce.password (the password followed by the user's "
        "security token), and that the user may use the connected app"
    ),
    "refresh_token": (
        "the refresh token expired or was revoked: authorise the connected app again and set "
        "salesforce.refresh_token to the new refresh token"
    ),
    "jwt": (
        "check that salesforce.username is pre-authorised for the connected app (admin approved "
        "users, via profile or permission set), that the certificate uploaded to the connected "
        "app matches salesforce.private_key_file, that salesforce.login_url is the production "
        "(login) or sandbox (test) host, and that this machine's clock is right"
    ),
}


def refusal_hint(flow: str, code: str) -> str:
    """What the operator should fix when the token endpoint answers `code` for `flow`."""
    if code == "invalid_client_id":
        return (
            "salesforce.client_id is not the consumer key of a connected app in this org: check "
            "salesforce.client_id and that salesforce.login_url points at the right org"
        )
    if code == "invalid_client":
        return (
            "the connected app refused the client credentials: check salesforce.client_secret "
            "(the connected app's consumer secret) and salesforce.client_id"
        )
    if code == "unsupported_grant_type":
        return (
            f"the connected app does not allow the {flow} flow: enable it on the connected app "
            "or choose another salesforce.auth_flow"
        )
    if code in ("inactive_user", "inactive_org"):
        return "the connector user or the org is inactive: reactivate it or configure another user"
    if code == "invalid_grant":
        return _FLOW_HINTS.get(flow, f"check the salesforce settings of the {flow} flow")
    if code.startswith("HTTP_"):
        return (
            "the token endpoint refused the request: check salesforce.login_url (it must be "
            "https://login.salesforce.com, https://test.salesforce.com or the org's My Domain URL)"
        )
    return f"check the salesforce settings of the {flow} flow (salesforce.auth_flow)"


def _issued_at(value: Any) -> datetime | None:
    """`issued_at` is a string of epoch milliseconds."""
    try:
        return datetime.fromtimestamp(int(value) / 1000, tz=UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        return None


def _bad_answer(what: str) -> errors.RetriableAPIError:
    return errors.RetriableAPIError(
        system=SYSTEM, status=200, code="BAD_RESPONSE", message=f"token answer had {what}"
    )
