"""systemd notify protocol: READY/STATUS/STOPPING/WATCHDOG datagrams to `$NOTIFY_SOCKET`.

The protocol is one `AF_UNIX` datagram of newline-separated `KEY=value` lines sent to the path in
`NOTIFY_SOCKET`; a leading `@` names a socket in the abstract namespace (a NUL byte on the wire).
It needs no library: `sd_notify(3)` is a `sendto()`. Without `NOTIFY_SOCKET` (not under systemd,
or `Type=` other than notify) every call is a no-op, so the daemon can call it unconditionally.
`WATCHDOG_USEC` (set by systemd when the unit has `WatchdogSec=`) asks for a `WATCHDOG=1` ping at
least that often; `watchdog_interval_s()` returns half of it, the interval sd_watchdog_enabled(3)
recommends. `WATCHDOG_PID`, when set, names the process the watchdog applies to.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping

from syncd import logs

log = logs.get(__name__)


class Notifier:
    """Sends notify messages to the socket named in the environment (if any)."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        path = env.get("NOTIFY_SOCKET", "")
        self._address: str | bytes | None = None
        if path.startswith("@"):
            self._address = b"\0" + path[1:].encode()
        elif path.startswith("/"):
            self._address = path
        self._watchdog_s = _watchdog_interval_s(env)

    @property
    def enabled(self) -> bool:
        """True when a notify socket is configured."""
        return self._address is not None

    def watchdog_interval_s(self) -> float | None:
        """Seconds between `WATCHDOG=1` pings (half of `WATCHDOG_USEC`), or None when off."""
        return self._watchdog_s if self.enabled else None

    def notify(self, **fields: str | int) -> bool:
        """Send `KEY=value` lines (keys upper-cased); False when disabled or the send failed."""
        if self._address is None:
            return False
        payload = "\n".join(f"{k.upper()}={v}" for k, v in fields.items()).encode()
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.sendto(payload, self._address)
        except OSError as exc:
            # systemd gone or socket unwritable: the daemon keeps working, the supervisor decides.
            log.warning("sd_notify_failed", error=str(exc))
            return False
        return True

    def ready(self, status: str | None = None) -> bool:
        """READY=1 (and STATUS) once start-up is complete."""
        return self.notify(ready=1, status=status) if status else self.notify(ready=1)

    def status(self, text: str) -> bool:
        """STATUS=<text>: one line shown by `systemctl status`."""
        return self.notify(status=text.replace("\n", " "))

    def stopping(self, status: str | None = None) -> bool:
        """STOPPING=1 when a graceful stop begins."""
        return self.notify(stopping=1, status=status) if status else self.notify(stopping=1)

    def watchdog(self) -> bool:
        """WATCHDOG=1: the main loop is alive."""
        return self.notify(watchdog=1)


def _watchdog_interval_s(env: Mapping[str, str]) -> float | None:
    usec = env.get("WATCHDOG_USEC", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    pid = env.get("WATCHDOG_PID", "")
    if pid.isdigit() and int(pid) != os.getpid():
        return None  # the watchdog is meant for another process (e.g. our parent shell)
    return int(usec) / 1_000_000 / 2
