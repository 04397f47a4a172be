"""The HTTP service: every endpoint over a real aiohttp server on loopback, real requests, a real
worker and the suite's Redis."""

from __future__ import annotations

import contextlib
import gc
import io
import json
import logging
import os
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import anyio
import msgpack
import pytest
from aiohttp import web

from aqueue import Client, ConfigError, Context, JobStatus, Listeners, Output
from aqueue._codec import MAX_DEPTH
from aqueue._http.base import CACHED_CLIENTS, STATE
from aqueue._http.service import HttpConfig, make_app, serve_http
from aqueue._output import QueueStatus
from aqueue.testing import RedisServer, running_worker, until

from ..blocking import is_slow_callback_report

PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 4
WAV = b"RIFF\x24\x08\x00\x00WAVEfmt " + bytes(range(255, -1, -1)) * 4
NPY = b"\x93NUMPY\x01\x00v\x00{'descr': '<f4', 'fortran_order': False}" + bytes(1024)
READ, WRITE = "r" * 24, "w" * 24
JSON = {"Content-Type": "application/json"}  # a POST to the open service names its type


def make_listeners() -> Listeners:
    listeners = Listeners()

    @listeners.listener
    async def produce(msg: dict[str, Any], ctx: Context) -> Any:
        blobs = {"png": PNG, "wav": WAV, "npy": NPY}
        if msg["kind"] in blobs:
            return Output(result=blobs[msg["kind"]], short=f"a {msg['kind']}")
        if msg["kind"] == "text":
            return "plain words"
        if msg["kind"] == "none":
            return None
        return {"answer": 42, "nan": float("nan")}

    @listeners.listener
    async def echo(msg: Any, ctx: Context) -> Any:
        return msg

    @listeners.listener(retry_on=(ConnectionError,))
    async def broken(msg: Any, ctx: Context) -> None:
        raise ValueError(f"cannot parse {msg!r}")

    @listeners.listener
    async def steps(msg: Any, ctx: Context) -> Output:
        await ctx.update_progress(10, "loading")
        await ctx.update_progress(50, "half way")
        return Output(result=b"weights", short="trained")

    return listeners


@dataclass
class Api:
    session: aiohttp.ClientSession
    config: HttpConfig
    port: int
    app: web.Application

    @property
    def queue(self) -> str:
        return self.config.queue

    async def call(
        self, method: str, path: str, expect: int, **kwargs: Any
    ) -> tuple[aiohttp.ClientResponse, bytes]:
        async with self.session.request(method, path, **kwargs) as resp:
            body = await resp.read()
        assert resp.status == expect, (resp.status, body[:500])
        return resp, body

    async def json(self, method: str, path: str, expect: int, **kwargs: Any) -> Any:
        resp, body = await self.call(method, path, expect, **kwargs)
        assert resp.content_type == "application/json"
        value = json.loads(body)
        if expect >= 400:  # every error has the same shape
            assert isinstance(value["error"], str) and isinstance(value["detail"], str)
        return value

    async def post(self, body: dict[str, Any], expect: int = 201, **kwargs: Any) -> Any:
        return await self.json("POST", "/jobs", expect, json=body, **kwargs)


@contextlib.asynccontextmanager
async def serving(config: HttpConfig) -> AsyncIterator[Api]:
    """The app on a free loopback port, and a session against it."""
    app = make_app(config)
    runner = web.AppRunner(app, shutdown_timeout=2)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        port = int(runner.addresses[0][1])
        async with aiohttp.ClientSession(f"http://127.0.0.1:{port}") as session:
            yield Api(session, config, port, app)
    finally:
        await runner.cleanup()


@pytest.fixture
async def api(redis_url: str, queue: str) -> AsyncIterator[Api]:
    config = HttpConfig(port=0, redis_url=redis_url, queue=queue, keepalive=0.3)
    async with serving(config) as api:
        yield api


async def finished(client: Client, job_id: str) -> None:
    with anyio.fail_after(10), contextlib.suppress(Exception):
        await client.block_until_result(job_id)


# -- posting -----------------------------------------------------------------------------------


@pytest.mark.every_topology
async def test_post_answers_201_with_the_id_and_url_and_the_worker_runs_it(
    api: Api, client: Client, redis_url: str
) -> None:
    created = await api.post({"msg": {"a": [1, 2]}, "functions": ["echo"], "priority": 5})
    assert set(created) == {"id", "queue", "url"} and created["queue"] == api.queue
    assert created["url"] == f"/jobs/{created['id']}" and len(created["id"]) >= 32
    job = await client.get_job(created["id"])
    assert job.status is JobStatus.QUEUED and job.msg == {"a": [1, 2]} and job.priority == 5
    async with running_worker(make_listeners(), queue=api.queue, redis_url=redis_url):
        await finished(client, created["id"])
    record = await api.json("GET", created["url"], 200)
    assert record["status"] == "complete" and record["result"] == {"a": [1, 2]}
    assert await api.json("GET", f"{created['url']}/result", 200) == {"a": [1, 2]}


async def test_post_sets_the_location_header_and_accepts_every_option(api: Api) -> None:
    body = {
        "msg": None,
        "functions": ["echo"],
        "callback": "https://example.org/done?x=1",
        "delay": 30,
        "timeout": 5.5,
        "retry": {"retries": 2, "delay": 0.5, "jitter": False},
        "key": "once",
        "ttl": 3600,
    }
    async with api.session.post("/jobs", json=body) as resp:
        assert resp.status == 201
        created = await resp.json()
        assert resp.headers["Location"] == created["url"]
    again = await api.post(body)  # the idempotency key: the same job
    assert again["id"] == created["id"]
    job = await api.json("GET", created["url"], 200)
    assert job["status"] == "scheduled" and job["msg"] is None and job["max_attempts"] == 3
    assert job["callback"] == body["callback"] and job["timeout"] == 5.5
    at = await api.post({"msg": 1, "at": "2999-01-01T00:00:00+00:00"})
    assert (await api.json("GET", at["url"], 200))["due_at"] == 32472144000.0


async def test_post_to_another_queue_gives_a_url_naming_it(api: Api, redis_url: str) -> None:
    other = api.queue + "-other"
    created = await api.post({"msg": "x", "queue": other})
    assert created["queue"] == other and created["url"] == f"/jobs/{created['id']}?queue={other}"
    assert (await api.json("GET", created["url"], 200))["queue"] == other
    await api.json("GET", f"/jobs/{created['id']}", 404)  # not in the default queue
    async with Client(other, redis_url=redis_url) as client:
        await client.purge()


async def test_a_post_naming_an_empty_or_bad_queue_is_refused_not_sent_to_the_default(
    api: Api,
) -> None:
    """The fuzzer's find: a post with `"queue": ""` was accepted, into the default queue."""
    for bad in ("", "a b", "x" * 101):
        refused = await api.json("POST", "/jobs", 422, json={"msg": 1, "queue": bad})
        assert "queue name" in refused["detail"]
    assert (await api.json("GET", f"/queues/{api.queue}", 200))["queued"] == 0


async def test_a_body_without_content_type_is_read_as_json_where_tokens_guard_the_service(
    redis_url: str, queue: str
) -> None:
    config = HttpConfig(port=0, redis_url=redis_url, queue=queue, write_tokens=(WRITE,))
    body, headers = b'{"msg": [1]}', {"Authorization": f"Bearer {WRITE}"}
    async with serving(config) as api:
        async with api.session.post(
            "/jobs", data=body, headers=headers, skip_auto_headers=["Content-Type"]
        ) as resp:
            assert "Content-Type" not in resp.request_info.headers
            assert resp.status == 201


async def test_msgpack_posts_carry_binary_messages_byte_for_byte(
    api: Api, client: Client, redis_url: str
) -> None:
    blob = bytes(range(256)) * 10
    body = msgpack.packb({"msg": {"image": blob, 1: "int key"}, "functions": ["echo"]})
    headers = {"Content-Type": "application/msgpack"}
    created = await api.json("POST", "/jobs", 201, data=body, headers=headers)
    async with running_worker(make_listeners(), queue=api.queue, redis_url=redis_url):
        await finished(client, created["id"])
    assert await client.get_result(created["id"]) == {"image": blob, 1: "int key"}
    record = await api.json("GET", created["url"], 200)
    assert record["msg"]["1"] == "int key" and record["msg"]["image"]["base64"]


@pytest.mark.parametrize(
    ("body", "content_type", "status", "words"),
    [
        (b'{"msg": ', "application/json", 400, "not valid JSON"),
        (b"\xff\xfe", "application/json", 400, "not valid JSON"),
        (b'{"msg": NaN}', "application/json", 400, "NaN"),
        (b"[" * 100_000 + b"]" * 100_000, "application/json", 400, "not valid JSON"),
        (b"\xc1", "application/msgpack", 400, "not valid msgpack"),
        (b'"just a string"', "application/json", 422, "must be an object"),
        (b'{"msg": 1, "function": ["x"]}', "application/json", 422, "'function'"),
        (b'{"functions": ["echo"]}', "application/json", 422, "needs a `msg`"),
        (
            b'{"msg": 1, "priority": "high"}',
            "application/json",
            422,
            "priority must be a whole number",
        ),
        (b'{"msg": 1, "priority": 1000}', "application/json", 422, "priority"),
        (b'{"msg": 1, "functions": "echo"}', "application/json", 422, "list of listener"),
        (b'{"msg": 1, "functions": ["no spaces"]}', "application/json", 422, "is invalid"),
        (b'{"msg": 1, "callback": "ftp://x"}', "application/json", 422, "http"),
        (b'{"msg": 1, "callback": 7}', "application/json", 422, "not a URL"),
        (b'{"msg": 1, "callback": "http://x/\\ud800"}', "application/json", 422, "not a URL"),
        (b'{"msg": 1, "callback": "http://xn--/"}', "application/json", 422, "not a URL"),
        (b'{"msg": 1, "callback": "http://xn--lcalhost-/"}', "application/json", 422, "not a URL"),
        (b'{"msg": 1, "callback": "http://a..b/"}', "application/json", 422, "not a URL"),
        (b'{"msg": ' + b"[" * 500 + b"]" * 500 + b"}", "application/json", 422, "100 levels"),
        (b'{"msg": 1, "delay": -1}', "application/json", 422, "delay"),
        (b'{"msg": 1, "ttl": 1e300}', "application/json", 422, "ttl"),
        (b'{"msg": 1, "ttl": 5e-324}', "application/json", 422, "ttl must be from 1"),
        (b'{"msg": 1, "delay": 1, "at": 2}', "application/json", 422, "not both"),
        (b'{"msg": 1, "at": "tomorrow"}', "application/json", 422, "ISO 8601"),
        (b'{"msg": 1, "at": "2999-01-01T00:00:00"}', "application/json", 422, "timezone"),
        (b'{"msg": 1, "retry": "often"}', "application/json", 422, "retry"),
        (b'{"msg": 1, "retry": {"tries": 2}}', "application/json", 422, "tries"),
        (b'{"msg": 1, "retry": 5000}', "application/json", 422, "retries"),
        (b'{"msg": 1, "key": ""}', "application/json", 422, "key"),
        (b'{"msg": 1, "queue": "no spaces"}', "application/json", 422, "queue name"),
        (b'{"msg": 1, "queue": 5}', "application/json", 422, "queue"),
        (b'{"msg": 123456789012345678901234567890}', "application/json", 422, "msgpack"),
        (b'{"msg": 1, "key": "\\ud800"}', "application/json", 422, "valid Unicode"),
        (b'{"msg": "\\ud800"}', "application/json", 422, "msgpack"),
        (b'{"msg": 1, "at": "0001-01-01T00:00:00+14:00"}', "application/json", 422, "at must"),
        (b'{"msg": 1, "retry": {"backoff": 0.5}}', "application/json", 422, "backoff"),
        (b'{"msg": 1, "retry": {"jitter": 1}}', "application/json", 422, "jitter"),
        (b"msg=1", "application/x-www-form-urlencoded", 415, "application/json"),
        (b'{"msg": 1}', "application/octet-stream", 415, "application/json"),
    ],
)
async def test_malformed_or_wrong_bodies_get_clear_json_errors(
    api: Api, body: bytes, content_type: str, status: int, words: str
) -> None:
    headers = {"Content-Type": content_type}
    error = await api.json("POST", "/jobs", status, data=body, headers=headers)
    assert words in error["detail"], error


async def test_the_deepest_message_accepted_is_readable_on_every_route(
    api: Api, client: Client, redis_url: str
) -> None:
    deepest: Any = "bottom"
    for _ in range(MAX_DEPTH):
        deepest = [deepest]
    created = await api.post({"msg": deepest, "functions": ["echo"]})
    async with running_worker(make_listeners(), queue=api.queue, redis_url=redis_url):
        await finished(client, created["id"])
    assert (await api.json("GET", created["url"], 200))["msg"] == deepest
    assert await api.json("GET", f"{created['url']}/result", 200) == deepest
    error = await api.post({"msg": [deepest]}, 422)  # one more level: refused, naming the limit
    assert f"nested more than {MAX_DEPTH} levels" in error["detail"]


async def test_an_oversized_body_is_refused_with_413(redis_url: str, queue: str) -> None:
    config = HttpConfig(port=0, redis_url=redis_url, queue=queue, max_body_bytes=1024)
    async with serving(config) as api:
        error = await api.post({"msg": "x" * 4000}, 413)
        assert error["error"] == "request_entity_too_large" and "1024 bytes" in error["detail"]
        chunks = [b'{"msg": "', b"y" * 4000, b'"}']  # no Content-Length: caught while reading

        async def stream() -> AsyncIterator[bytes]:
            for chunk in chunks:
                yield chunk

        headers = {"Content-Type": "application/json"}
        await api.json("POST", "/jobs", 413, data=stream(), headers=headers)
        await api.post({"msg": "x" * 500})  # under the limit: fine


async def test_a_message_over_the_client_s_limit_is_refused_with_422(api: Api) -> None:
    blob = msgpack.packb({"msg": b"x" * (16 * 1024 * 1024 + 1)})
    headers = {"Content-Type": "application/msgpack"}
    error = await api.json("POST", "/jobs", 422, data=io.BytesIO(blob), headers=headers)
    assert "over the limit" in error["detail"]


async def test_unknown_listeners_are_refused_once_any_is_known(api: Api, redis_url: str) -> None:
    await api.post({"msg": 1, "functions": ["anything"]})  # nobody knows any yet: it waits
    async with running_worker(make_listeners(), queue=api.queue, redis_url=redis_url):
        error = await api.post({"msg": 1, "functions": ["echo", "ehco"]}, 422)
        assert error["error"] == "unknown_listener" and error["listeners"] == ["ehco"]
        assert "ehco" in error["detail"] and "echo" in error["detail"]
        await api.post({"msg": 1, "functions": ["echo"]})
    config = HttpConfig(port=0, redis_url=redis_url, queue=api.queue, known_listeners=("train",))
    async with serving(config) as configured:
        await configured.post({"msg": 1, "functions": ["train"]})
        error = await configured.post({"msg": 1, "functions": ["trian"]}, 422)
        assert error["listeners"] == ["trian"] and "train" in error["detail"]


# -- reading -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "ext", "content_type", "blob"),
    [
        ("png", "png", "image/png", PNG),
        ("wav", "wav", "audio/wav", WAV),
        ("wav", "mp3", "audio/mpeg", WAV),  # the extension's type, whatever the bytes
        ("png", "jpg", "image/jpeg", PNG),
        ("npy", "npy", "application/octet-stream", NPY),
        ("png", "json", "application/json", PNG),
        ("png", "PNG", "image/png", PNG),
        ("wav", "unknownext", "application/octet-stream", WAV),
    ],
)
async def test_binary_results_are_served_byte_for_byte_with_the_extension_s_type(
    api: Api,
    client: Client,
    redis_url: str,
    kind: str,
    ext: str,
    content_type: str,
    blob: bytes,
) -> None:
    created = await api.post({"msg": {"kind": kind}, "functions": ["produce"]})
    async with running_worker(make_listeners(), queue=api.queue, redis_url=redis_url):
        await finished(client, created["id"])
    resp, body = await api.call("GET", f"{created['url']}/result.{ext}", 200)
    assert resp.headers["Content-Type"] == content_type and body == blob
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    resp, body = await api.call("GET", f"{created['url']}/result", 200)
    assert resp.headers["Content-Type"] == "application/octet-stream" and body == blob
    resp, body = await api.call("GET", f"{created['url']}/short_result", 200)
    assert resp.content_type == "text/plain" and body == f"a {kind}".encode()
    assert resp.headers["X-Content-Type-Options"] == "nosniff"  # a browser guesses no page


@pytest.mark.parametrize(
    ("kind", "ext", "download"),
    [
        *[("png", ext, True) for ext in ("html", "htm", "svg", "xml", "js", "xhtml", "pdf")],
        *[("text", ext, True) for ext in ("html", "svg", "mjs", "css", "unknownext")],
        ("png", "png", False),
        ("wav", "wav", False),
        ("text", "txt", False),
        ("text", "csv", False),
        ("png", "json", False),
    ],
)
async def test_results_of_active_content_types_are_downloaded_not_shown(
    api: Api, client: Client, redis_url: str, kind: str, ext: str, download: bool
) -> None:
    """A result served as HTML, SVG, XML or script would run on the service's origin."""
    created = await api.post({"msg": {"kind": kind}, "functions": ["produce"]})
    async with running_worker(make_listeners(), queue=api.queue, redis_url=redis_url):
        await finished(client, created["id"])
    resp, _ = await api.call("GET", f"{created['url']}/result.{ext}", 200)
    disposition = resp.headers.get("Content-Disposition")
    assert disposition == (f'attachment; filename="result.{ext}"' if download else None)
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert resp.headers["Content-Security-Policy"] == "sandbox"


async def test_value_results_are_json_and_never_the_text_none(
    api: Api, client: Client, redis_url: str
) -> None:
    value = await api.post({"msg": {"kind": "value"}, "functions": ["produce"]})
    text = await api.post({"msg": {"kind": "text"}, "functions": ["produce"]})
    none = await api.post({"msg": {"kind": "none"}, "functions": ["produce"]})
    async with running_worker(make_listeners(), queue=api.queue, redis_url=redis_url):
        for created in (value, text, none):
            await finished(client, created["id"])
    assert await api.json("GET", f"{value['url']}/result", 200) == {"answer": 42, "nan": "NaN"}
    assert await api.json("GET", f"{value['url']}/result.json", 200) == {"answer": 42, "nan": "NaN"}
    error = await api.json("GET", f"{value['url']}/result.png", 406)
    assert error["error"] == "not_binary"
    await api.call("GET", f"{value['url']}/short_result", 204)  # complete, no short result
    assert await api.json("GET", f"{text['url']}/result", 200) == "plain words"
    resp, body = await api.call("GET", f"{text['url']}/result.txt", 200)
    assert resp.headers["Content-Type"] == "text/plain; charset=utf-8" and body == b"plain words"
    _, body = await api.call("GET", f"{text['url']}/short_result", 200)
    assert body == b"plain words"
    resp, body = await api.call("GET", f"{none['url']}/result", 200)
    assert body == b"null" and b"None" not in body


async def test_pending_jobs_answer_202_with_their_status(api: Api) -> None:
    queued = await api.post({"msg": 1})
    scheduled = await api.post({"msg": 1, "delay": 60})
    for created, status in ((queued, "queued"), (scheduled, "scheduled")):
        for tail in ("result", "result.png", "result.json", "short_result"):
            answer = await api.json("GET", f"{created['url']}/{tail}", 202)
            assert answer == {"id": created["id"], "queue": api.queue, "status": status}


async def test_unknown_jobs_are_404_on_every_job_route(api: Api) -> None:
    for tail in ("", "/progress", "/result", "/result.png", "/short_result", "/events"):
        error = await api.json("GET", f"/jobs/{'0' * 32}{tail}", 404)
        assert error["error"] == "job_not_found"
        await api.json("GET", f"/jobs/{'x' * 300}{tail}", 404)
    await api.json("DELETE", f"/jobs/{'0' * 32}", 404)
    await api.json("POST", f"/queues/{api.queue}/dead/{'0' * 32}/requeue", 404, headers=JSON)
    await api.json("GET", f"/jobs/{'0' * 32}?queue=bad%20name", 422)


@pytest.mark.every_topology
async def test_failed_dead_and_cancelled_jobs_answer_409_with_their_error(
    api: Api, client: Client, redis_url: str
) -> None:
    failed = await api.post({"msg": "garbage", "functions": ["broken"]})
    dead = await api.post({"msg": "junk", "functions": ["produce"], "retry": 0})
    cancelled = await api.post({"msg": 1, "delay": 60})
    await api.json("DELETE", cancelled["url"], 200)
    async with running_worker(make_listeners(), queue=api.queue, redis_url=redis_url):
        await finished(client, failed["id"])
        await finished(client, dead["id"])
    for created, status, error_type in (
        (failed, "failed", "ValueError"),
        (dead, "dead", "TypeError"),
        (cancelled, "cancelled", None),
    ):
        for tail in ("result", "result.png", "short_result"):
            error = await api.json("GET", f"{created['url']}/{tail}", 409)
            assert error["error"] == "job_failed" and error["status"] == status
            assert error["id"] == created["id"] and error["error_type"] == error_type
    error = await api.json("GET", f"{failed['url']}/result", 409)
    assert error["error_message"] == "cannot parse 'garbage'" and "in broken" in error["traceback"]


@pytest.mark.every_topology
async def test_the_record_and_the_progress(api: Api, client: Client, redis_url: str) -> None:
    created = await api.post({"msg": None, "functions": ["steps"]})
    assert await api.json("GET", f"{created['url']}/progress", 200) == {
        "id": created["id"],
        "queue": api.queue,
        "progress": None,
    }
    record = await api.json("GET", created["url"], 200)
    assert record["status"] == "queued" and record["waiting_for"] == ["steps"]
    assert "no live worker" in record["reason"]
    async with running_worker(make_listeners(), queue=api.queue, redis_url=redis_url):
        await finished(client, created["id"])
    progress = await api.json("GET", f"{created['url']}/progress", 200)
    assert progress["progress"] == {"value": 50, "message": "half way"}
    record = await api.json("GET", created["url"], 200)
    assert record["result"] == {"base64": "d2VpZ2h0cw=="} and record["short_result"] == "trained"
    assert record["attempt"] == 1 and record["finished_at"] >= record["posted_at"]


@pytest.mark.every_topology
async def test_delete_cancels_then_409_once_finished(api: Api, client: Client) -> None:
    created = await api.post({"msg": 1, "delay": 60})
    answer = await api.json("DELETE", created["url"], 200)
    assert answer == {
        "id": created["id"],
        "queue": api.queue,
        "status": "cancelled",
        "was": "scheduled",
    }
    assert (await client.get_job(created["id"])).status is JobStatus.CANCELLED
    error = await api.json("DELETE", created["url"], 409)
    assert error["error"] == "invalid_transition" and error["status"] == "cancelled"


# -- queues ------------------------------------------------------------------------------------


@pytest.mark.every_topology
async def test_queue_numbers_are_those_of_aqueue_status(
    api: Api, client: Client, redis_url: str
) -> None:
    await api.post({"msg": 1})
    await api.post({"msg": 2})
    await api.post({"msg": 3, "delay": 60})
    view = client.store.view(api.queue)
    expected = QueueStatus.build(api.queue, await view.snapshot(), await view.live_workers())
    mine = await api.json("GET", f"/queues/{api.queue}", 200)
    assert (mine["queued"], mine["scheduled"], mine["active"], mine["dead"]) == (2, 1, 0, 0)
    for name in ("queued", "scheduled", "active", "dead", "stalled", "totals", "workers"):
        assert mine[name] == getattr(expected, name)
    assert mine["attention"] == ["2 job(s) waiting and no live worker"]
    everything = await api.json("GET", "/queues", 200)
    assert everything["healthy"] is False
    [listed] = [q for q in everything["queues"] if q["queue"] == api.queue]
    assert listed["queued"] == 2
    await api.json("GET", "/queues/not%20a%20name", 422)


@pytest.mark.every_topology
async def test_dead_letters_are_listed_and_requeued(
    api: Api, client: Client, redis_url: str
) -> None:
    created = await api.post({"msg": "junk", "functions": ["produce"], "retry": 0})
    async with running_worker(make_listeners(), queue=api.queue, redis_url=redis_url):
        await finished(client, created["id"])
    dead = await api.json("GET", f"/queues/{api.queue}/dead", 200)
    assert dead["queue"] == api.queue and dead["offset"] == 0
    assert [j["id"] for j in dead["jobs"]] == [created["id"]]
    assert dead["jobs"][0]["status"] == "dead" and dead["jobs"][0]["error_type"] == "TypeError"
    assert (await api.json("GET", f"/queues/{api.queue}/dead?offset=1", 200))["jobs"] == []
    for bad in ("count=0", "count=5000", "offset=-1", "count=many"):
        await api.json("GET", f"/queues/{api.queue}/dead?{bad}", 422)
    path = f"/queues/{api.queue}/dead/{created['id']}/requeue"
    answer = await api.json("POST", path, 200, headers=JSON)
    assert answer == {"id": created["id"], "queue": api.queue, "status": "queued", "was": "dead"}
    assert (await client.get_job(created["id"])).status is JobStatus.QUEUED
    assert (await api.json("GET", f"/queues/{api.queue}/dead", 200))["jobs"] == []
    assert (await api.json("POST", path, 409, headers=JSON))["error"] == "invalid_transition"


# -- events ------------------------------------------------------------------------------------


async def read_events(resp: aiohttp.ClientResponse, until: str = "outcome") -> list[dict[str, Any]]:
    """Parse a text/event-stream until an event of kind `until` (or a comment, for ':')."""
    events: list[dict[str, Any]] = []
    fields: dict[str, Any] = {}
    with anyio.fail_after(10):
        async for raw in resp.content:
            line = raw.decode().rstrip("\n")
            if line.startswith(":"):
                events.append({"comment": line[1:].strip()})
                if until == ":":
                    return events
            elif not line:
                if fields:
                    if "data" in fields:
                        fields["data"] = json.loads(fields["data"])
                    events.append(fields)
                    if fields.get("event") == until:
                        return events
                fields = {}
            else:
                name, _, value = line.partition(":")
                fields[name] = value.removeprefix(" ")
    return events


@pytest.mark.every_topology
async def test_events_stream_progress_and_status_in_order_ending_with_the_outcome(
    api: Api, client: Client, redis_url: str
) -> None:
    created = await api.post({"msg": None, "functions": ["steps"]})
    job_id = created["id"]
    async with api.session.get(f"{created['url']}/events") as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"] == "text/event-stream; charset=utf-8"
        assert resp.headers["Cache-Control"].startswith("no-cache")
        first = await read_events(resp, until="status")  # subscribed: start the worker
        async with running_worker(make_listeners(), queue=api.queue, redis_url=redis_url):
            rest = await read_events(resp)
            tail = await resp.content.read()  # the stream ends after the outcome
    assert tail == b""
    events = [e for e in first + rest if "retry" not in e]
    assert [(e["id"], e["event"]) for e in events] == [
        ("1:queued", "status"),
        ("2:active", "status"),
        ("3:active", "progress"),
        ("4:active", "progress"),
        ("5:complete", "outcome"),
    ]
    assert [e["data"] for e in events] == [
        {"id": job_id, "status": "queued"},
        {"id": job_id, "status": "active"},
        {"id": job_id, "value": 10, "message": "loading"},
        {"id": job_id, "value": 50, "message": "half way"},
        {"id": job_id, "status": "complete", "short_result": "trained"},
    ]
    assert first[0] == {"retry": "3000"}  # how long a browser waits before reconnecting


async def test_events_resume_from_the_current_state_after_last_event_id(
    api: Api, client: Client, redis_url: str
) -> None:
    created = await api.post({"msg": None, "functions": ["steps"]})
    async with running_worker(make_listeners(), queue=api.queue, redis_url=redis_url):
        await finished(client, created["id"])
    url = f"{created['url']}/events"
    async with api.session.get(url, headers={"Last-Event-ID": "2:active"}) as resp:
        events = [e for e in await read_events(resp) if "event" in e]
    assert [(e["id"], e["event"]) for e in events] == [
        ("3:complete", "progress"),  # the level now, not the reports missed
        ("4:complete", "outcome"),
    ]
    assert events[0]["data"]["value"] == 50
    await api.call("GET", url, 204, headers={"Last-Event-ID": "4:complete"})  # stop reconnecting
    for last, first in (("garbage", "1:complete"), ("7", "8:complete"), (":active", "1:complete")):
        async with api.session.get(url, headers={"Last-Event-ID": last}) as resp:
            events = [e for e in await read_events(resp) if "event" in e]
        assert events[0]["id"] == first


async def test_events_keep_alive_while_idle_and_end_with_a_cancellation(api: Api) -> None:
    created = await api.post({"msg": 1})
    async with api.session.get(f"{created['url']}/events") as resp:
        seen = await read_events(resp, until=":")
        assert seen[-1] == {"comment": "keep-alive"}
        await api.json("DELETE", created["url"], 200)
        events = await read_events(resp)
    assert events[-1]["event"] == "outcome" and events[-1]["data"]["status"] == "cancelled"


async def test_a_client_leaving_mid_stream_ends_its_stream_quietly(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="aqueue._http.events")
    created = await api.post({"msg": 1})
    async with api.session.get(f"{created['url']}/events") as resp:
        await read_events(resp, until="status")
    closed = f"event stream of job {created['id']} closed by the client"
    # noticed at the next keep-alive
    await until(lambda: any(r.getMessage() == closed for r in caplog.records), interval=0.05)
    warned = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert [r for r in warned if not is_slow_callback_report(r)] == []
    await api.json("GET", "/healthz", 200)


async def test_a_failed_job_s_outcome_carries_its_error(
    api: Api, client: Client, redis_url: str
) -> None:
    created = await api.post({"msg": "garbage", "functions": ["broken"]})
    async with running_worker(make_listeners(), queue=api.queue, redis_url=redis_url):
        await finished(client, created["id"])
    async with api.session.get(f"{created['url']}/events") as resp:
        events = await read_events(resp)
    assert events[-1]["data"] == {
        "id": created["id"],
        "status": "failed",
        "error_type": "ValueError",
        "error_message": "cannot parse 'garbage'",
    }


async def test_stopping_the_service_ends_open_event_streams(redis_url: str, queue: str) -> None:
    config = HttpConfig(port=0, redis_url=redis_url, queue=queue, shutdown_timeout=30)
    async with anyio.create_task_group() as tg:
        port = await tg.start(serve_http, config)
        async with aiohttp.ClientSession(f"http://127.0.0.1:{port}") as session:
            async with session.post("/jobs", json={"msg": 1}) as resp:
                url = (await resp.json())["url"]
            async with session.get(f"{url}/events") as resp:
                await read_events(resp, until="status")
                with anyio.fail_after(5):  # well before the 30 s shutdown timeout
                    tg.cancel_scope.cancel()
                    assert await resp.content.read() == b""


# (on a cluster too: there the queues' channels are on three nodes; the Sentinel set is one)
@pytest.mark.parametrize(
    "redis_url", ["standalone", pytest.param("cluster", marks=pytest.mark.slow)], indirect=True
)  # (on a cluster in CI's sample too: test_cluster_edges streams 30 queues over 3 masters)
async def test_event_streams_of_300_queues_share_one_connection_and_every_endpoint_answers(
    redis_url: str, client: Client
) -> None:
    """Each queue's client once kept a subscription of its own, on a connection of the pool:
    as many queues as connections wedged the service for good. Now every stream shares one
    subscription, and a client leaves it when its last stream ends."""
    queues = [f"{client.queue}-{i}" for i in range(300)]
    config = HttpConfig(
        port=0, redis_url=redis_url, queue=queues[0], max_connections=16, keepalive=0.3
    )

    async def stream_one(api: Api, queue: str) -> None:
        created = await api.post({"msg": 1, "queue": queue})
        with anyio.fail_after(20):
            async with api.session.get(f"/jobs/{created['id']}/events?queue={queue}") as resp:
                assert (await read_events(resp, until="status"))[-1]["data"]["status"] == "queued"
                await api.json("DELETE", created["url"], 200)
                outcome = (await read_events(resp))[-1]
        assert outcome["event"] == "outcome" and outcome["data"]["status"] == "cancelled"

    try:
        async with serving(config) as api:
            for start in range(0, len(queues), 50):  # 50 streams open at once, 6 times
                async with anyio.create_task_group() as tg:
                    for queue in queues[start : start + 50]:
                        tg.start_soon(stream_one, api, queue)
            with anyio.fail_after(20):
                job = (await api.post({"msg": 2, "queue": queues[-1]}))["id"]
                at = f"?queue={queues[-1]}"
                await api.json("GET", f"/jobs/{job}{at}", 200)
                await api.json("GET", f"/jobs/{job}/progress{at}", 200)
                await api.json("GET", f"/jobs/{job}/result{at}", 202)
                await api.json("DELETE", f"/jobs/{job}{at}", 200)
                await api.json("GET", "/queues", 200)
                await api.json("GET", f"/queues/{queues[7]}", 200)
                await api.json("GET", f"/queues/{queues[7]}/dead", 200)
                await api.json("GET", "/readyz", 200)
            state = api.app[STATE]
            assert state.subscription is not None
            assert state.subscription.joined == 0  # every client left with its last stream
            subscription = state.subscription  # (left channels are dropped soon, but the last)
            await until(lambda: subscription.channels <= 1)
            assert len(state.clients) <= CACHED_CLIENTS
            info = await client.store.redis.client_list()
            service = [c for c in info if c["name"] == f"aqueue-http-{os.getpid()}"]
            assert len(service) <= config.max_connections + 1  # the pool, and its direct one
    finally:
        for queue in queues:
            await client.store.view(queue).purge_queue()


async def test_event_streams_of_several_queues_go_on_across_a_redis_restart(
    private_redis: RedisServer, queue: str
) -> None:
    """The shared subscription resubscribes every queue's channel, and each client re-reads
    what it follows, so no outcome is lost to the outage."""
    config = HttpConfig(port=0, redis_url=private_redis.url, queue=queue, keepalive=0.3)
    async with serving(config) as api, contextlib.AsyncExitStack() as stack:
        paths = []
        for name in (queue, f"{queue}-b", f"{queue}-c"):
            created = await api.post({"msg": 1, "queue": name})
            paths.append(f"/jobs/{created['id']}?queue={name}")
        streams = []
        for path in paths:
            path, _, query = path.partition("?")
            resp = await stack.enter_async_context(api.session.get(f"{path}/events?{query}"))
            assert (await read_events(resp, until="status"))[-1]["data"]["status"] == "queued"
            streams.append(resp)
        await anyio.to_thread.run_sync(private_redis.restart)
        for path in paths:
            with anyio.fail_after(10):
                while True:  # (503 until the pool has reconnected)
                    async with api.session.delete(path) as answer:
                        if answer.status != 503:
                            assert answer.status == 200, await answer.text()
                            break
                    await anyio.sleep(0.05)
        for resp in streams:
            outcome = (await read_events(resp))[-1]
            assert outcome["event"] == "outcome" and outcome["data"]["status"] == "cancelled"


async def test_the_clients_kept_for_queue_names_asked_about_are_bounded(
    redis_url: str, queue: str
) -> None:
    """A read token may ask about any number of queue names: each once kept a client for good
    (~4 kB). Counted as the Client objects alive, whoever holds them."""
    config = HttpConfig(port=0, redis_url=redis_url, queue=queue, read_tokens=(READ,))
    read = {"Authorization": f"Bearer {READ}"}
    async with serving(config) as api:
        state = api.app[STATE]
        for i in range(CACHED_CLIENTS + 300):
            await api.json("GET", f"/jobs/{'0' * 32}?queue={queue}-{i}", 404, headers=read)
        assert len(state.clients) == CACHED_CLIENTS
        gc.collect()
        alive = sum(isinstance(o, Client) for o in gc.get_objects())
        assert alive <= CACHED_CLIENTS + 1, alive  # (+1: the suite's own `client`, if any)
        kept = state.clients[f"{queue}-{CACHED_CLIENTS + 299}"]
        await api.json(
            "GET", f"/jobs/{'0' * 32}?queue={queue}-{CACHED_CLIENTS + 299}", 404, headers=read
        )
        assert state.clients[f"{queue}-{CACHED_CLIENTS + 299}"] is kept  # recent ones are reused


async def test_a_wait_for_a_connection_of_the_pool_times_out_into_a_503(
    redis_url: str, queue: str, client: Client
) -> None:
    """Every connection busy (here: Redis paused, each holding a request) is a 503 after the
    pool's wait limit, never a request that waits for good."""
    config = HttpConfig(
        port=0, redis_url=redis_url, queue=queue, max_connections=2, pool_timeout=0.2
    )
    async with serving(config) as api:
        await client.store.redis.client_pause(3000)  # (ms) all clients
        statuses: list[int] = []

        async def read(path: str) -> None:
            async with api.session.get(path) as resp:
                statuses.append(resp.status)
                if resp.status == 503:
                    error = await resp.json()
                    assert error["error"] == "redis_unavailable", error
                    assert "connection of the pool" in error["detail"], error

        with anyio.fail_after(20):
            async with anyio.create_task_group() as tg:
                for _ in range(6):
                    tg.start_soon(read, f"/jobs/{'0' * 32}")
    assert 503 in statuses and set(statuses) <= {404, 503}, statuses


# -- security ----------------------------------------------------------------------------------


async def test_tokens_read_only_may_get_read_write_may_change(redis_url: str, queue: str) -> None:
    config = HttpConfig(
        port=0, redis_url=redis_url, queue=queue, read_tokens=(READ,), write_tokens=(WRITE,)
    )
    read = {"Authorization": f"Bearer {READ}"}
    write = {"Authorization": f"Bearer {WRITE}"}
    async with serving(config) as api:
        for headers in (
            {},
            {"Authorization": "Bearer " + "x" * 24},
            {"Authorization": READ},
            {"Authorization": "Bearer " + "é" * 24},
        ):
            error = await api.json("GET", "/queues", 401, headers=headers)
            assert error["error"] == "unauthorized"
            await api.json("GET", "/no/such/route", 401, headers=headers)
            await api.post({"msg": 1}, 401, headers=headers)
        async with api.session.get("/queues") as resp:
            assert resp.headers["WWW-Authenticate"].startswith("Bearer")
        await api.json("GET", "/healthz", 200)  # no token needed
        await api.json("GET", "/readyz", 200)
        error = await api.post({"msg": 1}, 403, headers=read)
        assert error["error"] == "forbidden"
        created = await api.post({"msg": 1}, headers=write)
        await api.json("GET", created["url"], 200, headers=read)
        await api.json("GET", "/openapi.json", 200, headers=read)
        await api.json("DELETE", created["url"], 403, headers=read)
        requeue = f"/queues/{queue}/dead/{created['id']}/requeue"
        await api.json("POST", requeue, 403, headers=read)
        await api.json("DELETE", created["url"], 200, headers=write)
        await api.json("POST", requeue, 200, headers=write)
        # a browser's EventSource cannot send headers: the events route takes a query token
        events = f"{created['url']}/events"
        await api.json("GET", events, 401)
        await api.json("GET", f"{events}?access_token={'x' * 24}", 401)
        await api.json("GET", f"{events}?access_token=%ED%A0%80", 401)
        await api.json("GET", f"{created['url']}?access_token={READ}", 401)  # only there
        async with api.session.get(f"{events}?access_token={READ}") as resp:
            assert resp.status == 200
            assert (await read_events(resp, until="status"))[-1]["data"]["status"] == "queued"


async def test_a_token_that_is_not_utf8_is_refused_not_a_500(redis_url: str, queue: str) -> None:
    config = HttpConfig(port=0, redis_url=redis_url, queue=queue, read_tokens=(READ,))
    async with serving(config) as api, await anyio.connect_tcp("127.0.0.1", api.port) as sock:
        token = b"\xff\xfe" + b"a" * 22
        await sock.send(b"GET /queues HTTP/1.1\r\nHost: x\r\nConnection: close\r\n")
        await sock.send(b"Authorization: Bearer " + token + b"\r\n\r\n")
        answer = b""
        with anyio.fail_after(10), contextlib.suppress(anyio.EndOfStream):
            while True:
                answer += await sock.receive()
    assert answer.startswith(b"HTTP/1.1 401 ") and b'"error": "unauthorized"' in answer


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        (None, b'{"msg": 1, "callback": "http://127.0.0.1:9/steal"}'),  # fetch(), no-cors
        ("text/plain", b'{"msg": 1}'),  # a form with enctype=text/plain
        ("application/x-www-form-urlencoded", b"msg=1"),
        ("multipart/form-data; boundary=x", b"--x--"),
    ],
)
async def test_the_open_service_refuses_posts_a_page_of_another_site_could_send(
    api: Api, client: Client, content_type: str | None, body: bytes
) -> None:
    headers = {} if content_type is None else {"Content-Type": content_type}
    skip = ["Content-Type"] if content_type is None else []
    for path in ("/jobs", f"/queues/{api.queue}/dead/{'0' * 32}/requeue"):
        async with api.session.post(
            path, data=body, headers=headers, skip_auto_headers=skip
        ) as resp:
            assert resp.status == 415, await resp.text()
            error = await resp.json()
        assert error["error"] == "unsupported_media_type" and "application/json" in error["detail"]
    counts = await client.counts()
    assert counts["queued"] == counts["scheduled"] == 0  # nothing was posted
    requeue = f"/queues/{api.queue}/dead/{'0' * 32}/requeue"
    await api.json("POST", requeue, 404, headers=JSON)


@pytest.mark.parametrize(
    "host",
    ["evil.example:{port}", "127.0.0.1.evil.example:{port}", "127.0.0.1:1", "127.0.0.1",
     "localhost", "[::2]:{port}", "", "u@127.0.0.1:{port}", "127.0.0.1:{port}/x"],
)  # fmt: skip
async def test_the_open_service_answers_no_host_but_its_own_names(api: Api, host: str) -> None:
    """A DNS-rebinding page (its own name resolved to 127.0.0.1) sends its name as Host."""
    headers = {"Host": host.format(port=api.port)}
    for method, path, expect in (
        ("GET", "/queues", 421),
        ("POST", "/jobs", 421),
        ("DELETE", f"/jobs/{'0' * 32}", 421),
    ):
        kwargs: dict[str, Any] = {"json": {"msg": 1}} if method == "POST" else {}
        error = await api.json(method, path, expect, headers=headers, **kwargs)
        assert error["error"] == "misdirected_request" and str(api.port) in error["detail"]
    for own in (f"127.0.0.1:{api.port}", f"localhost:{api.port}", f"LOCALHOST:{api.port}"):
        await api.json("GET", "/queues", 200, headers={"Host": own})


async def test_a_service_with_tokens_answers_any_host(redis_url: str, queue: str) -> None:
    """Behind a reverse proxy, Host is the public name; a page cannot send the token."""
    config = HttpConfig(port=0, redis_url=redis_url, queue=queue, read_tokens=(READ,))
    headers = {"Host": "queue.example.org", "Authorization": f"Bearer {READ}"}
    async with serving(config) as api:
        await api.json("GET", "/queues", 200, headers=headers)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.10", "example.org", ""])  # noqa: S104
def test_a_public_bind_without_tokens_is_refused(host: str) -> None:
    with pytest.raises(ConfigError, match="without tokens"):
        HttpConfig(host=host)
    HttpConfig(host=host, read_tokens=(READ,))  # with tokens: allowed


@pytest.mark.parametrize("host", ["127.0.0.1", "127.8.0.1", "::1", "localhost"])
def test_loopback_binds_may_be_open(host: str) -> None:
    assert HttpConfig(host=host).open


@pytest.mark.parametrize(
    ("settings", "words"),
    [
        ({"read_tokens": ("short",)}, "at least 16"),
        ({"read_tokens": ("has space " * 3,)}, "at least 16"),
        ({"read_tokens": [READ]}, "tuple of strings"),
        ({"read_tokens": (READ,), "write_tokens": (READ,)}, "both"),
        ({"port": 70000}, "port"),
        ({"max_body_bytes": 0}, "max_body_bytes"),
        ({"queue": "a b"}, "queue name"),
        ({"known_listeners": ("bad name",)}, "known_listeners"),
        ({"keepalive": 0}, "keepalive"),
    ],
)
def test_bad_settings_are_refused_by_name(settings: dict[str, Any], words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        HttpConfig(**settings)


async def test_unknown_routes_and_methods_are_json_errors(api: Api) -> None:
    error = await api.json("GET", "/nowhere", 404)
    assert error["error"] == "not_found" and "/nowhere" in error["detail"]
    resp, _ = await api.call("PUT", "/jobs", 405)
    assert resp.content_type == "application/json" and "POST" in resp.headers["Allow"]
    error = await api.json("PATCH", f"/jobs/{'0' * 32}", 405)
    assert error["error"] == "method_not_allowed"
    await api.call("HEAD", f"/jobs/{'0' * 32}/events", 405)  # a stream a HEAD would never end
    await api.call("HEAD", f"/jobs/{'0' * 32}", 404)


# -- health, description, serving -------------------------------------------------------------


async def test_health_and_readiness(api: Api) -> None:
    assert await api.json("GET", "/healthz", 200) == {"status": "ok"}
    assert await api.json("GET", "/readyz", 200) == {"status": "ready"}


async def test_readiness_is_503_while_redis_does_not_answer() -> None:
    with socket.socket() as sock:  # a loopback port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = HttpConfig(port=0, redis_url=f"redis://127.0.0.1:{port}/0")
    async with serving(config) as api:
        assert await api.json("GET", "/healthz", 200) == {"status": "ok"}
        error = await api.json("GET", "/readyz", 503)
        assert error["error"] == "redis_unavailable"
        error = await api.json("GET", f"/jobs/{'0' * 32}", 503)  # never a 500
        assert error["error"] == "redis_unavailable"


async def test_openapi_describes_every_route(api: Api) -> None:
    spec = await api.json("GET", "/openapi.json", 200)
    assert spec["openapi"].startswith("3.")
    described = {(path, method.upper()) for path, item in spec["paths"].items() for method in item}
    routes = {
        (route.resource.canonical, route.method)
        for route in make_app(api.config).router.routes()
        if route.method != "HEAD" and route.resource is not None
    }
    assert described == routes
    shared = spec["components"]["responses"]
    for path, item in spec["paths"].items():
        for operation in item.values():
            answers = operation["responses"]
            assert operation["operationId"] and ("200" in answers or "201" in answers)
            if path not in ("/healthz", "/readyz"):
                assert "401" in answers and operation.get("security") != []
            for code, answer in answers.items():
                if code >= "400":  # every error is {"error", "detail"}
                    answer = (
                        shared[answer["$ref"].rsplit("/", 1)[1]] if "$ref" in answer else answer
                    )
                    schema = answer["content"]["application/json"]["schema"]["$ref"]
                    assert schema.endswith(("/Error", "/JobFailedError", "/NotDurableError"))


@contextlib.asynccontextmanager
async def raw_connection(config: HttpConfig) -> AsyncIterator[tuple[Any, int]]:
    """`serve_http` (with its server settings) and a plain TCP connection to it."""
    async with anyio.create_task_group() as tg:
        port = await tg.start(serve_http, config)
        async with await anyio.connect_tcp("127.0.0.1", port) as sock:
            yield sock, port
        tg.cancel_scope.cancel()


async def test_a_client_sending_its_request_head_too_slowly_is_cut_off(
    redis_url: str, queue: str
) -> None:
    """Slowloris: a header's value a byte at a time. aiohttp's default waited an hour."""
    config = HttpConfig(port=0, redis_url=redis_url, queue=queue, header_timeout=0.5)
    async with raw_connection(config) as (sock, port):
        await sock.send(f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nX-Slow: ".encode())
        with anyio.fail_after(20), pytest.raises((anyio.EndOfStream, OSError)):
            while True:  # until the service closes the connection (within aiohttp's limits)
                await sock.send(b"a")
                with anyio.move_on_after(0.05):
                    await sock.receive()  # (nothing comes, but the end)


async def test_a_body_that_does_not_arrive_in_time_is_a_408(redis_url: str, queue: str) -> None:
    config = HttpConfig(port=0, redis_url=redis_url, queue=queue, body_timeout=0.5)
    answer = b""
    async with raw_connection(config) as (sock, port):
        await sock.send(
            f"POST /jobs HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            "Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{".encode()
        )
        with anyio.fail_after(20), contextlib.suppress(anyio.EndOfStream):
            while b"\r\n\r\n" not in answer:
                answer += await sock.receive()
    assert answer.startswith(b"HTTP/1.1 408 "), answer


async def test_serve_http_reports_its_port_and_stops_when_cancelled(
    redis_url: str, queue: str
) -> None:
    config = HttpConfig(port=0, redis_url=redis_url, queue=queue)
    async with anyio.create_task_group() as tg:
        port = await tg.start(serve_http, config)
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{port}/healthz") as resp:
                assert resp.status == 200
        tg.cancel_scope.cancel()
    with pytest.raises(OSError):
        await anyio.connect_tcp("127.0.0.1", port)
