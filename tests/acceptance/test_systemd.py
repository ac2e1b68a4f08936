"""The README's systemd install path followed in a temporary root; the unit verified as shipped.

The first shell block of the README's "Running under systemd" section is run line by line with
only what a test must change: no `sudo`, and `/opt/...` and `/etc/...` inside a temporary root.
The virtual environment is really created and the checkout really installed into it (from a copy,
so the working tree stays clean). Then `systemd-analyze verify --root` checks the unit, byte for
byte as shipped, against that root: its `ExecStart` binary must exist there and be executable,
and any output at all (a warning included) fails the test. The `systemctl` block needs a running
systemd and is not run.

Needs `systemd-analyze` (Debian: `apt-get install systemd`; `.ci/run` installs it): skipped
locally without it, a failure under CI.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
UNIT = ROOT / "config" / "syncd.service"
UNIT_DIRS = [Path("/usr/lib/systemd/system"), Path("/lib/systemd/system")]


def readme_blocks(heading: str) -> list[str]:
    """The fenced `sh` blocks of the README section under `heading` (up to the next heading)."""
    text = README.read_text()
    start = text.index(f"\n{heading}\n")
    rest = text[start + len(heading) + 2 :]
    end = re.search(r"^#{1,3} ", rest, re.M)
    section = rest[: end.start()] if end else rest
    return re.findall(r"^```sh\n(.*?)^```$", section, re.M | re.S)


def _in_root(line: str, root: Path) -> str:
    """A README line with `sudo` dropped and absolute /opt and /etc paths moved under `root`."""
    line = re.sub(r"^sudo ", "", line.strip())
    return re.sub(r"(?<![\w.])/(opt|etc)/", lambda m: f"{root}/{m[1]}/", line)


def _systemd_analyze() -> str:
    found = shutil.which("systemd-analyze")
    if found is None:
        msg = "systemd-analyze is not installed (Debian: apt-get install systemd)"
        if os.environ.get("CI") == "true":
            pytest.fail(msg)
        pytest.skip(msg)
    return found


def test_readme_install_path_then_verify_the_unit_as_shipped(tmp_path: Path) -> None:
    analyze = _systemd_analyze()
    blocks = readme_blocks("### Running under systemd")
    assert len(blocks) >= 2, "an install block and a start block"
    install = [ln for ln in blocks[0].splitlines() if ln.strip()]
    assert install[0] == "sudo python3 -m venv /opt/syncd"
    assert any(ln.startswith("sudo /opt/syncd/bin/pip install") for ln in install)
    assert "sudo systemd-analyze verify /etc/systemd/system/syncd.service" in install

    # A host's skeleton: the directories every systemd host has, and systemd's own units (the
    # targets the unit refers to).
    root = tmp_path / "root"
    (root / "opt").mkdir(parents=True)
    (root / "etc" / "systemd" / "system").mkdir(parents=True)
    unit_dir = next(d for d in UNIT_DIRS if d.is_dir())
    shutil.copytree(unit_dir, root / "usr" / "lib" / "systemd" / "system", symlinks=True)
    # the reader's checkout, copied so that pip's in-tree build leaves the worktree alone
    checkout = tmp_path / "checkout"
    shutil.copytree(
        ROOT,
        checkout,
        ignore=shutil.ignore_patterns(
            ".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", "*.db*"
        ),
    )
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SYNCD_", "VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME"))
    }
    for line in install:
        if "systemd-analyze verify" in line:
            continue  # below, with --root
        cmd = shlex.split(_in_root(line, root))
        if cmd[0] == "python3":
            cmd[0] = sys.executable  # the interpreter running the tests is the reader's python3
        done = subprocess.run(
            cmd, cwd=checkout, env=env, capture_output=True, text=True, timeout=540, check=False
        )
        assert done.returncode == 0, f"{line}\n{done.stdout}\n{done.stderr}"

    installed = root / "etc" / "systemd" / "system" / "syncd.service"
    assert installed.read_bytes() == UNIT.read_bytes()
    assert (root / "etc" / "syncd" / "syncd.env").stat().st_mode & 0o777 == 0o600
    syncd = root / "opt" / "syncd" / "bin" / "syncd"
    version = subprocess.run(
        [str(syncd), "--version"], env=env, capture_output=True, text=True, timeout=60
    )
    assert version.returncode == 0 and version.stdout.startswith("syncd "), version.stderr
    # The installed example configuration loads as the unit's ExecStart will load it.
    config = root / "etc" / "syncd" / "syncd.toml"
    check = subprocess.run(
        [str(syncd), "check", "--config", str(config), "--json"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert '"healthy": false' in check.stdout and "configuration" not in check.stdout, check

    verify = [analyze, "verify", f"--root={root}", "/etc/systemd/system/syncd.service"]
    done = subprocess.run(verify, capture_output=True, text=True, timeout=120, check=False)
    assert (done.returncode, done.stdout + done.stderr) == (0, "")

    # and it does fail when the program is not where ExecStart says (the check has teeth)
    shutil.rmtree(root / "opt")
    done = subprocess.run(verify, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode != 0 and "/opt/syncd/bin/syncd" in done.stderr
