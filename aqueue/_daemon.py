"""The process edge: event loop (uvloop), logging, signals -> graceful shutdown, exit status."""

from __future__ import annotations

import logging
import signal
import sys

import anyio

from .config import ClientConfig, WorkerConfig
from .listeners import Listeners
from .worker import Worker

log = logging.getLogger("aqueue.daemon")


def configure_logging(level: str = "INFO") -> None:
    logging.basicConfig(
        level=level,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


async def _on_signals(worker: Worker) -> None:
    """First SIGTERM/SIGINT: drain (running jobs get the grace period). Second: hand back now."""
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        count = 0
        async for signum in signals:
            count += 1
            if count == 1:
                log.info("%s: draining (grace %.1f s)", signal.Signals(signum).name,
                         worker.config.grace)  # fmt: skip
                worker.stop()
            else:
                log.warning("%s again: handing running jobs back now", signal.Signals(signum).name)
                worker.hand_back_now()


async def serve(worker: Worker) -> None:
    async with anyio.create_task_group() as tg:
        tg.start_soon(_on_signals, worker)
        await worker.run()
        tg.cancel_scope.cancel()


def run_worker(listeners: Listeners, config: WorkerConfig, client_config: ClientConfig) -> int:
    """Run a worker daemon until signalled; the process's exit status (never a silent 0 on
    failure: any error that ends the worker is logged and exits 1)."""
    worker = Worker(listeners, config, client_config=client_config)
    try:
        anyio.run(serve, worker, backend="asyncio", backend_options={"use_uvloop": True})
    except KeyboardInterrupt:
        return 130
    except BaseException:
        log.exception("worker %s failed", worker.id)
        return 1
    return 0
