"""Every `aqueue` subcommand, run as a user runs it: a subprocess against a real Redis."""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import msgpack
import pytest
import redis

from aqueue import Client, Context, JobStatus, Listeners
from aqueue._checks import whole_range
from aqueue._redis.keys import Keys
from aqueue._redis.server import free_port
from aqueue.testing import RedisServer, running_worker, until

from ..processes import ROOT, aqueue_process


async def aqueue(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("AQUEUE_")}
    done = await anyio.run_process(
        [sys.executable, "-m", "aqueue", *args],
        cwd=ROOT,
        env={**environ, **(env or {})},
        check=False,
    )
    return done.returncode, done.stdout.decode(), done.stderr.decode()


def _echo() -> Listeners:
    listeners = Listeners()

    @listeners.listener
    async def echo(msg: Any, ctx: Context) -> Any:
        await ctx.update_progress(100, "done")
        return msg

    return listeners


async def test_post_job_cancel_from_the_shell(redis_server: RedisServer, queue: str) -> None:
    where = ["--redis-url", redis_server.url, "--queue", queue]
    code, out, _ = await aqueue(
        "post", '{"epochs": 3}', "--functions", "train", "--priority", "5", "--key", "k1", *where
    )
    assert code == 0
    job_id = out.strip()
    assert len(job_id) == 32
    code, again, _ = await aqueue("post", '{"epochs": 4}', "--key", "k1", *where)
    assert again.strip() == job_id  # the key deduplicates

    code, out, _ = await aqueue("job", job_id, *where)
    assert code == 0 and "status: queued" in out and "msg: {'epochs': 3}" in out
    assert "functions: ('train',)" in out and "priority: 5" in out
    code, out, _ = await aqueue("job", job_id, "--json", *where)
    record = json.loads(out)
    assert record["status"] == "queued" and record["msg"] == {"epochs": 3}

    code, out, _ = await aqueue("cancel", job_id, *where)
    assert code == 0 and out.strip() == f"cancelled {job_id} (was queued)"
    code, _, err = await aqueue("cancel", job_id, *where)
    assert code == 1 and "cannot cancel job" in err and "it is cancelled" in err
    code, _, err = await aqueue("job", "no-such-job", *where)
    assert code == 1 and "job 'no-such-job' not found" in err


async def test_post_wait_prints_the_result(redis_server: RedisServer, queue: str) -> None:
    async with running_worker(_echo(), queue=queue, redis_url=redis_server.url):
        code, out, err = await aqueue(
            "post",
            '{"x": [1, 2]}',
            "--wait",
            "20",
            "--redis-url",
            redis_server.url,
            "--queue",
            queue,
        )
    assert code == 0, err
    _, result = out.strip().splitlines()
    assert json.loads(result) == {"x": [1, 2]}


async def test_bad_messages_are_refused_with_the_reason(tmp_path: Path) -> None:
    code, _, err = await aqueue("post", "{not json", "--redis-url", "redis://127.0.0.1:1/0")
    assert code == 1 and "the message is not valid JSON" in err
    code, _, err = await aqueue("post", "--file", str(tmp_path / "missing.json"))
    assert code == 1 and "cannot read the message file" in err
    code, _, err = await aqueue("post")
    assert code == 1 and "give the message as JSON or with --file" in err


async def test_the_dead_letter_queue_from_the_shell(redis_server: RedisServer, queue: str) -> None:
    listeners = Listeners()

    @listeners.listener
    async def broken(msg: Any, ctx: Context) -> None:
        raise RuntimeError(f"cannot handle {msg}")

    where = ["--redis-url", redis_server.url, "--queue", queue]
    async with Client(queue, redis_url=redis_server.url) as client:
        ids = await client.post_many(["a", "b"], retry=0)
        async with running_worker(listeners, queue=queue, redis_url=redis_server.url):
            for job_id in ids:
                with pytest.raises(Exception, match="cannot handle"):
                    await client.block_until_result(job_id, timeout=10)

        code, out, _ = await aqueue("dlq", "list", *where)
        assert code == 0 and all(i in out for i in ids) and "RuntimeError" in out
        code, out, _ = await aqueue("dlq", "list", "--json", *where)
        assert sorted(j["id"] for j in json.loads(out)) == sorted(ids)
        code, out, _ = await aqueue("dlq", "show", ids[0], *where)
        assert "error_message: cannot handle a" in out and "traceback:" in out
        code, out, _ = await aqueue("dlq", "requeue", ids[0], *where)
        assert out.strip() == "requeued 1 job(s)"
        assert (await client.get_job(ids[0])).status is JobStatus.QUEUED
        code, out, _ = await aqueue("dlq", "purge", *where)
        assert out.strip() == "purged 1 dead job(s)"
        code, out, _ = await aqueue("dlq", "list", *where)
        assert out.strip() == "empty"


@pytest.mark.every_topology
async def test_status_says_where_it_stopped_and_fails_when_nobody_serves_the_work(
    redis_url: str, queue: str
) -> None:
    where = ["--redis-url", redis_url, "--queue", queue]
    async with Client(queue, redis_url=redis_url) as client:
        await client.post_many(range(3))
        code, out, _ = await aqueue("status", *where)
        assert code == 2
        assert f"! {queue}: 3 job(s) waiting and no live worker" in out
        code, out, _ = await aqueue("status", "--json", *where)
        [report] = json.loads(out)["queues"]
        assert report["queued"] == 3 and report["workers"] == []
        # the node it names holds the queue (on a cluster, the master of its slot)
        host, _, port = report["node"].rpartition(":")
        with redis.Redis(host=host, port=int(port)) as node:
            assert node.get(Keys(queue).seq) == b"3"
        assert report["node"] in out
        assert report["totals"] == {"posted": 3}
        assert report["attention"] == ["3 job(s) waiting and no live worker"]
        assert report["oldest_queued_age"] >= 0

        async with running_worker(_echo(), queue=queue, redis_url=redis_url) as worker:
            await until(partial(_drained, client))
            code, out, _ = await aqueue("status", "--json", *where)
            assert code == 0
            [report] = json.loads(out)["queues"]
            assert [w["id"] for w in report["workers"]] == [worker.id]
            assert report["totals"] == {"posted": 3, "complete": 3}
            assert report["jobs_per_second"] > 0
            code, out, _ = await aqueue("status", *where)
            assert code == 0 and "all queues healthy" in out and worker.id in out


async def test_check_validates_the_config_and_the_redis_it_points_at(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    config = tmp_path / "gpu0.toml"
    config.write_text(f'redis_url = "{redis_server.url}"\nqueues = ["train"]\nconcurrency = 2\n')
    code, out, err = await aqueue(
        "check", "--config", str(config), "tests.chaos.listeners:listeners"
    )
    assert code == 0, err
    assert "ok: Redis reachable" in out and "ok: maxmemory-policy noeviction" in out
    assert "ok: listeners tests.chaos.listeners:listeners: slow, crash" in out
    assert "concurrency=2" in out


@pytest.mark.parametrize(
    ("content", "flags", "complaint"),
    [
        (
            "concurency = 4\n",
            [],
            "unknown setting 'concurency' in {config} (did you mean 'concurrency'?)",
        ),
        ("lease = 30\nheartbeat = 20\n", [], "heartbeat=20 s, lease=30 s"),
        (
            "concurrency = 'many'\n",
            [],
            "concurrency = 'many' in {config} is invalid: must be a whole number from 1 to",
        ),
        (
            "prefetch = -1\n",
            [],
            "prefetch = -1 in {config} is invalid: must be a whole number from 0 to",
        ),
        (
            "log_format = 'xml'\n",
            [],
            "log_format = 'xml' in {config} is invalid: must be one of auto, text",
        ),
        ("queues = \n", [], "is not valid TOML"),
        # NaN and infinity got past `<= 0`, a bad queue name was blamed on the defaults, and a
        # URL of another scheme failed in redis-py with a traceback
        ("lease = nan\n", [], "lease = nan in {config} is invalid: must be a positive number"),
        ("grace = inf\n", [], "grace = inf in {config} is invalid: must be a positive number"),
        ("queues = ['ok', 'bad name']\n", [], "queues = ['ok', 'bad name'] in {config} is invalid"),
        ("redis_url = 'http://x'\n", [], "in {config} is invalid: must be a redis://, rediss://"),
        (
            "callback_allow_networks = ['10.0.0.0/8', '10.0.0.0/33']\n",
            [],
            "callback_allow_networks = ['10.0.0.0/8', '10.0.0.0/33'] in {config} is invalid: "
            "must be a list of networks ('10.0.0.0/33' is not a network",
        ),
        # a bad --lease, --queue or --concurrency alone is a usage error: see
        # test_bad_option_values_are_usage_errors_naming_the_option
        ("", ["--lease", "10", "--heartbeat", "20"], "lease=10 s (from the command line)"),
    ],
)
async def test_bad_settings_name_the_setting_the_value_and_where_it_came_from(
    tmp_path: Path, content: str, flags: list[str], complaint: str
) -> None:
    config = tmp_path / "bad.toml"
    config.write_text(content)
    code, _, err = await aqueue(
        "worker", "tests.chaos.listeners:listeners", "--config", str(config), *flags
    )
    assert code == 1
    assert complaint.format(config=config) in err


async def test_a_config_file_that_cannot_be_read_is_an_error_naming_it_not_a_traceback(
    tmp_path: Path,
) -> None:
    """Bytes that are not UTF-8, a directory: a UnicodeDecodeError or IsADirectoryError
    traceback (and a daemon that died with one); a message file that is not UTF-8 too."""
    binary = tmp_path / "bad.toml"
    binary.write_bytes(b"\xff\xfe")
    for config, complaint in ((binary, "is not valid TOML"), (tmp_path, "cannot be read")):
        code, _, err = await aqueue(
            "worker", "tests.chaos.listeners:listeners", "--config", str(config)
        )
        assert (code, "Traceback" in err) == (1, False)
        assert f"config file {config} {complaint}" in err
    message = tmp_path / "msg.json"
    message.write_bytes(b'{"a": "\xff"}')
    code, _, err = await aqueue("post", "--file", str(message), "--functions", "x")
    assert (code, "Traceback" in err) == (1, False)
    assert "the message file is not UTF-8 text" in err


async def test_whole_numbers_past_their_bound_are_refused_from_the_file_and_environment(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    """Accepted before: a worker with them took all its memory before it served a job (and
    ignored SIGTERM). `check` reads the settings as the worker does, and ends either way."""
    config = tmp_path / "gpu0.toml"
    config.write_text(f'redis_url = "{redis_server.url}"\nprefetch = {10**18}\n')
    code, _, err = await aqueue("check", "--config", str(config))
    assert code == 1
    assert f"prefetch = {10**18} in {config} is invalid: must be {whole_range('prefetch')}" in err
    env = {"AQUEUE_REDIS_URL": redis_server.url, "AQUEUE_CONCURRENCY": "1000000000"}
    code, _, err = await aqueue("check", env=env)
    assert code == 1
    assert (
        "concurrency = '1000000000' in the environment (AQUEUE_*) is invalid: must be "
        + whole_range("concurrency")
    ) in err


async def test_environment_settings_apply_and_flags_override_them(
    redis_server: RedisServer,
) -> None:
    env = {"AQUEUE_REDIS_URL": redis_server.url, "AQUEUE_CONCURRENCY": "0"}
    code, _, err = await aqueue("check", env=env)
    assert code == 1 and "concurrency = '0' in the environment (AQUEUE_*) is invalid" in err
    code, out, err = await aqueue("check", "--queue", "q1", env={**env, "AQUEUE_CONCURRENCY": "3"})
    assert code == 0, err
    assert "ok: queue q1" in out and "concurrency=3" in out


async def test_a_missing_config_file_and_bad_usage_fail_clearly(tmp_path: Path) -> None:
    code, _, err = await aqueue("worker", "x:y", "--config", str(tmp_path / "nope.toml"))
    assert code == 1 and "nope.toml does not exist" in err
    code, _, err = await aqueue("worker", "--concurrency", "lots")
    assert (
        code == 64
        and f"argument --concurrency: must be {whole_range('concurrency')}, got 'lots'" in err
    )
    code, _, err = await aqueue("frobnicate")
    assert code == 64 and "invalid choice: 'frobnicate'" in err
    code, _, err = await aqueue("worker", "--redis-url", "redis://127.0.0.1:1/0")
    assert code == 1 and "no listeners given" in err


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[tuple[str, socket.socket]]:
    """A datagram socket in the place of systemd's, for $NOTIFY_SOCKET: (address, socket)."""
    address = str(tmp_path / "notify.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sink:
        sink.bind(address)
        yield address, sink


async def test_the_daemon_notifies_systemd_processes_jobs_and_drains_on_sigterm(
    redis_server: RedisServer, queue: str, notify_socket: tuple[str, socket.socket]
) -> None:
    address, sink = notify_socket
    sink.setblocking(False)
    notes: list[str] = []

    async def next_note() -> str:
        with anyio.fail_after(20):
            while True:
                try:
                    notes.append(sink.recv(4096).decode())
                    return notes[-1]
                except BlockingIOError:
                    await anyio.sleep(0.01)

    args = ["worker", "tests.chaos.listeners:listeners", "--redis-url", redis_server.url,
            "--queue", queue, "--log-format", "text"]  # fmt: skip
    env = {"NOTIFY_SOCKET": address, "WATCHDOG_USEC": "200000"}
    async with aqueue_process(args, env=env) as process:
        while "READY=1" not in await next_note():
            pass
        async with Client(queue, redis_url=redis_server.url) as client:
            ids = await client.post_many(
                [{"seconds": 0.01, "n": n} for n in range(10)], functions=["slow"]
            )
            with anyio.fail_after(20):
                results = [await client.block_until_result(i) for i in ids]
        assert [r["n"] for r in results] == list(range(10))
        while "WATCHDOG=1" not in await next_note():
            pass
        process.send_signal(signal.SIGTERM)
        while "STOPPING=1" not in await next_note():
            pass
        with anyio.fail_after(20):
            assert await process.wait() == 0
    assert any(n.startswith("STATUS=") or "\nSTATUS=" in n for n in notes)


@asynccontextmanager
async def serving_http(*args: str) -> AsyncIterator[tuple[aiohttp.ClientSession, str]]:
    """`python -m aqueue *args --...http HOST:PORT` until its API answers; on leaving, SIGTERM
    and an exit status of 0."""
    port = free_port()
    flag = "--bind" if args[0] == "http" else "--http"
    base = f"http://127.0.0.1:{port}"
    async with aqueue_process([*args, flag, f"127.0.0.1:{port}"]) as process:
        async with aiohttp.ClientSession() as session:
            with anyio.fail_after(20):
                while True:
                    try:
                        async with session.get(f"{base}/readyz") as ready:
                            if ready.status == 200:
                                break
                    except aiohttp.ClientConnectionError:
                        await anyio.sleep(0.05)
            yield session, base
        process.send_signal(signal.SIGTERM)
        with anyio.fail_after(20):
            assert await process.wait() == 0


async def test_aqueue_http_serves_the_api_and_stops_on_sigterm(
    redis_server: RedisServer, queue: str
) -> None:
    where = ["--redis-url", redis_server.url, "--queue", queue]
    async with serving_http("http", *where) as (session, base):
        async with session.post(f"{base}/jobs", json={"msg": {"a": 1}}) as posted:
            assert posted.status == 201
            job_id = (await posted.json())["id"]
        async with session.get(f"{base}/jobs/{job_id}/result") as pending:
            assert pending.status == 202


async def test_the_http_service_refuses_a_public_address_without_tokens() -> None:
    code, _, err = await aqueue(
        "http", "--bind", "0.0.0.0:8080", "--redis-url", "redis://127.0.0.1:1/0"
    )
    assert code == 1 and "refusing to serve HTTP on '0.0.0.0' without tokens" in err
    code, _, err = await aqueue("http", "--bind", "nonsense")
    assert (
        code == 1
        and "http_bind = 'nonsense' in the command line is invalid: must be HOST:PORT" in err
    )


async def test_a_worker_daemon_can_serve_the_api_too(redis_server: RedisServer, queue: str) -> None:
    where = ["--redis-url", redis_server.url, "--queue", queue]
    async with serving_http("worker", "tests.chaos.listeners:listeners", *where) as (session, base):
        body = {"msg": {"seconds": 0, "n": 5}, "functions": ["slow"]}
        async with session.post(f"{base}/jobs", json=body) as posted:
            job_id = (await posted.json())["id"]
        async with session.post(f"{base}/jobs", json={"msg": 1, "functions": ["nope"]}) as bad:
            assert bad.status == 422 and "nope" in (await bad.json())["detail"]
        async with Client(queue, redis_url=redis_server.url) as client:
            result = await client.block_until_result(job_id, timeout=20)
        assert result["n"] == 5


async def test_a_reaper_daemon_reclaims_stalled_jobs_and_stops_on_sigterm(
    redis_server: RedisServer, queue: str, notify_socket: tuple[str, socket.socket]
) -> None:
    address, sink = notify_socket
    sink.settimeout(20)
    async with Client(queue, redis_url=redis_server.url) as client:
        job_id = await client.post("stalled")
        await client.store.claim("vanished-worker", 1, 1, ["x"])  # a 1 ms lease, never renewed
        args = ["reaper", "--redis-url", redis_server.url, "--queue", queue,
                "--reaper-interval", "0.1", "--log-format", "text"]  # fmt: skip
        async with aqueue_process(args, env={"NOTIFY_SOCKET": address}) as process:
            note = await anyio.to_thread.run_sync(sink.recv, 4096)
            assert note.startswith(b"READY=1")
            await until(partial(_is_queued, client, job_id), 20, interval=0.05)
            job = await client.get_job(job_id)
            assert job.reason == (
                "lease lost on attempt 1 (worker vanished-worker); it runs alone next"
            )
            process.send_signal(signal.SIGTERM)
            with anyio.fail_after(20):
                assert await process.wait() == 0


async def _dead_letters(redis_server: RedisServer, queue: str, messages: list[Any]) -> list[str]:
    """The ids of `messages`, posted and dead-lettered by a listener that always fails."""
    listeners = Listeners()

    @listeners.listener
    async def broken(msg: Any, ctx: Context) -> None:
        raise RuntimeError("broken")

    async with Client(queue, redis_url=redis_server.url) as client:
        ids = await client.post_many(messages, retry=0)
        async with running_worker(listeners, queue=queue, redis_url=redis_server.url):
            for job_id in ids:
                with pytest.raises(Exception, match="broken"):
                    await client.block_until_result(job_id, timeout=10)
    return ids


async def test_dlq_refuses_job_ids_where_its_action_takes_none(
    redis_server: RedisServer, queue: str
) -> None:
    where = ["--redis-url", redis_server.url, "--queue", queue]
    [job_id] = await _dead_letters(redis_server, queue, ["a"])
    code, out, err = await aqueue("dlq", "purge", "extra-arg", *where)
    assert (code, out) == (64, "")
    assert "aqueue dlq: error: purge takes no job ids, got extra-arg" in err
    code, _, err = await aqueue("dlq", "list", "extra-arg", *where)
    assert code == 64 and "list takes no job ids" in err
    code, _, err = await aqueue("dlq", "show", *where)
    assert code == 64 and "show needs one or more job ids" in err
    code, out, _ = await aqueue("dlq", "list", *where)
    assert code == 0 and job_id in out  # nothing was purged


async def test_json_output_renders_what_json_cannot_carry_as_the_http_api_does(
    redis_server: RedisServer, queue: str
) -> None:
    from aqueue._http.base import _dumps as http_dumps  # the HTTP API's own JSON

    where = ["--redis-url", redis_server.url, "--queue", queue]
    msg = {"at": msgpack.Timestamp(1, 0), "x": float("nan"), "ext": msgpack.ExtType(5, b"y")}
    [job_id] = await _dead_letters(redis_server, queue, [msg])
    async with Client(queue, redis_url=redis_server.url) as client:
        over_http = json.loads(http_dumps(await client.get_job(job_id)))
    assert over_http["msg"]["at"] == "Timestamp(seconds=1, nanoseconds=0)"
    assert over_http["msg"]["x"] == "NaN"
    code, out, err = await aqueue("job", job_id, "--json", *where)
    assert code == 0, err
    assert json.loads(out) == over_http
    code, out, err = await aqueue("dlq", "list", "--json", *where)
    assert code == 0, err
    assert json.loads(out) == [over_http]


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        (["post", "{}", "--delay", "nan"], "argument --delay: must be seconds >= 0"),
        (["post", "{}", "--delay", "inf"], "argument --delay: must be seconds >= 0"),
        (
            ["post", "{}", "--delay", "1e300"],
            "argument --delay: must be seconds >= 0 and at most 315360000 (ten years), got '1e300'",
        ),
        (["post", "{}", "--timeout", "inf"], "argument --timeout: must be seconds > 0"),
        (["post", "{}", "--timeout", "nan"], "argument --timeout: must be seconds > 0"),
        (["post", "{}", "--ttl", "0.5"], "argument --ttl: must be seconds >= 1"),
        (["post", "{}", "--wait", "-1"], "argument --wait: must be seconds >= 0"),
        (["post", "{}", "--wait", "nan"], "argument --wait: must be seconds >= 0"),
        (["worker", "x:y", "--lease", "nan"], "argument --lease: must be seconds > 0"),
        (["worker", "x:y", "--lease", "-1"], "argument --lease: must be seconds > 0"),
        (["worker", "x:y", "--reaper-interval", "inf"], "argument --reaper-interval: must be"),
        (["status", "--watch", "-1"], "argument --watch: must be seconds > 0"),
        (["status", "--watch", "0"], "argument --watch: must be seconds > 0"),
        (["post", "{}", "--priority", "1000"], "argument --priority: must be a whole number from"),
        (["post", "{}", "--retries", "-1"], "argument --retries: must be a whole number from 0"),
        (["worker", "x:y", "--concurrency", "0"], "argument --concurrency: must be a whole"),
        (["worker", "x:y", "--prefetch", "-1"], "argument --prefetch: must be a whole number"),
        (  # accepted before, and the worker never served nor obeyed SIGTERM
            ["worker", "x:y", "--concurrency", "1000000000"],
            f"argument --concurrency: must be {whole_range('concurrency')}, got '1000000000'",
        ),
        (
            ["worker", "x:y", "--callback-attempts", "1000000000"],
            f"argument --callback-attempts: must be {whole_range('callback_attempts')}",
        ),
    ],
)
async def test_bad_option_values_are_usage_errors_naming_the_option(
    redis_server: RedisServer, queue: str, args: list[str], complaint: str
) -> None:
    with anyio.fail_after(30):  # a bad value let through could leave a daemon running
        code, _, err = await aqueue(*args, "--redis-url", redis_server.url, "--queue", queue)
    assert code == 64, err
    assert f"aqueue {args[0]}: error: {complaint}" in err
    assert err.startswith("usage: aqueue") and "Traceback" not in err


async def test_a_bad_redis_url_or_queue_on_the_command_line_is_a_usage_error(
    redis_server: RedisServer,
) -> None:
    code, _, err = await aqueue("job", "x", "--redis-url", "http://x")
    assert code == 64 and "Traceback" not in err
    assert (
        "aqueue job: error: argument --redis-url: must be a redis://, rediss://, unix://, "
        "redis+sentinel:// or redis+cluster:// URL" in err
    )
    code, _, err = await aqueue("job", "x", "--redis-url", "redis+sentinel://h:1")
    assert code == 64 and "the master's name goes in the path" in err
    code, _, err = await aqueue("job", "x", "--redis-url", "redis+cluster://h:1/2")
    assert code == 64 and "a cluster has database 0 only" in err
    code, _, err = await aqueue("job", "x", "--queue", "bad queue", "--redis-url", redis_server.url)
    assert code == 64 and "from the defaults" not in err
    assert "aqueue job: error: argument --queue: queue name 'bad queue' is invalid" in err
    code, _, err = await aqueue("worker", "x:y", "--queue", "q1", "--queue", "bad name")
    assert code == 64 and "argument --queue: queue name 'bad name' is invalid" in err


async def test_an_empty_functions_option_names_no_listener_rather_than_any(
    redis_server: RedisServer, queue: str
) -> None:
    where = ["--redis-url", redis_server.url, "--queue", queue]
    code, _, err = await aqueue("post", "{}", "--functions", "", *where)
    assert code == 1 and "listener name '' is invalid" in err
    async with Client(queue, redis_url=redis_server.url) as client:
        assert (await client.counts())["queued"] == 0


async def _drained(client: Client) -> bool:
    return not (await client.counts())["queued"]


async def _is_queued(client: Client, job_id: str) -> bool:
    return (await client.get_job(job_id)).status is JobStatus.QUEUED
