"""The console over HTTPS (ops.tls_cert_file / ops.tls_key_file), or behind a TLS-terminating
proxy named in ops.trusted_proxies: the sign-in cookie is Secure, and sign-in throttling counts
the caller's address, not the proxy's."""

from __future__ import annotations

import ipaddress
import re
import ssl
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from syncd.runtime.ops import OpsServer
from syncd.settings import Settings
from syncd.store import Store
from syncd.web.app import build_app
from syncd.web.views import ConsoleContext

from .conftest import ADMIN, handlers


def self_signed(tmp: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp / "console.crt", tmp / "console.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


@pytest.fixture
async def https_console(tmp_path: Path, sqlite_url: str) -> AsyncIterator[httpx.AsyncClient]:
    cert, key = self_signed(tmp_path)
    settings = Settings.model_validate(
        {
            "database": {"url": sqlite_url},
            "ops": {"bearer_token": ADMIN, "tls_cert_file": str(cert), "tls_key_file": str(key)},
        }
    )
    store = await Store.open(sqlite_url, migrate=True)
    ctx = ConsoleContext(store=store, settings=settings, clock=lambda: datetime.now(UTC),
                         handlers=handlers())  # fmt: skip
    server = OpsServer(app=build_app(ctx), port=0, tls=settings.ops.tls())
    await server.start()
    trust = ssl.create_default_context(cafile=str(cert))
    try:
        async with httpx.AsyncClient(
            base_url=f"https://127.0.0.1:{server.port}", verify=trust
        ) as client:
            yield client
    finally:
        await server.aclose()
        await store.aclose()


async def test_over_https_the_session_cookie_is_secure(https_console: httpx.AsyncClient) -> None:
    page = await https_console.get("/login")
    nonce = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert nonce is not None
    r = await https_console.post("/login", data={"csrf": nonce.group(1), "token": ADMIN})
    assert r.status_code == 303
    (cookie,) = [c for c in r.headers.get_list("set-cookie") if c.startswith("syncd_session=")]
    assert "Secure" in cookie and "HttpOnly" in cookie
    assert "samesite=strict" in cookie.lower()


def test_tls_needs_both_files() -> None:
    from syncd.errors import ConfigError
    from syncd.settings import load_settings

    with pytest.raises(ConfigError, match=r"tls_cert_file and ops\.tls_key_file"):
        load_settings(ops={"tls_cert_file": "/x.crt"})


async def _sign_in(
    client: httpx.AsyncClient, token: str, headers: dict[str, str]
) -> httpx.Response:
    page = await client.get("/login", headers=headers)
    nonce = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert nonce is not None
    client.cookies.set("syncd_login", page.cookies["syncd_login"])
    return await client.post(
        "/login", data={"csrf": nonce.group(1), "token": token}, headers=headers
    )


@pytest.mark.parametrize("trusted", [True, False])
async def test_behind_a_trusted_proxy_the_callers_scheme_and_address_count(
    tmp_path: Path, sqlite_url: str, trusted: bool
) -> None:
    ops: dict[str, str] = {"bearer_token": ADMIN}
    if trusted:
        ops["trusted_proxies"] = "10.9.0.0/16, 127.0.0.1"
    settings = Settings.model_validate({"database": {"url": sqlite_url}, "ops": ops})
    store = await Store.open(sqlite_url, migrate=True)
    ctx = ConsoleContext(store=store, settings=settings, clock=lambda: datetime.now(UTC),
                         handlers=handlers())  # fmt: skip
    server = OpsServer(app=build_app(ctx), port=0, trusted_proxies=settings.ops.proxies())
    await server.start()
    guesser = {"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https"}
    admin = {"X-Forwarded-For": "198.51.100.7", "X-Forwarded-Proto": "https"}
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as client:
            for i in range(10):
                assert (await _sign_in(client, f"guess-{i}", guesser)).status_code == 401
            assert (await _sign_in(client, ADMIN, guesser)).status_code == 429
            r = await _sign_in(client, ADMIN, admin)
            if not trusted:  # one address for all: the guesser locked everyone out
                assert r.status_code == 429
                return
            assert r.status_code == 303  # another caller behind the same proxy signs in
            (cookie,) = [
                c for c in r.headers.get_list("set-cookie") if c.startswith("syncd_session=")
            ]
            assert "Secure" in cookie  # the proxy said https
    finally:
        await server.aclose()
        await store.aclose()


def test_trusted_proxies_must_be_addresses_or_networks() -> None:
    from syncd.errors import ConfigError
    from syncd.settings import load_settings

    got = load_settings(ops={"trusted_proxies": " 10.0.0.5 , 10.1.2.3/16,::1"})
    assert got.ops.proxies() == ["10.0.0.5", "10.1.0.0/16", "::1"]
    with pytest.raises(ConfigError, match=r"'proxy\.internal' is not an IP address or network"):
        load_settings(ops={"trusted_proxies": "10.0.0.5,proxy.internal"})
