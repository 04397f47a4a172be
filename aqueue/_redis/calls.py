"""What the scripts take and answer, as Python values: the rows of a post, a claim, a push and
a finish, and how a call is cut to size. Pure: store.py sends and reads them.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, cast

import msgpack

from aqueue._redis.records import SpecShape
from aqueue._states import Event
from aqueue.config import MOST_UNSERVED_LANES, ClientConfig
from aqueue.errors import MessageError

Arg = str | bytes | int | float
FINISH_BATCH = 1000  # outcomes per finish call: its batched reads stay within Lua's limits
# of specs or outcomes per script call: Redis runs a call whole (others wait), and takes no
# argument over its proto-max-bulk-len (512 MB by default)
MOST_CALL_BYTES = 1 << 20
DEFAULT_TTL_S = int(ClientConfig().result_ttl)  # a record's, where its spec cannot say


@dataclass(frozen=True, slots=True)
class NewJobs:
    """One post: jobs that share everything but their id, key and spec (sent once)."""

    signature: str
    priority: int
    delay_ms: int
    at_ms: int
    watched: bool  # a client awaits them (see watch.lua)
    fields: Sequence[Arg]  # flat field, value pairs that every job's record starts with
    jobs: Sequence[tuple[str, str, bytes]]  # (id, key or "", spec: _records.SpecShape.pack)
    # a post to a lane no live worker serves is refused past this many such lanes (post.lua)
    most_unserved_lanes: int = MOST_UNSERVED_LANES


@dataclass(frozen=True, slots=True)
class Claimed:
    id: str
    attempt: int
    msg: bytes
    functions: tuple[str, ...]
    timeout_ms: int
    max_attempts: int
    released: int
    retry: bytes
    ttl_s: int  # how long its record is kept once it ends
    calls_back: bool  # it has a callback (its end goes to the outbox)
    unreadable: str = ""  # why its spec cannot be read: it fails without running

    def outcome(
        self,
        kind: Event,
        delay_ms: int = 0,
        fields: Sequence[str | bytes] = (),
        *,
        chunked: bool = False,
        outputs: bytes = b"",
    ) -> Outcome:
        """How this attempt ended, for finish.lua."""
        return Outcome(
            self.id, self.attempt, kind, delay_ms, fields,
            self.ttl_s, self.calls_back, self.max_attempts, chunked, outputs,
        )  # fmt: skip


@dataclass(frozen=True, slots=True)
class ClaimResult:
    now_ms: int
    next_due_ms: int | None
    jobs: list[Claimed]
    full: bool  # took all it was asked for: more may be ready
    # suspects this worker can run wait (reap.lua): it is to drain, then claim them alone
    suspects: bool = False


@dataclass(frozen=True, slots=True)
class Reaped:
    """What one reap pass did (see reap.lua)."""

    requeued: int
    dead: int  # buried ones included
    promoted: int
    expired: int
    buried: list[tuple[str, str]]  # (job id, why): dead, as data they need cannot be read


@dataclass(frozen=True, slots=True)
class Outcome:
    id: str
    attempt: int
    kind: Event  # complete | retry | fail | release
    delay_ms: int
    fields: Sequence[str | bytes]  # names and values, for the record
    # from the job's spec, as its claim handed it over: finish.lua then needs not read it
    ttl_s: int
    calls_back: bool
    max_attempts: int
    # complete, its result uploaded in chunks that the finish adopts (sent as kind "chunked")
    chunked: bool = False
    # complete, with outputs to forward to other queues: `pack_outputs`'s, stored as it is
    outputs: bytes = b""


def finish_calls(outcomes: Sequence[Outcome]) -> Iterator[Sequence[Outcome]]:
    """Outcomes in calls of at most FINISH_BATCH, cut before MOST_CALL_BYTES of fields (a call
    holds one outcome at least, whatever its size)."""
    start, size = 0, 0
    for end, outcome in enumerate(outcomes):
        grown = size
        for field in outcome.fields:  # a loop: sum() of a generator costs 4 times as much
            grown += len(field)
        grown += len(outcome.outputs)
        if end > start and (end - start == FINISH_BATCH or grown > MOST_CALL_BYTES):
            yield outcomes[start:end]
            start, grown = end, grown - size
        size = grown
    if start < len(outcomes):
        yield outcomes[start:]


def pack_outputs(outputs: Sequence[tuple[str, Sequence[bytes]]], tag: str = "") -> bytes:
    """A job's outputs as finish.lua stores them and the forwarder reads them (`unpack_outputs`):
    per queue, its encoded messages in order; and a `tag` that their ids are derived with too
    (a routed error's attempt: see the forwarder's output_id)."""
    entries = [[queue, list(messages), tag] for queue, messages in outputs]
    return cast(bytes, msgpack.packb(entries, use_bin_type=False))


def unpack_outputs(packed: bytes) -> list[tuple[str, list[bytes], str]]:
    """`pack_outputs`'s outputs; MessageError naming what is wrong with an entry this build
    cannot read (a hostile client's, a newer build's)."""
    try:
        entries = msgpack.unpackb(packed, raw=True)
    except Exception as exc:  # msgpack's errors have no common base but Exception
        raise MessageError(f"outputs are not msgpack: {exc!r}") from None
    if type(entries) is not list:
        raise MessageError(f"outputs are not an array: {type(entries).__name__}")
    outputs = []
    for entry in entries:
        if (
            type(entry) is not list
            or len(entry) != 3
            or type(entry[0]) is not bytes
            or type(entry[1]) is not list
            or any(type(m) is not bytes for m in entry[1])
            or type(entry[2]) is not bytes
        ):
            raise MessageError(
                f"an output entry is not [queue, [message, ...], tag]: {entry!r:.200}"
            )
        outputs.append((entry[0].decode("utf-8", "replace"), entry[1], entry[2].decode()))
    return outputs


def values(items: Sequence[Arg]) -> bytes:
    """Items as msgpack values one after another (an array without its header)."""
    packed: bytes = msgpack.packb(list(items), use_bin_type=False)  # see post
    n = len(items)
    return packed[1 if n < 16 else 3 if n < 65536 else 5 :]  # the array header's length


def spec_fields(spec: bytes) -> dict[str, bytes]:
    """A job's spec as the record fields it stands for (see `_records.decode_job`)."""
    try:
        msg, shape = SpecShape.unpack(spec)
    except MessageError as exc:  # the record stays readable: decode_job flags it
        return {"spec_error": str(exc).encode()}
    return {
        "msg": msg,
        "fns": shape.functions.encode(),
        "timeout": str(shape.timeout_ms).encode(),
        "max_att": str(shape.max_attempts).encode(),
    }


def claimed_rows(raw: Sequence[Any]) -> list[Claimed]:
    """Jobs as claim.lua returns them and post.lua pushes them to a waiting worker: 4 values
    each (id, attempt, released, spec)."""
    jobs = []
    for i in range(0, len(raw), 4):
        id_, attempt, released, spec = raw[i : i + 4]
        try:
            msg, shape = SpecShape.unpack(spec)
        except MessageError as exc:  # costs that job alone (the worker fails it)
            jobs.append(unreadable_claim(text(id_), int(attempt), int(released), str(exc)))
            continue
        jobs.append(
            Claimed(
                id=text(id_),
                attempt=int(attempt),
                msg=msg,
                functions=tuple(f for f in shape.functions.split(",") if f),
                timeout_ms=shape.timeout_ms,
                max_attempts=shape.max_attempts,
                released=int(released),
                retry=shape.retry,
                ttl_s=shape.ttl_s,
                calls_back=bool(shape.callback),
            )
        )
    return jobs


def unreadable_claim(job_id: str, attempt: int, released: int, why: str) -> Claimed:
    """A claimed job whose spec cannot be read: nothing of it is known but its lease."""
    return Claimed(
        id=job_id, attempt=attempt, msg=b"", functions=(), timeout_ms=0, max_attempts=1,
        released=released, retry=b"", ttl_s=DEFAULT_TTL_S, calls_back=False,
        unreadable=why,
    )  # fmt: skip


def text(value: Any) -> str:
    # errors="replace": an entry someone wrote that is not UTF-8 names no job, and fails nothing
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)
