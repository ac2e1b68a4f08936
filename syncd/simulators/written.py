"""What clients wrote to the simulators: per object and field name, and every read-only attempt.

Both simulators count, per object and field name, every write attempt that carried the field
(creates, updates, upserts, collection items and composite subrequests, refused ones included),
readable in-process (`sim.written()`) and over HTTP (`GET /__sim__/written`).

A write that carries a field the real API makes read-only (Pardot prospect fields,
wire-formats C.3a) is also reported to the process-wide `READ_ONLY_WRITES` list and, when the
environment variable `SIMULATORS_READ_ONLY_LOG` names a file, appended to it as one JSON line
(with `PYTEST_CURRENT_TEST`, so a whole-run check can name the test). Simulators started in a
subprocess inherit the variable, so the check sees them too. The name does not start with
`SYNCD_`: the test suite clears those variables for every test.
"""

from __future__ import annotations

import json
import os
import threading
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

READ_ONLY_LOG_ENV = "SIMULATORS_READ_ONLY_LOG"


@dataclass(frozen=True, slots=True)
class ReadOnlyWrite:
    """One write attempt that carried a read-only field."""

    simulator: str  # "pardot"
    object: str  # "Prospect"
    field: str
    route: str  # "PATCH /api/v5/objects/prospects/{id}"
    test: str | None  # PYTEST_CURRENT_TEST of the process that sent or served it


READ_ONLY_WRITES: list[ReadOnlyWrite] = []
_lock = threading.Lock()


class WrittenCounter:
    """Per object, how many write attempts carried each field name."""

    def __init__(self) -> None:
        self._counts: dict[str, Counter[str]] = {}
        self._lock = threading.Lock()

    def note(self, obj: str, names: Iterable[str]) -> None:
        with self._lock:
            counts = self._counts.setdefault(obj, Counter())
            counts.update(set(names))

    def snapshot(self) -> dict[str, dict[str, int]]:
        """`{"Prospect": {"firstName": 3, ...}, ...}`, sorted by name."""
        with self._lock:
            return {
                obj: dict(sorted(counts.items())) for obj, counts in sorted(self._counts.items())
            }


def report_read_only(simulator: str, obj: str, fields: Iterable[str], route: str) -> None:
    """Note read-only fields a write carried: in this process, and in the run's log if named."""
    test = os.environ.get("PYTEST_CURRENT_TEST")
    found = [ReadOnlyWrite(simulator, obj, name, route, test) for name in sorted(set(fields))]
    if not found:
        return
    with _lock:
        READ_ONLY_WRITES.extend(found)
        target = os.environ.get(READ_ONLY_LOG_ENV)
        if target:
            lines = "".join(json.dumps(asdict(w)) + "\n" for w in found)
            # One append per call: concurrent processes add whole lines (O_APPEND).
            with open(target, "a", encoding="utf-8") as log:
                log.write(lines)


def read_log(path: str | Path) -> list[ReadOnlyWrite]:
    """The attempts a `SIMULATORS_READ_ONLY_LOG` file holds (an absent file holds none)."""
    p = Path(path)
    if not p.exists():
        return []
    out = []
    for line in p.read_text(encoding="utf-8").splitlines():
        if line.strip():
            out.append(ReadOnlyWrite(**json.loads(line)))
    return out
