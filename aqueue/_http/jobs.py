"""The HTTP service's request handlers for jobs and queues, and the parsing of posted bodies."""

from __future__ import annotations

import json
import logging
import math
from datetime import datetime
from typing import Any, cast

import anyio
import msgpack
from aiohttp import web

from aqueue._checks import DEAD_LETTER_OFFSETS, DEAD_LETTER_PAGE, MOST_JOB_ID_CHARS
from aqueue._http.base import (
    _TYPES,
    STATE,
    Problem,
    _json,
    result_headers,
)
from aqueue._http.openapi import openapi_spec
from aqueue._options import OPTIONS, Option, PostKwargs
from aqueue._output import QueueStatus
from aqueue._redis.keys import check_queue_name
from aqueue._redis.records import check_functions, worker_infos
from aqueue._redis.results import Stored
from aqueue._redis.store import Store
from aqueue.client import Client
from aqueue.errors import (
    TEN_YEARS,
    AqueueError,
    InvalidTransition,
    JobNotFound,
    MessageError,
    NotDurable,
    RedisUnavailable,
)
from aqueue.job import JobStatus
from aqueue.retry import RetryPolicy

log = logging.getLogger(__name__)

# -- requests --------------------------------------------------------------------------------

# a POST /jobs body: the message, its queue, and the options the HTTP face takes
_OPTIONS = {option.name: option for option in OPTIONS if option.http}
_POST_FIELDS = ("msg", "queue", *_OPTIONS)
_RETRY_FIELDS = ("retries", "delay", "backoff", "max_delay", "jitter")
_MSGPACK = frozenset({"application/msgpack", "application/x-msgpack", "application/vnd.msgpack"})


async def _body(request: web.Request) -> dict[Any, Any]:
    """The request body as a dict, from JSON or msgpack; 4xx for anything else."""
    config = request.app[STATE].config
    limit = config.max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=request.content_length)
    raw = b""
    with anyio.move_on_after(config.body_timeout) as reading:
        raw = await request.read()
    if reading.cancelled_caught:
        raise Problem(
            408, "request_timeout", f"the body did not arrive within {config.body_timeout:g} s"
        )
    kind = request.content_type if "Content-Type" in request.headers else "application/json"
    if kind in _MSGPACK:
        try:
            body = msgpack.unpackb(raw, raw=False, strict_map_key=False)
        except (ValueError, TypeError, msgpack.UnpackException) as exc:
            raise Problem(400, "malformed_body", f"the body is not valid msgpack: {exc}") from None
    elif kind == "application/json" or kind.endswith("+json"):  # also when none is named
        try:
            body = json.loads(raw.decode("utf-8"), parse_constant=_no_constant)
        except (ValueError, RecursionError) as exc:
            raise Problem(400, "malformed_body", f"the body is not valid JSON: {exc}") from None
    else:
        raise Problem(
            415,
            "unsupported_media_type",
            f"send application/json or application/msgpack, not {kind}",
        )
    if not isinstance(body, dict):
        raise Problem(422, "invalid", f"the body must be an object, got {type(body).__name__}")
    return body


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _number(name: str, value: Any, low: float, high: float) -> Any:
    """Finite and within bounds, or left for the client's own checks (wrong types)."""
    if isinstance(value, float) and not math.isfinite(value):
        raise MessageError(f"{name} must be a finite number, got {value!r}")
    if isinstance(value, int | float) and not isinstance(value, bool) and not low <= value <= high:
        raise MessageError(f"{name} must be from {low:g} to {high:g}, got {value!r}")
    return value


def _in_range(option: Option, value: Any) -> Any:
    """Within the option's range (its open end left for the client, which names it)."""
    return _number(option.name, value, option.least or 0, option.most or 0)


def _post_options(body: dict[Any, Any]) -> tuple[str | None, Any, str | None, PostKwargs]:
    """Queue, message, key and `Client.post` options from a POST /jobs body. The options'
    ranges are checked as numbers from JSON (finite); the client checks the rest."""
    unknown = [k for k in body if k not in _POST_FIELDS]
    if unknown:
        raise MessageError(
            f"unknown field(s) {', '.join(map(repr, unknown))}; known: {', '.join(_POST_FIELDS)}"
        )
    if "msg" not in body:
        raise MessageError("the body needs a `msg` (the message, any JSON value; null is one)")
    queue = body.get("queue")
    if not isinstance(queue, str | None):
        raise MessageError(f"queue must be a queue name, got {queue!r}")
    if queue is not None:
        check_queue_name(queue)  # "" too: it is no name, not the service's default queue
    options = {k: body[k] for k in _OPTIONS if body.get(k) is not None}
    for name, value in options.items():
        option = _OPTIONS[name]
        if option.kind == "seconds" or (option.kind == "time" and not isinstance(value, str)):
            _in_range(option, value)
    if isinstance(options.get("at"), str):
        try:
            options["at"] = at = datetime.fromisoformat(options["at"])
        except ValueError:
            raise MessageError(
                f"at must be ISO 8601 or epoch seconds, got {body['at']!r}"
            ) from None
        if at.tzinfo is not None:
            _in_range(_OPTIONS["at"], at.timestamp())
    key = options.pop("key", None)
    if isinstance(key, str) and not key.isascii():
        try:
            key.encode()
        except UnicodeEncodeError:  # a lone surrogate from a JSON escape: not text Redis takes
            raise MessageError("key must be valid Unicode text") from None
    retry = options.get("retry")
    if isinstance(retry, dict):
        wrong = [k for k in retry if k not in _RETRY_FIELDS]
        if wrong:
            raise MessageError(f"unknown retry field(s) {wrong!r}; known: {_RETRY_FIELDS}")
        for name in ("delay", "max_delay", "backoff"):
            if name in retry:
                _number(f"retry.{name}", retry[name], 0, TEN_YEARS)
        if not isinstance(retry.get("jitter", True), bool):
            raise MessageError(f"retry.jitter must be true or false, got {retry['jitter']!r}")
        options["retry"] = RetryPolicy(**retry)
    elif retry is not None and (isinstance(retry, bool) or not isinstance(retry, int)):
        raise MessageError(f"retry must be a number of retries or an object, got {retry!r}")
    return queue, body["msg"], key, cast(PostKwargs, options)


async def _check_listeners(client: Client, functions: Any, known: tuple[str, ...] | None) -> None:
    """Refuse listener names no one knows, once someone knows any (a worker, or the config)."""
    names = check_functions(functions)
    everyone = set(known or ())
    if not names or everyone.issuperset(names):
        return
    for info in worker_infos(await client.store.live_workers()):
        everyone.update(info["listeners"])
    missing = [n for n in names if n not in everyone]
    if everyone and missing:
        raise Problem(
            422,
            "unknown_listener",
            f"unknown listener(s) {', '.join(missing)} in queue {client.queue!r}; "
            f"known: {', '.join(sorted(everyone))}",
            extra={"listeners": missing},
        )


async def _job_client(request: web.Request) -> tuple[Client, str]:
    """The client of the request's queue (`?queue=`, else the default) and the job id."""
    state = request.app[STATE]
    queue = request.query.get("queue", state.config.queue)
    job_id = request.match_info["id"]
    client = await state.client(queue)
    if not job_id or len(job_id) > MOST_JOB_ID_CHARS:  # no job has such an id
        raise JobNotFound(job_id, queue)
    return client, job_id


def _job_url(queue: str, job_id: str, default: str) -> str:
    path = f"/jobs/{job_id}"
    return path if queue == default else f"{path}?queue={queue}"


def _pending(client: Client, job_id: str, status: str) -> web.Response:
    return _json({"id": job_id, "queue": client.queue, "status": status}, 202)


# -- handlers --------------------------------------------------------------------------------


async def post_job(request: web.Request) -> web.Response:
    state = request.app[STATE]
    queue, msg, key, options = _post_options(await _body(request))
    client = await state.client(queue or state.config.queue)
    await _check_listeners(client, options.get("functions"), state.config.known_listeners)
    try:
        job_id = await client.post(msg, key=key, **options)
    except NotDurable as exc:  # posted all the same: say which job, and what was met
        [job_id] = exc.job_ids
        raise Problem(
            503,
            "not_durable",
            str(exc),
            extra={"id": job_id, "queue": client.queue, "replicas": exc.replicas,
                   "acknowledged": exc.acknowledged, "local": exc.local, "synced": exc.synced},
        ) from None  # fmt: skip
    url = _job_url(client.queue, job_id, state.config.queue)
    return _json({"id": job_id, "queue": client.queue, "url": url}, 201, {"Location": url})


async def get_job(request: web.Request) -> web.Response:
    client, job_id = await _job_client(request)
    return _json(await client.get_job(job_id))


async def cancel_job(request: web.Request) -> web.Response:
    client, job_id = await _job_client(request)
    before = await client.cancel(job_id)
    return _json(
        {"id": job_id, "queue": client.queue, "status": JobStatus.CANCELLED, "was": before}
    )


async def get_progress(request: web.Request) -> web.Response:
    client, job_id = await _job_client(request)
    progress = await client.get_progress(job_id)
    return _json({"id": job_id, "queue": client.queue, "progress": progress})


async def get_trace(request: web.Request) -> web.Response:
    client, job_id = await _job_client(request)
    found = await client.trace(job_id)
    return _json({**found.to_json(), "stopped_at": found.stopped_at})


async def get_short_result(request: web.Request) -> web.Response:
    client, job_id = await _job_client(request)
    job = await client.get_job(job_id)
    if not job.status.is_terminal:
        return _pending(client, job_id, job.status)
    if job.status is not JobStatus.COMPLETE:
        await client.get_result(job_id)  # raises JobFailed, with the error
    if job.short_result is None:
        return web.Response(status=204)  # complete, without a short result
    return web.Response(text=job.short_result, content_type="text/plain")


async def get_result(request: web.Request) -> web.StreamResponse:
    """The result: the exact bytes of a binary one, JSON otherwise; `result.<ext>` serves
    them with the extension's content type, so that a browser shows or plays them."""
    client, job_id = await _job_client(request)
    try:
        stored = await client._stored_result(job_id)
    except InvalidTransition as pending:
        return _pending(client, job_id, pending.status)
    return await _serve(
        request, stored, request.match_info.get("ext"), f"the result of job {job_id!r}"
    )


async def get_data(request: web.Request) -> web.StreamResponse:
    """What a listener or client stored with `store_data`, served as a result is."""
    state = request.app[STATE]
    client = await state.client(request.query.get("queue", state.config.queue))
    key = request.match_info["key"]
    return await _serve(request, await client._stored_data(key), None, f"the data at {key!r}")


async def _serve(
    request: web.Request, stored: Stored | None, ext: str | None, what: str
) -> web.StreamResponse:
    """A stored value: a bytes or str one streamed a chunk at a time, as it is in Redis (with
    the extension's content type), any other read whole and sent as JSON."""
    kind = "application/octet-stream"
    if ext is not None:
        kind = _TYPES.guess_type(f"result.{ext.lower()}", strict=False)[0] or kind
    payload = None if stored is None else stored.payload()
    is_bytes = payload is not None and payload[0] == "bytes"
    if not is_bytes and (kind == "application/json" or ext is None or payload is None):
        if payload is None and ext is not None and kind != "application/json":
            raise Problem(
                406,
                "not_binary",
                f"{what} is not bytes or text: GET its /result (JSON) instead",
            )
        return _json(None if stored is None else await stored.value())
    assert stored is not None and payload is not None  # (is_bytes, or a str with an ext)
    if payload[0] == "str" and kind.startswith("text/"):  # e.g. result.txt, .csv, .html
        kind += "; charset=utf-8"
    response = web.StreamResponse(headers=result_headers(kind, ext))
    response.content_length = payload[2]
    await response.prepare(request)
    if request.method == "HEAD":  # its headers say it all: no chunk read for nothing
        return response
    try:
        async for chunk in stored.payload_chunks(payload[1]):
            await response.write(chunk)
    except AqueueError as exc:  # gone or Redis away half way: the headers are sent, so the
        log.warning("HTTP %s: %s cut short: %s", request.path, what, exc)  # body is cut
        if request.transport is not None:
            request.transport.close()
        return response
    await response.write_eof()
    return response


async def list_queues(request: web.Request) -> web.Response:
    """Every queue's numbers, as `aqueue status --json` prints them."""
    store = _store(request)
    statuses = [await _queue_status(store, name) for name in await store.queue_names()]
    healthy = all(not s["attention"] for s in statuses)
    return _json({"queues": statuses, "healthy": healthy})


async def get_queue(request: web.Request) -> web.Response:
    name = check_queue_name(request.match_info["name"])
    return _json(await _queue_status(_store(request), name))


async def _queue_status(store: Store, name: str) -> dict[str, Any]:
    status, _ = await QueueStatus.read(store, name)
    return status.to_json()


def _store(request: web.Request) -> Store:
    store = request.app[STATE].store
    if store is None:
        raise RedisUnavailable("the service is not started")
    return store


async def dead_letters(request: web.Request) -> web.Response:
    client = await request.app[STATE].client(request.match_info["name"])
    offset = _int_param(request, "offset", 0, *DEAD_LETTER_OFFSETS)
    count = _int_param(request, "count", 100, *DEAD_LETTER_PAGE)
    jobs = await client.dead_letters(offset, count)
    return _json({"queue": client.queue, "offset": offset, "jobs": jobs})


def _int_param(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise MessageError(f"{name} must be an integer, got {raw!r}") from None
    if not low <= value <= high:
        raise MessageError(f"{name} must be from {low} to {high}, got {value}")
    return value


async def requeue(request: web.Request) -> web.Response:
    client = await request.app[STATE].client(request.match_info["name"])
    job_id = request.match_info["id"]
    if len(job_id) > MOST_JOB_ID_CHARS:
        raise JobNotFound(job_id, client.queue)
    before = await client.requeue(job_id)
    return _json({"id": job_id, "queue": client.queue, "status": JobStatus.QUEUED, "was": before})


async def healthz(request: web.Request) -> web.Response:
    return _json({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    with anyio.move_on_after(2):
        await _store(request).check_up()
        return _json({"status": "ready"})
    raise RedisUnavailable("Redis did not answer PING within 2 s")


async def openapi(request: web.Request) -> web.Response:
    return _json(openapi_spec())
