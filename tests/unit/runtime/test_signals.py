"""Two-stage stop: the first SIGTERM/SIGINT is graceful, the second immediate (real signals)."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Callable

import pytest

from syncd.runtime.signals import Stop, StopSignals


class _TinyService:
    """A worker that takes 'items' one at a time; graceful stop lets the current one finish."""

    def __init__(self) -> None:
        self.stop = asyncio.Event()
        self.finished: list[int] = []
        self.started: list[int] = []
        self.item_gate = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    async def work(self) -> None:
        n = 0
        while not self.stop.is_set():
            n += 1
            self.started.append(n)
            await self.item_gate.wait()
            self.item_gate.clear()
            self.finished.append(n)

    def graceful(self, _sig: signal.Signals) -> None:
        self.stop.set()

    def immediate(self, _sig: signal.Signals) -> None:
        assert self.task is not None
        self.task.cancel()


async def _until(cond: Callable[[], bool], timeout_s: float = 10.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not cond():
            await asyncio.sleep(0.01)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
async def test_first_signal_is_graceful(sig: signal.Signals) -> None:
    svc = _TinyService()
    with StopSignals(svc.graceful, svc.immediate) as stops:
        svc.task = asyncio.create_task(svc.work())
        await _until(lambda: svc.started == [1])
        os.kill(os.getpid(), sig)
        await _until(svc.stop.is_set)
        svc.item_gate.set()  # the in-flight item completes
        await asyncio.wait_for(svc.task, 10)
    assert stops.received == [sig]
    assert svc.finished == [1]
    assert svc.started == [1]  # nothing new claimed after the signal


async def test_second_signal_stops_at_once() -> None:
    svc = _TinyService()
    with StopSignals(svc.graceful, svc.immediate) as stops:
        svc.task = asyncio.create_task(svc.work())
        await _until(lambda: svc.started == [1])
        os.kill(os.getpid(), signal.SIGTERM)
        await _until(svc.stop.is_set)
        os.kill(os.getpid(), signal.SIGINT)
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(svc.task, 10)
    assert stops.received == [signal.SIGTERM, signal.SIGINT]
    assert svc.finished == []  # the in-flight item was abandoned (its lease will expire)


async def test_handlers_are_removed_on_exit() -> None:
    loop = asyncio.get_running_loop()
    with StopSignals(lambda s: None, lambda s: None):
        pass
    # remove_signal_handler returns False when no handler is installed
    assert not loop.remove_signal_handler(signal.SIGTERM)
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL


@pytest.mark.parametrize(
    ("first", "second"),
    [(signal.SIGTERM, signal.SIGINT), (signal.SIGINT, signal.SIGTERM)],
)
async def test_a_stop_is_requested_then_forced_whichever_signal_comes(
    first: signal.Signals, second: signal.Signals
) -> None:
    """`run`, `once` and `demo` all drive a `Stop`: the signals behave alike in each."""
    stop = Stop()
    with StopSignals.for_stop(stop):
        os.kill(os.getpid(), first)
        await asyncio.wait_for(stop.requested.wait(), 10)
        assert not stop.is_forced and stop.exit_code == 0 and stop.reason == first.name
        os.kill(os.getpid(), second)
        await asyncio.wait_for(stop.forced.wait(), 10)
    assert stop.exit_code == 128 + second
