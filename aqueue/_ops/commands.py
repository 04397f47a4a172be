"""What each `aqueue` subcommand does, given its parsed settings. Each returns an exit status:
0 done, 1 failed (the error is printed), 2 the status needs attention."""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anyio

from aqueue import _output
from aqueue._ops.settings import HTTP_SETTINGS, Settings
from aqueue._redis.connection import shown
from aqueue.client import Client
from aqueue.config import ClientConfig
from aqueue.errors import AqueueError, JobFailed
from aqueue.listeners import load_listeners


def _client(redis_url: str | None, queue: str) -> Client:
    return Client(queue, redis_url=redis_url)


def read_message(message: str | None, file: Path | None) -> Any:
    """The JSON message from the command line or a file."""
    if (message is None) == (file is None):
        raise AqueueError("give the message as JSON or with --file, one of the two")
    try:
        text = file.read_text(encoding="utf-8") if file is not None else str(message)
    except UnicodeDecodeError as exc:  # JSON is UTF-8
        raise AqueueError(f"the message file is not UTF-8 text: {exc}") from None
    except OSError as exc:
        raise AqueueError(f"cannot read the message file: {exc}") from None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise AqueueError(f"the message is not valid JSON: {exc}") from None


async def post(config: ClientConfig, msg: Any, options: dict[str, Any], wait: float | None) -> int:
    async with Client(config=config) as client:  # (its settings: durable ones, say)
        job_id = await client.post(msg, **options)
        print(job_id)
        if wait is None:
            return 0
        with anyio.move_on_after(wait or None) as scope:
            result = await _wait_showing_progress(client, job_id)
        if scope.cancelled_caught:
            print(f"aqueue: still waiting after {wait:g} s; job {job_id}", file=sys.stderr)
            return 1
        print(_output.dumps(result))
        return 0


async def _wait_showing_progress(client: Client, job_id: str) -> Any:
    if sys.stderr.isatty():
        drew = False
        async with contextlib.aclosing(client.watch(job_id)) as events:
            async for event in events:
                if event.progress is not None:
                    _output.progress_bar(event.progress.value, event.progress.message)
                    drew = True
        if drew:
            print(file=sys.stderr)
    try:
        return await client.block_until_result(job_id)
    except JobFailed as failed:
        print(f"aqueue: {failed}", file=sys.stderr)
        if failed.traceback:
            print(failed.traceback, file=sys.stderr)
        raise SystemExit(1) from None


async def check(settings: Settings, listeners: str | None) -> int:
    """The settings are valid (they got here); now the Redis they point at, and the listeners."""
    problems = 0
    target = listeners or settings.listeners
    if target:
        names = load_listeners(target).names
        print(f"ok: listeners {target}: {', '.join(names)}")
    async with _client(settings.redis_url, settings.queues[0]) as client:
        # the node of each queue (a cluster's queues may be on as many masters)
        queues_of: dict[str, list[str]] = {}
        for queue in settings.queues:
            queues_of.setdefault(await client.store.view(queue).node(), []).append(queue)
        facts_of = {
            node: await client.store.view(queues[0]).server_facts()
            for node, queues in queues_of.items()
        }
    where = shown(settings.redis_url) if settings.redis_url else "the embedded server"
    print(f"ok: Redis reachable at {where}")
    for node, facts in facts_of.items():
        where = f" ({node}, of {', '.join(queues_of[node])})" if len(facts_of) > 1 else ""
        problems += _check_node(facts, where)
    for queue in settings.queues:
        print(f"ok: queue {queue}: {settings.worker_config(queue)}")
    if any(name in settings.sources for name in HTTP_SETTINGS):  # valid, or we would not be here
        http = settings.http_config()
        print(f"ok: http on {settings.http_bind or '127.0.0.1:8080'}: {len(http.read_tokens)} "
              f"read-only and {len(http.write_tokens)} read-write token(s)")  # fmt: skip
    return 1 if problems else 0


def _check_node(facts: dict[str, Any], where: str) -> int:
    """Print what a node's INFO says of its fitness, `where` naming it; its errors."""
    version, policy = facts["version"], facts["maxmemory_policy"]
    errors = 0
    if tuple(int(p) for p in version.split(".")[:2]) < (6, 2):
        print(f"error: Redis {version} is too old{where}: aqueue needs 6.2 or newer")
        errors += 1
    else:
        print(f"ok: Redis {version}{where}")
    if policy != "noeviction":
        print(f"warning: maxmemory-policy is {policy}{where}: Redis may evict queued jobs; "
              "set it to noeviction (deploy/redis.conf)")  # fmt: skip
    else:
        print(f"ok: maxmemory-policy noeviction{where}")
    if facts["aof_enabled"]:
        print(f"ok: persistence: AOF on{where}")
    else:
        print(f"warning: AOF is off{where}: a crash loses the jobs accepted since the last RDB "
              "snapshot, if any (deploy/redis.conf turns AOF on)")  # fmt: skip
    return errors


async def show_job(redis_url: str | None, queue: str, job_id: str, as_json: bool) -> int:
    async with _client(redis_url, queue) as client:
        job = await client.get_job(job_id)
    print(_output.dumps(job) if as_json else _output.describe_job(job))
    return 0


async def trace(redis_url: str | None, queue: str, root: str, as_json: bool) -> int:
    """Exit status 2 where the line stopped: work with nobody to run it, or jobs that ended
    badly (as `status` does for a queue)."""
    async with _client(redis_url, queue) as client:
        found = await client.trace(root)
    print(json.dumps(found.to_json(), sort_keys=True) if as_json else _output.render_trace(found))
    return 2 if found.stopped_at else 0


async def cancel(redis_url: str | None, queue: str, job_id: str) -> int:
    async with _client(redis_url, queue) as client:
        before = await client.cancel(job_id)
    print(f"cancelled {job_id} (was {before})")
    return 0


async def dlq(
    redis_url: str | None, queue: str, action: str, job_ids: Sequence[str], as_json: bool
) -> int:
    async with _client(redis_url, queue) as client:
        if action == "list":
            jobs = await client.dead_letters(0, 1000)
            if as_json:
                print(_output.dumps(jobs))
            else:
                rows = [
                    [j.id, str(j.attempt), j.error_type or "-", (j.reason or "")[:60]] for j in jobs
                ]
                print(
                    _output.table(["ID", "ATTEMPTS", "ERROR", "REASON"], rows) if rows else "empty"
                )
        elif action == "show":
            for job_id in job_ids:
                job = await client.get_job(job_id)
                print(_output.dumps(job) if as_json else _output.describe_job(job))
        elif action == "requeue":
            ids = list(job_ids) or [j.id for j in await client.dead_letters(0, 100_000)]
            for job_id in ids:
                await client.requeue(job_id)
            print(f"requeued {len(ids)} job(s)")
        elif action == "purge":
            print(f"purged {await client.purge_dead()} dead job(s)")
    return 0


async def status(
    redis_url: str | None, queues: Sequence[str], as_json: bool, watch: float | None
) -> int:
    # opened on a queue it reads (its check reads that queue's node: on a cluster, the
    # queue `default`'s master may be down while those asked for are not)
    async with _client(redis_url, queues[0] if queues else "default") as client:
        while True:
            names = list(queues) or await client.store.queue_names()
            statuses = []
            now = 0.0
            for name in names:
                status, now = await _output.QueueStatus.read(client.store, name)
                statuses.append(status)
            if as_json:
                report = {
                    "queues": [s.to_json() for s in statuses],
                    "healthy": all(not s.attention for s in statuses),
                }
                print(json.dumps(report, sort_keys=True))
            else:
                if watch and sys.stdout.isatty():
                    print("\033[2J\033[H", end="")
                print(_output.render_status(statuses, now, _output.Style(sys.stdout)))
            if not watch:
                return 2 if any(s.attention for s in statuses) else 0
            await anyio.sleep(watch)
