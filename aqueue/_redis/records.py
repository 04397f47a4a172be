"""How a job is laid out in its Redis hash: the fields a post writes, and reading them back."""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import msgpack

from aqueue import _codec
from aqueue._checks import LISTENER_NAME, is_number, seconds, whole
from aqueue._redis.wire import Names, Posted, Run
from aqueue.errors import TEN_YEARS, ConfigError, MessageError
from aqueue.job import Job, JobStatus, Progress
from aqueue.retry import DEFAULT_POLICY, RetryPolicy

_LISTENER_NAME = re.compile(LISTENER_NAME)
_DEFAULT_RETRY = _codec.encode(
    [DEFAULT_POLICY.delay, DEFAULT_POLICY.backoff, DEFAULT_POLICY.max_delay, DEFAULT_POLICY.jitter]
)


_SPEC_FIELDS = ("msg", "functions", "timeout_ms", "max_attempts", "retry", "ttl_s", "callback")
_SPEC_TYPES = (bytes, bytes, int, int, bytes, int, bytes)


def _clip(value: Any) -> str:
    """A stored value as an error names it: its repr, cut short."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


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
        """A packed spec's message and shape; MessageError naming what is wrong with one this
        build cannot read (an older or newer build's, a hostile client's)."""
        try:
            fields = msgpack.unpackb(spec, raw=True)
        except Exception as exc:  # msgpack's errors have no common base but Exception
            raise MessageError(f"job spec is not msgpack: {exc!r}") from None
        if type(fields) is not list or len(fields) != len(_SPEC_TYPES):
            shape = f"{len(fields)} fields" if type(fields) is list else type(fields).__name__
            raise MessageError(
                f"job spec is not an array of {len(_SPEC_TYPES)} fields (a newer build's?): "
                f"it has {shape}"
            )
        if tuple(map(type, fields)) != _SPEC_TYPES:  # one comparison on the claim's hot path
            name, value, kind = next(
                (name, value, kind)
                for name, value, kind in zip(_SPEC_FIELDS, fields, _SPEC_TYPES, strict=True)
                if type(value) is not kind
            )
            raise MessageError(f"job spec field {name} is not {kind.__name__}: {_clip(value)}")
        msg, fns, timeout, max_att, retry, ttl, callback = fields
        try:
            return msg, cls(fns.decode(), timeout, max_att, retry, ttl, callback.decode())
        except UnicodeDecodeError as exc:
            raise MessageError(
                f"job spec has a listener or callback that is not text: {exc}"
            ) from None


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
    return Names.kind(functions).text


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


def check_ttl(ttl: float) -> float:
    if isinstance(ttl, bool) or not isinstance(ttl, int | float) or not 1 <= ttl <= TEN_YEARS:
        raise MessageError(f"ttl must be from 1 to {TEN_YEARS} seconds (ten years), got {ttl!r}")
    return ttl


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
    check_ttl(ttl)
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
    """The policy a job was posted with (b"": the default's delays, not stored); ConfigError
    for one this build refuses or cannot read."""
    try:
        delay, backoff, max_delay, jitter = _codec.decode(encoded or _DEFAULT_RETRY, "retry")
    except (ValueError, TypeError) as exc:  # not an envelope, or not four values
        raise ConfigError(f"the job's stored retry policy cannot be read: {exc}") from None
    return RetryPolicy(max_attempts - 1, delay, backoff, max_delay, jitter)


class _Record:
    """A job's stored fields, read so that one this build cannot read costs only itself: it
    reads as its default (a value as its raw bytes), and `unreadable` says which and why."""

    def __init__(self, fields: Mapping[str, bytes]) -> None:
        self.fields = fields
        self.unreadable: dict[str, str] = {}

    def flag(self, name: str, why: str) -> None:
        self.unreadable[name] = f"{_clip(self.fields.get(name))}: {why}"

    def text(self, name: str) -> str | None:
        raw = self.fields.get(name)
        return raw.decode(errors="replace") if raw else None

    def number(self, name: str, default: int = 0) -> int:
        raw = self.fields.get(name)
        if raw is None:
            return default
        try:
            return int(raw)
        except ValueError:
            self.flag(name, "not a whole number")
            return default

    def seconds(self, name: str) -> float | None:  # stored as ms; 0 or absent: none
        ms = self.number(name)
        return ms / 1000 if ms else None

    def value(self, name: str) -> Any:
        raw = self.fields.get(name)
        if raw is None:
            return None
        try:
            return _codec.decode(raw)
        except Exception as exc:  # msgpack's errors have no common base but Exception
            self.flag(name, f"cannot be decoded ({exc})")
            return raw


# what a worker's info (worker.py `_info`) must hold for status, routing and wait reasons
_WORKER_INFO = {"id": str, "queue": str, "listeners": list, "running": list}


def _result(r: _Record) -> dict[str, Any]:
    """A record's result, and its size; a large one's chunks (see _results.py) are not read."""
    raw = r.fields.get("result")
    if raw is None:
        return {}
    if raw[:1] == _codec.REF:  # a reference to its chunks, [size, chunks]
        try:
            size = msgpack.unpackb(raw[1:])[0]
        except (ValueError, TypeError, LookupError, msgpack.UnpackException):
            size = None
        return {"result_bytes": size if isinstance(size, int) else None}
    return {"result": r.value("result"), "result_bytes": len(raw)}


def worker_infos(raws: Sequence[bytes]) -> list[dict[str, Any]]:
    """The workers' infos that can be read; one that cannot (an older or newer build's, a
    hostile write) is passed over: it says nothing of its worker, and costs nothing else."""
    return [info for info in map(_worker_info, raws) if info is not None]


def _worker_info(raw: bytes) -> dict[str, Any] | None:
    try:
        info = msgpack.unpackb(raw)
    except Exception:  # msgpack's errors have no common base but Exception
        return None
    if (
        isinstance(info, dict)
        and all(isinstance(info.get(k), kind) for k, kind in _WORKER_INFO.items())
        and all(is_number(info.get(k)) for k in ("started_at", "processed"))
        and all(isinstance(name, str) for name in info["listeners"])
        and all(
            isinstance(r, list) and len(r) == 3 and isinstance(r[0], str) and is_number(r[2])
            for r in info["running"]
        )
    ):
        return info
    return None


def stored_status(raw: bytes) -> JobStatus:
    """A record's status. One this build does not know (a newer build's?) reads as dead:
    nothing of this build runs or moves it, so it is one for a person to look at."""
    try:
        return JobStatus(raw.decode())
    except ValueError:  # UnicodeDecodeError included
        return JobStatus.DEAD


def posted_ms(posted: bytes) -> int | None:
    """When a job was posted, from its record's `posted` (wire.Posted); None if it cannot be
    read."""
    found = Posted.decode(posted)
    return found.ms if found else None


def output_id(queue: str, job_id: str, target: str, index: int, tag: str = "") -> str:
    """The id of output `index` of job `job_id` of `queue` to `target` (a routed error's:
    `tag`, its attempt): the same each time it is made, as random-looking as a posted job's
    (32 hex digits), and no other job's."""
    made = f"{queue}\n{job_id}\n{target}\n{index}\n{tag}"
    return hashlib.blake2b(made.encode(), digest_size=16).hexdigest()


def pack_forwarded(outputs: Sequence[tuple[str, int, str]]) -> bytes:
    """What a job's outputs were forwarded as (per queue: how many, their tag), noted on its
    record as `out` (forward_done.lua), from which `trace` derives the next stage's ids."""
    return cast(bytes, msgpack.packb([list(entry) for entry in outputs], use_bin_type=False))


def unpack_forwarded(packed: bytes) -> list[tuple[str, int, str]]:
    """`pack_forwarded`'s; [] for what this build cannot read (a trace then stops there)."""
    try:
        entries = msgpack.unpackb(packed, raw=False)
    except Exception:  # msgpack's errors have no common base but Exception
        return []
    if type(entries) is not list:
        return []
    return [
        (e[0], e[1], e[2])
        for e in entries
        if type(e) is list and len(e) == 3 and type(e[0]) is str and type(e[1]) is int
        and type(e[2]) is str
    ]  # fmt: skip


def decode_job(job_id: str, queue: str, f: Mapping[str, bytes]) -> Job:
    """A job from its record. Always a Job: a field that cannot be read (an older or newer
    build's, a hostile write) reads as its default, a message, result or progress value as its
    raw bytes, and `Job.unreadable` names each such field and why."""
    r = _Record(f)
    if "spec_error" in f:  # see _store.spec_fields
        r.unreadable["spec"] = f["spec_error"].decode(errors="replace")
    # the latest attempt (the `running` entry while it runs)
    ran = Run.decode(f["ran"]) if f.get("ran") else None
    if ran is None and f.get("ran"):
        r.flag("ran", "not worker|attempt|started")
    worker, attempt, started = (ran.worker, ran.attempt, ran.started_ms) if ran else ("", 0, 0)
    posted = Posted.decode(f.get("posted") or b"")
    if posted is None:
        r.flag("posted", "not ms|score|lane")
    status = stored_status(f.get("status") or b"")
    if status.encode() != f.get("status"):
        r.flag("status", "not a status this build knows")
    progress = None
    if "progress" in f:
        progress = Progress(r.value("progress"), r.text("progress_msg"))
    return Job(
        id=job_id,
        queue=queue,
        status=status,
        msg=r.value("msg"),
        functions=tuple(
            n for n in (r.text("fns") or (posted.signature if posted else "")).split(",") if n
        ),
        priority=r.number("prio"),
        attempt=attempt,
        max_attempts=r.number("max_att", 1),
        timeout=r.seconds("timeout"),
        callback=r.text("cb"),
        key=r.text("key"),
        posted_at=(posted.ms if posted else 0) / 1000,
        started_at=started / 1000 if started else None,
        finished_at=r.seconds("finished"),
        due_at=r.seconds("due"),
        worker=worker or None,
        progress=progress,
        short_result=r.text("short"),
        **_result(r),
        error_type=r.text("err_type"),
        error_message=r.text("err_msg"),
        traceback=r.text("err_tb"),
        reason=r.text("reason"),
        callback_method=r.text("cbm") or "GET",
        callback_state=r.text("cb_state"),
        callback_attempts=r.number("cb_attempts"),
        outputs=tuple(
            (target, output_id(queue, job_id, target, i, tag))
            for target, count, tag in unpack_forwarded(f.get("out") or b"")
            for i in range(count)
        ),
        root=r.text("root"),
        parent=r.text("parent"),
        stage=r.text("stage"),
        unreadable=r.unreadable,
    )
