"""The whole-run check (`tests/_written_check.py`) fails a pytest run that sent a read-only
Pardot field, names the field, object and test, and spares tests marked `sends_read_only`.

Each case runs a real pytest session in a subprocess on a small test file, with the plugin loaded
the way `tests/conftest.py` loads it for this suite.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from syncd.simulators.written import READ_ONLY_LOG_ENV

TESTS_DIR = Path(__file__).resolve().parents[2]

HELPERS = '''
import asyncio
import subprocess
import sys

import httpx
import pytest

from syncd.simulators._base import TokenRegistry
from syncd.simulators.pardot import PardotSimulator

BU = "0Uv000000000001AAA"


def patch(body):
    """PATCH prospect 1 of an in-process Pardot simulator; the status code."""
    tokens = TokenRegistry()
    sim = PardotSimulator(
        {"business_unit_id": BU, "prospects": [{"id": 1, "email": "a@example.com"}]},
        tokens=tokens,
    )
    token = tokens.issue("005000000000001AAA", "00D000000000001AAA").token
    headers = {"Authorization": f"Bearer {token}", "Pardot-Business-Unit-Id": BU}

    async def go():
        transport = httpx.ASGITransport(app=sim.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://pi") as client:
            r = await client.patch("/api/v5/objects/prospects/1", json=body, headers=headers)
            return r.status_code

    return asyncio.run(go())
'''

CLEAN = """
def test_writes_only_writable_fields():
    assert patch({"firstName": "Ann", "salesforceOwnerId": "005000000000001AAA"}) == 204


@pytest.mark.sends_read_only
def test_checks_the_refusal_on_purpose():
    assert patch({"grade": "A", "salesforceLeadId": "00Q000000000001AAA"}) == 400
"""

OFFENDING = """
def test_sends_grade_in_process():
    # The simulator refuses it, so the test itself passes: only the whole-run check sees it.
    assert patch({"firstName": "Ann", "grade": "A"}) == 400


def test_sends_salesforce_id_from_a_subprocess():
    code = "import sys; sys.path[:0] = sys.argv[1:]; import conftest_helpers as h; " \\
        "assert h.patch({'salesforceId': '00Q000000000001AAA'}) == 400"
    subprocess.run([sys.executable, "-c", code, HERE], check=True)
"""


def run_pytest(tmp_path: Path, body: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "conftest_helpers.py").write_text(textwrap.dedent(HELPERS))
    test = tmp_path / "test_sample.py"
    test.write_text(
        f"HERE = {str(tmp_path)!r}\n"
        "from conftest_helpers import *  # noqa: F403\n" + textwrap.dedent(body)
    )
    # Not this run's log: the inner session must make (and check) its own.
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("SYNCD_") and k != READ_ONLY_LOG_ENV
    }
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS_DIR), str(tmp_path)])
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "_written_check",
            "-p",
            "no:cacheprovider",
            "--strict-markers",
            "--rootdir",
            str(tmp_path),
            "-q",
            str(test),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )


def test_the_run_fails_when_a_read_only_field_is_sent(tmp_path: Path) -> None:
    run = run_pytest(tmp_path, CLEAN + OFFENDING)
    out = run.stdout + run.stderr
    assert "4 passed" in out, out  # every test passed on its own...
    assert run.returncode == 1, out  # ...and the run failed all the same
    assert "read-only Pardot fields sent" in out
    assert (
        "Prospect.grade sent 1x to the pardot simulator "
        "(PATCH /api/v5/objects/prospects/{id}) in test_sample.py::test_sends_grade_in_process"
    ) in out
    assert (
        "Prospect.salesforceId sent 1x to the pardot simulator (PATCH "
        "/api/v5/objects/prospects/{id}) in "
        "test_sample.py::test_sends_salesforce_id_from_a_subprocess"
    ) in out
    # The marked test's attempts are not reported.
    assert "salesforceLeadId" not in out and "test_checks_the_refusal_on_purpose" not in out


def test_the_run_passes_when_only_marked_tests_send_read_only_fields(tmp_path: Path) -> None:
    run = run_pytest(tmp_path, CLEAN)
    out = run.stdout + run.stderr
    assert run.returncode == 0, out
    assert "2 passed" in out and "read-only Pardot fields sent" not in out


def test_soak_invariant_flags_read_only_fields_in_the_pardot_write_counts() -> None:
    from bench.soak import no_read_only_writes

    inv = no_read_only_writes({"Prospect": {"firstName": 9, "grade": 2, "salesforceId": 1}})
    assert inv.name == "no_read_only_pardot_writes" and inv.checked == 3
    assert inv.violations == [
        "Prospect.grade: sent in 2 writes; read-only in Pardot API v5",
        "Prospect.salesforceId: sent in 1 writes; read-only in Pardot API v5",
    ]
    assert not no_read_only_writes({"Prospect": {"firstName": 9}}).violations
    assert not no_read_only_writes({}).violations
