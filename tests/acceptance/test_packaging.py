"""Packaging as operators get it: the systemd unit, the Dockerfile, and the wheel in a fresh venv.

The container image itself is built elsewhere (podman); here the wheel is built and installed into a
fresh virtual environment with its dependencies, and run the way the image runs it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from syncd.settings import SyncSettings

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
UNIT = ROOT / "config" / "syncd.service"
DOCKERFILE = ROOT / "Dockerfile"


def _unit_settings(text: str) -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    for line in text.splitlines():
        if line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            settings.setdefault(key.strip(), []).append(value.strip())
    return settings


def _seconds(value: str) -> float:
    m = re.fullmatch(r"(\d+)(s|min)?", value)
    assert m, f"unexpected time span {value!r}"
    return int(m[1]) * (60 if m[2] == "min" else 1)


def test_systemd_unit_declares_notify_watchdog_stop_and_hardening() -> None:
    unit = _unit_settings(UNIT.read_text())
    one = {k: v[-1] for k, v in unit.items()}
    assert one["Type"] == "notify"
    assert one["ExecStart"].startswith("/opt/syncd/bin/syncd run --config /etc/syncd/")
    assert one["Restart"] == "on-failure"
    assert one["RestartPreventExitStatus"] == "2"  # a configuration error is not retried
    assert one["KillSignal"] == "SIGTERM"
    assert _seconds(one["WatchdogSec"]) > 0
    # systemd must not SIGKILL a process still inside its drain window
    assert _seconds(one["TimeoutStopSec"]) > SyncSettings().shutdown_grace_s
    assert one["EnvironmentFile"] == "-/etc/syncd/syncd.env"
    assert one["StateDirectory"] == "syncd"
    assert one["WorkingDirectory"] == "/var/lib/syncd"
    assert one["UMask"] == "0077"
    assert one["CapabilityBoundingSet"] == ""
    assert one["RestrictAddressFamilies"] == "AF_INET AF_INET6 AF_UNIX"
    assert "@system-service" in unit["SystemCallFilter"]
    for key in ("NoNewPrivileges", "ProtectHome", "PrivateTmp"):
        assert one[key] == "yes", key
    assert one["ProtectSystem"] == "strict"
    assert one.get("DynamicUser") == "yes" or one.get("User") not in (None, "", "root")


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_systemd_analyze_verify_is_silent(tmp_path: Path) -> None:
    # verify insists that ExecStart's binary exists: check a copy that points at this venv's
    # syncd (the only difference), and treat ANY output as a failure, warnings included.
    syncd = VENV_BIN / "syncd"
    assert syncd.is_file()
    text = UNIT.read_text()
    # (tests/acceptance/test_systemd.py verifies the unit unchanged after a real install.)
    assert text.count("/opt/syncd/bin/syncd") == 1
    copy = tmp_path / "syncd.service"
    copy.write_text(text.replace("/opt/syncd/bin/syncd", str(syncd)))
    proc = subprocess.run(
        ["systemd-analyze", "verify", str(copy)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert (proc.returncode, proc.stdout + proc.stderr) == (0, "")


def test_dockerfile_shape() -> None:
    text = DOCKERFILE.read_text()
    froms = re.findall(r"^FROM\s+(\S+)", text, re.M)
    assert len(froms) >= 2, "multi-stage: a builder stage and a final stage"
    assert set(froms) == {"python:3.11-slim"}
    final = text.rsplit("\nFROM ", 1)[1]
    assert 'ENTRYPOINT ["syncd"]' in final
    assert 'CMD ["run"]' in final
    assert re.search(r"^STOPSIGNAL SIGTERM$", final, re.M)
    assert re.search(r'^HEALTHCHECK .*CMD \["syncd", "check"\]$', final, re.M)
    assert re.search(r"^VOLUME /var/lib/syncd$", final, re.M)
    assert re.search(r"^WORKDIR /var/lib/syncd$", final, re.M)
    assert "SYNCD_DATABASE__URL=sqlite+aiosqlite:////var/lib/syncd/syncd.db" in final
    assert "PYTHONUNBUFFERED=1" in final
    user = re.findall(r"^USER\s+(\S+)", final, re.M)
    assert user and user[-1].split(":")[0] not in ("root", "0")
    for install in re.findall(r"pip (?:install|wheel)[^\n]*", text):
        assert "--no-cache-dir" in install, install


def test_dockerignore_keeps_local_state_out() -> None:
    ignored = set((ROOT / ".dockerignore").read_text().split())
    assert {".venv", ".git", "*.db", ".mypy_cache", ".pytest_cache", ".ruff_cache"} <= ignored
    assert any("__pycache__" in p for p in ignored)


@pytest.mark.skipif(
    not (VENV_BIN / "hadolint").exists(), reason="hadolint not installed (pip install -e '.[dev]')"
)
def test_hadolint_is_clean() -> None:
    proc = subprocess.run(
        [str(VENV_BIN / "hadolint"), str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (proc.returncode, proc.stdout + proc.stderr) == (0, "")


def _run(cmd: list[str], *, cwd: Path, env: dict[str, str], timeout_s: float) -> str:
    proc = subprocess.run(
        cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout_s, check=False
    )
    assert proc.returncode == 0, f"{cmd} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def test_wheel_installs_into_a_fresh_venv_and_runs(tmp_path: Path) -> None:
    """What the image does: build the wheel, install it with its dependencies, run syncd."""
    # nothing from the test's own interpreter may leak into the fresh environment
    clean_env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SYNCD_", "VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME"))
    }
    wheels = tmp_path / "wheels"
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-cache-dir",
            "--no-deps",
            "-w",
            str(wheels),
            ".",
        ],
        cwd=ROOT,
        env=clean_env,
        timeout_s=300,
    )
    (wheel,) = wheels.glob("syncd-*.whl")
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], cwd=tmp_path, env=clean_env, timeout_s=120)
    _run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", str(wheel)],
        cwd=tmp_path,
        env=clean_env,
        timeout_s=540,
    )
    state = tmp_path / "state"
    state.mkdir()
    env = {
        **clean_env,
        "PATH": f"{venv / 'bin'}{os.pathsep}{clean_env.get('PATH', '')}",
        "PYTHONUNBUFFERED": "1",
        "SYNCD_DATABASE__URL": f"sqlite+aiosqlite:///{state}/syncd.db",
    }
    syncd = str(venv / "bin" / "syncd")
    help_text = _run([syncd, "--help"], cwd=state, env=env, timeout_s=60)
    for command in ("run", "status", "check"):
        assert command in help_text
    # the installed package carries its migrations: the schema comes up from the wheel alone
    _run([syncd, "migrate"], cwd=state, env=env, timeout_s=120)
    _run([syncd, "demo", "--once", "--prospects", "200"], cwd=state, env=env, timeout_s=300)
