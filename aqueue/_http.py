"""The HTTP service: post jobs, read them, stream their events, manage queues, over aiohttp.

    app = make_app(HttpConfig(port=8080))                 # an aiohttp Application
    await serve_http(HttpConfig(port=8080))               # or run it until cancelled

Every error is JSON, `{"error": <code>, "detail": <sentence>}`; a user's mistake is a 4xx, never
a 500. Bodies are JSON, or msgpack (`Content-Type: application/msgpack`) for binary messages;
nothing is ever unpickled. Bearer tokens guard everything but /healthz and /readyz: read
tokens may GET, write tokens may also POST and DELETE; with no tokens (allowed on loopback
binds only) everything is open. The routes and their answers are in `_openapi.py`.
"""

from __future__ import annotations

import contextlib
import hmac
import ipaddress
import json
import logging
import math
import mimetypes
import os
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from http import HTTPStatus
from typing import Any

import anyio
import msgpack
from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from anyio.abc import TaskStatus
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from ._connection import open_store
from ._keys import check_queue_name
from ._openapi import openapi_spec
from ._output import QueueStatus, jsonable
from ._records import check_functions
from ._store import Store, redis_errors
from .client import Client
from .config import ClientConfig
from .errors import (
    AqueueError,
    ConfigError,
    InvalidTransition,
    JobFailed,
    JobNotFound,
    MessageError,
    RedisUnavailable,
)
from .job import JobEvent, JobStatus
from .retry import RetryPolicy

log = logging.getLogger(__name__)

_TOKEN = re.compile(r"^[A-Za-z0-9\-._~+/]{16,}=*$")  # RFC 6750 b64token, at least 16 chars
_OPEN_PATHS = frozenset({"/healthz", "/readyz"})
_READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_MAX_SECONDS = 10 * 365 * 86400.0  # longest delay, timeout or ttl accepted over HTTP
_MAX_EPOCH = 253402300799.0  # 9999-12-31T23:59:59Z
# A fixed table (Python's own, not the machine's /etc/mime.types), with the common media
# types pinned (they differ between Python versions) and what ML results use.
_MORE_TYPES = {
    ".npy": "application/octet-stream", ".npz": "application/octet-stream",
    ".safetensors": "application/octet-stream", ".parquet": "application/vnd.apache.parquet",
    ".json": "application/json", ".wav": "audio/wav", ".mp3": "audio/mpeg",
    ".png": "image/png", ".jpg": "image/jpeg", ".flac": "audio/flac", ".ogg": "audio/ogg",
    ".opus": "audio/opus", ".m4a": "audio/mp4", ".webp": "image/webp", ".webm": "video/webm",
}  # fmt: skip


def _content_types() -> mimetypes.MimeTypes:
    types = mimetypes.MimeTypes(filenames=())
    for ext, kind in _MORE_TYPES.items():
        types.add_type(kind, ext)
    return types


_TYPES = _content_types()  # never changed after this


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a name: it may resolve to anything
        return False


@dataclass(frozen=True, slots=True)
class HttpConfig:
    """Where the service listens, which Redis it uses, and who may do what. Seconds."""

    host: str = "127.0.0.1"
    port: int = 8080  # 0: any free port (serve_http reports the one it got)
    redis_url: str | None = None  # None: AQUEUE_REDIS_URL, else the embedded server
    queue: str = "default"  # the queue of requests that name none
    read_tokens: tuple[str, ...] = ()  # may GET
    write_tokens: tuple[str, ...] = ()  # may also POST and DELETE
    max_body_bytes: int = 16 * 1024 * 1024 + 64 * 1024  # a message at the client's limit
    known_listeners: tuple[str, ...] | None = None  # besides those of live workers
    max_connections: int = 64  # Redis connections, over every queue served
    keepalive: float = 15.0  # seconds between SSE keep-alive comments
    shutdown_timeout: float = 5.0  # how long requests in flight may finish on shutdown
    stream_limit: float | None = None  # end an event stream after this long (it reconnects)

    def __post_init__(self) -> None:
        check_queue_name(self.queue)
        if not isinstance(self.host, str):
            raise ConfigError(f"http host must be a string, got {self.host!r}")
        if isinstance(self.port, bool) or not isinstance(self.port, int):
            raise ConfigError(f"http port must be an integer, got {self.port!r}")
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"http port must be 0..65535, got {self.port}")
        for name in ("read_tokens", "write_tokens"):
            tokens = getattr(self, name)
            if not isinstance(tokens, tuple) or not all(isinstance(t, str) for t in tokens):
                raise ConfigError(f"http {name} must be a tuple of strings, got {tokens!r}")
            for token in tokens:
                if not _TOKEN.match(token):
                    raise ConfigError(
                        f"an http {name[:-1].replace('_', ' ')} is invalid: use at least 16 "
                        "characters of letters, digits and - . _ ~ + / (e.g. from "
                        "`python -c 'import secrets; print(secrets.token_urlsafe())'`)"
                    )
        if set(self.read_tokens) & set(self.write_tokens):
            raise ConfigError("an http token is listed both as read-only and as read-write")
        if not self.read_tokens and not self.write_tokens and not _is_loopback(self.host):
            raise ConfigError(
                f"refusing to serve HTTP on {self.host!r} without tokens: anyone who can reach "
                "it could post and cancel jobs. Set read/write tokens, or bind 127.0.0.1"
            )
        for name in ("max_body_bytes", "max_connections"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ConfigError(f"http {name} must be a positive integer, got {value!r}")
        for name in ("keepalive", "shutdown_timeout"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise ConfigError(f"http {name} must be a positive number of seconds")
        if self.stream_limit is not None and (
            isinstance(self.stream_limit, bool)
            or not isinstance(self.stream_limit, int | float)
            or self.stream_limit <= 0
        ):
            raise ConfigError("http stream_limit must be a positive number of seconds, or None")
        if self.known_listeners is not None:
            try:
                check_functions(self.known_listeners)
            except MessageError as exc:
                raise ConfigError(f"http known_listeners: {exc}") from None

    @property
    def open(self) -> bool:
        """No tokens: every request is allowed (only on loopback binds)."""
        return not self.read_tokens and not self.write_tokens


class Problem(Exception):
    """An error answer: its status, a short code, a sentence, and any extra fields."""

    def __init__(
        self,
        status: int,
        error: str,
        detail: str,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status, self.error, self.detail = status, error, detail
        self.headers = headers or {}
        self.extra = extra or {}

    def response(self) -> web.Response:
        body = {**_plain(self.extra), "error": self.error, "detail": self.detail}
        return _json(body, self.status, self.headers)


# -- JSON ------------------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    """jsonable(), and floats JSON cannot carry (NaN, ±Infinity) as strings."""
    value = jsonable(value)
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _dumps(value: Any) -> str:
    # ASCII: a lone surrogate (say, in a path echoed in an error) cannot break the encoding
    return json.dumps(_plain(value), ensure_ascii=True, allow_nan=False, default=str)


def _json(value: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        text=_dumps(value), status=status, content_type="application/json", headers=headers
    )


# -- the application ------------------------------------------------------------------------


class _State:
    """What the handlers share: filled in when the app starts, emptied when it stops."""

    def __init__(self, config: HttpConfig) -> None:
        self.config = config
        self.store: Store | None = None
        self.clients: dict[str, Client] = {}
        self.closing: anyio.Event | None = None
        self.lock: anyio.Lock | None = None

    async def client(self, queue: str) -> Client:
        """The one client of `queue`, sharing the service's connection pool."""
        check_queue_name(queue)
        if self.store is None or self.lock is None:
            raise RedisUnavailable("the service is not started")
        async with self.lock:
            client = self.clients.get(queue)
            if client is None:
                config = ClientConfig(queue=queue, redis_url=self.config.redis_url)
                client = Client.over(Store(self.store.redis, queue), config)
                await client.__aenter__()  # opens nothing: it only arms the listener's stop
                self.clients[queue] = client
        return client


STATE = web.AppKey("aqueue_http_state", _State)


def make_app(config: HttpConfig) -> web.Application:
    """The aiohttp application; it connects to Redis when it starts."""
    app = web.Application(client_max_size=config.max_body_bytes, middlewares=[_errors_and_auth])
    app[STATE] = _State(config)
    app.cleanup_ctx.append(_lifetime)
    app.on_shutdown.append(_closing)
    _add_routes(app)
    return app


async def _lifetime(app: web.Application) -> AsyncIterator[None]:
    state = app[STATE]
    config = state.config
    name = f"aqueue-http-{os.getpid()}"
    async with open_store(
        config.redis_url, config.queue, config.max_connections, name=name, check=False
    ) as store:
        state.store, state.closing, state.lock = store, anyio.Event(), anyio.Lock()
        try:
            with redis_errors("connecting"):
                await store.redis.ping()
        except RedisUnavailable as exc:  # serve anyway: /readyz says so until Redis is back
            log.warning("HTTP service starting while Redis is unavailable: %s", exc)
        try:
            yield
        finally:
            clients, state.clients = state.clients, {}
            for client in clients.values():
                await client.__aexit__(None, None, None)
            state.store = None


async def _closing(app: web.Application) -> None:
    """On shutdown, end the event streams (their browsers reconnect elsewhere)."""
    closing = app[STATE].closing
    if closing is not None:
        closing.set()


# -- errors and auth -------------------------------------------------------------------------

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def _errors_and_auth(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Check the token, then turn every error into JSON: a user's mistake is a 4xx."""
    try:
        _authorize(request, request.app[STATE].config)
        return await handler(request)
    except Problem as problem:
        return problem.response()
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        headers = {k: v for k, v in exc.headers.items() if k.lower() in ("allow", "retry-after")}
        code = HTTPStatus(exc.status).phrase.lower().replace(" ", "_").replace("-", "_")
        detail = {
            404: f"no route for {request.method} {request.path} (see GET /openapi.json)",
            405: f"{request.method} is not allowed on {request.path}",
            413: f"the body is over the limit of {request.app[STATE].config.max_body_bytes} "
            "bytes (post a reference to the data instead)",
        }.get(exc.status, exc.text or exc.reason)
        return Problem(exc.status, code, detail, headers).response()
    except JobNotFound as exc:
        return Problem(404, "job_not_found", str(exc)).response()
    except JobFailed as exc:
        return _failed(exc).response()
    except InvalidTransition as exc:
        return Problem(409, "invalid_transition", str(exc), extra={"status": exc.status}).response()
    except (MessageError, ConfigError) as exc:
        return Problem(422, "invalid", str(exc)).response()
    except RedisUnavailable as exc:
        log.warning("HTTP %s %s: %s", request.method, request.path, exc)
        return Problem(503, "redis_unavailable", str(exc), {"Retry-After": "1"}).response()
    except Exception:
        log.exception("HTTP %s %s failed", request.method, request.path)
        return Problem(500, "internal", "the service failed; its log says why").response()


def _failed(exc: JobFailed) -> Problem:
    return Problem(
        409,
        "job_failed",
        str(exc),
        extra={
            "id": exc.job_id,
            "status": exc.status,
            "error_type": exc.error_type,
            "error_message": exc.error_message,
            "traceback": exc.traceback,
        },
    )


def _authorize(request: web.Request, config: HttpConfig) -> None:
    if config.open or request.path in _OPEN_PATHS:
        return
    token = None
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        token = value.strip()
    elif not header and request.method == "GET" and request.path.endswith("/events"):
        # a browser's EventSource cannot send headers; the access log never shows queries
        token = request.query.get("access_token") or None
    challenge = {"WWW-Authenticate": 'Bearer realm="aqueue"'}
    if token is None:
        raise Problem(401, "unauthorized", "send `Authorization: Bearer <token>`", challenge)
    writes = _matches(token, config.write_tokens)
    reads = _matches(token, config.read_tokens)
    if writes or (reads and request.method in _READ_METHODS):
        return
    if reads:
        raise Problem(403, "forbidden", f"a read-only token cannot {request.method}")
    challenge = {"WWW-Authenticate": 'Bearer realm="aqueue", error="invalid_token"'}
    raise Problem(401, "unauthorized", "the token is not valid", challenge)


def _matches(token: str, tokens: tuple[str, ...]) -> bool:
    """Compare with every token, in constant time each, without stopping at a match."""
    found = False
    for candidate in tokens:
        found |= hmac.compare_digest(token.encode(errors="surrogateescape"), candidate.encode())
    return found


class _AccessLogger(AbstractAccessLogger):
    """One line a request, without the query string (it may carry an access token)."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        self.logger.info(
            "%s %s %s %d %d %.3fs",
            request.remote,
            request.method,
            request.path,
            response.status,
            response.body_length,
            time,
            extra={"http_status": response.status},
        )


# -- requests --------------------------------------------------------------------------------

_POST_FIELDS = (
    *("msg", "queue", "functions", "callback", "priority", "delay", "at"),
    *("timeout", "retry", "key", "ttl"),
)
_RETRY_FIELDS = ("retries", "delay", "backoff", "max_delay", "jitter")
_MSGPACK = frozenset({"application/msgpack", "application/x-msgpack", "application/vnd.msgpack"})


async def _body(request: web.Request) -> dict[Any, Any]:
    """The request body as a dict, from JSON or msgpack; 4xx for anything else."""
    limit = request.app[STATE].config.max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=request.content_length)
    raw = await request.read()
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


def _post_options(body: dict[Any, Any]) -> tuple[str, Any, dict[str, Any]]:
    """Queue, message and `Client.post` options from a POST /jobs body."""
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
    options = {k: body[k] for k in _POST_FIELDS[2:] if body.get(k) is not None}
    for name, low in (("delay", 0), ("timeout", 0), ("ttl", 1)):  # ttl: whole seconds in Redis
        if name in options:
            _number(name, options[name], low, _MAX_SECONDS)
    if isinstance(options.get("at"), str):
        try:
            options["at"] = at = datetime.fromisoformat(options["at"])
        except ValueError:
            raise MessageError(
                f"at must be ISO 8601 or epoch seconds, got {body['at']!r}"
            ) from None
        if at.tzinfo is not None:
            _number("at", at.timestamp(), 0, _MAX_EPOCH)
    elif "at" in options:
        _number("at", options["at"], 0, _MAX_EPOCH)
    if isinstance(options.get("key"), str) and not options["key"].isascii():
        try:
            options["key"].encode()
        except UnicodeEncodeError:  # a lone surrogate from a JSON escape: not text Redis takes
            raise MessageError("key must be valid Unicode text") from None
    retry = options.get("retry")
    if isinstance(retry, dict):
        wrong = [k for k in retry if k not in _RETRY_FIELDS]
        if wrong:
            raise MessageError(f"unknown retry field(s) {wrong!r}; known: {_RETRY_FIELDS}")
        for name in ("delay", "max_delay", "backoff"):
            if name in retry:
                _number(f"retry.{name}", retry[name], 0, _MAX_SECONDS)
        if not isinstance(retry.get("jitter", True), bool):
            raise MessageError(f"retry.jitter must be true or false, got {retry['jitter']!r}")
        options["retry"] = RetryPolicy(**retry)
    elif retry is not None and (isinstance(retry, bool) or not isinstance(retry, int)):
        raise MessageError(f"retry must be a number of retries or an object, got {retry!r}")
    return queue or "", body["msg"], options


async def _check_listeners(client: Client, functions: Any, known: tuple[str, ...] | None) -> None:
    """Refuse listener names no one knows, once someone knows any (a worker, or the config)."""
    names = check_functions(functions)
    everyone = set(known or ())
    if not names or everyone.issuperset(names):
        return
    for raw in await client.store.live_workers():
        info = msgpack.unpackb(raw)
        everyone.update(info.get("listeners", ()))
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
    if not job_id or len(job_id) > 200:  # no job has such an id
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
    queue, msg, options = _post_options(await _body(request))
    client = await state.client(queue or state.config.queue)
    await _check_listeners(client, options.get("functions"), state.config.known_listeners)
    job_id = await client.post(msg, **options)
    url = _job_url(client.queue, job_id, state.config.queue)
    return _json({"id": job_id, "queue": client.queue, "url": url}, 201, {"Location": url})


async def get_job(request: web.Request) -> web.Response:
    client, job_id = await _job_client(request)
    return _json(await client.get_job(job_id))


async def cancel_job(request: web.Request) -> web.Response:
    client, job_id = await _job_client(request)
    before = await client.cancel(job_id)
    return _json({"id": job_id, "queue": client.queue, "status": "cancelled", "was": before})


async def get_progress(request: web.Request) -> web.Response:
    client, job_id = await _job_client(request)
    progress = await client.get_progress(job_id)
    return _json({"id": job_id, "queue": client.queue, "progress": progress})


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


async def get_result(request: web.Request) -> web.Response:
    """The result: the exact bytes of a binary one, JSON otherwise; `result.<ext>` serves
    them with the extension's content type, so that a browser shows or plays them."""
    client, job_id = await _job_client(request)
    ext = request.match_info.get("ext")
    try:
        result = await client.get_result(job_id)
    except InvalidTransition as pending:
        return _pending(client, job_id, pending.status)
    kind = "application/octet-stream"
    if ext is not None:
        kind = _TYPES.guess_type(f"result.{ext.lower()}", strict=False)[0] or kind
    if kind == "application/json" and not isinstance(result, bytes):
        return _json(result)
    if ext is None and not isinstance(result, bytes):
        return _json(result)
    if isinstance(result, str):  # e.g. result.txt, result.csv, result.html of a text result
        result = result.encode()
        kind += "; charset=utf-8" if kind.startswith("text/") else ""
    if not isinstance(result, bytes):
        raise Problem(
            406,
            "not_binary",
            f"the result of job {job_id!r} is a {type(result).__name__}, not bytes: "
            "GET its /result (JSON) instead",
        )
    headers = {
        "Content-Type": kind,
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": "sandbox",  # a result is data, never a page that runs code
    }
    return web.Response(body=result, headers=headers)


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
    view = Store(store.redis, name)  # the same connections, another queue
    status = QueueStatus.build(name, await view.snapshot(), await view.live_workers())
    return {**jsonable(status), "attention": status.attention}


def _store(request: web.Request) -> Store:
    store = request.app[STATE].store
    if store is None:
        raise RedisUnavailable("the service is not started")
    return store


async def dead_letters(request: web.Request) -> web.Response:
    client = await request.app[STATE].client(request.match_info["name"])
    offset = _int_param(request, "offset", 0, 0, 10**9)
    count = _int_param(request, "count", 100, 1, 1000)
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
    if len(job_id) > 200:
        raise JobNotFound(job_id, client.queue)
    before = await client.requeue(job_id)
    return _json({"id": job_id, "queue": client.queue, "status": "queued", "was": before})


async def healthz(request: web.Request) -> web.Response:
    return _json({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    with anyio.move_on_after(2):
        with redis_errors("PING"):
            await _store(request).redis.ping()
        return _json({"status": "ready"})
    raise RedisUnavailable("Redis did not answer PING within 2 s")


async def openapi(request: web.Request) -> web.Response:
    return _json(openapi_spec())


# -- Server-Sent Events ----------------------------------------------------------------------


async def job_events(request: web.Request) -> web.StreamResponse:
    """Server-Sent Events of a job: `progress` and `status` as they happen, then `outcome`.

    Each event has an id `<n>:<status>` (a counter, and the job's status when it was sent).
    Progress is a level, not a log: a client that reconnects with `Last-Event-ID` resumes from
    the job's current state (its latest progress and status), not from the events it missed,
    and its ids go on from n. One whose last event was the outcome gets 204 No Content, which
    tells a browser's EventSource to stop reconnecting. A comment every `keepalive` seconds
    keeps proxies from closing an idle stream; the service ends a stream at its shutdown, and
    after `stream_limit` seconds if set: clients reconnect, with the last id they saw.
    """
    state = request.app[STATE]
    client, job_id = await _job_client(request)
    seq, seen = _last_event_id(request.headers.get("Last-Event-ID", ""))
    [raw] = await client.store.statuses([job_id])
    if raw is None:
        raise JobNotFound(job_id, client.queue)
    if seen is not None and seen.is_terminal:
        return web.Response(status=204)
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream; charset=utf-8",
            "Cache-Control": "no-cache, no-transform",
            "X-Accel-Buffering": "no",  # nginx: pass each event on at once
        }
    )
    await response.prepare(request)
    sse = _EventWriter(response, job_id, seq, JobStatus(raw.decode()))
    closing = state.closing or anyio.Event()
    with anyio.move_on_after(state.config.stream_limit):
        await _stream(sse, client, closing, state.config.keepalive)
    with contextlib.suppress(ConnectionResetError):
        await response.write_eof()
    return response


def _last_event_id(value: str) -> tuple[int, JobStatus | None]:
    """The counter and the status of an id `<n>:<status>`; what cannot be read, (0, None)."""
    number, _, status = value.strip()[:64].partition(":")
    seq = int(number) if number.isascii() and number.isdigit() else 0
    return seq, JobStatus(status) if status in set(JobStatus) else None


class _EventWriter:
    def __init__(self, response: web.StreamResponse, job_id: str, seq: int, status: JobStatus):
        self.response, self.job_id, self.seq, self.status = response, job_id, seq, status

    async def write(self, data: bytes) -> None:
        await self.response.write(data)

    async def event(self, kind: str, data: dict[str, Any]) -> None:
        self.seq += 1
        body = _dumps({"id": self.job_id, **data})
        await self.write(f"id: {self.seq}:{self.status}\nevent: {kind}\ndata: {body}\n\n".encode())


async def _stream(
    sse: _EventWriter, client: Client, closing: anyio.Event, keepalive: float
) -> None:
    send, receive = anyio.create_memory_object_stream[JobEvent | Exception](64)
    async with anyio.create_task_group() as tg:
        tg.start_soon(_pump, client, sse.job_id, send)
        tg.start_soon(_cancel_on, closing, tg.cancel_scope)
        with receive:
            try:
                await sse.write(b"retry: 3000\n\n")
                await _relay(sse, client, receive, keepalive)
            except ConnectionResetError:  # the browser went away
                log.debug("event stream of job %s closed by the client", sse.job_id)
        tg.cancel_scope.cancel()


async def _relay(
    sse: _EventWriter,
    client: Client,
    receive: MemoryObjectReceiveStream[JobEvent | Exception],
    keepalive: float,
) -> None:
    """Write each event as it comes, a comment while none does; return after the outcome."""
    while True:
        with anyio.move_on_after(keepalive) as idle:
            try:
                item = await receive.receive()
            except anyio.EndOfStream:
                return
        if idle.cancelled_caught:
            await sse.write(b": keep-alive\n\n")
        elif isinstance(item, Exception):
            await sse.event("error", {"error": type(item).__name__, "detail": str(item)})
            return
        elif item.progress is not None:
            progress = {"value": item.progress.value, "message": item.progress.message}
            await sse.event("progress", progress)
        elif item.status is not None:
            sse.status = item.status
            if not item.is_final:
                await sse.event("status", {"status": item.status})
            else:
                await sse.event("outcome", await _outcome(client, sse.job_id, item.status))
                return


async def _pump(
    client: Client, job_id: str, send: MemoryObjectSendStream[JobEvent | Exception]
) -> None:
    with send:
        try:
            async with contextlib.aclosing(client.watch(job_id)) as events:
                async for event in events:
                    await send.send(event)
        except AqueueError as exc:  # gone (expired, purged), or Redis lost for good
            await send.send(exc)
        except Exception as exc:  # the stream has begun: tell its reader, never a 500
            log.exception("event stream of job %s failed", job_id, extra={"job_id": job_id})
            await send.send(exc)


async def _cancel_on(event: anyio.Event, scope: anyio.CancelScope) -> None:
    await event.wait()
    scope.cancel()


async def _outcome(client: Client, job_id: str, status: JobStatus) -> dict[str, Any]:
    try:
        job = await client.get_job(job_id)
    except AqueueError:
        return {"status": status}
    if status is JobStatus.COMPLETE:
        return {"status": status, "short_result": job.short_result}
    return {"status": status, "error_type": job.error_type, "error_message": job.error_message}


# -- routes and serving ----------------------------------------------------------------------


def _add_routes(app: web.Application) -> None:
    app.router.add_post("/jobs", post_job)
    app.router.add_get("/jobs/{id}", get_job)
    app.router.add_delete("/jobs/{id}", cancel_job)
    app.router.add_get("/jobs/{id}/progress", get_progress)
    app.router.add_get("/jobs/{id}/short_result", get_short_result)
    app.router.add_get("/jobs/{id}/result", get_result)
    app.router.add_get(r"/jobs/{id}/result.{ext:[A-Za-z0-9]{1,16}}", get_result)
    app.router.add_get("/jobs/{id}/events", job_events, allow_head=False)  # a HEAD never ends
    app.router.add_get("/queues", list_queues)
    app.router.add_get("/queues/{name}", get_queue)
    app.router.add_get("/queues/{name}/dead", dead_letters)
    app.router.add_post("/queues/{name}/dead/{id}/requeue", requeue)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/openapi.json", openapi)


async def serve_http(
    config: HttpConfig, *, task_status: TaskStatus[int] = anyio.TASK_STATUS_IGNORED
) -> None:
    """Serve until cancelled; `task_status.started(port)` once listening (the bound port, which
    is the free one picked when `config.port` is 0)."""
    runner = web.AppRunner(
        make_app(config),
        handle_signals=False,  # signals belong to the process edge (the daemon)
        access_log_class=_AccessLogger,
        shutdown_timeout=config.shutdown_timeout,
    )
    await runner.setup()
    try:
        site = web.TCPSite(runner, config.host, config.port)
        await site.start()
        port = int(runner.addresses[0][1])
        log.info("HTTP service listening on %s:%d", config.host, port)
        task_status.started(port)
        await anyio.sleep_forever()
    finally:
        with anyio.CancelScope(shield=True):
            await runner.cleanup()
