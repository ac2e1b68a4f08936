"""Every value syncd puts in SOQL is escaped: the query matches exactly that value, nothing else.

Checked with the simulator's SOQL parser (an independent reading of the grammar): `soql_in` for
any strings, and the pipeline's email matching end to end, whose queries are captured on their
way to the simulated Salesforce and parsed back. (`soql_quote` alone has its own hypothesis test
in tests/unit/clients.)
"""

from __future__ import annotations

import asyncio
import copy
import json
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from integration.pipeline.conftest import base_seed
from syncd.clients.salesforce import chunked_in_lists, soql_in
from syncd.runtime.wiring import build_runtime
from syncd.settings import Settings
from syncd.simulators import soql
from syncd.simulators.world import World

INJECTIONS = [
    "x' OR Email != '",
    "x\\' OR Email != \\'",
    "a'+OR+'1'='1",
    "') OR Id != null OR Email IN ('",
    "%",
    "_@example.com",
    "\\",
    "o'brien+news@quotes.example",
]


def _in_values(text: str) -> list[str]:
    """The decoded string literals of the (only) `IN (...)` condition in a SOQL query."""
    where = soql.parse(text).where
    assert isinstance(where, soql.InList), where
    out = []
    for lit in where.values:
        assert isinstance(lit, soql.StrLit)
        out.append("".join(piece for piece, _ in soql.decode_string(lit.body)))
    return out


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(min_size=1, max_size=60), min_size=1, max_size=8, unique=True))
def test_soql_in_matches_exactly_the_values_given(values: list[str]) -> None:
    assert _in_values(f"SELECT Id FROM Lead WHERE {soql_in('Email', values)}") == values


@settings(max_examples=100, deadline=None)
@given(st.lists(st.text(min_size=1, max_size=300), min_size=1, max_size=40, unique=True))
def test_chunked_in_lists_keep_every_value_exact(values: list[str]) -> None:
    seen: list[str] = []
    for chunk in chunked_in_lists(values, max_chars=2_000):
        seen.extend(_in_values(f"SELECT Id FROM Lead WHERE {soql_in('Email', chunk)}"))
    assert seen == values


class _Recorder(httpx.AsyncBaseTransport):
    """Passes requests to the simulator and keeps every SOQL query sent."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.queries: list[str] = []

    def _keep(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.path.endswith("/query"):
            self.queries.extend(parse_qs(parts.query).get("q", []))

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self._keep(str(request.url))
        if request.method == "POST" and urlsplit(str(request.url)).path.endswith("/composite"):
            body = json.loads(await request.aread())  # queries batched in one call
            for sub in body.get("compositeRequest", []):
                self._keep(str(sub.get("url", "")))
        return await self.inner.handle_async_request(request)


def _world(emails: list[str]) -> World:
    seed: dict[str, Any] = copy.deepcopy(base_seed())
    seed["salesforce"]["leads"] = [
        {"Id": f"00Q{i:012d}AAA", "Email": e, "LastName": "L", "Company": "C"}
        for i, e in enumerate(emails, start=1)
    ]
    return World(seed)


async def _match(
    tmp: Path, stored: list[str], asked: list[str], *, migrate: bool = False
) -> tuple[list[str], list[str]]:
    """The pipeline's email lookup for `asked`, against Leads holding `stored` emails."""
    world = _world(stored)
    transports = world.transports()
    assert transports.salesforce is not None
    recorder = _Recorder(transports.salesforce)
    overrides = world.settings_overrides()
    s = Settings(database={"url": f"sqlite+aiosqlite:///{tmp}/syncd.db"}, **overrides)

    class T:
        salesforce = recorder
        pardot = transports.pardot

    rt = await build_runtime(s, transports=T(), migrate=migrate)
    try:
        found = await rt.crm.records_by_email(asked)
    finally:
        await rt.aclose()
    return [r.email or "" for r in found], recorder.queries


def test_pipeline_email_lookup_is_exact_for_injection_attempts(tmp_path: Path) -> None:
    # Leads whose emails a broken escaping would match: every one of them, or by wildcard.
    stored = ["victim@example.com", "x@example.com", "a@example.com", "o'brien+news@quotes.example"]
    found, queries = asyncio.run(_match(tmp_path, stored, INJECTIONS, migrate=True))
    assert found == ["o'brien+news@quotes.example"]
    emails_asked = [v for q in queries if "WHERE Email IN" in q for v in _in_values(q)]
    assert sorted(set(emails_asked)) == sorted(set(INJECTIONS))


# Emails Salesforce accepts (the simulator validates them as Salesforce does) ...
_LOCAL = st.text(alphabet="abcXYZ019.!#$%&'*+/=?^_`{|}~-", min_size=1, max_size=30)
_VALID = st.builds(lambda local, host: f"{local}@{host}.example", _LOCAL, st.sampled_from("ab"))
# ... and anything at all, as a prospect's email may be (unicode, quotes, backslashes, controls).
_ANY = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=80)
_MIGRATED: dict[str, Path] = {}


def _migrated_db(factory: Any) -> Path:
    if "db" not in _MIGRATED:
        tmp = factory.mktemp("soql")
        asyncio.run(_match(tmp, ["seed@example.com"], ["seed@example.com"], migrate=True))
        _MIGRATED["db"] = tmp
    return _MIGRATED["db"]


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    valid=st.lists(_VALID, min_size=1, max_size=4, unique=True),
    other=st.lists(_ANY.filter(lambda e: e.strip() == e), max_size=4, unique=True),
    data=st.data(),
)
def test_pipeline_email_lookup_matches_exactly_what_it_is_asked(
    tmp_path_factory: Any, valid: list[str], other: list[str], data: st.DataObject
) -> None:
    asked = list(dict.fromkeys([*valid, *other]))
    stored = data.draw(st.lists(st.sampled_from(valid), max_size=3, unique=True))
    stored = [e.swapcase() if data.draw(st.booleans()) else e for e in stored]
    stored.append("bystander@example.com")
    found, queries = asyncio.run(_match(_migrated_db(tmp_path_factory), stored, asked))
    want = sorted(e.lower() for e in stored if e.lower() in {a.lower() for a in asked})
    assert sorted(f.lower() for f in found) == want
    emails_asked = [v for q in queries if "WHERE Email IN" in q for v in _in_values(q)]
    assert set(emails_asked) == set(asked)
