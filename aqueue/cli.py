"""The `aqueue` command: argument parsing into config objects, nothing more."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from . import _daemon
from .config import ClientConfig, WorkerConfig
from .errors import AqueueError
from .listeners import load_listeners


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="aqueue", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    worker = commands.add_parser("worker", help="run a worker daemon")
    worker.add_argument("listeners", help="the Listeners registry, as module:object")
    worker.add_argument("--queue", default=os.environ.get("AQUEUE_QUEUE", "default"))
    worker.add_argument("--redis-url", default=None, help="default: $AQUEUE_REDIS_URL, or embedded")
    worker.add_argument("--concurrency", type=int, default=16)
    worker.add_argument("--lease", type=float, default=30.0)
    worker.add_argument("--heartbeat", type=float, default=10.0)
    worker.add_argument("--grace", type=float, default=30.0)
    worker.add_argument("--reaper-interval", type=float, default=5.0)
    worker.add_argument("--idle-wait", type=float, default=5.0)
    worker.add_argument("--no-reaper", action="store_true")
    worker.add_argument("--log-level", default="INFO")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    _daemon.configure_logging(args.log_level)
    sys.path.insert(0, os.getcwd())  # import listeners from the current directory, as python -m
    try:
        config = WorkerConfig(
            queue=args.queue,
            concurrency=args.concurrency,
            lease=args.lease,
            heartbeat=args.heartbeat,
            grace=args.grace,
            reaper_interval=args.reaper_interval,
            idle_wait=args.idle_wait,
            reaper=not args.no_reaper,
        )
        client_config = ClientConfig(queue=args.queue, redis_url=args.redis_url)
        listeners = load_listeners(args.listeners)
    except AqueueError as exc:
        print(f"aqueue: error: {exc}", file=sys.stderr)
        return 2
    return _daemon.run_worker(listeners, config, client_config)
