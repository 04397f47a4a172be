"""What the HTTP service's parts share: its configuration, its error type, JSON answers
and the per-application state."""

from __future__ import annotations

import ipaddress
import json
import mimetypes
import re
from collections import OrderedDict
from dataclasses import dataclass, replace
from typing import Any

import anyio
from aiohttp import web

from aqueue._checks import whole
from aqueue._output import plain as _plain
from aqueue._redis.keys import check_queue_name
from aqueue._redis.pubsub import SharedSubscription
from aqueue._redis.records import check_functions
from aqueue._redis.store import Store
from aqueue.client import Client
from aqueue.config import ClientConfig, Durability
from aqueue.errors import (
    ConfigError,
    JobFailed,
    MessageError,
    RedisUnavailable,
)

_TOKEN = re.compile(r"^[A-Za-z0-9\-._~+/]{16,}=*$")  # RFC 6750 b64token, at least 16 chars
_OPEN_PATHS = frozenset({"/healthz", "/readyz"})
_READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# Clients kept for the queues asked about lately: a client costs a few kB, and a read token
# may ask about any number of queue names (each new one grew the service by ~4 kB for good).
CACHED_CLIENTS = 256
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
# What a browser only shows or plays: any other type a result is served as (text/html,
# image/svg+xml, text/xml, text/javascript, application/pdf, ...) may run a page's code on
# the service's origin, so it is downloaded instead (besides CSP sandbox and nosniff).
_SHOWN_KINDS = ("image/", "audio/", "video/")
_SHOWN_TYPES = frozenset({"text/plain", "text/csv", "application/json"})


def result_headers(kind: str, ext: str | None) -> dict[str, str]:
    """The headers of a result served as `kind` (its `result.<ext>`, if named so)."""
    headers = {
        "Content-Type": kind,
        "Content-Security-Policy": "sandbox",  # a result is data, never a page that runs code
    }
    media = kind.partition(";")[0]
    shown = media.startswith(_SHOWN_KINDS) and media != "image/svg+xml"
    if not shown and media not in _SHOWN_TYPES:
        headers["Content-Disposition"] = f'attachment; filename="result.{ext or "bin"}"'
    return headers


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
    pool_timeout: float = 5.0  # longest wait for a free one, then 503
    keepalive: float = 15.0  # seconds between SSE keep-alive comments
    # Slow clients: a connection must send a request's head within `header_timeout` of its
    # opening or of its last answer (also how long an idle keep-alive connection is kept);
    # and a request its body within `body_timeout` (else 408).
    header_timeout: float = 10.0
    body_timeout: float = 120.0
    shutdown_timeout: float = 5.0  # how long requests in flight may finish on shutdown
    stream_limit: float | None = None  # end an event stream after this long (it reconnects)
    durable: Durability | None = None  # what every post waits for (ClientConfig.durability)

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
            whole(f"http_{name}", getattr(self, name), label=f"http {name}")
        for name in (
            *("keepalive", "shutdown_timeout", "pool_timeout", "header_timeout"),
            "body_timeout",
        ):
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


def _dumps(value: Any) -> str:
    # ASCII: a lone surrogate (say, in a path echoed in an error) cannot break the encoding
    return json.dumps(_plain(value), ensure_ascii=True, allow_nan=False, default=str)


def _json(value: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        text=_dumps(value), status=status, content_type="application/json", headers=headers
    )


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


class _State:
    """What the handlers share: filled in when the app starts, emptied when it stops."""

    def __init__(self, config: HttpConfig) -> None:
        self.config = config
        self.store: Store | None = None
        self.subscription: SharedSubscription | None = None
        # the clients of the queues asked about lately, least recently used first
        self.clients: OrderedDict[str, Client] = OrderedDict()
        self.closing: anyio.Event | None = None
        self.lock: anyio.Lock | None = None
        # the requests being answered, each in a scope the shutdown gives a deadline
        self.in_flight: set[anyio.CancelScope] = set()

    async def client(self, queue: str) -> Client:
        """The client of `queue`, sharing the service's connection pool and subscription."""
        check_queue_name(queue)
        if self.store is None or self.lock is None or self.subscription is None:
            raise RedisUnavailable("the service is not started")
        async with self.lock:
            client = self.clients.get(queue)
            if client is None:
                config = ClientConfig(queue=queue, redis_url=self.config.redis_url)
                if self.config.durable is not None:
                    d = self.config.durable
                    config = replace(
                        config,
                        replicas=d.replicas,
                        durable_timeout=d.timeout,
                        durable_local=d.local,
                    )
                client = Client.over(self.store.view(queue), config, self.subscription)
                await client.__aenter__()  # opens nothing: it only arms the listener's stop
                self.clients[queue] = client
                if len(self.clients) > CACHED_CLIENTS:
                    # Dropped, not closed: whoever still uses it (an event stream) goes on,
                    # and it leaves the shared subscription when its last one ends.
                    _, oldest = self.clients.popitem(last=False)
                    oldest._events.leave_if_idle()
            else:
                self.clients.move_to_end(queue)
        return client


STATE = web.AppKey("aqueue_http_state", _State)
