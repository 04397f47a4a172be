"""Readers: `aqueue worker ... --processes N` (or `MIN..MAX`) runs its worker as N reader
processes under one supervising daemon (PiCloud's readers per job): CPU-bound listeners beat
the GIL, each reader has its own event loop and its own handler instances (a stateful
listener's setup runs once in each).

The supervisor runs no jobs. It starts `python -m aqueue worker` readers with the same
arguments, and is their systemd: they notify a socket of its own (`$NOTIFY_SOCKET`), and it
tells the real one READY=1 once the first readers are ready, so one unit has one READY. A
reader that dies is started again (after a backoff, reset once one has run a while); the jobs
it held are reaped as any dead worker's. SIGTERM drains every reader (a second hands their
jobs back at once), then it exits.

With `MIN..MAX` it scales: one reader more each tick while jobs wait (up to MAX), one fewer
after `IDLE_S` with nothing queued or running (down to MIN; PiCloud stopped after 20 s idle).
Each reader is a worker of its queues, so `aqueue status` counts them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
import tempfile
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import anyio
from anyio.abc import Process

from aqueue._ops.settings import Settings
from aqueue._ops.systemd import Notifier, watchdog_loop
from aqueue._redis.connection import open_store
from aqueue._redis.store import Store
from aqueue.errors import AqueueError, ConfigError, RedisUnavailable

log = logging.getLogger(__name__)

TICK_S = 1.0  # how often the supervisor looks at its readers and the backlog
IDLE_S = 20.0  # a reader past MIN is stopped after this long with nothing to do
MOST_PROCESSES = 256
SUPERVISOR_OPTIONS = ("--processes", "--reader-idle")


@dataclass(frozen=True)
class Scale:
    least: int
    most: int

    @property
    def fixed(self) -> bool:
        return self.least == self.most


def parse_processes(text: str) -> Scale:
    """`N` or `MIN..MAX` readers; a ValueError names what is wrong."""
    least, dots, most = text.partition("..")
    try:
        scale = Scale(int(least), int(most) if dots else int(least))
    except ValueError:
        raise ValueError(f"N or MIN..MAX reader processes, got {text!r}") from None
    if not 0 <= scale.least <= scale.most or not 1 <= scale.most <= MOST_PROCESSES:
        raise ValueError(f"0 <= MIN <= MAX, 1 <= MAX <= {MOST_PROCESSES}, got {text!r}")
    return scale


def reader_argv(argv: Sequence[str]) -> list[str]:
    """The worker's command line without the supervisor's own options (--processes,
    --reader-idle): a reader runs as one process."""
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg in SUPERVISOR_OPTIONS:
            skip = True
        elif not arg.startswith(tuple(f"{o}=" for o in SUPERVISOR_OPTIONS)):
            out.append(arg)
    return out


class Reader:
    def __init__(self, process: Process) -> None:
        self.process = process
        self.stopping = False  # told to stop: its exit is expected
        self.started = anyio.current_time()


class Supervisor:
    def __init__(
        self,
        settings: Settings,
        argv: Sequence[str],
        scale: Scale,
        notifier: Notifier,
        idle_s: float = IDLE_S,
    ) -> None:
        self.settings = settings
        self.idle_s = idle_s
        self.argv = list(argv)
        self.scale = scale
        self.notifier = notifier
        self.readers: list[Reader] = []
        self.ready = 0  # READY=1 notes heard from readers
        self._ready_changed = anyio.Event()
        self._stopping = False
        self._restart_delay = 0.5
        self._idle_since: float | None = None

    @property
    def live(self) -> int:
        return sum(1 for r in self.readers if r.process.returncode is None and not r.stopping)

    async def run(self) -> None:
        with tempfile.TemporaryDirectory(prefix="aqueue-readers-") as folder:
            sink_path = str(Path(folder) / "notify.sock")
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sink:
                sink.bind(sink_path)
                sink.setblocking(False)
                async with self._backlog_stores() as stores, anyio.create_task_group() as tg:
                    tg.start_soon(self._hear, sink)
                    tg.start_soon(watchdog_loop, self.notifier)
                    for _ in range(self.scale.least):
                        await self._start(sink_path)
                    await self._until_ready()
                    self.notifier.ready(f"supervising {self._describe()}")
                    while not (self._stopping and not self._running()):
                        await self._tick(sink_path, stores)
                        with anyio.move_on_after(TICK_S):
                            await self._ready_changed.wait()
                    tg.cancel_scope.cancel()
        self.notifier.stopping("stopped")

    async def _until_ready(self) -> None:
        """Until the first readers said READY=1; AqueueError if one exits before (its own
        log says why: a listener that cannot be imported, a bad setting)."""
        while self.ready < self.scale.least:
            for reader in self.readers:
                if reader.process.returncode is not None:
                    raise AqueueError(
                        f"reader {reader.process.pid} exited with status "
                        f"{reader.process.returncode} before it was ready (its log above says why)"
                    )
            if self._stopping:
                return
            with anyio.move_on_after(0.1):
                await self._ready_changed.wait()

    def _wake(self) -> None:
        self._ready_changed.set()
        self._ready_changed = anyio.Event()

    def signal(self, count: int, name: str) -> None:
        """SIGTERM/SIGINT: the first drains every reader, the second hands their jobs back."""
        self._stopping = True
        self.notifier.stopping(f"{name}: draining {len(self._running())} reader(s)")
        for reader in self._running():
            reader.stopping = True
            with contextlib.suppress(ProcessLookupError):
                reader.process.send_signal(signal.SIGTERM)
        self._wake()

    def _running(self) -> list[Reader]:
        return [r for r in self.readers if r.process.returncode is None]

    def _describe(self) -> str:
        count = f"{self.live} reader(s)"
        return count if self.scale.fixed else f"{count} ({self.scale.least}..{self.scale.most})"

    async def _start(self, sink_path: str) -> None:
        env = {k: v for k, v in os.environ.items() if k not in ("WATCHDOG_USEC", "WATCHDOG_PID")}
        env["NOTIFY_SOCKET"] = sink_path  # the readers' systemd is this supervisor
        process = await anyio.open_process(
            [sys.executable, "-m", "aqueue", *self.argv], env=env, stdout=None, stderr=None
        )
        self.readers.append(Reader(process))
        log.info("reader %d started (%s)", process.pid, self._describe())

    async def _tick(self, sink_path: str, stores: list[Store]) -> None:
        now = anyio.current_time()
        for reader in list(self.readers):
            code = reader.process.returncode
            if code is None:
                continue
            self.readers.remove(reader)
            if reader.stopping or self._stopping:
                log.info("reader %d stopped (exit status %d)", reader.process.pid, code)
                continue
            log.warning("reader %d died (exit status %d): starting another in %.1f s",
                        reader.process.pid, code, self._restart_delay)  # fmt: skip
            if now - reader.started > 30:
                self._restart_delay = 0.5  # it had run a while: no crash loop
            await anyio.sleep(self._restart_delay)
            self._restart_delay = min(self._restart_delay * 2, 10.0)
            if not self._stopping:
                await self._start(sink_path)
        if self._stopping or self.scale.fixed:
            self.notifier.status(f"supervising {self._describe()}")
            return
        await self._autoscale(sink_path, stores, now)

    async def _autoscale(self, sink_path: str, stores: list[Store], now: float) -> None:
        try:
            counts = [await store.counts() for store in stores]
        except RedisUnavailable as exc:
            log.warning("reading the backlog failed: %s", exc)
            return
        queued = sum(c["queued"] for c in counts)
        busy = queued + sum(c["active"] for c in counts)
        if queued and self.live < self.scale.most:
            self._idle_since = None
            await self._start(sink_path)
        elif busy:
            self._idle_since = None
        elif self.live > self.scale.least:
            self._idle_since = self._idle_since or now
            if now - self._idle_since >= self.idle_s:
                newest = max(
                    (r for r in self._running() if not r.stopping), key=lambda r: r.started
                )
                newest.stopping = True
                newest.process.send_signal(signal.SIGTERM)
                log.info("reader %d idle %.0f s: stopping it", newest.process.pid, self.idle_s)
                self._idle_since = now  # the next one waits a whole idle time more
        self.notifier.status(f"supervising {self._describe()}; {queued} queued")

    async def _hear(self, sink: socket.socket) -> None:
        """Count the readers' READY=1 notes (what else they say is theirs: STATUS, WATCHDOG)."""
        loop = asyncio.get_running_loop()
        while True:
            note = await loop.sock_recv(sink, 4096)
            if b"READY=1" in note.split(b"\n"):
                self.ready += 1
                self._wake()

    @contextlib.asynccontextmanager
    async def _backlog_stores(self) -> AsyncIterator[list[Store]]:
        """A store of each queue, to read its backlog (only when scaling)."""
        if self.scale.fixed:
            yield []
            return
        async with contextlib.AsyncExitStack() as stack:
            stores = []
            for queue in self.settings.queues:
                config = self.settings.client_config(queue)
                stores.append(
                    await stack.enter_async_context(
                        open_store(
                            config.redis_url,
                            queue,
                            2,
                            name=f"aqueue-supervisor-{os.getpid()}",
                            check=False,
                        )
                    )
                )
            yield stores


def check_scale(scale: Scale, settings: Settings) -> None:
    """ConfigError where readers cannot work as asked."""
    if settings.http_bind and scale.most > 1:
        raise ConfigError(
            "--http with --processes: run the HTTP API as its own daemon (aqueue http)"
        )
