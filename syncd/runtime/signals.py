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
it: claimed items come back when their leases expire. Leaving the `StopSignals` block after a
stop re-arms the timer `EXIT_TAIL_S` ahead with the command's exit code (`exit_code`): the
event loop's teardown and the interpreter's exit (which joins every non-daemon thread, such as a
driver thread still waiting on the lock) must not hold the process up either.
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
HARD_STOP_S = 4.0  # a second signal ends the process within this, whatever still runs
EXIT_TAIL_S = 1.0  # after a stopped command returned: the interpreter's own shutdown
GRACE_MARGIN_S = 10.0  # after the grace: time for the release and closing, then the backstop
EXIT_OVERRAN = 1  # exit code when the backstop ends a graceful stop that overran


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
    `HARD_STOP_S` ahead. Leaving the block after a signal re-arms it `EXIT_TAIL_S` ahead with
    `exit_code` (set it to the command's exit code before leaving; default 128 + the last
    signal). Without a signal nothing is ever armed. Only the commands the CLI runs use it: a
    test that sends them a signal in-process would be ended by the timer.
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
        self.exit_code: int | None = None

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
        if self.received and self._backstop_grace_s is not None:
            code = self.exit_code if self.exit_code is not None else 128 + int(self.received[-1])
            self._timer = _exit_timer(EXIT_TAIL_S, code, "exit")
        if self._loop is None:
            return
        for sig in self._signals:
            self._loop.remove_signal_handler(sig)
        self._loop = None

    def _handle(self, sig: signal.Signals) -> None:
        self.received.append(sig)
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
