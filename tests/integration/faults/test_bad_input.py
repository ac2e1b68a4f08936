"""Bad input at the pipeline level: a bad record goes to the error queue or is retried; it never
crashes the worker, never blocks the rest of its batch, and nothing queued is lost.

The clients' own handling of bad answers (HTML pages, truncated JSON, wrong types, a repeating
paging token) is tested in tests/unit/clients; here the same faults reach `syncd once` through
a small ASGI layer (`Tamper`) in front of the simulators that spoils chosen answers, and the
bad values come from the data itself (emails, huge and control-character fields, a cursor from
the future).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs

import pytest

from integration.pipeline.conftest import MakeSync, Sync, base_seed
from syncd import errors
from syncd.store.models import Cursor

Scope = dict[str, Any]
Rewrite = Callable[[Scope, int, bytes], tuple[int, bytes, str] | None]

ASSIGNED = 2  # Pardot user 2 maps to an active CRM user


class Tamper:
    """An ASGI layer: `request(scope)` may change a request, `rewrite(scope, status, body)` may
    replace its answer (return None to keep it)."""

    def __init__(self, app: Any, rewrite: Rewrite) -> None:
        self.app = app
        self.rewrite = rewrite
        self.request: Callable[[Scope], None] = lambda scope: None
        self.spoiled = 0

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        scope = dict(scope)
        self.request(scope)
        captured: dict[str, Any] = {"status": 200, "headers": [], "body": b""}

        async def keep(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                captured["status"] = message["status"]
                captured["headers"] = message.get("headers", [])
            else:
                captured["body"] += message.get("body", b"")

        await self.app(scope, receive, keep)
        status, body = captured["status"], captured["body"]
        ctype = "application/json"
        new = self.rewrite(scope, status, body)
        if new is not None:
            self.spoiled += 1
            status, body, ctype = new
        headers = [(k, v) for k, v in captured["headers"] if k.lower() not in (b"content-length",)]
        if new is not None:
            headers = [(k, v) for k, v in headers if k.lower() != b"content-type"]
            headers.append((b"content-type", ctype.encode()))
        headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def tamper(s: Sync, system: str, rewrite: Rewrite) -> Tamper:
    """Put a `Tamper` in front of one simulator of `s` (in-process transports use `.app`)."""
    sim = s.sf if system == "salesforce" else s.pd
    layer = Tamper(sim.app, rewrite)
    sim.app = layer
    return layer


def prospects(*rows: dict[str, Any]) -> dict[str, Any]:
    seed = base_seed()
    seed["pardot"]["prospects"] = [
        {"id": 100 + i, "userId": ASSIGNED, **row} for i, row in enumerate(rows)
    ]
    return seed


async def errors_json(s: Sync) -> list[dict[str, Any]]:
    return await s.error_items()


async def queue_left(s: Sync) -> tuple[int, int]:
    c = await s.queue_counts(now=datetime.now(UTC) + timedelta(days=1))
    return c.pending, c.claimed


# -- values in the data -----------------------------------------------------------------------

NASTY_EMAILS = [
    "o'brien+news@quotes.example",
    "back\\slash@example.com",
    'dq"uote@example.com',
    "ünïcødé@exämple.example",
    ("x" * 290) + "@long.example",  # 300 characters: too long for Salesforce (80)
    "plus+tag@example.com",
]


async def test_nasty_emails_match_exactly_or_park_with_the_reason(make_sync: MakeSync) -> None:
    seed = prospects(*({"email": e, "lastName": "N"} for e in NASTY_EMAILS))
    # An existing Lead for the quote email, and decoys a sloppy match would take.
    seed["salesforce"]["leads"] = [
        {"Id": "00Q000000000001AAA", "Email": "O'Brien+news@quotes.example", "LastName": "O",
         "Company": "Q"},
        {"Id": "00Q000000000002AAA", "Email": "plus@example.com", "LastName": "P",
         "Company": "Q"},
        {"Id": "00Q000000000003AAA", "Email": "obrien+news@quotes.example", "LastName": "D",
         "Company": "Q"},
    ]  # fmt: skip
    s = make_sync(seed)
    rc = await s.once()
    assert rc in (0, 1), s.last_out
    # the quote email linked to ITS Lead, the plus address got its own Lead (not the decoy)
    assert await s.crm_id_of(100) == "00Q000000000001AAA"
    assert len(s.leads("obrien+news@quotes.example")) == 1
    assert len(s.leads("plus+tag@example.com")) == 1
    assert len(s.leads("plus@example.com")) == 1
    # Salesforce refuses some addresses: those prospects wait in the error queue with its
    # reason; every other prospect synced; nothing is left in the queue
    parked = {e["prospect_id"]: e for e in await errors_json(s)}
    for pid, email in enumerate(NASTY_EMAILS, start=100):
        synced = bool(await s.crm_id_of(pid))
        assert synced != (pid in parked), f"{email!r}: synced={synced}, parked={pid in parked}"
    assert 104 in parked, "a 300-character email cannot be a Salesforce Lead"
    for e in parked.values():
        assert e["code"] in ("INVALID_EMAIL_ADDRESS", "STRING_TOO_LONG"), e
    assert rc == 1  # `once` says some items need attention
    assert await queue_left(s) == (0, 0)


async def test_huge_and_control_character_fields_fail_alone(make_sync: MakeSync) -> None:
    huge = "x" * 100_000
    s = make_sync(
        prospects(
            {"email": "huge@example.com", "lastName": "H", "jobTitle": huge},
            {"email": "ctl@example.com", "lastName": "C\x00\x07\x1b", "jobTitle": "a\tb\r\nc"},
            {"email": "fine@example.com", "lastName": "F", "jobTitle": "Engineer"},
        )
    )
    rc = await s.once()
    assert rc in (0, 1), s.last_out
    assert await s.crm_id_of(102), "a bad neighbour must not block the batch"
    parked = {e["prospect_id"]: e for e in await errors_json(s)}
    huge_leads = s.leads("huge@example.com")
    if 100 in parked:  # refused by Salesforce (Title is 128 characters): parked with the reason
        assert parked[100]["code"] == "STRING_TOO_LONG"
        assert "Title" in parked[100]["message"]
        assert len(parked[100]["message"]) < 2_000, "the error must not carry the whole value"
        assert huge_leads == []
    else:  # or written cut to the field's length
        (lead,) = huge_leads
        assert len(lead["Title"]) <= 128
    # control characters: synced as given (they are text) or parked, never a crash
    assert await s.crm_id_of(101) or 101 in parked
    assert await queue_left(s) == (0, 0)
    assert huge not in s.last_out


# -- bad answers --------------------------------------------------------------------------------


async def test_a_malformed_prospect_in_the_feed_does_not_stop_the_others(
    make_sync: MakeSync,
) -> None:
    s = make_sync(
        prospects(
            {"email": "a@example.com", "lastName": "A"},
            {"email": "b@example.com", "lastName": "B"},
            {"email": "c@example.com", "lastName": "C"},
        )
    )

    def spoil(scope: Scope, status: int, body: bytes) -> tuple[int, bytes, str] | None:
        if scope["method"] != "GET" or not scope["path"].endswith("/objects/prospects"):
            return None
        if status != 200:
            return None
        data = json.loads(body)
        for row in data.get("values", []):
            if row.get("id") == 101:
                row["email"] = {"unexpected": ["type"]}  # wrong types
                row["userId"] = "two"
                row["score"] = "lots"
                row.pop("lastName", None)  # a missing field
        return 200, json.dumps(data).encode(), "application/json"

    layer = tamper(s, "pardot", spoil)
    rc = await s.once()
    assert layer.spoiled > 0
    assert rc == 1, s.last_out  # one item needs attention
    assert await s.crm_id_of(100) and await s.crm_id_of(102)
    (parked,) = await errors_json(s)
    assert parked["prospect_id"] == 101 and parked["code"] == "BAD_RECORD"
    assert "email" in parked["message"]
    assert s.leads("b@example.com") == []
    assert await queue_left(s) == (0, 0)


async def test_html_pages_and_truncated_json_mid_batch_are_retried(make_sync: MakeSync) -> None:
    s = make_sync(prospects(*({"email": f"p{i}@example.com", "lastName": "P"} for i in range(5))))
    left = {"html": 2, "truncated": 2}

    def spoil(scope: Scope, status: int, body: bytes) -> tuple[int, bytes, str] | None:
        if scope["path"].endswith("/query") and left["truncated"]:
            left["truncated"] -= 1
            return 200, body[: len(body) // 2], "application/json"
        return None

    # the create is refused BEFORE it reaches the simulator: a layer that answers first
    real = s.sf.app

    async def front(scope: Scope, receive: Any, send: Any) -> None:
        if (
            scope["type"] == "http"
            and scope["method"] == "POST"
            and "composite/sobjects" in scope["path"]
            and left["html"]
        ):
            left["html"] -= 1
            body = b"<html><body><h1>503 Service Unavailable</h1></body></html>"
            await send(
                {
                    "type": "http.response.start",
                    "status": 503,
                    "headers": [(b"content-type", b"text/html")],
                }
            )
            await send({"type": "http.response.body", "body": body})
            return
        await real(scope, receive, send)

    s.sf.app = Tamper(front, spoil)
    rc = await s.once()
    for _ in range(3):  # items the client gave up on come back after their retry delay
        if rc == 0 and await queue_left(s) == (0, 0):
            break
        s.later(minutes=10)
        rc = await s.once()
    assert left == {"html": 0, "truncated": 0}
    assert rc == 0, s.last_out
    for i in range(5):
        assert len(s.leads(f"p{i}@example.com")) == 1
    assert await queue_left(s) == (0, 0)


async def test_a_repeating_paging_token_stops_that_read_not_the_sync(make_sync: MakeSync) -> None:
    s = make_sync(prospects(*({"email": f"r{i}@example.com", "lastName": "R"} for i in range(3))))

    def small_pages(scope: Scope) -> None:
        # one prospect a page, so that the feed follows page tokens
        if scope["path"].endswith("/objects/prospects"):
            query = scope["query_string"].decode()
            scope["query_string"] = re.sub(r"limit=\d+", "limit=1", query).encode()

    def loop(scope: Scope, status: int, body: bytes) -> tuple[int, bytes, str] | None:
        if not scope["path"].endswith("/objects/prospects") or status != 200:
            return None
        asked = parse_qs(scope["query_string"].decode()).get("nextPageToken")
        data = json.loads(body)
        if asked and data.get("nextPageToken"):
            data["nextPageToken"] = asked[0]  # the same token again: a loop
        return 200, json.dumps(data).encode(), "application/json"

    layer = tamper(s, "pardot", loop)
    layer.request = small_pages
    rc = await s.once()  # the looping read stops; what it read is synced; exit 1 says so
    assert layer.spoiled > 0
    assert rc == 1, s.last_out
    assert "Traceback" not in s.last_out
    assert "PAGING_LOOP" in s.last_out or "paging" in s.last_out.lower(), s.last_out
    assert await queue_left(s) == (0, 0)


async def test_a_cursor_from_the_future_does_not_hide_changes(make_sync: MakeSync) -> None:
    s = make_sync(prospects({"email": "f@example.com", "lastName": "F"}))
    assert await s.once() == 0
    lead = await s.crm_id_of(100)
    # Settle first: an echo of syncd's own writes still queued would carry the edits below
    # through whatever the feeds do, and the test would pass without reading them.
    while await queue_left(s) != (0, 0):
        s.later(hours=1)
        assert await s.once() == 0
    future = datetime.now(UTC) + timedelta(days=365)
    async with s.store(write=True) as (store, tx):
        for feed in await store.cursors.all(tx):
            if feed.startswith(("pardot.prospects", "salesforce.Lead")):
                await store.cursors.save(tx, feed, Cursor(position=future), now=datetime.now(UTC))
    s.pd.edit_prospect(100, {"jobTitle": "Changed in Pardot"})
    s.sf.modify("Lead", lead, {"Phone": "+1 555 0100"})
    s.later(seconds=2)  # the poll runs in a later second than the edits (Pardot stamps seconds)
    await s.once()  # the feeds read again from the cursors' save time, not from next year
    assert s.sf.get("Lead", lead)["Title"] == "Changed in Pardot", s.last_out
    assert s.prospect(100)["phone"] == "+1 555 0100"


async def test_unreachable_apis_fail_the_run_cleanly_and_keep_the_queue(
    make_sync: MakeSync,
) -> None:
    s = make_sync(prospects({"email": "u@example.com", "lastName": "U"}))

    def down(scope: Scope, status: int, body: bytes) -> tuple[int, bytes, str] | None:
        if scope["path"].startswith("/services/data"):
            return 503, b"<html>down for maintenance</html>", "text/html"
        return None

    layer = tamper(s, "salesforce", down)
    # Pardot is read; with no Salesforce nothing can be decided: a retriable error (the CLI
    # prints it as one line, exit 1) and the claimed batch goes back to the queue
    with pytest.raises(errors.RetriableAPIError) as raised:
        await s.once()
    assert raised.value.system == "salesforce" and "HTML" in str(raised.value)
    assert layer.spoiled > 0
    pending, claimed = await queue_left(s)
    assert pending == 1 and claimed == 0, "the prospect waits for a retry, not lost"
    s.sf.app = layer.app  # Salesforce is back
    s.later(hours=2)
    assert await s.once() == 0
    assert await s.crm_id_of(100)
    assert await queue_left(s) == (0, 0)


async def test_a_malformed_crm_record_makes_its_batch_wait_not_crash(make_sync: MakeSync) -> None:
    seed = prospects(
        {"email": "a@example.com", "lastName": "A"}, {"email": "b@example.com", "lastName": "B"}
    )
    seed["salesforce"]["contacts"] = [
        {"Id": "003000000000001AAA", "Email": "a@example.com", "LastName": "A"}
    ]
    s = make_sync(seed)

    def spoil(scope: Scope, status: int, body: bytes) -> tuple[int, bytes, str] | None:
        if not scope["path"].endswith(("/query", "/composite")) or status != 200:
            return None
        text = body.decode().replace('"Email":"a@example.com"', '"Email":12345')
        return status, text.encode(), "application/json"

    layer = tamper(s, "salesforce", spoil)
    # The Contact cannot be skipped (it keeps prospect 100 from getting a duplicate Lead): the
    # batch waits for a retry with the reason; nothing crashes, nothing is created or lost.
    assert await s.once() == 0, s.last_out
    assert layer.spoiled > 0
    assert "to retry later" in s.last_out
    assert s.leads("a@example.com") == [] and s.leads("b@example.com") == []
    pending, claimed = await queue_left(s)  # both prospects (and the Contact's own item)
    assert pending >= 2 and claimed == 0
    s.sf.app = layer.app  # the API answers properly again
    s.later(hours=2)
    assert await s.once() == 0
    assert await s.crm_id_of(100) == "003000000000001AAA"
    assert len(s.leads("b@example.com")) == 1
    assert await queue_left(s) == (0, 0)
