"""Stop signals: a first SIGTERM/SIGINT asks for a graceful stop, a second for an immediate one.

Modelled on procrastinate's `signals.on_stop`: the handlers run in the event loop
(`loop.add_signal_handler`), so the callbacks may touch asyncio objects directly. The graceful
callback typically sets a stop event (claim nothing new, finish or release in-flight work within
`sync.shutdown_grace_s`); the immediate callback cancels whatever still runs. Items a forced stop
leaves claimed are not lost: their leases expire and they run again.

`Stop` is the pair of events every command's worker loop watches (`syncd.runtime.worker`), so
`run`, `once` and `demo` stop the same way whichever of SIGTERM and SIGINT arrives.

The promise "a second signal stops at once" must hold even when the store does not answer (a
SQLite file locked by another process keeps a driver thread busy for `database.busy_timeout_ms`,
and the interpreter waits for such threads before it exits). So a command may give `StopSignals`
a *backstop*: once a stop is asked for, a daemon timer ends the process with `os._exit` if it is
still running after the grace (first signal) or `HARD_STOP_S` (second signal). Nothing is lost by
it: claimed items come back when their leases expire. `exit_promptly` covers the same ground
after the command returned (the interpreter's own shutdown).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterable
from types import TracebackType

from syncd import logs

log = logs.get(__name__)

STOP_SIGNALS: tuple[signal.Signals, ...] = (signal.SIGTERM, signal.SIGINT)
HARD_STOP_S = 3.0  # a second signal ends the process within this, whatever still runs
GRACE_MARGIN_S = 10.0  # after the grace: time for the release and closing, then the backstop
EXIT_OVERRAN = 1  # exit code when the backstop ends a graceful stop that overran

_stop_seen = threading.Event()  # any stop signal handled in this process (see `exit_promptly`)


class Stop:
    """The stop requests of one command: graceful (`requested`), then immediate (`forced`).

    `signal` is the first signal received (None for a programmatic stop); `exit_code` is 0, or
    128 + the signal number once the stop was forced by a signal.
    """

    def __init__(self) -> None:
        self.requested = asyncio.Event()
        self.forced = asyncio.Event()
        self.signal: signal.Signals | None = None
        self.exit_code = 0

    def request(self, sig: signal.Signals | None = None) -> None:
        """Graceful: claim nothing new, finish (or release) in-flight work within the grace."""
        if not self.requested.is_set():
            self.signal = sig
            self.requested.set()

    def force(self, sig: signal.Signals | None = None) -> None:
        """Immediate: abandon in-flight work now (released best-effort, else leases expire)."""
        self.request(sig)
        if not self.forced.is_set():
            self.forced.set()
            if sig is not None:
                self.exit_code = 128 + int(sig)

    @property
    def is_requested(self) -> bool:
        return self.requested.is_set()

    @property
    def is_forced(self) -> bool:
        return self.forced.is_set()

    @property
    def reason(self) -> str:
        return self.signal.name if self.signal is not None else "requested"


class StopSignals:
    """Context manager installing the two-stage stop handlers on the running loop.

    `on_graceful(sig)` runs on the first signal, `on_immediate(sig)` on the second (and later)
    ones. `received` lists the signals seen, in order. On exit the handlers are removed and the
    default dispositions restored.

    `backstop_grace_s` (None: no backstop) arms the process-ending timer of the module docstring
    on the first signal, `backstop_grace_s + GRACE_MARGIN_S` ahead; the second signal re-arms it
    `HARD_STOP_S` ahead. Leaving the block disarms it (the command finished in time). Only the
    commands run by the CLI use it: a test process must never be ended by a timer.
    """

    def __init__(
        self,
        on_graceful: Callable[[signal.Signals], None],
        on_immediate: Callable[[signal.Signals], None],
        signals: Iterable[signal.Signals] = STOP_SIGNALS,
        *,
        backstop_grace_s: float | None = None,
    ) -> None:
        self._on_graceful = on_graceful
        self._on_immediate = on_immediate
        self._signals = tuple(signals)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._backstop_grace_s = backstop_grace_s
        self._timer: threading.Timer | None = None
        self.received: list[signal.Signals] = []

    @classmethod
    def for_stop(cls, stop: Stop, *, backstop_grace_s: float | None = None) -> StopSignals:
        """Handlers that drive a `Stop`: request on the first signal, force on the second."""
        return cls(stop.request, stop.force, backstop_grace_s=backstop_grace_s)

    def __enter__(self) -> StopSignals:
        self._loop = asyncio.get_running_loop()
        for sig in self._signals:
            self._loop.add_signal_handler(sig, self._handle, sig)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._disarm()
        if self._loop is None:
            return
        for sig in self._signals:
            self._loop.remove_signal_handler(sig)
        self._loop = None

    def _handle(self, sig: signal.Signals) -> None:
        self.received.append(sig)
        _stop_seen.set()
        if len(self.received) == 1:
            log.info("stop_requested", signal=sig.name, mode="graceful")
            if self._backstop_grace_s is not None:
                self._arm(self._backstop_grace_s + GRACE_MARGIN_S, EXIT_OVERRAN, "graceful")
            self._on_graceful(sig)
        else:
            log.warning("stop_requested", signal=sig.name, mode="immediate")
            if self._backstop_grace_s is not None:
                self._arm(HARD_STOP_S, 128 + int(sig), "immediate")
            self._on_immediate(sig)

    def _arm(self, after_s: float, code: int, mode: str) -> None:
        self._disarm()
        self._timer = _exit_timer(after_s, code, mode)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


def stop_was_signalled() -> bool:
    """True once any `StopSignals` in this process handled a stop signal."""
    return _stop_seen.is_set()


def exit_promptly(code: int, *, after_s: float = HARD_STOP_S) -> None:
    """End the process with `code` if it is still alive `after_s` from now.

    Called by the CLI after a command stopped by a signal returned: the interpreter then joins
    every non-daemon thread, and a database driver thread still waiting on a lock held by
    another process would hold the exit up (or, if its connection was abandoned, forever).
    """
    _exit_timer(after_s, code, "exit")


def _exit_timer(after_s: float, code: int, mode: str) -> threading.Timer:
    def fire() -> None:
        with contextlib.suppress(Exception):
            log.warning("stop_backstop_fired", mode=mode, after_s=after_s, exit_code=code)
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(code)

    timer = threading.Timer(after_s, fire)
    timer.daemon = True
    timer.start()
    return timer
