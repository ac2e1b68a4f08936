"""The console in a real headless Chromium: what an admin and a viewer can see and do.

Issue 14's "done when": sign in; the overview's numbers equal `syncd status --json`; retrying
an error group returns its items to the queue and the next pass syncs them; a prospect's
timeline shows the decision that set a field; "sync now" queues the prospect; a viewer cannot
act (403); a POST without the CSRF token is refused; pause stops the side's writes and resume
restarts them.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from typing import Any

from syncd.store import State

from .conftest import ADMIN, VIEWER, Site, sign_in

LEAD_ANN = "00Q000000000001AAA"


def syncd_status_json(site: Site) -> dict[str, Any]:
    """`syncd status --json` run as a user would: the real CLI in a subprocess."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYNCD_") or k == "PATH"} | {
        "SYNCD_DATABASE__URL": site.rt.settings.database.url,
        "SYNCD_LOG__LEVEL": "error",
    }
    out = subprocess.run(
        [sys.executable, "-m", "syncd", "status", "--json"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return dict(json.loads(out.stdout))


async def number(page: Any, key: str) -> str:
    return str(await page.inner_text(f'[data-k="{key}"]')).strip()


async def test_sign_in_and_the_overview_numbers_equal_syncd_status(site: Site, page: Any) -> None:
    await site.sync_pass()
    await sign_in(page, site, ADMIN)
    await page.reload()
    status = syncd_status_json(site)
    q = status["queue"]
    assert q["error"] == 3  # the three names too long for Salesforce
    for key in ("pending", "due", "claimed", "error", "expired_leases"):
        assert await number(page, f"queue.{key}") == f"{q[key]:,}", key
    for side in ("salesforce", "pardot"):
        api = status["api"][side]
        assert await number(page, f"api.{side}.own_calls_24h") == f"{api['own_calls_24h']:,}"
        budget = "-" if api["budget"] is None else f"{api['budget']:,}"
        assert await number(page, f"api.{side}.budget") == budget
    keys = await page.eval_on_selector_all('[data-k^="feed."]', "els => els.map(e => e.dataset.k)")
    assert {k[len("feed.") : -len(".lag_s")] for k in keys} == {f["feed"] for f in status["feeds"]}
    assert len(keys) == 6
    await page.screenshot(path=site.shot("overview"), full_page=False)
    await page.set_viewport_size({"width": 390, "height": 844})  # a phone
    await page.screenshot(path=site.shot("phone"))


async def test_retry_an_error_group_and_the_next_pass_syncs_it(site: Site, page: Any) -> None:
    await site.sync_pass()
    assert [r for r in site.world.salesforce.records("Lead") if r["LastName"] == "x" * 120] == []
    # The admin fixes the cause in Salesforce (here: LastName may now hold 120 characters);
    # nothing changed on the prospects, so without a retry the items stay in the error queue.
    fields = site.world.salesforce.fields["Lead"]
    fields["lastname"] = dataclasses.replace(fields["lastname"], length=200)
    await site.sync_pass(poll=False)
    async with site.rt.store.read() as tx:
        assert (await site.rt.store.queue.counts(tx, now=site.rt.clock())).error == 3

    await sign_in(page, site, ADMIN, "/errors")
    group = page.locator('section.group[data-code="STRING_TOO_LONG"]')
    assert "3" in await group.locator(".count").inner_text()
    assert "data value too large" in await group.locator("p.msg").inner_text()
    await group.locator("a").first.click()
    await page.wait_for_url("**/errors?code=STRING_TOO_LONG")
    assert await page.locator('input[name="id"]').count() == 3
    await page.screenshot(path=site.shot("errors"), full_page=True)
    await page.click("text=Retry this group")
    await page.wait_for_url("**retried=3")

    async with site.rt.store.read() as tx:
        counts = await site.rt.store.queue.counts(tx, now=site.rt.clock())
        actions = await site.rt.store.console.actions(
            tx, since=site.rt.clock().replace(year=2000), limit=10
        )
    assert (counts.error, counts.pending) == (0, 3)
    assert {a.detail["who"] for a in actions if a.detail} == {"admin"}
    await site.sync_pass(poll=False)
    made = [r for r in site.world.salesforce.records("Lead") if r["LastName"] == "x" * 120]
    assert len(made) == 3
    await page.goto(site.url + "/errors")
    assert "The error queue is empty." in await page.inner_text("main")


async def test_the_timeline_shows_the_decision_that_set_a_field(site: Site, page: Any) -> None:
    await site.sync_pass()
    lead = next(r for r in site.world.salesforce.records("Lead") if r["Id"] == LEAD_ANN)
    assert lead["Title"] == "CEO"  # Pardot filled the blank Title
    await sign_in(page, site, ADMIN, "/prospects")
    await page.fill("#q", "ANN@example.com")
    await page.press("#q", "Enter")
    await page.wait_for_url("**/prospects/10")
    row = page.locator("table.timeline tr", has_text="jobTitle")
    text = await row.inner_text()
    assert "update_crm" in text
    assert "(blank)" in text and "CEO" in text
    assert "crm" in text  # the policy
    assert LEAD_ANN in await page.inner_text("main")
    await page.screenshot(path=site.shot("prospect"), full_page=True)


async def test_sync_now_queues_the_prospect(site: Site, page: Any) -> None:
    await site.sync_pass()
    await sign_in(page, site, ADMIN, "/prospects/11")
    await page.click("text=Sync now")
    await page.wait_for_url("**/prospects/11?queued=1")
    assert "Queued" in await page.inner_text(".banner")
    async with site.rt.store.read() as tx:
        items = await site.rt.store.console.queue_items_of(tx, 11)
    assert [(i.state, "reprocess" in i.reasons) for i in items] == [(State.PENDING, True)]
    assert "pending" in await page.inner_text("main")


async def test_a_viewer_can_look_but_not_act(site: Site, page: Any) -> None:
    await site.sync_pass()
    await sign_in(page, site, VIEWER, "/errors?code=STRING_TOO_LONG")
    assert "(read-only)" in await page.inner_text("header")
    assert await page.locator("text=Retry this group").count() == 0
    await page.goto(site.url + "/prospects/10")
    assert await page.locator("text=Sync now").count() == 0
    csrf = await page.get_attribute('form.who input[name="csrf"]', "value")
    for path, form in (
        ("/errors/retry", {"code": "STRING_TOO_LONG"}),
        ("/prospects/10/sync", {}),
        ("/control/salesforce/pause", {}),
    ):
        r = await page.request.post(site.url + path, form={"csrf": csrf or "", **form})
        assert r.status == 403, path
        assert "viewer" in await r.text()
    async with site.rt.store.read() as tx:
        assert (await site.rt.store.queue.counts(tx, now=site.rt.clock())).error == 3
        assert await site.rt.store.control.paused(tx) == {}


async def test_a_post_without_the_csrf_token_is_refused(site: Site, page: Any) -> None:
    await site.sync_pass()
    await sign_in(page, site, ADMIN)
    for form in ({"code": "STRING_TOO_LONG"}, {"code": "STRING_TOO_LONG", "csrf": "forged"}):
        r = await page.request.post(site.url + "/errors/retry", form=form)
        assert r.status == 403
        assert "CSRF" in await r.text()
    async with site.rt.store.read() as tx:
        assert (await site.rt.store.queue.counts(tx, now=site.rt.clock())).error == 3


async def test_pause_stops_the_sides_writes_and_resume_restarts_them(site: Site, page: Any) -> None:
    await site.sync_pass()
    await sign_in(page, site, ADMIN)
    await page.click("text=Pause salesforce")
    await page.wait_for_url(site.url + "/")
    assert "paused by admin" in await page.inner_text('.banner[data-side="salesforce"]')
    await page.screenshot(path=site.shot("paused", readme=False))

    sf = site.world.salesforce
    writes = sf.counters.writes
    site.world.pardot.edit_prospect(10, {"jobTitle": "Chief Executive"})
    stats = await site.sync_pass()
    assert stats.items == 0
    assert sf.counters.writes == writes
    lead = next(r for r in sf.records("Lead") if r["Id"] == LEAD_ANN)
    assert lead["Title"] == "CEO"

    await page.click("text=Resume salesforce")
    await page.wait_for_url(site.url + "/")
    assert await page.locator('.banner[data-side="salesforce"]').count() == 0
    await site.sync_pass()
    lead = next(r for r in sf.records("Lead") if r["Id"] == LEAD_ANN)
    assert lead["Title"] == "Chief Executive"
    await page.goto(site.url + "/activity")
    actions = await page.inner_text("main")
    assert "pause salesforce" in actions and "resume salesforce" in actions
    await page.screenshot(path=site.shot("activity"), full_page=False)
    await page.goto(site.url + "/settings")
    assert ADMIN not in await page.content()
    await page.screenshot(path=site.shot("settings", readme=False), full_page=False)
