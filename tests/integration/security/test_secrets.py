"""No secret ever reaches a log line, an error message or the store (except a refresh token).

Every credential is set through the environment, as a container would: client secret, password,
refresh token, private key file, ops bearer token. `syncd once` runs under each OAuth flow (the
refresh-token flow with rotation), logins fail with a wrong password, a wrong client secret and
an unreadable key, and `syncd run` runs briefly, all at debug level in subprocesses against
`syncd simulate`. Everything they printed (stdout and stderr) is scanned for each secret, for the
private key's text and for anything shaped like a Salesforce access token (`00D...!...`); the
SQLite store is scanned for the same. The store keeps the rotated refresh token on purpose
(`test_rotated_refresh_token_is_stored_and_used_next_run`): without it the next start fails.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
from pathlib import Path
from typing import Any

from acceptance import SYNCD, read_store, simulators, start_syncd, wait_until
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

ROOT = Path(__file__).resolve().parents[3]
EXAMPLE_SEED = ROOT / "config" / "example-seed.json"
CLIENT_SECRET = "cs-Secret-0f9e8d7c6b5a"
PASSWORD = "pw-Secret-1a2b3c4d5e6f"
WRONG_PASSWORD = "pw-Wrong-9z8y7x6w5v4u"
WRONG_CLIENT_SECRET = "cs-Wrong-0a0b0c0d0e0f"
REFRESH_TOKEN = "5Aep-refresh-Secret-7766554433"
BEARER = "ops-Secret-bearer-445566778899"
ACCESS_TOKEN = re.compile(r"00D[0-9A-Za-z]{12,15}![0-9A-Za-z_\-.]{20,}")
REFRESH_KV = "salesforce.refresh_token"


def _keys(tmp: Path) -> tuple[Path, str, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    path = tmp / "connected-app.key"
    path.write_text(pem)
    path.chmod(0o600)
    return path, pem, public


def _seed(tmp: Path, public_key: str, *, rotate: bool = True) -> Path:
    seed: dict[str, Any] = json.loads(EXAMPLE_SEED.read_text())
    seed["salesforce"]["oauth"].update(
        client_secret=CLIENT_SECRET,
        password=PASSWORD,
        refresh_token=REFRESH_TOKEN,
        rotate_refresh_tokens=rotate,
        jwt_public_key=public_key,
    )
    path = tmp / "seed.json"
    path.write_text(json.dumps(seed))
    return path


def _run(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*SYNCD, *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _secret_lines(pem: str) -> list[str]:
    body = [ln for ln in pem.splitlines() if ln and not ln.startswith("-----")]
    fixed = [CLIENT_SECRET, PASSWORD, WRONG_PASSWORD, WRONG_CLIENT_SECRET, REFRESH_TOKEN, BEARER]
    return [*fixed, *body[1:3]]


def _leaks(text: str, secrets: list[str]) -> list[str]:
    found = [s for s in secrets if s in text]
    found += [f"access token {m[:12]}..." for m in ACCESS_TOKEN.findall(text)]
    return found


def test_no_secret_in_any_output_or_the_store(tmp_path: Path) -> None:
    key_file, pem, public = _keys(tmp_path)
    db = tmp_path / "syncd.db"
    outputs: dict[str, str] = {}
    with simulators(tmp_path, seed=_seed(tmp_path, public)) as sims:
        env = sims.run_env(f"sqlite+aiosqlite:///{db}")
        env.update(
            SYNCD_SALESFORCE__CLIENT_SECRET=CLIENT_SECRET,
            SYNCD_SALESFORCE__USERNAME="connector@acme.example",
            SYNCD_SALESFORCE__PASSWORD=PASSWORD,
            SYNCD_SALESFORCE__REFRESH_TOKEN=REFRESH_TOKEN,
            SYNCD_SALESFORCE__PRIVATE_KEY_FILE=str(key_file),
            SYNCD_OPS__BEARER_TOKEN=BEARER,
            SYNCD_LOG__LEVEL="debug",
        )
        for flow in ("client_credentials", "password", "jwt", "refresh_token"):
            done = _run(["once"], {**env, "SYNCD_SALESFORCE__AUTH_FLOW": flow}, tmp_path)
            assert done.returncode in (0, 1), f"{flow}: {done.stderr[-2000:]}"
            outputs[f"once {flow}"] = done.stdout + done.stderr

        # logins that fail: the message says what to fix and carries no secret
        failing = {
            "wrong password": {
                "SYNCD_SALESFORCE__AUTH_FLOW": "password",
                "SYNCD_SALESFORCE__PASSWORD": WRONG_PASSWORD,
            },
            "wrong client secret": {
                "SYNCD_SALESFORCE__AUTH_FLOW": "client_credentials",
                "SYNCD_SALESFORCE__CLIENT_SECRET": WRONG_CLIENT_SECRET,
            },
            "unreadable key": {
                "SYNCD_SALESFORCE__AUTH_FLOW": "jwt",
                "SYNCD_SALESFORCE__PRIVATE_KEY_FILE": str(tmp_path / "seed.json"),
            },
        }
        for name, extra in failing.items():
            done = _run(["once"], {**env, **extra}, tmp_path)
            assert done.returncode not in (0, 1), f"{name}: {done.stdout}{done.stderr}"
            assert "Traceback" not in done.stderr, f"{name}: {done.stderr}"
            outputs[f"once, {name}"] = done.stdout + done.stderr

        run = start_syncd(
            ["run"],
            env={**env, "SYNCD_SALESFORCE__AUTH_FLOW": "refresh_token"},
            cwd=tmp_path,
            name="run",
        )
        try:
            wait_until(
                lambda: "service_started" in run.stderr(), timeout_s=60, what="service_started"
            )
            wait_until(lambda: "poll_" in run.stderr() or "items" in run.stderr(), what="work")
            run.signal(signal.SIGTERM)
            assert run.wait(60) == 0
        finally:
            run.stop()
        outputs["run"] = run.stdout() + run.stderr()

    stored_refresh = read_store(
        f"sqlite+aiosqlite:///{db}", lambda store, tx: store.kv.get(tx, REFRESH_KV)
    )
    assert isinstance(stored_refresh, str) and stored_refresh != REFRESH_TOKEN  # rotated, kept
    secrets = [*_secret_lines(pem), stored_refresh]
    for name, text in outputs.items():
        assert text.strip(), f"{name} printed nothing: the scan would prove nothing"
        assert _leaks(text, secrets) == [], f"{name} leaked a secret:\n{text[-3000:]}"
    assert "salesforce_login" in outputs["once jwt"]  # the runs did log in (debug is on)
    assert "password" in outputs["once, wrong password"].lower()
    assert "client" in outputs["once, wrong client secret"].lower()
    assert "private_key_file" in outputs["once, unreadable key"]

    # the store: no credential and no access token; only the rotated refresh token (kv)
    data = b"".join(p.read_bytes() for p in tmp_path.glob("syncd.db*"))
    text = data.decode("latin-1")
    assert _leaks(text, _secret_lines(pem)) == []
    assert text.count(stored_refresh) >= 1
