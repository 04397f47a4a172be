"""How a job is laid out in its Redis hash: the fields a post writes, and reading them back."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from . import _codec
from .errors import MessageError
from .job import Job, JobStatus, Progress
from .retry import RetryPolicy

TEN_YEARS = 10 * 365 * 86400
_LISTENER_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.:\-]{0,199}$")
_DEFAULT = RetryPolicy()
_DEFAULT_RETRY = _codec.encode(
    [_DEFAULT.delay, _DEFAULT.backoff, _DEFAULT.max_delay, _DEFAULT.jitter]
)


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
    except (TypeError, ValueError) as exc:
        raise MessageError(f"callback {url!r} is not a URL: {exc}") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise MessageError(f"callback {url!r} must be an absolute http:// or https:// URL")
    return url


def check_callback_method(method: str) -> str:
    if method not in ("GET", "POST"):
        raise MessageError(f"callback_method must be 'GET' or 'POST', got {method!r}")
    return method


def new_job_fields(
    *,
    functions: Sequence[str] | None,
    callback: str | None,
    callback_method: str,
    priority: int,
    timeout: float | None,
    retry: RetryPolicy,
    ttl: float,
) -> tuple[list[str | bytes | int], str]:
    """The hash fields every job of one post shares, and its lane signature."""
    names = check_functions(functions)
    if isinstance(priority, bool) or not isinstance(priority, int) or not -100 <= priority <= 100:
        raise MessageError(f"priority must be an int from -100 to 100, got {priority!r}")
    if timeout is not None and (
        isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0
    ):
        raise MessageError(f"timeout must be a number of seconds > 0, got {timeout!r}")
    if isinstance(ttl, bool) or not isinstance(ttl, int | float) or not 1 <= ttl <= TEN_YEARS:
        raise MessageError(f"ttl must be from 1 to {TEN_YEARS} seconds (ten years), got {ttl!r}")
    # Only what differs from the defaults is stored (a missing field reads as its default):
    # every field costs Redis memory and CPU on each post of a 1M-job backlog.
    # Numbers go as text: Lua would format them for Redis with "%.14g", slowly, per job.
    lane = signature(names)
    fields: list[str | bytes | int] = [
        "sig",
        lane,
        "max_att",
        str(retry.max_attempts),
        "ttl",
        str(max(1, int(ttl))),
    ]
    if ",".join(names) != lane:  # the listeners' order matters: they run as a chain
        fields += ["fns", ",".join(names)]
    if priority:
        fields += ["prio", str(priority)]
    if timeout is not None:
        fields += ["timeout", str(max(1, int(timeout * 1000)))]
    encoded_retry = _codec.encode([retry.delay, retry.backoff, retry.max_delay, retry.jitter])
    if encoded_retry != _DEFAULT_RETRY:
        fields += ["retry", encoded_retry]
    if callback is not None:
        fields += ["cb", check_callback(callback)]
        if check_callback_method(callback_method) != "GET":
            fields += ["cbm", callback_method]
    else:
        check_callback_method(callback_method)
    return fields, lane


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


def decode_job(job_id: str, queue: str, f: Mapping[str, bytes]) -> Job:
    progress = None
    if "progress" in f:
        progress = Progress(_value(f, "progress"), _s(f, "progress_msg"))
    return Job(
        id=job_id,
        queue=queue,
        status=JobStatus(f["status"].decode()),
        msg=_value(f, "msg"),
        functions=tuple(n for n in (_s(f, "fns") or _s(f, "sig") or "").split(",") if n),
        priority=int(f.get("prio", b"0")),
        attempt=int(f.get("attempt", b"0")),
        max_attempts=int(f.get("max_att", b"1")),
        timeout=_seconds(f, "timeout"),
        callback=_s(f, "cb"),
        key=_s(f, "key"),
        posted_at=int(f["posted"]) / 1000,
        started_at=_seconds(f, "started"),
        finished_at=_seconds(f, "finished"),
        due_at=_seconds(f, "due"),
        worker=_s(f, "worker"),
        progress=progress,
        short_result=_s(f, "short"),
        result=_value(f, "result"),
        error_type=_s(f, "err_type"),
        error_message=_s(f, "err_msg"),
        traceback=_s(f, "err_tb"),
        reason=_s(f, "reason"),
        callback_method=_s(f, "cbm") or "GET",
        callback_state=_s(f, "cb_state"),
        callback_attempts=int(f.get("cb_attempts", b"0")),
    )
