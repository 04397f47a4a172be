"""systemd's notify protocol, spoken directly on `$NOTIFY_SOCKET` (no libsystemd, no dependency).

A service with `Type=notify` tells systemd how it is doing by sending datagrams of newline-separated
`KEY=value` assignments to the AF_UNIX socket named in `$NOTIFY_SOCKET` (a path, or an abstract
socket written with a leading `@`):

    READY=1        started and serving: systemd considers the unit active
    STOPPING=1     shutting down (draining)
    STATUS=...     one line shown by `systemctl status`
    WATCHDOG=1     alive; with `WatchdogSec=`, missing pings get the service killed and restarted
    EXTEND_TIMEOUT_USEC=...  more time for the current start or stop

Outside systemd (`$NOTIFY_SOCKET` unset) every method is a no-op, so the daemon calls them
unconditionally. A failed send is logged, never raised: a notification must not take the daemon
down (systemd acts on the silence itself: a missing READY fails the start, a missing WATCHDOG
restarts the service).

`watchdog_loop` pings from the event loop, so that a wedged loop (a listener blocking it, a
deadlock) stops pinging and systemd restarts the process.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping

import anyio
from anyio.abc import TaskStatus

log = logging.getLogger(__name__)


def _socket_address(value: str) -> str | None:
    """The `AF_UNIX` address named by `$NOTIFY_SOCKET`, or None when aqueue cannot use it."""
    if value.startswith("/"):
        return value
    if value.startswith("@") and len(value) > 1:
        return "\0" + value[1:]  # Linux abstract namespace
    return None  # e.g. systemd ≥ 253's "vsock:" addresses, for VMs: not supported here


def _watchdog_interval(environ: Mapping[str, str], pid: int) -> float | None:
    """Half of `$WATCHDOG_USEC`, in seconds, as sd_watchdog_enabled(3) recommends; None when the
    watchdog is off, malformed, or meant for another process (`$WATCHDOG_PID`)."""
    usec = environ.get("WATCHDOG_USEC")
    if not usec:
        return None
    target = environ.get("WATCHDOG_PID")
    try:
        if target and int(target) != pid:
            return None
        value = int(usec)
    except ValueError:
        log.warning("ignoring malformed WATCHDOG_USEC=%r / WATCHDOG_PID=%r", usec, target)
        return None
    if value <= 0:
        return None
    return value / 2 / 1_000_000


class Notifier:
    """Sends notifications to systemd. Holds no socket: each message opens, sends and closes one
    (as libsystemd's sd_notify does), so a Notifier needs no closing and is safe to share."""

    __slots__ = ("_address", "_interval")

    def __init__(self, address: str | None = None, *, watchdog_interval: float | None = None):
        """`address`: the AF_UNIX address (a path, or "\\0name" for an abstract socket); None
        makes every method a no-op. `watchdog_interval`: how often to ping, in seconds."""
        self._address = address
        self._interval = watchdog_interval if address is not None else None

    @classmethod
    def from_environment(
        cls, environ: Mapping[str, str] | None = None, *, pid: int | None = None
    ) -> Notifier:
        """The notifier systemd asked for through `$NOTIFY_SOCKET`, `$WATCHDOG_USEC` and
        `$WATCHDOG_PID` (read from `environ`, default `os.environ`; `pid` default: ours)."""
        env = os.environ if environ is None else environ
        raw = env.get("NOTIFY_SOCKET")
        if not raw:
            return cls()
        address = _socket_address(raw)
        if address is None:
            log.warning("NOTIFY_SOCKET=%r is not a unix socket address; not notifying", raw)
            return cls()
        return cls(
            address, watchdog_interval=_watchdog_interval(env, os.getpid() if pid is None else pid)
        )

    @property
    def enabled(self) -> bool:
        """True when running under a service manager that listens."""
        return self._address is not None

    def watchdog_interval(self) -> float | None:
        """Seconds between WATCHDOG=1 pings (half systemd's `WatchdogSec=`), or None when the
        watchdog is off for this process."""
        return self._interval

    def notify(self, *assignments: str) -> bool:
        """Send `KEY=value` assignments in one datagram. True when it was sent, False when
        notifications are off or the send failed (logged)."""
        if self._address is None:
            return False
        for item in assignments:
            if "=" not in item or "\n" in item:
                raise ValueError(f"not a single KEY=value assignment: {item!r}")
        data = "\n".join(assignments).encode()
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.setblocking(False)  # called from the event loop: never wait on systemd
                sock.sendto(data, self._address)
        except OSError as exc:
            log.warning("systemd notification %r failed: %s", data, exc)
            return False
        return True

    def ready(self, status: str | None = None) -> bool:
        """Started and serving (`READY=1`), with an optional status line in the same datagram."""
        return self.notify("READY=1", *self._status(status))

    def stopping(self, status: str | None = None) -> bool:
        """Shutting down (`STOPPING=1`)."""
        return self.notify("STOPPING=1", *self._status(status))

    def status(self, text: str) -> bool:
        """The one line `systemctl status` shows (`STATUS=...`); newlines become spaces."""
        return self.notify(*self._status(text))

    def watchdog(self) -> bool:
        """Alive (`WATCHDOG=1`)."""
        return self.notify("WATCHDOG=1")

    def extend_timeout(self, seconds: float) -> bool:
        """Ask for `seconds` more before systemd's start or stop timeout fires
        (`EXTEND_TIMEOUT_USEC=`), e.g. while running jobs drain."""
        if seconds <= 0:
            raise ValueError(f"extend_timeout needs a positive number of seconds, got {seconds!r}")
        return self.notify(f"EXTEND_TIMEOUT_USEC={round(seconds * 1_000_000)}")

    @staticmethod
    def _status(text: str | None) -> tuple[str, ...]:
        if text is None:
            return ()
        return ("STATUS=" + " ".join(text.splitlines()),)


async def watchdog_loop(
    notifier: Notifier, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
) -> None:
    """Ping systemd's watchdog every `notifier.watchdog_interval()` seconds, from the event loop,
    until cancelled. Returns at once when the watchdog is off. Start it with `tg.start` or
    `tg.start_soon` in the daemon's task group, after READY=1."""
    interval = notifier.watchdog_interval()
    task_status.started()
    if interval is None:
        return
    while True:
        notifier.watchdog()
        await anyio.sleep(interval)
