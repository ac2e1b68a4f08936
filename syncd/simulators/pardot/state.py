"""What every layer of the Pardot simulator shares: the business unit's state."""

from __future__ import annotations

import threading
from datetime import date, timezone

from syncd.simulators import written
from syncd.simulators._base import (
    ASGIApp,
    Clock,
    Counters,
    Faults,
    TokenRegistry,
)
from syncd.simulators.pardot.table import (
    _PageToken,
    _Table,
)


class PardotState:
    """The simulated business unit's state, shared by every layer of `PardotSimulator`.

    The layers (records -> limits -> queries -> writes -> simulator) each add one concern; this
    class only declares what they share, so each layer type-checks on its own.
    `PardotSimulator.__init__` sets every attribute.
    """

    clock: Clock
    base_url: str
    tokens: TokenRegistry
    counters: Counters
    faults: Faults
    app: ASGIApp
    business_unit_id: str
    daily_api_limit: int
    max_concurrency: int
    rate_limit_status: int
    page_token_record_cap: int
    ampsea: bool
    tz: timezone
    api_usage: int
    in_flight: int
    users_table: _Table
    prospects_table: _Table
    emails_table: _Table
    _written: written.WrittenCounter
    _usage_day: date
    _lock: threading.RLock
    _page_tokens: dict[str, _PageToken]
