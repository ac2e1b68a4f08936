"""The API's limits: the daily call budget and the answers of rate-limited calls."""

from __future__ import annotations

from datetime import date

from syncd.simulators._base import (
    SIM_PREFIX,
    ASGIApp,
    CannedResponse,
    Receive,
    Scope,
    Send,
    json_bytes,
)
from syncd.simulators.pardot.records import PardotRecords
from syncd.simulators.pardot.schema import (
    MSG_CONCURRENT,
    MSG_DAILY,
)
from syncd.simulators.pardot.state import PardotState
from syncd.simulators.pardot.wire import ApiError, _Answer, _send_answer


class PardotLimits(PardotRecords):
    """Daily usage (code 122) and rate-limit bodies (code 66)."""

    def _today(self) -> date:
        return self.clock().astimezone(self.tz).date()

    def _rate_limited(self) -> CannedResponse:
        return CannedResponse(
            self.rate_limit_status, json_bytes({"code": 66, "message": MSG_CONCURRENT})
        )

    def _charge_call(self) -> None:
        today = self._today()
        if today != self._usage_day:
            self._usage_day = today
            self.api_usage = 0
        if self.api_usage >= self.daily_api_limit:
            raise ApiError(self.rate_limit_status, 122, MSG_DAILY)
        self.api_usage += 1


class _ConcurrencyGate:
    """Outermost layer: answers code 66 when more than `max_concurrency` calls are in flight.

    It sits outside `SimulatorMiddleware` so that injected latency counts as time in flight, as a
    slow answer does on the real API.
    """

    def __init__(self, sim: PardotState, app: ASGIApp) -> None:
        self.sim = sim
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(SIM_PREFIX):
            await self.app(scope, receive, send)
            return
        sim = self.sim
        if sim.in_flight >= sim.max_concurrency:
            sim.counters.record(scope["method"], scope["path"])
            sim.counters.faults["concurrent_limit"] += 1
            await _send_answer(
                send, _Answer(sim.rate_limit_status, {"code": 66, "message": MSG_CONCURRENT})
            )
            return
        sim.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            sim.in_flight -= 1
