"""The operator's read-only commands through the real CLI: they fit a terminal and tell the truth.

`syncd errors list` at 80 columns (and in a pipe) shows every id whole; every command that prints
a table or a report has `--json`; `status`, `errors` and `history` never create a database;
`history` of an unknown id exits 2; `simulate` on a busy port is one line naming the option, and
`simulate --generate N` serves a world of N prospects; the demo's bar counts what its table
counts, and its closing hint runs as printed; a second `syncd run` on one SQLite file refuses to
start while the first keeps running.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from syncd.store import Store
from syncd.store.models import NewItem, Reason

from . import (
    EXAMPLE_SEED,
    SYNCD,
    Simulators,
    base_env,
    read_store,
    simulators,
    start_syncd,
    wait_until,
)

LONG_MESSAGE = (
    "FIELD_CUSTOM_VALIDATION_EXCEPTION: Phone must be in the format +1 555 0100 for US leads, "
    "see the validation rule Lead.Phone_Format (owned by Sales Operations); fix the prospect's "
    "phone in Pardot or relax the rule in Salesforce Setup > Object Manager > Lead"
)


def _cli(
    tmp: Path, *args: str, columns: int | None = 80, **env: str
) -> subprocess.CompletedProcess[str]:
    """`syncd ARGS` with stdout a pipe, COLUMNS set (or, for None, unset as in a cron job)."""
    settings = {"SYNCD_DATABASE__URL": f"sqlite+aiosqlite:///{tmp}/syncd.db", **env}
    full = base_env(**settings)
    full.pop("COLUMNS", None)
    full.pop("LINES", None)
    if columns is not None:
        full["COLUMNS"] = str(columns)
    return subprocess.run(
        [*SYNCD, *args],
        env=full,
        cwd=tmp,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )


def _store_with_errors(tmp: Path) -> list[int]:
    """A migrated store (by `syncd migrate`) holding three items in the error queue."""
    done = _cli(tmp, "migrate")
    assert done.returncode == 0, done.stderr

    async def fill() -> list[int]:
        store = await Store.open(f"sqlite+aiosqlite:///{tmp}/syncd.db")
        now = datetime.now(UTC)
        try:
            async with store.transaction() as tx:
                await store.queue.enqueue(
                    tx,
                    [
                        NewItem.for_prospect(
                            123456789012, Reason.PARDOT_CHANGE, crm_id="00Q5e00000AbCdEFGH"
                        ),
                        NewItem.for_prospect(7, Reason.PARDOT_CHANGE),
                        NewItem.for_crm("003" + "x" * 15, Reason.CRM_CHANGE),
                    ],
                    now=now,
                )
                held = await store.queue.claim(tx, worker_id="t", limit=10, lease_s=60, now=now)
                await store.queue.fail(
                    tx,
                    [i.id for i in held],
                    worker_id="t",
                    code="FIELD_CUSTOM_VALIDATION_EXCEPTION",
                    message=LONG_MESSAGE,
                    now=now,
                )
            return sorted(i.id for i in held)
        finally:
            await store.aclose()

    return asyncio.run(fill())


@pytest.mark.parametrize("columns", [80, 60, 200, None])
def test_errors_list_fits_the_terminal_and_shows_every_id(
    tmp_path: Path, columns: int | None
) -> None:
    ids = _store_with_errors(tmp_path)
    done = _cli(tmp_path, "errors", "list", columns=columns)  # stdout is a pipe here
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    width = columns or 80  # a pipe with no COLUMNS gets 80
    assert all(len(ln) <= width for ln in lines), "\n".join(ln for ln in lines if len(ln) > width)
    for item_id in ids:
        # the id a user types into `errors retry ID` starts a line, whole
        assert any(ln.split() and ln.split()[0] == str(item_id) for ln in lines), done.stdout
    # nothing of the message is dropped: its words all appear, in order
    assert " ".join(done.stdout.split()).count(" ".join(LONG_MESSAGE.split())) == len(ids)
    assert "prospect 123456789012 / 00Q5e00000AbCdEFGH" in done.stdout
    # and the id works
    retried = _cli(tmp_path, "errors", "retry", str(ids[0]), "--json")
    assert retried.returncode == 0, retried.stderr
    assert json.loads(retried.stdout) == {"retried": [ids[0]], "not_found": []}


def test_every_report_has_json(tmp_path: Path) -> None:
    ids = _store_with_errors(tmp_path)
    listed = json.loads(_cli(tmp_path, "errors", "list", "--json").stdout)
    assert sorted(i["id"] for i in listed) == ids
    assert all(i["message"] == LONG_MESSAGE for i in listed)
    shown = json.loads(_cli(tmp_path, "errors", "show", str(ids[0]), "--json").stdout)
    assert shown["code"] == "FIELD_CUSTOM_VALIDATION_EXCEPTION"
    status = json.loads(_cli(tmp_path, "status", "--json").stdout)
    assert status["queue"]["error"] == 3
    history = _cli(tmp_path, "history", "7", "--json")  # queued, nothing decided yet
    assert history.returncode == 0, history.stderr
    assert json.loads(history.stdout) == []
    check = _cli(tmp_path, "check", "--json")
    assert check.returncode == 1  # no `syncd run` heartbeat
    assert json.loads(check.stdout)["healthy"] is False


def test_status_shows_a_side_an_operator_paused(tmp_path: Path) -> None:
    """A pause set in the console is in `syncd status` too: who, since when, in both forms."""
    _store_with_errors(tmp_path)

    async def pause() -> None:
        store = await Store.open(f"sqlite+aiosqlite:///{tmp_path}/syncd.db")
        try:
            async with store.transaction() as tx:
                at = datetime(2026, 12, 4, 9, 30, tzinfo=UTC)
                await store.control.pause(tx, "pardot", by="ops-lead", now=at)
        finally:
            await store.aclose()

    before = json.loads(_cli(tmp_path, "status", "--json").stdout)
    assert before["paused"] == {}
    asyncio.run(pause())
    status = json.loads(_cli(tmp_path, "status", "--json").stdout)
    assert status["paused"] == {"pardot": {"by": "ops-lead", "at": "2026-12-04T09:30:00+00:00"}}
    table = _cli(tmp_path, "status", columns=200)
    assert table.returncode == 0, table.stderr
    line = next(row for row in table.stdout.splitlines() if "pardot" in row and "paused" in row)
    assert "paused by ops-lead since 2026-12-04T09:30:00+00:00" in line
    assert not any("salesforce" in row and "paused" in row for row in table.stdout.splitlines())


@pytest.mark.parametrize("command", [["status"], ["errors", "list"], ["history", "1001"]])
def test_read_only_commands_never_create_a_database(tmp_path: Path, command: list[str]) -> None:
    done = _cli(tmp_path, *command)
    assert done.returncode == 1, done.stderr
    assert done.stderr.count("\n") == 1, done.stderr
    assert f"no database at {tmp_path}/syncd.db" in done.stderr
    assert "syncd migrate" in done.stderr
    assert os.listdir(tmp_path) == []


def test_history_of_an_unknown_id_exits_2(tmp_path: Path) -> None:
    _store_with_errors(tmp_path)
    for ident, what in (("999999", "prospect"), ("00Q000000000999AAA", "Lead or Contact")):
        done = _cli(tmp_path, "history", ident)
        assert done.returncode == 2, done.stderr
        assert done.stderr.startswith(f"syncd history: no {what} with id {ident}")
        assert done.stderr.count("\n") == 1


@pytest.mark.postgres
def test_check_on_a_reachable_unmigrated_postgres_says_not_migrated(
    tmp_path: Path, pg_url: str
) -> None:
    done = _cli(tmp_path, "check", SYNCD_DATABASE__URL=pg_url)
    assert done.returncode == 1, done.stderr
    assert done.stderr.startswith("syncd check: database not migrated"), done.stderr
    assert "run `syncd migrate`" in done.stderr
    assert "unreachable" not in done.stderr
    assert done.stderr.count("\n") == 1


def test_simulate_on_a_busy_port_is_one_line_naming_the_option(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = str(busy.getsockname()[1])
        for option, other in (
            ("--salesforce-port", "--pardot-port"),
            ("--pardot-port", "--salesforce-port"),
        ):
            done = subprocess.run(
                [*SYNCD, "simulate", "--seed", str(EXAMPLE_SEED), option, port, other, "0"],
                env=base_env(),
                cwd=tmp_path,
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert done.returncode == 1, done.stderr
            assert done.stderr.count("\n") == 1, done.stderr
            assert f"cannot listen on 127.0.0.1:{port}" in done.stderr
            assert option in done.stderr and "Traceback" not in done.stderr


def test_simulate_generate_serves_a_world_of_the_size_asked(tmp_path: Path) -> None:
    proc = start_syncd(
        ["simulate", "--generate", "1500", "--salesforce-port", "0", "--pardot-port", "0"],
        env=base_env(),
        cwd=tmp_path,
        name="simulate",
    )
    try:

        def ready() -> dict[str, str] | None:
            assert proc.popen.poll() is None, proc.stderr()
            found = dict(ln.strip().split("=", 1) for ln in proc.stdout().splitlines() if "=" in ln)
            return found if "SYNCD_PARDOT__BASE_URL" in found else None

        sims = Simulators(proc, wait_until(ready, what="syncd simulate to print its URLs"))
        ids: set[int] = set()
        params = {"fields": "id", "limit": "1000", "orderBy": "id ASC"}
        while True:
            r = httpx.get(
                f"{sims.pardot_url}/api/v5/objects/prospects",
                params=params,
                headers=sims._pd_headers(),
                timeout=60,
            )
            r.raise_for_status()
            body = r.json()
            ids |= {v["id"] for v in body["values"]}
            if not body.get("nextPageToken"):
                break
            params = {"fields": "id", "nextPageToken": body["nextPageToken"]}
        assert len(ids) == 1500
        assert sims.soql("SELECT Id FROM Contact LIMIT 1")  # and CRM twins
    finally:
        proc.signal(signal.SIGTERM)
        assert proc.wait(30) == 0


def test_demo_bar_counts_the_table_and_its_hint_runs_as_printed(tmp_path: Path) -> None:
    (tmp_path / ".venv").symlink_to(Path(sys.executable).parent.parent)
    env = base_env(COLUMNS="120")
    done = subprocess.run(
        [".venv/bin/syncd", "demo", "--once", "--prospects", "150"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stderr
    bar = re.search(r"^syncing prospects .* (\d+)/(\d+) ", done.stdout, re.M)
    table = re.search(r"queue items processed \(prospects, CRM records\) +│ +([\d,]+)", done.stdout)
    assert bar and table, done.stdout
    assert bar[1] == bar[2] == table[1].replace(",", ""), done.stdout
    # the closing hint is a command that runs as printed, with a prospect id from this run
    lines = done.stdout.splitlines()
    hint = lines[lines.index("Why was each decision made? Try:") + 1].strip()
    assert hint.startswith(
        "SYNCD_DATABASE__URL=sqlite+aiosqlite:///demo.db .venv/bin/syncd history "
    )
    history = subprocess.run(
        ["bash", "-c", hint], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert history.returncode == 0, history.stderr
    assert history.stdout.startswith(f"History of {hint.rsplit(' ', 1)[1]}")
    assert "lead" in history.stdout.lower()


def test_a_second_run_on_one_sqlite_file_refuses_and_the_first_keeps_running(
    tmp_path: Path,
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/syncd.db"
    with simulators(tmp_path) as sims:
        env = sims.run_env(url, SYNCD_SYNC__SHUTDOWN_GRACE_S="5")
        first = start_syncd(["run"], env=env, cwd=tmp_path, name="first")
        try:
            wait_until(
                lambda: any(e["event"] == "service_started" for e in first.events()),
                what="the first `syncd run` to start",
            )
            second = subprocess.run(
                [*SYNCD, "run"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60
            )
            assert second.returncode == 1, second.stderr
            lines = second.stderr.strip().splitlines()
            assert len(lines) == 1, second.stderr
            assert f"another `syncd run` (pid {first.pid})" in lines[0]
            assert str(tmp_path / "syncd.db") in lines[0] and "PostgreSQL" in lines[0]
            assert first.popen.poll() is None, "the first must keep running"
            first.signal(signal.SIGTERM)
            assert first.wait(60) == 0
        finally:
            first.stop()
        # the lock went with the first process: a new daemon starts
        again = start_syncd(["run"], env=env, cwd=tmp_path, name="again")
        try:
            wait_until(
                lambda: (
                    any(e["event"] == "service_started" for e in again.events())
                    or again.popen.poll() is not None
                ),
                what="the next `syncd run` to start",
            )
            assert again.popen.poll() is None, again.stderr()
            again.signal(signal.SIGTERM)
            assert again.wait(60) == 0
        finally:
            again.stop()


def test_once_json_reports_the_summary_under_stable_keys(tmp_path: Path) -> None:
    with simulators(tmp_path) as sims:
        env = sims.run_env(f"sqlite+aiosqlite:///{tmp_path}/syncd.db")
        done = subprocess.run(
            [*SYNCD, "once", "--json"],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=180,
            stdin=subprocess.DEVNULL,
        )
        assert done.returncode == 0, done.stderr
        report = json.loads(done.stdout)
        assert report["leads_created"] == 3
        assert report["error_items"] == 0 and report["items_left"] == 0
        assert report["exit_code"] == 0 and report["stopped_by"] is None
        assert report["api_calls"]["salesforce"] > 0 and report["api_calls"]["pardot"] > 0
        assert report["summary"].startswith("syncd once: ")
        refused = subprocess.run(
            [*SYNCD, "once", "--json", "--dry-run"],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert refused.returncode == 2 and "--dry-run" in refused.stderr


MIRROR = "Pardot_Prospect_Id__c"


def test_relink_json_reports_the_links_it_would_rebuild(tmp_path: Path) -> None:
    seed = json.loads(EXAMPLE_SEED.read_text())
    field = {"name": MIRROR, "type": "string", "length": 18, "updateable": True}
    seed["salesforce"]["custom_fields"] = {"Lead": [field], "Contact": [field]}
    seed_file = tmp_path / "seed.json"
    seed_file.write_text(json.dumps(seed))
    with simulators(tmp_path, seed=seed_file) as sims:
        env = sims.run_env(
            f"sqlite+aiosqlite:///{tmp_path}/syncd.db", SYNCD_SYNC__CRM_LINK_FIELD=MIRROR
        )

        def cli(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [*SYNCD, *args], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=180
            )

        assert cli("once").returncode == 0
        linked = read_store(
            f"sqlite+aiosqlite:///{tmp_path}/syncd.db",
            lambda store, tx: store.links.live(tx, limit=100),
        )
        assert linked
        (tmp_path / "syncd.db").unlink()  # the store is lost; the mirror in Salesforce is not
        assert cli("migrate").returncode == 0
        done = cli("relink", "--dry-run", "--json")
        assert done.returncode == 0, done.stderr
        report = json.loads(done.stdout)
        assert report["dry_run"] is True and report["field"] == MIRROR
        assert sorted((p, c) for p, c in report["rebuilt"]) == sorted(linked)
