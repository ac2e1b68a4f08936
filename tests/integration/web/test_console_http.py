"""The console over its HTTP interface (httpx in-process), on a real SQLite file and PostgreSQL.

What an operator sees and may do: sign-in rules, the numbers, the error queue by cause with
retry and export, prospect search and timeline, "sync now", pause / resume, masked settings.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from syncd import errors
from syncd.commands.status import recycle_bin, status_json
from syncd.runtime.budget import ApiBudget
from syncd.runtime.control import raise_if_paused
from syncd.runtime.snapshot import read_snapshot
from syncd.settings import Settings
from syncd.store import AuditLine, Link, State

from .conftest import ADMIN, NOW, VIEWER, Console

Make = Callable[..., Any]


async def test_healthz_is_open_and_everything_else_needs_a_token(console: Make) -> None:
    c: Console = await console(bearer_token=ADMIN, viewer_token=VIEWER)
    assert (await c.client.get("/healthz")).status_code == 200
    for path in ("/readyz", "/metrics"):
        r = await c.client.get(path)
        assert r.status_code == 401
        assert r.headers["www-authenticate"].startswith("Bearer")
    r = await c.client.get("/api/status")
    assert r.status_code == 401
    r = await c.client.get("/errors?code=X")
    assert r.status_code == 303
    assert r.headers["location"] == "/login?next=%2Ferrors%3Fcode%3DX"
    r = await c.client.get("/api/status", headers={"Authorization": f"Bearer {VIEWER}"})
    assert r.status_code == 200
    r = await c.client.get("/metrics", headers={"Authorization": f"Bearer {ADMIN}"})
    assert r.text == "syncd_up 1\n"


async def test_sign_in_sets_a_strict_httponly_cookie(console: Make) -> None:
    c: Console = await console(bearer_token=ADMIN)
    wrong = await c.sign_in("not-the-token")
    assert wrong.status_code == 401
    assert "Wrong token" in wrong.text
    assert "not-the-token" not in wrong.text
    r = await c.sign_in(ADMIN)
    assert r.status_code == 303
    cookie = r.headers["set-cookie"]
    assert "syncd_session=" in cookie
    assert "HttpOnly" in cookie
    assert "SameSite=strict" in cookie or "SameSite=Strict" in cookie
    assert "Secure" not in cookie  # plain http here; https sets it
    assert ADMIN not in cookie
    page = await c.client.get("/")
    assert page.status_code == 200
    assert "Overview" in page.text
    assert ADMIN not in page.text


async def test_login_form_without_its_nonce_is_refused(console: Make) -> None:
    c: Console = await console(bearer_token=ADMIN)
    r = await c.client.post("/login", data={"token": ADMIN, "csrf": "made-up"})
    assert r.status_code == 403
    assert "syncd_session" not in r.headers.get("set-cookie", "")


async def test_guessing_tokens_is_throttled_per_address(console: Make) -> None:
    """Ten wrong tokens in ten minutes from one address (form and header alike): every attempt
    from it is then answered 429 with Retry-After, the right token too, until the oldest wrong
    one is ten minutes old. A session already open is not affected."""
    now = [NOW]
    c: Console = await console(clock=lambda: now[0], bearer_token=ADMIN, viewer_token=VIEWER)
    assert (await c.sign_in(VIEWER)).status_code == 303  # a viewer session, open before
    session = dict(c.client.cookies)
    c.client.cookies.clear()
    for i in range(9):
        if i % 2:
            r = await c.client.get("/api/status", headers={"Authorization": f"Bearer guess{i}"})
        else:
            r = await c.sign_in(f"guess-{i}")
        assert r.status_code == 401
        now[0] += timedelta(seconds=30)
    # the ninth refusal was at +4 min; the first at +0
    assert (await c.sign_in(ADMIN)).status_code == 303  # still allowed: nine so far
    c.client.cookies.clear()
    assert (await c.sign_in("guess-9")).status_code == 401  # the tenth
    refused = await c.sign_in(ADMIN)
    assert refused.status_code == 429
    assert "Too many wrong tokens from this address" in refused.text
    assert int(refused.headers["retry-after"]) == 600 - 270
    assert "syncd_session" not in refused.headers.get("set-cookie", "")
    api = await c.client.get("/api/status", headers={"Authorization": f"Bearer {ADMIN}"})
    assert api.status_code == 429
    assert api.json()["error"].startswith("too many wrong tokens from this address")
    assert (
        await c.client.get("/metrics", headers={"Authorization": "Bearer x"})
    ).status_code == 429
    assert (await c.client.get("/healthz")).status_code == 200
    c.client.cookies.update(session)
    opened = await c.client.get("/api/status")
    assert opened.status_code == 200  # a signed cookie cannot be guessed: never throttled
    c.client.cookies.clear()
    now[0] = NOW + timedelta(seconds=600)  # the first refusal leaves the window: one more try
    assert (await c.sign_in(ADMIN)).status_code == 303


async def test_login_redirect_stays_on_this_site(console: Make) -> None:
    c: Console = await console(bearer_token=ADMIN)
    page = await c.client.get("/login?next=//evil.example/x")
    assert 'value="/"' in page.text


async def test_api_status_is_syncd_status_json(console: Make) -> None:
    c: Console = await console()
    got = (await c.client.get("/api/status")).json()
    snap = await read_snapshot(c.store, now=NOW, stale_s=c.ctx.settings.ops.heartbeat_stale_s)
    budget = ApiBudget(
        share=c.ctx.settings.sync.api_budget_share,
        pardot_daily_limit=c.ctx.settings.pardot.daily_api_limit,
        clock=lambda: NOW,
        store=c.store,
    )
    await budget.sync()
    recycled = await recycle_bin(c.store)
    want = json.loads(json.dumps(status_json(snap, budget.figures(), recycled=recycled)))
    assert got["paused"] == {}
    assert got == want
    assert got["queue"]["error"] == 3
    assert got["queue"]["pending"] == 1
    page = await c.client.get("/")
    assert '<span class="n" data-k="queue.error">3</span>' in page.text
    assert '<span class="n" data-k="queue.pending">1</span>' in page.text


async def test_overview_shows_the_linked_prospects_in_the_recycle_bin(console: Make) -> None:
    c: Console = await console()
    async with c.store.transaction() as tx:
        await c.store.links.upsert_many(
            tx,
            [
                Link(prospect_id=pid, crm_type="Lead", crm_id=f"00Q00000000000{pid}AAA",
                     email=None, base={}, synced_at=NOW, recycled_at=NOW if pid > 1 else None)
                for pid in range(1, 9)
            ],
            now=NOW,
        )  # fmt: skip
    got = (await c.client.get("/api/status")).json()["recycle_bin"]
    assert got == {"count": 7, "prospect_ids": [2, 3, 4, 5, 6, 7, 8]}
    page = (await c.client.get("/")).text
    assert '<span class="n" data-k="recycle_bin.count">7</span>' in page
    assert "recycle bin: 2, 3, 4, 5, 6, ..." in page


async def test_errors_are_grouped_by_code_with_the_message(console: Make) -> None:
    c: Console = await console()
    data = (await c.client.get("/api/errors")).json()
    assert data["total"] == 3
    groups = {g["code"]: g for g in data["groups"]}
    assert groups["FIELD_CUSTOM_VALIDATION_EXCEPTION"]["count"] == 2
    assert groups["FIELD_CUSTOM_VALIDATION_EXCEPTION"]["message"] == "Phone must have 10 digits"
    assert groups["INVALID_EMAIL_ADDRESS"]["count"] == 1
    page = await c.client.get("/errors?code=FIELD_CUSTOM_VALIDATION_EXCEPTION")
    assert page.text.count('name="id" value=') == 2
    assert "Retry this group" in page.text


async def test_export_csv_and_json(console: Make) -> None:
    c: Console = await console()
    r = await c.client.get("/errors/export.csv")
    assert r.headers["content-type"].startswith("text/csv")
    assert "attachment" in r.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert sorted(int(row["prospect_id"]) for row in rows) == [1001, 1002, 1003]
    formula = next(row for row in rows if row["code"] == "INVALID_EMAIL_ADDRESS")
    assert formula["message"].startswith("invalid email")  # not a formula
    r = await c.client.get("/errors/export.json?code=INVALID_EMAIL_ADDRESS")
    assert [row["prospect_id"] for row in r.json()] == [1003]
    assert (await c.client.get("/errors/export.xml")).status_code == 404


async def test_retry_group_returns_its_items_to_the_queue_and_audits_who(console: Make) -> None:
    c: Console = await console(bearer_token=ADMIN)
    await c.sign_in(ADMIN)
    token = await c.csrf("/errors")
    r = await c.client.post(
        "/errors/retry", data={"csrf": token, "code": "FIELD_CUSTOM_VALIDATION_EXCEPTION"}
    )
    assert r.status_code == 303
    async with c.store.read() as tx:
        counts = await c.store.queue.counts(tx, now=NOW)
        history = await c.store.audit.history(tx, 1001)
    assert counts.error == 1
    assert counts.pending == 3
    assert history[0].action == "console.retry"
    assert history[0].detail is not None
    assert history[0].detail["who"] == "admin"
    page = await c.client.get("/errors")
    assert "revived" in page.text


async def test_retry_selected_items(console: Make) -> None:
    c: Console = await console()
    token = await c.csrf("/errors?code=INVALID_EMAIL_ADDRESS")
    async with c.store.read() as tx:
        ids = await c.store.console.error_ids(tx, "INVALID_EMAIL_ADDRESS")
    r = await c.client.post("/errors/retry", data={"csrf": token, "id": [str(i) for i in ids]})
    assert r.status_code == 303
    async with c.store.read() as tx:
        item = await c.store.queue.get(tx, ids[0])
    assert item is not None
    assert item.state is State.PENDING


async def test_a_post_without_the_csrf_token_is_refused(console: Make) -> None:
    c: Console = await console(bearer_token=ADMIN)
    await c.sign_in(ADMIN)
    for data in ({"code": "INVALID_EMAIL_ADDRESS"}, {"code": "INVALID_EMAIL_ADDRESS", "csrf": "x"}):
        r = await c.client.post("/errors/retry", data=data)
        assert r.status_code == 403
        assert "CSRF" in r.text
    r = await c.client.post("/control/salesforce/pause")
    assert r.status_code == 403
    async with c.store.read() as tx:
        assert (await c.store.queue.counts(tx, now=NOW)).error == 3
        assert await c.store.control.paused(tx) == {}


async def test_the_viewer_can_look_but_not_act(console: Make) -> None:
    c: Console = await console(bearer_token=ADMIN, viewer_token=VIEWER)
    await c.sign_in(VIEWER)
    page = await c.client.get("/errors?code=INVALID_EMAIL_ADDRESS")
    assert page.status_code == 200
    assert "Retry this group" not in page.text
    assert "(read-only)" in page.text
    token = await c.csrf("/")  # the sign-out form
    for path in ("/errors/retry", "/prospects/1001/sync", "/control/pardot/pause"):
        r = await c.client.post(path, data={"csrf": token, "code": "INVALID_EMAIL_ADDRESS"})
        assert r.status_code == 403, path
    r = await c.client.post(
        "/api/prospects/1001/sync", headers={"Authorization": f"Bearer {VIEWER}"}
    )
    assert r.status_code == 403
    async with c.store.read() as tx:
        assert (await c.store.queue.counts(tx, now=NOW)).error == 3
        assert len(await c.store.console.queue_items_of(tx, 1001)) == 1


async def test_search_by_id_email_and_crm_id_leads_to_the_timeline(console: Make) -> None:
    c: Console = await console()
    for q in ("1001", "ann@example.com", "00Q000000000001AAA", "00Q000000000001"):
        r = await c.client.get("/prospects", params={"q": q})
        assert r.status_code == 303, q
        assert r.headers["location"] == "/prospects/1001"
    r = await c.client.get("/prospects", params={"q": "nobody@example.com"})
    assert "No prospect" in r.text
    page = await c.client.get("/prospects/1001")
    assert "00Q000000000001AAA" in page.text
    assert "jobTitle" in page.text
    assert "CTO" in page.text and "CEO" in page.text
    assert "recent" in page.text
    assert "Pardot changed it most recently" in page.text
    data = (await c.client.get("/api/prospects/1001")).json()
    assert data["timeline"][0]["field"] == "jobTitle"
    assert data["queue"][0]["code"] == "FIELD_CUSTOM_VALIDATION_EXCEPTION"
    assert (await c.client.get("/api/prospects/424242")).status_code == 404


async def test_sync_now_queues_the_prospect_like_reprocess(console: Make) -> None:
    c: Console = await console()
    token = await c.csrf("/prospects/1002")
    r = await c.client.post("/prospects/1002/sync", data={"csrf": token})
    assert r.status_code == 303
    async with c.store.read() as tx:
        items = await c.store.console.queue_items_of(tx, 1002)
    assert [(i.state, "reprocess" in i.reasons) for i in items] == [(State.PENDING, True)]
    page = await c.client.get(r.headers["location"])
    assert "Queued" in page.text


async def test_pause_and_resume_are_kept_in_the_store_and_audited(console: Make) -> None:
    c: Console = await console(bearer_token=ADMIN)
    r = await c.client.post(
        "/api/control/salesforce/pause", headers={"Authorization": f"Bearer {ADMIN}"}
    )
    assert r.json() == {"side": "salesforce", "paused": True, "changed": True}
    async with c.store.read() as tx:
        with pytest.raises(errors.SidePausedError, match="salesforce paused by admin"):
            await raise_if_paused(c.store, tx, ["salesforce", "pardot"])
        await raise_if_paused(c.store, tx, ["pardot"])
    await c.sign_in(ADMIN)
    page = await c.client.get("/")
    assert "paused by admin" in page.text
    assert "Resume salesforce" in page.text
    token = await c.csrf("/")
    resumed = await c.client.post("/control/salesforce/resume", data={"csrf": token})
    assert resumed.status_code == 303
    async with c.store.read() as tx:
        assert await c.store.control.paused(tx) == {}
        actions = await c.store.console.actions(tx, since=NOW.replace(year=2020), limit=10)
    assert [a.action for a in actions] == ["console.resume", "console.pause"]
    activity = await c.client.get("/activity")
    assert "resume" in activity.text


async def test_settings_mask_every_secret(console: Make) -> None:
    c: Console = await console(bearer_token=ADMIN, viewer_token=VIEWER)
    hook = "https://hooks.slack.example/services/T0/B0/hook-secret-42"
    c.ctx.settings = Settings.model_validate(
        {
            "ops": {"bearer_token": ADMIN, "viewer_token": VIEWER},
            "alerts": {"webhook_url": hook},
            "salesforce": {"client_secret": "sf-client-secret-7", "password": "pw-secret-8"},
            "database": {"url": "postgresql+asyncpg://syncd:db-secret-9@db.example:5432/syncd"},
        }
    )
    page = await c.client.get("/settings", headers={"Authorization": f"Bearer {ADMIN}"})
    assert page.status_code == 200
    for secret in (ADMIN, VIEWER, "hook-secret-42", "sf-client-secret-7", "pw-secret-8",
                   "db-secret-9"):  # fmt: skip
        assert secret not in page.text, secret
    assert "syncd:••••••••@db.example:5432" in page.text
    assert "(set)" in page.text
    assert "jobTitle" in page.text  # the field map


async def test_activity_counts_per_day_and_outcome(console: Make) -> None:
    c: Console = await console()
    data = (await c.client.get("/api/activity")).json()
    day = {d["day"]: d for d in data["days"]}
    assert day["2026-03-09"]["linked"] == 1
    assert day["2026-03-09"]["fields written to Salesforce"] == 1
    assert day["2026-03-10"]["fields written to Pardot"] == 1
    assert data["totals"]["7"]["leads created"] == 1
    assert data["totals"]["7"]["tasks"] == 0
    assert data["totals"]["30"]["tasks"] == 1


async def test_every_page_answers(console: Make) -> None:
    c: Console = await console()
    for path in ("/", "/errors", "/prospects", "/activity", "/settings", "/static/console.css"):
        r = await c.client.get(path)
        assert r.status_code == 200, path
    r = await c.client.get("/")
    assert "default-src 'none'" in r.headers["content-security-policy"]
    assert (await c.client.get("/static/../app.py")).status_code == 404


async def test_settled_hours_are_counted_once_and_new_lines_still_show(console: Make) -> None:
    c: Console = await console()
    first = (await c.client.get("/api/activity")).json()
    async with c.store.read() as tx:
        kept = await c.store.kv.get(tx, "console.hours")
    assert kept["2026-03-09 15"]["a"] == {"link": 1, "update_crm": 1}
    assert "2026-03-10 15" not in kept  # the current hour has not settled
    async with c.store.transaction() as tx:
        await c.store.audit.append(tx, [AuditLine(at=NOW, action="create_task", prospect_id=1002)])
    again = (await c.client.get("/api/activity")).json()
    assert again["days"][0]["tasks"] == first["days"][0]["tasks"] + 1
    assert again["totals"]["30"]["linked"] == first["totals"]["30"]["linked"] == 1


async def test_a_refused_login_reported_by_syncd_run_shows_in_the_console(console: Make) -> None:
    c: Console = await console()
    async with c.store.transaction() as tx:
        await c.store.kv.set(
            tx,
            "login.failing",
            {"process_id": "h:1:x", "system": "salesforce", "code": "invalid_client"},
            now=NOW,
        )
    page = await c.client.get("/")
    assert "login refused" in page.text
    assert '<span data-k="login.salesforce">refused</span>' in page.text


async def test_without_tokens_a_scrapers_authorization_header_is_ignored(console: Make) -> None:
    c: Console = await console()
    r = await c.client.get("/metrics", headers={"Authorization": "Bearer anything"})
    assert r.status_code == 200
    r = await c.client.get("/api/status", headers={"Authorization": "Basic abc"})
    assert r.status_code == 200


async def test_retrying_a_group_larger_than_a_statements_parameter_cap(console: Make) -> None:
    from sqlalchemy import insert

    from syncd.store.tables import queue_items

    c: Console = await console()
    rows = [
        {"key": f"p:{900_000 + i}", "prospect_id": 900_000 + i, "reasons": 1, "state": "error",
         "attempts": 1, "available_at": NOW, "first_seen_at": NOW, "enqueued_at": NOW,
         "updated_at": NOW, "last_error_code": "BIG", "last_error_message": "many",
         "first_failed_at": NOW, "last_failed_at": NOW}
        for i in range(33_000)
    ]  # fmt: skip
    async with c.store.transaction() as tx:
        for start in range(0, len(rows), 2_000):
            await tx.execute(insert(queue_items), rows[start : start + 2_000])
    token = await c.csrf("/errors")
    r = await c.client.post("/errors/retry", data={"csrf": token, "code": "BIG"})
    assert r.status_code == 303
    assert r.headers["location"].endswith("retried=33000")
    async with c.store.read() as tx:
        assert await c.store.console.error_ids(tx, "BIG") == []
