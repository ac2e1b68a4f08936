"""A pytest plugin: the whole run fails if any test made syncd send a read-only Pardot field.

Issue 11: across the whole suite syncd never sends a field Pardot API v5 makes read-only
(wire-formats C.3a). The Pardot simulator refuses such writes, and also reports each attempt
(`syncd.simulators.written`): to this process, and as a JSON line to the file named by
`SIMULATORS_READ_ONLY_LOG`. This plugin points that variable at a fresh file when the run starts,
so simulators in the test process and in any subprocess a test starts (`syncd simulate`, `syncd
demo`, the soak harness) all report there. When the run ends, it fails the run (exit status 1)
with a report naming each field, object, route and test, unless the test carries the marker
`@pytest.mark.sends_read_only` (tests of the simulator's refusal itself).

`tests/conftest.py` imports these hooks; `pytest -p _written_check` loads them elsewhere (the
test of this check runs a small pytest session that way).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections import Counter

import pytest

from syncd.simulators.written import READ_ONLY_LOG_ENV, ReadOnlyWrite, read_log

MARKER = "sends_read_only"
_LOG = pytest.StashKey[str]()
_PREVIOUS = pytest.StashKey["str | None"]()
_ALLOWED = pytest.StashKey["set[str]"]()
_REPORT = pytest.StashKey["list[str]"]()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{MARKER}: the test writes read-only Pardot fields on purpose (to test the simulator's "
        "refusal); the whole-run read-only check ignores its attempts",
    )
    fd, path = tempfile.mkstemp(prefix="syncd-read-only-", suffix=".jsonl")
    os.close(fd)
    config.stash[_LOG] = path
    config.stash[_PREVIOUS] = os.environ.get(READ_ONLY_LOG_ENV)
    config.stash[_ALLOWED] = set()
    config.stash[_REPORT] = []
    os.environ[READ_ONLY_LOG_ENV] = path


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    allowed = config.stash[_ALLOWED]
    allowed.update(item.nodeid for item in items if item.get_closest_marker(MARKER))


def _node_id(test: str | None) -> str | None:
    # PYTEST_CURRENT_TEST is "<node id> (setup|call|teardown)".
    return None if test is None else test.rsplit(" (", 1)[0]


def offending(attempts: list[ReadOnlyWrite], allowed: set[str]) -> list[str]:
    """Report lines for the attempts not made by an allowed test, most frequent first."""
    counts = Counter(
        (a.simulator, a.object, a.field, a.route, _node_id(a.test))
        for a in attempts
        if _node_id(a.test) not in allowed
    )
    return [
        f"  {obj}.{name} sent {n}x to the {sim} simulator ({route}) in {test or 'no test'}"
        for (sim, obj, name, route, test), n in counts.most_common()
    ]


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    config = session.config
    if _LOG not in config.stash:
        return
    lines = offending(read_log(config.stash[_LOG]), config.stash[_ALLOWED])
    config.stash[_REPORT] = lines
    if lines and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    lines = terminalreporter.config.stash.get(_REPORT, [])
    if not lines:
        return
    terminalreporter.section("read-only Pardot fields sent", sep="=", red=True, bold=True)
    terminalreporter.line(
        "Pardot API v5 refuses writes of these fields (wire-formats C.3a); syncd must never send"
        " them. Stop sending them, or mark a test that sends them on purpose with"
        f" @pytest.mark.{MARKER}. The run fails:"
    )
    for line in lines:
        terminalreporter.line(line)


def pytest_unconfigure(config: pytest.Config) -> None:
    if _LOG not in config.stash:
        return
    previous = config.stash[_PREVIOUS]
    if previous is None:
        os.environ.pop(READ_ONLY_LOG_ENV, None)
    else:
        os.environ[READ_ONLY_LOG_ENV] = previous
    with contextlib.suppress(FileNotFoundError):
        os.unlink(config.stash[_LOG])
