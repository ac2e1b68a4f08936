"""SalesforceAuth against the Salesforce simulator's token endpoint (wire-formats.md section A)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from syncd import errors, logs
from syncd.clients.auth import SalesforceAuth, jwt_audience_for, parse_identity_url
from syncd.clients.http import RetryPolicy
from syncd.clients.salesforce import SalesforceClient
from syncd.settings import SalesforceSettings
from syncd.simulators._base import ManualClock, TokenRegistry
from syncd.simulators.salesforce import SalesforceSimulator

LOGIN_URL = "https://login.salesforce.com"
CLIENT_ID = "3MVG9test.consumer.key"
CLIENT_SECRET = "consumer-secret-8f2c41d9"
USERNAME = "connector@acme.example"
PASSWORD = "pa55word-9x7TOKENabc123"
REFRESH = "5Aep861refresh-token-initial-0001"
USER_ID = "005000000000001AAA"
FAST = RetryPolicy(max_attempts=4, base_delay_s=0.001, max_delay_s=0.005)


def rsa_pair() -> tuple[bytes, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private, public.decode()


@pytest.fixture(scope="module")
def keys() -> tuple[bytes, str]:
    return rsa_pair()


def make_seed(public_key: str | None = None, **oauth: Any) -> dict[str, Any]:
    return {
        "oauth": {
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "username": USERNAME,
            "password": PASSWORD,
            "refresh_token": REFRESH,
            **({"jwt_public_key": public_key} if public_key else {}),
            **oauth,
        },
        "users": [
            {
                "Id": USER_ID,
                "Username": USERNAME,
                "Email": "connector@acme.example",
                "Name": "Sync Connector",
                "IsActive": True,
            }
        ],
    }


def make_settings(flow: str, **overrides: Any) -> SalesforceSettings:
    values: dict[str, Any] = {
        "login_url": LOGIN_URL,
        "auth_flow": flow,
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "username": USERNAME,
        "password": PASSWORD,
        "refresh_token": REFRESH,
    }
    values.update(overrides)
    return SalesforceSettings(**values)


def token_posts(sim: SalesforceSimulator) -> int:
    return sim.counters.count("POST", "oauth2/token")


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(datetime(2026, 1, 5, 9, 0, tzinfo=UTC))


@pytest.fixture
def sim(clock: ManualClock, keys: tuple[bytes, str]) -> SalesforceSimulator:
    return SalesforceSimulator(make_seed(keys[1]), tokens=TokenRegistry(clock), clock=clock)


@pytest.fixture
def key_file(tmp_path: Path, keys: tuple[bytes, str]) -> Path:
    path = tmp_path / "connector.key"
    path.write_bytes(keys[0])
    return path


def make_auth(
    sim: SalesforceSimulator | Any, settings: SalesforceSettings, **kwargs: Any
) -> SalesforceAuth:
    app = sim.app if isinstance(sim, SalesforceSimulator) else sim
    kwargs.setdefault("retry", FAST)
    return SalesforceAuth(settings, transport=httpx.ASGITransport(app=app), **kwargs)


@pytest.fixture
async def cc_auth(sim: SalesforceSimulator, clock: ManualClock) -> AsyncIterator[SalesforceAuth]:
    auth = make_auth(sim, make_settings("client_credentials"), clock=clock)
    yield auth
    await auth.aclose()


# -- each flow ------------------------------------------------------------------------------


@pytest.mark.parametrize("flow", ["client_credentials", "password", "refresh_token", "jwt"])
async def test_each_flow_logs_in_and_the_token_works(
    flow: str, sim: SalesforceSimulator, clock: ManualClock, key_file: Path
) -> None:
    auth = make_auth(sim, make_settings(flow, private_key_file=key_file), clock=clock)
    async with auth:
        session = await auth.session()
        assert session.user_id == USER_ID
        assert session.org_id.startswith("00D")
        assert session.instance_url.startswith("http")
        assert sim.tokens.validate(session.access_token) is not None
        assert await auth.token() == session.access_token
        assert token_posts(sim) == 1  # one login, reused
        # the token is a registered secret: it can never reach a log line
        assert session.access_token not in logs.redact(f"x {session.access_token} y")
        assert "access_token" not in repr(session) and session.access_token not in repr(session)


async def test_jwt_assertion_carries_the_documented_claims(
    sim: SalesforceSimulator, clock: ManualClock, key_file: Path, keys: tuple[bytes, str]
) -> None:
    import jwt as pyjwt

    captured: list[str] = []

    async def spy(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"].endswith("/oauth2/token"):
            body = b""
            while True:
                message = await receive()
                body += message.get("body", b"")
                if not message.get("more_body"):
                    break
            captured.append(httpx.QueryParams(body.decode())["assertion"])
            replay = iter([{"type": "http.request", "body": body, "more_body": False}])

            async def again() -> Any:
                return next(replay)

            await sim.app(scope, again, send)
            return
        await sim.app(scope, receive, send)

    auth = make_auth(spy, make_settings("jwt", private_key_file=key_file), clock=clock)
    async with auth:
        await auth.session()
    claims = pyjwt.decode(
        captured[0],
        keys[1],
        algorithms=["RS256"],
        audience=LOGIN_URL,
        options={"verify_exp": False},
    )
    assert claims["iss"] == CLIENT_ID
    assert claims["sub"] == USERNAME
    assert claims["aud"] == LOGIN_URL
    assert claims["exp"] == int(clock().timestamp()) + 180


def test_jwt_audience_follows_the_login_host() -> None:
    assert jwt_audience_for("https://login.salesforce.com") == "https://login.salesforce.com"
    assert jwt_audience_for("https://test.salesforce.com/") == "https://test.salesforce.com"
    assert jwt_audience_for("https://acme.my.salesforce.com") == "https://login.salesforce.com"
    assert (
        jwt_audience_for("https://acme--uat.sandbox.my.salesforce.com")
        == "https://test.salesforce.com"
    )
    assert jwt_audience_for("http://127.0.0.1:8401") == "http://127.0.0.1:8401"


def test_identity_url_gives_org_and_user() -> None:
    url = "https://login.salesforce.com/id/00Di0000000icUB/005i0000002MUqL"
    assert parse_identity_url(url) == ("00Di0000000icUB", "005i0000002MUqL")
    with pytest.raises(errors.RetriableAPIError, match="BAD_RESPONSE"):
        parse_identity_url("https://login.salesforce.com/services/oauth2/userinfo")


# -- refusals -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flow", "overrides", "code", "hint"),
    [
        (
            "client_credentials",
            {"client_id": "3MVG9unknown.key"},
            "invalid_client_id",
            "salesforce.client_id",
        ),
        (
            "password",
            {"client_id": "3MVG9unknown.key"},
            "invalid_client_id",
            "salesforce.client_id",
        ),
        (
            "password",
            {"password": "wrong-password-123456"},
            "invalid_grant",
            "salesforce.password",
        ),
        (
            "refresh_token",
            {"refresh_token": "5Aep861revoked-token-000"},
            "invalid_grant",
            "salesforce.refresh_token",
        ),
    ],
)
async def test_refusals_raise_auth_error_saying_what_to_fix(
    flow: str,
    overrides: dict[str, Any],
    code: str,
    hint: str,
    sim: SalesforceSimulator,
    clock: ManualClock,
) -> None:
    settings = make_settings(flow, **overrides)
    async with make_auth(sim, settings, clock=clock) as auth:
        with pytest.raises(errors.AuthError) as caught:
            await auth.token()
    exc = caught.value
    assert exc.code == code and exc.status == 400
    assert hint in exc.message
    for secret in (CLIENT_SECRET, PASSWORD, REFRESH, *overrides.values()):
        if "key" not in str(secret):
            assert str(secret) not in str(exc)
    assert token_posts(sim) == 1  # fail fast: no retry loop on a refusal


async def test_client_credentials_with_a_wrong_secret_names_the_secret_setting(
    sim: SalesforceSimulator, clock: ManualClock
) -> None:
    settings = make_settings("client_credentials", client_secret="not-the-secret-123")
    async with make_auth(sim, settings, clock=clock) as auth:
        with pytest.raises(errors.AuthError) as caught:
            await auth.session()
    assert caught.value.code in ("invalid_client", "invalid_grant")
    assert "salesforce.client_secret" in caught.value.message
    assert "not-the-secret-123" not in str(caught.value)


async def test_jwt_signed_with_another_key_is_refused(
    sim: SalesforceSimulator, clock: ManualClock, tmp_path: Path
) -> None:
    other = tmp_path / "other.key"
    other.write_bytes(rsa_pair()[0])
    async with make_auth(sim, make_settings("jwt", private_key_file=other), clock=clock) as auth:
        with pytest.raises(errors.AuthError) as caught:
            await auth.session()
    assert caught.value.code == "invalid_grant"
    assert "salesforce.private_key_file" in caught.value.message


async def test_jwt_with_an_unreadable_key_is_a_config_error(
    sim: SalesforceSimulator, clock: ManualClock, tmp_path: Path
) -> None:
    bad = tmp_path / "garbage.key"
    bad.write_text("not a key")
    async with make_auth(sim, make_settings("jwt", private_key_file=bad), clock=clock) as auth:
        with pytest.raises(errors.ConfigError, match="private_key_file"):
            await auth.session()
        missing = make_settings("jwt", private_key_file=tmp_path / "nope.key")
    async with make_auth(sim, missing, clock=clock) as auth:
        with pytest.raises(errors.ConfigError, match="cannot read"):
            await auth.session()
    assert token_posts(sim) == 0


# -- rotation, sharing, renewal ---------------------------------------------------------------


async def test_rotated_refresh_tokens_are_handed_over_and_used(
    clock: ManualClock, keys: tuple[bytes, str]
) -> None:
    sim = SalesforceSimulator(
        make_seed(rotate_refresh_tokens=True), tokens=TokenRegistry(clock), clock=clock
    )
    stored: list[str] = []

    async def keep(token: str) -> None:
        stored.append(token)

    auth = make_auth(sim, make_settings("refresh_token"), clock=clock, on_refresh_token=keep)
    async with auth:
        first = await auth.token()
        assert len(stored) == 1 and stored[0] != REFRESH
        second = await auth.refresh(first)
        assert second != first
        assert len(stored) == 2 and stored[1] != stored[0]
        assert stored[1] not in logs.redact(stored[1])  # registered as a secret

    # a restart with the stored token (overriding the configured, now rotated-out one) works
    restarted = make_auth(
        sim, make_settings("refresh_token"), clock=clock, refresh_token=stored[-1]
    )
    async with restarted:
        assert sim.tokens.validate(await restarted.token()) is not None


async def test_concurrent_refreshes_share_one_login(
    cc_auth: SalesforceAuth, sim: SalesforceSimulator
) -> None:
    stale = await cc_auth.token()
    fresh = await asyncio.gather(*(cc_auth.refresh(stale) for _ in range(10)))
    assert len(set(fresh)) == 1 and fresh[0] != stale
    assert token_posts(sim) == 2
    # a caller whose stale token was already replaced gets the current one, no new login
    assert await cc_auth.refresh(stale) == fresh[0]
    assert token_posts(sim) == 2


async def test_concurrent_first_use_logs_in_once(
    cc_auth: SalesforceAuth, sim: SalesforceSimulator
) -> None:
    tokens = await asyncio.gather(*(cc_auth.token() for _ in range(10)))
    assert len(set(tokens)) == 1
    assert token_posts(sim) == 1


async def test_old_sessions_are_renewed_before_salesforce_expires_them(
    sim: SalesforceSimulator, clock: ManualClock
) -> None:
    auth = make_auth(sim, make_settings("client_credentials"), clock=clock, max_session_age_s=600)
    async with auth:
        first = await auth.token()
        clock.advance(seconds=599)
        assert await auth.token() == first
        clock.advance(seconds=2)
        second = await auth.token()
        assert second != first
        assert token_posts(sim) == 2


async def test_default_renewal_age_is_ninety_minutes(
    cc_auth: SalesforceAuth, clock: ManualClock
) -> None:
    first = await cc_auth.token()
    clock.advance(minutes=89)
    assert await cc_auth.token() == first
    clock.advance(minutes=2)
    assert await cc_auth.token() != first


async def test_expired_token_costs_one_refresh_then_the_call_succeeds(
    sim: SalesforceSimulator, cc_auth: SalesforceAuth
) -> None:
    client = SalesforceClient(cc_auth, transport=httpx.ASGITransport(app=sim.app), retry=FAST)
    async with client:
        await client.limits()
        sim.tokens.expire_all()
        assert isinstance(await client.limits(), dict)
        assert token_posts(sim) == 2
        assert sim.counters.count("GET", "/limits") == 3  # ok, 401, ok


async def test_token_ttl_expiry_is_survived(clock: ManualClock) -> None:
    sim = SalesforceSimulator(make_seed(), tokens=TokenRegistry(clock, ttl_s=60), clock=clock)
    async with make_auth(sim, make_settings("client_credentials"), clock=clock) as auth:
        client = SalesforceClient(auth, transport=httpx.ASGITransport(app=sim.app), retry=FAST)
        async with client:
            await client.limits()
            clock.advance(seconds=61)
            await client.limits()
    assert token_posts(sim) == 2


async def test_token_endpoint_outages_are_retried(
    sim: SalesforceSimulator, clock: ManualClock
) -> None:
    failures = {"left": 2}

    async def flaky(scope: Any, receive: Any, send: Any) -> None:
        # fakes the API's outage (a 503 page), not our code
        if scope["type"] == "http" and scope["path"].endswith("/oauth2/token") and failures["left"]:
            failures["left"] -= 1
            body = b"<html><body>Service Unavailable</body></html>"
            await send(
                {
                    "type": "http.response.start",
                    "status": 503,
                    "headers": [(b"content-type", b"text/html")],
                }
            )
            await send({"type": "http.response.body", "body": body})
            return
        await sim.app(scope, receive, send)

    async with make_auth(flaky, make_settings("client_credentials"), clock=clock) as auth:
        assert sim.tokens.validate(await auth.token()) is not None
    assert failures["left"] == 0


async def test_token_endpoint_down_for_good_is_retriable_not_auth(clock: ManualClock) -> None:
    async def down(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 500, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async with make_auth(down, make_settings("client_credentials"), clock=clock) as auth:
        with pytest.raises(errors.RetriableAPIError) as caught:
            await auth.token()
    assert not isinstance(caught.value, errors.AuthError)
    assert caught.value.status == 500


async def test_refresh_token_flow_without_a_token_is_a_config_error(
    sim: SalesforceSimulator, clock: ManualClock
) -> None:
    settings = make_settings("refresh_token", refresh_token=None)
    async with make_auth(sim, settings, clock=clock) as auth:
        with pytest.raises(errors.ConfigError, match=r"salesforce\.refresh_token"):
            await auth.token()


async def test_unsupported_grant_type_names_the_flow_setting(clock: ManualClock) -> None:
    async def refuses(scope: Any, receive: Any, send: Any) -> None:
        body = b'{"error":"unsupported_grant_type","error_description":"grant type not supported"}'
        await send(
            {
                "type": "http.response.start",
                "status": 400,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async with make_auth(refuses, make_settings("password"), clock=clock) as auth:
        with pytest.raises(errors.AuthError) as caught:
            await auth.token()
    assert caught.value.code == "unsupported_grant_type"
    assert "salesforce.auth_flow" in caught.value.message
    assert "grant type not supported" in caught.value.message
    assert PASSWORD not in str(caught.value) and CLIENT_SECRET not in str(caught.value)


async def test_jwt_from_a_machine_with_a_slow_clock_is_refused_with_a_clock_hint(
    sim: SalesforceSimulator, clock: ManualClock, key_file: Path
) -> None:
    slow = ManualClock(clock() - timedelta(minutes=10))
    settings = make_settings("jwt", private_key_file=key_file)
    async with make_auth(sim, settings, clock=slow) as auth:
        with pytest.raises(errors.AuthError) as caught:
            await auth.session()
    assert caught.value.code == "invalid_grant"
    assert "expired authorization code" in caught.value.message
    assert "clock" in caught.value.message


async def test_a_failed_early_renewal_keeps_the_still_valid_token(
    sim: SalesforceSimulator, clock: ManualClock
) -> None:
    state = {"down": False}

    async def sometimes_down(scope: Any, receive: Any, send: Any) -> None:
        # the token endpoint has an outage (a real 503), the REST API does not
        if state["down"] and scope["type"] == "http" and scope["path"].endswith("/token"):
            await send({"type": "http.response.start", "status": 503, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            return
        await sim.app(scope, receive, send)

    settings = make_settings("client_credentials")
    async with make_auth(sometimes_down, settings, clock=clock, max_session_age_s=60) as auth:
        first = await auth.token()
        state["down"] = True
        clock.advance(seconds=120)
        assert await auth.token() == first  # renewal failed: keep going on the old token
        state["down"] = False
        second = await auth.token()  # the next call renews
        assert second != first
        assert auth.logins == 2
