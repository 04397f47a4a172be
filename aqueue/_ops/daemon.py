"""The process edge: event loop (uvloop), logging, signals -> graceful shutdown, systemd
notifications, exit status. Never a silent exit 0 after a failure."""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import anyio

from aqueue._ops.journal import JournalHandler, journal_available
from aqueue._ops.readers import Scale, Supervisor, check_scale
from aqueue._ops.settings import Settings
from aqueue._ops.systemd import Notifier, watchdog_loop
from aqueue._redis.connection import open_store, until_ready
from aqueue._services.reaper import reap_forever
from aqueue._worker.worker import Worker
from aqueue.errors import AqueueError
from aqueue.listeners import load_listeners

if TYPE_CHECKING:
    from aqueue._http.service import HttpConfig

# ._http (aiohttp, ~10 MB) is imported only by the daemons that serve HTTP: the memory of
# idle workers.

log = logging.getLogger("aqueue.daemon")

_FIELDS = ("job_id", "queue", "worker")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            # ISO 8601 in UTC, to the millisecond: what log shippers parse without a format
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            **{f: getattr(record, f) for f in _FIELDS if hasattr(record, f)},
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def configure_logging(level: str = "INFO", fmt: str = "auto") -> None:
    """journal (structured fields JOB_ID, QUEUE...) when systemd runs us, else plain lines."""
    if fmt == "auto":
        fmt = "journal" if journal_available() else "text"
    handler: logging.Handler
    if fmt == "journal":
        handler = JournalHandler()
    else:
        handler = logging.StreamHandler(sys.stderr)
        if fmt == "json":
            handler.setFormatter(JsonFormatter())
        else:
            handler.setFormatter(
                logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
            )
    logging.basicConfig(level=level, handlers=[handler], force=True)


async def _until_signalled(
    serve: Callable[[], Awaitable[None]], on_signal: Callable[[int, str], None]
) -> None:
    """Run `serve`; every SIGTERM/SIGINT meanwhile calls `on_signal(count, name)`.

    The signals are watched beside `serve` from its very start, so that a daemon still starting
    (its Redis not answering, or refusing its scripts) stops when told, as a serving one does.
    """
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with anyio.create_task_group() as tg:

            async def watch() -> None:
                count = 0
                async for signum in signals:
                    count += 1
                    on_signal(count, signal.Signals(signum).name)

            tg.start_soon(watch)
            await serve()
            tg.cancel_scope.cancel()


def _cancelling(scope: anyio.CancelScope, notifier: Notifier) -> Callable[[int, str], None]:
    def on_signal(count: int, name: str) -> None:
        notifier.stopping("stopping")
        scope.cancel()

    return on_signal


def _stopping_workers(workers: Sequence[Worker], notifier: Notifier) -> Callable[[int, str], None]:
    """First SIGTERM/SIGINT: drain (running jobs get the grace period). Second: hand back now."""

    def on_signal(count: int, name: str) -> None:
        notifier.stopping(f"{name}: draining")
        for worker in workers:
            if count == 1:
                log.info("%s: draining (grace %.1f s)", name, worker.config.grace)
                worker.stop()
            else:
                log.warning("%s again: handing running jobs back now", name)
                worker.hand_back_now()

    return on_signal


async def _report(workers: Sequence[Worker], notifier: Notifier) -> None:
    while True:
        running = sum(w.running for w in workers)
        done = sum(w.processed for w in workers)
        notifier.status(f"serving {', '.join(w.config.queue for w in workers)}: "
                        f"{running} running, {done} done")  # fmt: skip
        await anyio.sleep(5)


async def serve_workers(
    workers: Sequence[Worker], notifier: Notifier, http: HttpConfig | None = None
) -> None:
    async def serve() -> None:
        async with anyio.create_task_group() as services:
            services.start_soon(watchdog_loop, notifier)
            if http is not None:  # the HTTP API inside the worker daemon
                from aqueue._http.service import serve_http  # lazily: see the top

                await services.start(serve_http, http)
            async with anyio.create_task_group() as serving:
                for worker in workers:
                    await serving.start(worker.run)
                notifier.ready("connected; serving")
                services.start_soon(_report, workers, notifier)
            notifier.stopping("stopped")
            services.cancel_scope.cancel()

    await _until_signalled(serve, _stopping_workers(workers, notifier))


async def serve_reaper(settings: Settings, notifier: Notifier) -> None:
    scope = anyio.CancelScope()

    async def serve() -> None:
        with scope:
            async with anyio.create_task_group() as tg:
                tg.start_soon(watchdog_loop, notifier)
                for queue in settings.queues:
                    interval = settings.worker_config(queue).reaper_interval
                    await tg.start(_reaper_for, settings, queue, interval)
                notifier.ready(f"reaping {', '.join(settings.queues)}")

    await _until_signalled(serve, _cancelling(scope, notifier))


async def _reaper_for(
    settings: Settings, queue: str, interval: float, *, task_status: anyio.abc.TaskStatus[None]
) -> None:
    client = settings.client_config(queue)
    name = f"aqueue-reaper-{os.getpid()}"
    async with open_store(client.redis_url, queue, 2, name=name, check=False) as store:
        await until_ready(store, f"the reaper of {queue!r}")  # (as a worker, not exit 1)
        task_status.started()
        await reap_forever(store, interval)


def _run(main: object, *args: object) -> int:
    try:
        anyio.run(main, *args, backend="asyncio", backend_options={"use_uvloop": True})  # type: ignore[arg-type]
    except KeyboardInterrupt:
        return 130
    except BaseException:
        log.exception("aqueue daemon failed")
        return 1
    return 0


def run_workers(settings: Settings) -> int:
    """The worker daemon: one Worker per queue, sharing the listeners, in one process."""
    configure_logging(settings.log_level, settings.log_format)
    if not settings.listeners:
        raise AqueueError("no listeners given: pass module:object, or set listeners in the config")
    listeners = load_listeners(settings.listeners)
    workers = [
        Worker(
            listeners,
            settings.worker_config(q),
            client_config=settings.client_config(q),
            callbacks=settings.callbacks,
        )
        for q in settings.queues
    ]
    http = settings.http_config(listeners.names) if settings.http_bind else None
    return _run(serve_workers, workers, Notifier.from_environment(), http)


def run_readers(settings: Settings, argv: list[str], scale: Scale, idle_s: float) -> int:
    """The worker daemon as a supervisor of reader processes (see readers.py)."""
    configure_logging(settings.log_level, settings.log_format)
    if not settings.listeners:
        raise AqueueError("no listeners given: pass module:object, or set listeners in the config")
    load_listeners(settings.listeners)  # fails here, once, rather than in every reader
    check_scale(scale, settings)
    supervisor = Supervisor(settings, argv, scale, Notifier.from_environment(), idle_s)
    return _run(_until_signalled, supervisor.run, supervisor.signal)


async def serve_http_daemon(config: HttpConfig, notifier: Notifier) -> None:
    from aqueue._http.service import serve_http  # lazily: see the top

    scope = anyio.CancelScope()

    async def serve() -> None:
        with scope:
            async with anyio.create_task_group() as tg:
                tg.start_soon(watchdog_loop, notifier)
                port = await tg.start(serve_http, config)
                notifier.ready(f"serving HTTP on {config.host}:{port}")

    await _until_signalled(serve, _cancelling(scope, notifier))


def run_http(settings: Settings) -> int:
    """`aqueue http`: the HTTP API on its own."""
    configure_logging(settings.log_level, settings.log_format)
    return _run(serve_http_daemon, settings.http_config(), Notifier.from_environment())


def run_reaper(settings: Settings) -> int:
    configure_logging(settings.log_level, settings.log_format)
    return _run(serve_reaper, settings, Notifier.from_environment())
