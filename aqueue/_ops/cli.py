"""aqueue: run worker daemons, post and inspect jobs, and see where the work stopped.

Settings come from a TOML file (--config), AQUEUE_* environment variables and flags, in
rising order of precedence. With no Redis URL anywhere, the embedded Redis in ./.aqueue is used.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any, NoReturn

import anyio

from aqueue._ops import commands as _commands
from aqueue._ops import daemon as _daemon
from aqueue._ops import settings as _settings
from aqueue._ops.readers import Scale, parse_processes, reader_argv
from aqueue._options import OPTIONS, Option
from aqueue._redis.connection import shown
from aqueue._redis.keys import check_queue_name
from aqueue.errors import TEN_YEARS, AqueueError, ConfigError

EXIT_PIPE = 141  # 128 + SIGPIPE: what a shell reports for a command whose reader left
EXIT_HELP = """exit status: 0 done; 1 an error (printed); 2 `status` found something that needs
attention; 64 bad command-line usage; 141 its output was closed early (| head)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(64, f"{self.prog}: error: {message}\n")  # EX_USAGE, apart from status's 2


# argparse types: a bad value is a usage error naming its option, before anything connects


def _seconds(least: float, *, above: bool = False) -> Callable[[str], float]:
    """Finite seconds from `least` (or above it) to ten years. float() takes "nan" and "inf",
    which no comparison below refuses and no millisecond conversion survives."""
    bound = f"> {least:g}" if above else f">= {least:g}"

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        too_low = value <= least if above else value < least
        if not math.isfinite(value) or too_low or value > TEN_YEARS:
            raise argparse.ArgumentTypeError(
                f"must be seconds {bound} and at most {TEN_YEARS} (ten years), got {text!r}"
            )
        return value

    return parse


_positive = _seconds(0, above=True)


def _whole(name: str) -> Callable[[str], int]:
    """The whole-number setting `name`, in its range (_checks.WHOLE): else a usage error."""
    parse_setting = _settings.whole_setting(name)

    def parse(text: str) -> int:
        try:
            return parse_setting(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"must be {exc}, got {text!r}") from None

    return parse


def _flag_type(option: Option) -> Callable[[str], Any]:
    """How `aqueue post` parses the option's flag: in its range, else a usage error."""
    match option.kind:
        case "whole":
            return _whole(option.name)
        case "retry":  # a number of retries (a whole policy is for Python and HTTP)
            return _whole("retries")
        case "seconds":
            return _seconds(option.least or 0, above=option.above)
        case _:  # text, checked where it is used
            return str


def _queue(text: str) -> str:
    try:
        return check_queue_name(text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _redis_url(text: str) -> str:
    try:
        return _settings.redis_url(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"must be {exc}: {shown(text)!r}") from None


def _result_bytes(text: str) -> int:
    try:
        return _settings.result_bytes(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"must be {exc}, got {text!r}") from None


def _add_connection(
    p: argparse.ArgumentParser,
    *,
    many_queues: bool = False,
    queues_help: str = "a queue to serve (repeat for more; default: default)",
) -> None:
    p.add_argument("--config", type=Path, help="a TOML settings file (e.g. /etc/aqueue/gpu0.toml)")
    p.add_argument(
        "--redis-url",
        type=_redis_url,
        help="redis://, rediss://, unix://, redis+sentinel://H1:P1,H2:P2/<master> or "
        "redis+cluster://H1:P1,H2:P2 URL, with user:password",
    )
    if many_queues:
        p.add_argument(
            "--queue",
            action="append",
            type=_queue,
            dest="queues",
            metavar="QUEUE",
            help=queues_help,
        )
    else:
        p.add_argument(
            "--queue", type=_queue, help="the queue (default: the first configured, or default)"
        )


def _add_daemon(p: argparse.ArgumentParser) -> None:
    _add_connection(p, many_queues=True)
    p.add_argument("--lease", type=_positive, help="seconds a claim lasts without a heartbeat (30)")
    p.add_argument("--heartbeat", type=_positive, help="seconds between lease renewals (10)")
    p.add_argument("--reaper-interval", type=_positive, help="seconds between reaper passes (5)")
    p.add_argument(
        "--replicas",
        type=_whole("replicas"),
        help="replicas that must acknowledge every write, posts and finishes (0; 0: none)",
    )
    p.add_argument(
        "--durable-timeout", type=_positive, help="seconds a durable write waits for them (1)"
    )
    p.add_argument(
        "--durable-local",
        choices=["true", "false"],
        help="every write waits for the local AOF fsync too (WAITAOF: Redis 7.2 or later)",
    )
    p.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    p.add_argument(
        "--log-format",
        choices=["auto", "text", "json", "journal"],
        help="auto: the journal under systemd, text otherwise",
    )


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="aqueue",
        description=__doc__,
        epilog=EXIT_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    worker = commands.add_parser(
        "worker",
        help="run a worker daemon",
        description="Run listeners on the jobs of one or more queues "
        "until SIGTERM (drain) or a second SIGTERM (hand back now).",
    )
    worker.add_argument("listeners", nargs="?", help="the Listeners registry, as module:object")
    _add_daemon(worker)
    worker.add_argument(
        "--concurrency", type=_whole("concurrency"), help="jobs run at once per queue (16)"
    )
    worker.add_argument(
        "--prefetch",
        type=_whole("prefetch"),
        help="most jobs claimed ahead of free slots, for short jobs (64)",
    )
    worker.add_argument("--grace", type=_positive, help="seconds running jobs get on SIGTERM (30)")
    worker.add_argument("--idle-wait", type=_positive, help="longest block between claims (5)")
    worker.add_argument(
        "--max-result-bytes",
        type=_result_bytes,
        metavar="SIZE",
        help="largest result a listener may return, e.g. 1GiB (16MiB; at most 2GiB)",
    )
    worker.add_argument(
        "--callback-timeout", type=_positive, help="seconds per delivery attempt (10)"
    )
    worker.add_argument(
        "--callback-attempts",
        type=_whole("callback_attempts"),
        help="deliveries tried per outcome (3)",
    )
    worker.add_argument("--callback-backoff", type=_positive, help="seconds before a 2nd try (1)")
    worker.add_argument(
        "--callback-lease",
        type=_positive,
        help="seconds after which a delivery whose daemon stopped answering is retried (60)",
    )
    worker.add_argument(
        "--callback-allow-networks", metavar="CIDR,...",
        help="non-public networks callbacks may reach, e.g. 10.0.0.0/8 (none)",
    )  # fmt: skip
    worker.add_argument(
        "--no-callbacks", dest="callbacks", action="store_const", const=False,
        help="deliver no callbacks from this daemon",
    )  # fmt: skip
    worker.add_argument(
        "--no-reaper",
        dest="reaper",
        action="store_const",
        const=False,
        help="do not run a reaper in this daemon",
    )

    worker.add_argument("--http", dest="http_bind", metavar="HOST:PORT",
                        help="also serve the HTTP API from this daemon")  # fmt: skip
    worker.add_argument(
        "--processes",
        type=_processes,
        metavar="N|MIN..MAX",
        help="run the worker as N reader processes under this one (CPU-bound listeners), "
        "or MIN..MAX of them as the backlog needs",
    )
    worker.add_argument(
        "--reader-idle", type=_positive, default=20.0, metavar="SECONDS",
        help="with MIN..MAX: a reader past MIN stops after this long with nothing to do (20)",
    )  # fmt: skip

    http = commands.add_parser(
        "http", help="serve the HTTP API",
        description="POST /jobs, GET /jobs/{id}[/result|/progress|/events], DELETE /jobs/{id}, "
        "GET /queues, /openapi.json. Bearer tokens are required on any non-loopback address.",
    )  # fmt: skip
    _add_connection(http)
    http.add_argument("--bind", dest="http_bind", metavar="HOST:PORT",
                      help="where to listen (127.0.0.1:8080)")  # fmt: skip
    http.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    http.add_argument("--log-format", choices=["auto", "text", "json", "journal"])

    reaper = commands.add_parser(
        "reaper",
        help="run a reaper-only daemon",
        description="Reclaim lapsed leases and promote due jobs.",
    )
    _add_daemon(reaper)

    post = commands.add_parser(
        "post",
        help="post a job from the shell",
        description="Post a JSON message; prints the job id.",
    )
    post.add_argument("message", nargs="?", help="the message, as JSON")
    post.add_argument("--file", type=Path, help="read the JSON message from a file")
    _add_connection(post)
    for option in OPTIONS:
        if option.kind == "switch":
            post.add_argument(f"--{option.flag}", dest=option.name, action="store_true",
                              default=option.default, help=option.help)  # fmt: skip
        elif option.flag is not None:
            post.add_argument(f"--{option.flag}", dest=option.name, type=_flag_type(option),
                              metavar=option.flag.upper(), default=option.default,
                              help=option.help)  # fmt: skip
    post.add_argument(
        "--wait",
        type=_seconds(0),
        nargs="?",
        const=0,
        metavar="SECONDS",
        help="block for the result (0 or nothing: forever), a progress bar on a TTY",
    )

    job = commands.add_parser(
        "job",
        help="show a job's whole record",
        description="Print a job's record: status, attempts, times, progress, and its result "
        "or its error and traceback.",
    )
    job.add_argument("job_id")
    _add_connection(job)
    job.add_argument("--json", action="store_true", help="machine output")

    trace = commands.add_parser(
        "trace",
        help="where did it stop? a pipeline's jobs from a root job, stage by stage",
        description="Follow a job's outputs queue after queue: per stage, its jobs by status, "
        "those that failed or died and why, errors routed there, and work waiting where no "
        "live worker serves the queue. Exit status 2 when the line stopped somewhere.",
    )
    trace.add_argument("job_id", help="the root: a job of --queue")
    _add_connection(trace)
    trace.add_argument("--json", action="store_true", help="machine output")

    cancel = commands.add_parser(
        "cancel",
        help="cancel a job",
        description="Cancel a job that has not finished: a queued or scheduled one never "
        "runs, a running one's listener is cancelled. Prints the status it had.",
    )
    cancel.add_argument("job_id")
    _add_connection(cancel)

    dlq = commands.add_parser(
        "dlq",
        help="the dead-letter queue: list, show, requeue, purge",
        description="Jobs that failed for good (out of retries, or lost their lease once too "
        "often). list: the first 1000; show ID...: their records; requeue [ID...]: back to "
        "the queue with a fresh retry budget (no ID: all); purge: delete them all.",
    )
    dlq.add_argument("action", choices=["list", "show", "requeue", "purge"])
    dlq.add_argument("job_ids", nargs="*", help="for show (one or more) and requeue (none: all)")
    _add_connection(dlq)
    dlq.add_argument("--json", action="store_true", help="machine output")
    dlq.set_defaults(dlq_parser=dlq)  # for _check_dlq's errors, which argparse cannot express

    status = commands.add_parser(
        "status",
        help="where did it stop? counts, rates, workers",
        description="Per queue: queued, scheduled, active, dead, "
        "failures in the last minute, oldest waiting job, jobs/s, live "
        "workers and what they run. Exit status 2 when a queue needs "
        "attention (work and no worker, dead letters growing, lapsed "
        "leases not reaped), so it can back a monitoring check.",
    )
    _add_connection(
        status,
        many_queues=True,
        queues_help="a queue to show (repeat for more; default: every queue that has seen a "
        "post, which on a cluster needs every master up)",
    )
    status.add_argument("--json", action="store_true", help="machine output")
    status.add_argument("--watch", type=_positive, metavar="SECONDS", help="refresh every SECONDS")

    check = commands.add_parser(
        "check",
        help="validate a config file and its Redis",
        description="Validate the settings (file, AQUEUE_* and flags, as a daemon reads them, "
        "HTTP tokens included), then check the Redis they point at: reachable, its version, "
        "maxmemory-policy and persistence; and with module:object, that the listeners import.",
    )
    _add_connection(
        check,
        many_queues=True,
        queues_help="a queue whose Redis to check (repeat for more; on a cluster, each "
        "queue's master; default: the settings' queues, or default)",
    )
    check.add_argument("listeners", nargs="?", help="also check this module:object imports")
    return parser


def _check_dlq(args: argparse.Namespace) -> None:
    """Job ids only where the action takes them: purge empties the whole dead-letter queue
    (Client.purge_dead takes no ids), so a stray id must not purge everything."""
    if args.action in ("list", "purge") and args.job_ids:
        args.dlq_parser.error(f"{args.action} takes no job ids, got {' '.join(args.job_ids)}")
    if args.action == "show" and not args.job_ids:
        args.dlq_parser.error("show needs one or more job ids")


def _processes(value: str) -> Scale:
    try:
        return parse_processes(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _load(args: argparse.Namespace) -> _settings.Settings:
    flags = {name: getattr(args, name, None) for name in _settings.SETTINGS if hasattr(args, name)}
    if getattr(args, "queue", None):
        flags["queues"] = [args.queue]
    config = getattr(args, "config", None)
    file = _settings.read_file(config) if config else None
    return _settings.resolve(file, str(config), os.environ, flags)


def _run(command: Callable[..., Coroutine[Any, Any, int]], *args: Any) -> int:
    return anyio.run(command, *args, backend="asyncio", backend_options={"use_uvloop": True})


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return _main(argv)
    except BrokenPipeError:
        # The reader left early (`aqueue dlq show ... | head`): no traceback, and the rest of
        # stdout, which Python flushes at exit, goes nowhere rather than failing again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_PIPE


def _main(argv: Sequence[str] | None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "dlq":
        _check_dlq(args)
    sys.path.insert(0, os.getcwd())  # listeners import from the current directory, as python -m
    try:
        settings = _load(args)
        url, queue = settings.redis_url, settings.queues[0]
        match args.command:
            case "worker" if args.processes is not None:
                readers = reader_argv(sys.argv[1:] if argv is None else list(argv))
                return _daemon.run_readers(settings, readers, args.processes, args.reader_idle)
            case "worker":
                return _daemon.run_workers(settings)
            case "reaper":
                return _daemon.run_reaper(settings)
            case "http":
                return _daemon.run_http(settings)
            case "check":
                return _run(_commands.check, settings, args.listeners)
            case "status":
                return _run(_commands.status, url, args.queues or [], args.json, args.watch)
            case "post":
                options = {o.name: getattr(args, o.name) for o in OPTIONS if o.flag is not None}
                if args.functions is not None:
                    # "": no listener named, refused (an empty name), not "any listener"
                    options["functions"] = args.functions.split(",")
                msg = _commands.read_message(args.message, args.file)
                config = settings.client_config(queue)
                return _run(_commands.post, config, msg, options, args.wait)
            case "job":
                return _run(_commands.show_job, url, queue, args.job_id, args.json)
            case "cancel":
                return _run(_commands.cancel, url, queue, args.job_id)
            case "trace":
                return _run(_commands.trace, url, queue, args.job_id, args.json)
            case "dlq":
                return _run(_commands.dlq, url, queue, args.action, args.job_ids, args.json)
    except AqueueError as exc:
        print(f"aqueue {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    parser.error(f"unknown command {args.command!r}")
