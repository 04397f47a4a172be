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

import hmac
import logging
import os
import re
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from http import HTTPStatus

import anyio
from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from anyio.abc import TaskStatus

from aqueue._http.base import _OPEN_PATHS, _READ_METHODS, STATE, Problem, _failed, _State
from aqueue._http.base import HttpConfig as HttpConfig
from aqueue._http.events import job_events
from aqueue._http.jobs import (
    _MSGPACK,
    cancel_job,
    dead_letters,
    get_data,
    get_job,
    get_progress,
    get_queue,
    get_result,
    get_short_result,
    get_trace,
    healthz,
    list_queues,
    openapi,
    post_job,
    readyz,
    requeue,
)
from aqueue._redis.connection import open_store
from aqueue._redis.pubsub import SharedSubscription
from aqueue._redis.store import redis_errors
from aqueue.errors import (
    ConfigError,
    DataNotFound,
    InvalidTransition,
    JobFailed,
    JobNotFound,
    MessageError,
    RedisUnavailable,
    UnreadableData,
)

log = logging.getLogger(__name__)

# -- the application ------------------------------------------------------------------------


def make_app(config: HttpConfig) -> web.Application:
    """The aiohttp application; it connects to Redis when it starts."""
    app = web.Application(client_max_size=config.max_body_bytes, middlewares=[_errors_and_auth])
    app[STATE] = _State(config)
    app.cleanup_ctx.append(_lifetime)
    app.on_shutdown.append(_closing)
    app.on_response_prepare.append(_no_sniffing)
    _add_routes(app)
    return app


async def _lifetime(app: web.Application) -> AsyncIterator[None]:
    state = app[STATE]
    config = state.config
    name = f"aqueue-http-{os.getpid()}"
    async with open_store(
        config.redis_url,
        config.queue,
        config.max_connections,
        name=name,
        check=False,
        pool_timeout=config.pool_timeout,
    ) as store:
        state.store, state.closing, state.lock = store, anyio.Event(), anyio.Lock()
        state.subscription = SharedSubscription(store)
        try:
            with redis_errors("connecting"):
                await store.redis.ping()
        except RedisUnavailable as exc:  # serve anyway: /readyz says so until Redis is back
            log.warning("HTTP service starting while Redis is unavailable: %s", exc)
        try:
            yield
        finally:
            clients, state.clients = state.clients, OrderedDict()
            for client in clients.values():
                await client.__aexit__(None, None, None)
            await state.subscription.aclose()
            state.store = state.subscription = None


async def _no_sniffing(request: web.Request, response: web.StreamResponse) -> None:
    """Every answer is what its Content-Type says: a browser must not guess a page in it."""
    response.headers["X-Content-Type-Options"] = "nosniff"


async def _closing(app: web.Application) -> None:
    """On shutdown, end the event streams (their browsers reconnect elsewhere), and give the
    other requests `shutdown_timeout` to finish: aiohttp waits that long for them, then as
    long again once it has asked them to stop, which a handler waiting on Redis does not
    hear (a service whose Redis stopped answering took twice its timeout to stop)."""
    state = app[STATE]
    if state.closing is not None:
        state.closing.set()
    timeout = state.config.shutdown_timeout
    # a little inside aiohttp's wait, so that the 503 is written before it stops waiting
    deadline = anyio.current_time() + timeout - min(0.5, timeout / 2)
    for scope in state.in_flight:
        scope.deadline = min(scope.deadline, deadline)


# -- errors and auth -------------------------------------------------------------------------

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def _errors_and_auth(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Check the token, then turn every error into JSON: a user's mistake is a 4xx."""
    try:
        config = request.app[STATE].config
        if config.open:
            _refuse_other_sites(request, config)
        _authorize(request, config)
        return await _until_shutdown(request, handler)
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
    except DataNotFound as exc:
        return Problem(404, "data_not_found", str(exc)).response()
    except JobFailed as exc:
        return _failed(exc).response()
    except InvalidTransition as exc:
        return Problem(409, "invalid_transition", str(exc), extra={"status": exc.status}).response()
    except (MessageError, ConfigError) as exc:
        return Problem(422, "invalid", str(exc)).response()
    except UnreadableData as exc:  # a stored value this build cannot decode: that one alone
        return Problem(422, "unreadable_data", str(exc)).response()
    except RedisUnavailable as exc:
        log.warning("HTTP %s %s: %s", request.method, request.path, exc)
        return Problem(503, "redis_unavailable", str(exc), {"Retry-After": "1"}).response()
    except Exception:
        log.exception("HTTP %s %s failed", request.method, request.path)
        return Problem(500, "internal", "the service failed; its log says why").response()


async def _until_shutdown(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The handler's answer; a 503 if the service stopped before it came (see `_closing`)."""
    state = request.app[STATE]
    with anyio.CancelScope() as scope:
        state.in_flight.add(scope)
        try:
            return await handler(request)
        finally:
            state.in_flight.discard(scope)
    detail = "the service stopped before this request was answered"
    raise Problem(503, "shutting_down", detail, {"Retry-After": "1"})


# The names a loopback service is reached by; Host carries IPv6 ones in brackets.
_LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
_BODY_TYPES = frozenset({"application/json", *_MSGPACK})
_HOST = re.compile(
    r"^(?:\[(?P<ipv6>[0-9A-Fa-f:.]+)\]|(?P<name>[A-Za-z0-9.-]+))(?::(?P<port>\d+))?$"
)


def _refuse_other_sites(request: web.Request, config: HttpConfig) -> None:
    """What lets a web page in another tab use a service without tokens, refused.

    A DNS-rebinding page (evil.example resolved to 127.0.0.1) is same-origin to the browser,
    so only the Host it sends gives it away: it must be one of the bind's own names, with its
    port. Any page may POST cross-site without asking (a form, or fetch with no-cors), but only
    with a text/plain, form or absent Content-Type: JSON or msgpack needs a CORS preflight,
    which the service never grants. DELETE always needs one.
    """
    transport = request.transport
    sockname = transport.get_extra_info("sockname") if transport is not None else None
    port = sockname[1] if sockname else 0
    host = request.headers.get("Host", "")
    named = _HOST.match(host)
    name = (named["ipv6"] or named["name"]).lower() if named else None
    named_port = int(named["port"] or 80) if named else None
    if name not in _LOOPBACK_NAMES | {config.host.lower()} or named_port != port:
        raise Problem(
            421,
            "misdirected_request",
            f"Host {host!r} is not this service's: reach it as 127.0.0.1:{port}, "
            f"localhost:{port} or [::1]:{port} (a service without tokens answers no other "
            "name, so that a web page cannot reach it through a name of its own)",
        )
    if request.method == "POST" and request.content_type not in _BODY_TYPES:
        given = request.headers.get("Content-Type", "none")
        raise Problem(
            415,
            "unsupported_media_type",
            "a POST to a service without tokens needs Content-Type application/json or "
            f"application/msgpack, even without a body (got {given!r}): a web page cannot "
            "send those to it from another site",
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


# -- routes and serving ----------------------------------------------------------------------


def _add_routes(app: web.Application) -> None:
    app.router.add_post("/jobs", post_job)
    app.router.add_get("/jobs/{id}", get_job)
    app.router.add_delete("/jobs/{id}", cancel_job)
    app.router.add_get("/jobs/{id}/progress", get_progress)
    app.router.add_get("/jobs/{id}/trace", get_trace)
    app.router.add_get("/jobs/{id}/short_result", get_short_result)
    app.router.add_get("/jobs/{id}/result", get_result)
    app.router.add_get(r"/jobs/{id}/result.{ext:[A-Za-z0-9]{1,16}}", get_result)
    app.router.add_get("/jobs/{id}/events", job_events, allow_head=False)  # a HEAD never ends
    app.router.add_get("/data/{key}", get_data)
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
        # aiohttp closes a connection that sends no whole request head within this of its
        # opening or its last answer: the header-read timeout, against slow-sending clients
        keepalive_timeout=config.header_timeout,
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
