"""Stop signals: a first SIGTERM/SIGINT asks for a graceful stop, a second for an immediate one.

Modelled on procrastinate's `signals.on_stop`: the handlers run in the event loop
(`loop.add_signal_handler`), so the callbacks may touch asyncio objects directly. The graceful
callback typically sets a stop event (claim nothing new, finish or release in-flight work within
`sync.shutdown_grace_s`); the immediate callback cancels whatever still runs. Items a forced stop
leaves claimed are not lost: their leases expire and they run again.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable, Iterable
from types import TracebackType

from syncd import logs

log = logs.get(__name__)

STOP_SIGNALS: tuple[signal.Signals, ...] = (signal.SIGTERM, signal.SIGINT)


class StopSignals:
    """Context manager installing the two-stage stop handlers on the running loop.

    `on_graceful(sig)` runs on the first signal, `on_immediate(sig)` on the second (and later)
    ones. `received` lists the signals seen, in order. On exit the handlers are removed and the
    default dispositions restored.
    """

    def __init__(
        self,
        on_graceful: Callable[[signal.Signals], None],
        on_immediate: Callable[[signal.Signals], None],
        signals: Iterable[signal.Signals] = STOP_SIGNALS,
    ) -> None:
        self._on_graceful = on_graceful
        self._on_immediate = on_immediate
        self._signals = tuple(signals)
        self._loop: asyncio.AbstractEventLoop | None = None
        self.received: list[signal.Signals] = []

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
        if self._loop is None:
            return
        for sig in self._signals:
            self._loop.remove_signal_handler(sig)
        self._loop = None

    def _handle(self, sig: signal.Signals) -> None:
        self.received.append(sig)
        if len(self.received) == 1:
            log.info("stop_requested", signal=sig.name, mode="graceful")
            self._on_graceful(sig)
        else:
            log.warning("stop_requested", signal=sig.name, mode="immediate")
            self._on_immediate(sig)
