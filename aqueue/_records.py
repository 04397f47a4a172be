"""How a job is laid out in its Redis hash: the fields a post writes, and reading them back."""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import msgpack

from . import _codec
from ._checks import seconds, whole
from .errors import TEN_YEARS, MessageError
from .job import Job, JobStatus, Progress
from .retry import DEFAULT_POLICY, RetryPolicy

_LISTENER_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.:\-]{0,199}$")
_DEFAULT_RETRY = _codec.encode(
    [DEFAULT_POLICY.delay, DEFAULT_POLICY.backoff, DEFAULT_POLICY.max_delay, DEFAULT_POLICY.jitter]
)


@dataclass(frozen=True, slots=True)
class SpecShape:
    """What a job's spec holds besides its message (see `_store.pack_spec`)."""

    functions: str  # listener names in the order they run
    timeout_ms: int  # 0: none
    max_attempts: int
    retry: bytes  # the encoded policy, b"": the default
    ttl_s: int
    callback: str  # "": none

    def pack(self, msg: bytes) -> bytes:
        """The job's spec, kept in the queue's `spec` hash as long as the job: what a claim
        hands a worker and what the job's end needs (ttl, callback), packed once by the
        poster so that the scripts only move it along (claim.lua, finish.lua read it)."""
        return cast(
            bytes,
            msgpack.packb(
                [msg, self.functions, self.timeout_ms, self.max_attempts, self.retry,
                 self.ttl_s, self.callback],
                use_bin_type=False,  # Lua's cmsgpack predates the bin types; raw str is safe
            ),
        )  # fmt: skip

    @classmethod
    def unpack(cls, spec: bytes) -> tuple[bytes, SpecShape]:
        """A packed spec's message and shape."""
        msg, fns, timeout, max_att, retry, ttl, callback = msgpack.unpackb(spec, raw=True)
        return msg, cls(fns.decode(), timeout, max_att, retry, ttl, callback.decode())


def check_functions(functions: Sequence[str] | None) -> tuple[str, ...]:
    if functions is None:
        return ()
    if isinstance(functions, str) or not isinstance(functions, Sequence):
        raise MessageError(f"functions must be a list of listener names, got {functions!r}")
    for name in functions:
        if not isinstance(name, str) or not _LISTENER_NAME.match(name):
            raise MessageError(
                f"listener name {name!r} is invalid: start with a letter or '_', then letters, "
                "digits, '_', '.', ':' or '-'"
            )
    return tuple(functions)


def signature(functions: Sequence[str]) -> str:
    """The lane a job waits in: the set of listeners it needs, sorted."""
    return ",".join(sorted(set(functions)))


def check_callback(url: str | None) -> str:
    if url is None:
        return ""
    import yarl  # lazily: only posts with a callback need it (the memory of idle workers)

    try:
        parsed = yarl.URL(url)
        url.encode()  # a lone surrogate (from a JSON escape) is no text Redis or HTTP takes
        host = parsed.host  # decodes an IDNA name: "xn--" and "xn--lcalhost-" are not names
        if host:
            host.encode("idna")  # as the resolver will: ".." and ".a" have an empty label
    except (TypeError, ValueError) as exc:  # UnicodeError is a ValueError
        raise MessageError(f"callback {url!r} is not a URL: {exc}") from None
    if parsed.scheme not in ("http", "https") or not host:
        raise MessageError(f"callback {url!r} must be an absolute http:// or https:// URL")
    if not all(c.isalnum() or c in "-._~[]:%" for c in parsed.raw_host or ""):
        # yarl takes any text as a host ("\x00", "a b"): no delivery to it could succeed
        raise MessageError(f"callback {url!r} has no valid host name")
    return url


def check_callback_method(method: str) -> str:
    if method not in ("GET", "POST"):
        raise MessageError(f"callback_method must be 'GET' or 'POST', got {method!r}")
    return method


def remembered_job_fields(**options: Any) -> tuple[tuple[str | bytes | int, ...], str, SpecShape]:
    """`new_job_fields`, remembered: an app posts with the same few option sets over and over,
    and checking and laying one out was a third of a post's own time in Python."""
    if isinstance(options.get("functions"), list):
        options["functions"] = tuple(options["functions"])
    try:
        return new_job_fields(**options)
    except TypeError:  # an unhashable option: not a valid one either, as the checks will say
        return new_job_fields.__wrapped__(**options)


@functools.lru_cache(maxsize=256, typed=True)  # typed: True is no priority 1, nor 1.0 a 1
def new_job_fields(
    *,
    functions: Sequence[str] | None,
    callback: str | None,
    callback_method: str,
    priority: int,
    timeout: float | None,
    retry: RetryPolicy,
    ttl: float,
) -> tuple[tuple[str | bytes | int, ...], str, SpecShape]:
    """The hash fields every job of one post shares, its lane signature, and its spec's
    fields but the message (see `SpecShape.pack`)."""
    names = check_functions(functions)
    whole("priority", priority, error=MessageError)
    if timeout is not None:
        seconds("timeout", timeout, least=0.001)  # under 1 ms it would be none (0)
    if isinstance(ttl, bool) or not isinstance(ttl, int | float) or not 1 <= ttl <= TEN_YEARS:
        raise MessageError(f"ttl must be from 1 to {TEN_YEARS} seconds (ten years), got {ttl!r}")
    # Only what differs from the defaults is stored (a missing field reads as its default):
    # every field costs Redis memory and CPU on each post of a 1M-job backlog.
    # Numbers go as text: Lua would format them for Redis with "%.14g", slowly, per job.
    lane = signature(names)
    # The record holds what scripts other than claim and finish read (lane, priority,
    # callback); the rest is in the job's spec (SpecShape), which only they read.
    fields: list[str | bytes | int] = []
    if priority:
        fields += ["prio", str(priority)]
    encoded_retry = _codec.encode([retry.delay, retry.backoff, retry.max_delay, retry.jitter])
    if callback is not None:
        fields += ["cb", check_callback(callback)]
        if check_callback_method(callback_method) != "GET":
            fields += ["cbm", callback_method]
    else:
        check_callback_method(callback_method)
    spec = SpecShape(
        functions=",".join(names),
        timeout_ms=0 if timeout is None else max(1, int(timeout * 1000)),
        max_attempts=retry.max_attempts,
        retry=b"" if encoded_retry == _DEFAULT_RETRY else encoded_retry,
        ttl_s=max(1, int(ttl)),
        callback=callback or "",
    )
    return tuple(fields), lane, spec


def retry_policy(encoded: bytes, max_attempts: int) -> RetryPolicy:
    """The policy a job was posted with (b"": the default's delays, not stored)."""
    delay, backoff, max_delay, jitter = _codec.decode(encoded or _DEFAULT_RETRY)
    return RetryPolicy(max_attempts - 1, delay, backoff, max_delay, jitter)


def _s(fields: Mapping[str, bytes], name: str) -> str | None:
    raw = fields.get(name)
    return raw.decode(errors="replace") if raw else None


def _seconds(fields: Mapping[str, bytes], name: str) -> float | None:
    raw = fields.get(name)
    return int(raw) / 1000 if raw and raw != b"0" else None


def _value(fields: Mapping[str, bytes], name: str) -> Any:
    raw = fields.get(name)
    return None if raw is None else _codec.decode(raw)


def _result(raw: bytes | None) -> dict[str, Any]:
    """A record's result, and its size; a large one's chunks (see _results.py) are not read."""
    if raw is None:
        return {}
    if raw[:1] == _codec.REF:  # a reference to its chunks, [size, chunks]
        try:
            size = msgpack.unpackb(raw[1:])[0]
        except (ValueError, TypeError, LookupError, msgpack.UnpackException):
            size = None
        return {"result_bytes": size if isinstance(size, int) else None}
    return {"result": _codec.decode(raw), "result_bytes": len(raw)}


def posted_ms(posted: bytes) -> int:
    """When a job was posted, from its record's `posted`: "ms|score|sig" (see lane_of in
    lua/_lib.lua), or "ms" alone in an older version's records."""
    return int(posted.split(b"|", 1)[0])


def decode_job(job_id: str, queue: str, f: Mapping[str, bytes]) -> Job:
    # "worker|attempt|started ms": the latest attempt (the `running` entry while it runs)
    worker, attempt, started = (_s(f, "ran") or "||").rsplit("|", 2)
    # "ms|score|sig" (an older version's records: "ms", and a `sig` of their own)
    lane = (_s(f, "posted") or "").split("|", 2)[2:] or [_s(f, "sig") or ""]
    progress = None
    if "progress" in f:
        progress = Progress(_value(f, "progress"), _s(f, "progress_msg"))
    return Job(
        id=job_id,
        queue=queue,
        status=JobStatus(f["status"].decode()),
        msg=_value(f, "msg"),
        functions=tuple(n for n in (_s(f, "fns") or lane[0]).split(",") if n),
        priority=int(f.get("prio", b"0")),
        attempt=int(attempt or 0),
        max_attempts=int(f.get("max_att", b"1")),
        timeout=_seconds(f, "timeout"),
        callback=_s(f, "cb"),
        key=_s(f, "key"),
        posted_at=posted_ms(f["posted"]) / 1000,
        started_at=int(started) / 1000 if started else None,
        finished_at=_seconds(f, "finished"),
        due_at=_seconds(f, "due"),
        worker=worker or None,
        progress=progress,
        short_result=_s(f, "short"),
        **_result(f.get("result")),
        error_type=_s(f, "err_type"),
        error_message=_s(f, "err_msg"),
        traceback=_s(f, "err_tb"),
        reason=_s(f, "reason"),
        callback_method=_s(f, "cbm") or "GET",
        callback_state=_s(f, "cb_state"),
        callback_attempts=int(f.get("cb_attempts", b"0")),
    )
