"""The README's walkthrough runs as written: its shell blocks pasted into bash, simulators too.

The fenced `sh` blocks of "Trying it against the simulators over HTTP" are run, in order, as one
bash session in a scratch directory that links `.venv` (this checkout's environment) and `config`,
so `syncd.db` lands there and the checkout stays clean. Nothing in them is substituted, except the
simulators' ports 8401/8402 when something else on this machine holds them (what a reader would
do, and what `syncd simulate`'s message on a busy port says). The test then checks what a reader
would look at in the output.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from . import base_env, free_port

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
WALKTHROUGH = "### Trying it against the simulators over HTTP"


def readme_blocks(heading: str) -> list[str]:
    """The fenced `sh` blocks of the README section under `heading` (up to the next heading)."""
    text = README.read_text()
    start = text.index(f"\n{heading}\n") + len(heading) + 2
    rest = text[start:]
    end = re.search(r"^#{1,3} ", rest, re.M)
    section = rest[: end.start()] if end else rest
    return re.findall(r"^```sh\n(.*?)^```$", section, re.M | re.S)


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def test_the_over_http_walkthrough_runs_as_written(tmp_path: Path) -> None:
    if shutil.which("curl") is None:  # the walkthrough's `until curl` would spin
        msg = "curl is not installed (the README's walkthrough uses it; apt-get install curl)"
        if os.environ.get("CI") == "true":
            pytest.fail(msg)
        pytest.skip(msg)
    blocks = readme_blocks(WALKTHROUGH)
    assert len(blocks) == 2, "the walkthrough and the look through the APIs"
    script = "\n".join(blocks)
    assert "$TOKEN" in script and "TOKEN=$(" in script  # it shows where the token comes from
    if not (_port_free(8401) and _port_free(8402)):
        sf, pd = free_port(), free_port()
        script = script.replace("8401", str(sf)).replace("8402", str(pd))
        script = script.replace(
            "simulate --seed config/example-seed.json",
            f"simulate --seed config/example-seed.json --salesforce-port {sf} --pardot-port {pd}",
        )
    venv = Path(sys.executable).parent.parent
    (tmp_path / ".venv").symlink_to(venv)
    (tmp_path / "config").symlink_to(ROOT / "config")
    env = base_env(COLUMNS="100")  # no SYNCD_* from the developer's shell
    proc = subprocess.Popen(
        ["bash", "-e", "-c", script],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # the simulators run in the background: one group to clean up
    )
    try:
        out, err = proc.communicate(timeout=300)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, f"{out}\n{err}"
    assert "Traceback" not in out + err
    # preflight, once, status and history printed what the README says they do
    assert "syncd once: " in out and "3 leads created" in out, out
    assert "Queue" in out and "Feeds" in out
    assert "History of 1003" in out
    # the Pardot query answered with prospects (not {"code":49,"message":"Access Denied"})
    assert '"values"' in out and '"id":1001' in out.replace(" ", ""), out
    assert "Access Denied" not in out
    # and the SOQL query lists the Leads syncd created
    assert '"totalSize"' in out and '"Company"' in out, out
    assert not (tmp_path / "syncd.db").is_symlink() and (tmp_path / "syncd.db").is_file()
