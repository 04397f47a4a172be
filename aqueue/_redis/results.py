"""Results of any size up to the worker's `max_result_bytes` (at most 2 GiB), and stored data,
read a chunk at a time.

A result whose envelope (aqueue/_codec.py) fits one chunk (CHUNK_BYTES) is stored as it always
was: in its record's `result` field, by the finish that records the outcome (the fast path). A
larger one is uploaded first, in chunks of CHUNK_BYTES, onto a list of its own
(`upload:<id>:<token>`, a token per attempt, so that two attempts never mix), which expires in
case nothing adopts it. Then finish.lua, fenced like every outcome, renames it to `blob:<id>` in
the step that completes the job, and the record's `result` holds a reference to it:
REF + msgpack [size, chunks]. An older build that reads a reference fails loudly (an unknown
envelope version) rather than see no result. A refused outcome deletes its upload; the record's
expiry deletes the blob with it (`forget` in lua/_lib.lua). So no Redis command carries more than
a chunk, and no reader holds a result whole more than it must: HTTP streams it, a Python caller
gets the value built from the chunks (the bytes of a bytes result joined once, never decoded).
"""

from __future__ import annotations

import functools
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import msgpack

from aqueue import _codec
from aqueue._redis.store import Store
from aqueue.config import MIB
from aqueue.errors import JobNotFound, MessageError, MessageTooLarge

CHUNK_BYTES = 4 * MIB  # the most one command carries; a result up to it stays in its record
REF = _codec.REF  # a `result` that refers to its chunks (an envelope is the value itself)
_UPLOAD_GRACE_MS = 86400 * 1000  # an upload outlives its job's ttl by a day, then goes by itself
_PIECES = Sequence[bytes | memoryview]
# msgpack's bin and str headers: the type byte -> (kind, bytes of length after it)
_HEADS = {0xC4: ("bytes", 1), 0xC5: ("bytes", 2), 0xC6: ("bytes", 4)}
_HEADS |= {0xD9: ("str", 1), 0xDA: ("str", 2), 0xDB: ("str", 4)}


def envelope(value: Any, limit: int, remedy: str) -> tuple[int, _PIECES]:
    """A result's envelope as its size and the pieces it is, end to end. A large bytes value
    is not copied: its header, then the value itself. Over `limit`: MessageTooLarge."""
    if isinstance(value, bytes) and len(value) > CHUNK_BYTES:
        # bin 32 (a value of 4 GiB or more would not fit it, and is over any limit below)
        head = _codec.VERSION + b"\xc6" + min(len(value), 2**32 - 1).to_bytes(4, "big")
        pieces: _PIECES = [head, memoryview(value)]
        size = len(head) + len(value)
    else:
        encoded = _codec.encode(value, "result")
        pieces, size = [encoded], len(encoded)
    if size > limit:
        raise MessageTooLarge(size, limit, "result", remedy)
    return size, pieces


def _chunks(pieces: _PIECES) -> Iterator[bytes | memoryview]:
    """The pieces cut into chunks of CHUNK_BYTES (a chunk copied only where pieces meet)."""
    partial: list[bytes | memoryview] = []
    have = 0
    for piece in pieces:
        view = memoryview(piece)
        while len(view):
            take = view[: CHUNK_BYTES - have]
            view = view[len(take) :]
            if not partial and len(take) == CHUNK_BYTES:
                yield take
                continue
            partial.append(take)
            have += len(take)
            if have == CHUNK_BYTES:
                yield b"".join(partial)
                partial, have = [], 0
    if partial:
        yield b"".join(partial)


async def upload(
    store: Store, job_id: str, pieces: _PIECES, size: int, ttl_s: int
) -> list[str | bytes]:
    """Upload a large result's chunks; the outcome fields that finish.lua adopts them by."""
    token = os.urandom(8).hex()
    key = store.keys.upload(job_id, token)
    count = await store.upload_chunks(key, _chunks(pieces), ttl_s * 1000 + _UPLOAD_GRACE_MS)
    # bytes, not str: the reference is an envelope, binary like any result
    return ["result", REF + msgpack.packb([size, count]), "blob", token]


@dataclass(frozen=True, slots=True)
class Stored:
    """An envelope stored whole or in chunks, read a chunk at a time, the first one already."""

    size: int
    count: int  # chunks
    first: bytes
    read: Callable[[int], Awaitable[bytes | None]]  # chunk i (from 1), None: gone
    gone: Callable[[], Exception]  # the error when a chunk is gone (expired, deleted)
    what: str = "value"  # what it is, as an UnreadableData names it

    async def chunks(self) -> AsyncIterator[bytes]:
        yield self.first
        total = len(self.first)
        for index in range(1, self.count):
            chunk = await self.read(index)
            if chunk is None or not chunk:
                raise self.gone()
            total += len(chunk)
            yield chunk
        if total != self.size:  # changed while we read (data overwritten)
            raise self.gone()

    def payload(self) -> tuple[str, int, int] | None:
        """A bytes or str value's ("bytes" | "str", where its bytes start, how many); else None."""
        if len(self.first) < 2 or self.first[:1] != _codec.VERSION:
            return None
        tag = self.first[1]
        if 0xA0 <= tag <= 0xBF:  # a fixstr, of up to 31 bytes
            start, length, kind = 2, tag - 0xA0, "str"
        elif tag not in _HEADS:
            return None
        else:
            kind, width = _HEADS[tag]
            if len(self.first) < 2 + width:
                return None
            start, length = 2 + width, int.from_bytes(self.first[2 : 2 + width], "big")
        # a header that says more (or less) than is stored (garbage, a hostile write): no
        # Content-Length to promise; it is read whole, and refused as unreadable
        return (kind, start, length) if start + length == self.size else None

    async def payload_chunks(self, start: int) -> AsyncIterator[bytes | memoryview]:
        """The envelope from byte `start` on (a bytes or str value's own bytes: see payload)."""
        first = True
        async for chunk in self.chunks():
            yield memoryview(chunk)[start:] if first else chunk
            first = False

    async def value(self) -> Any:
        if self.count == 1:
            return _codec.decode(self.first, self.what)
        payload = self.payload()
        if payload is not None and payload[0] == "bytes":  # joined once, never decoded
            return b"".join([bytes(c) async for c in self.payload_chunks(payload[1])])
        return _codec.decode(b"".join([c async for c in self.chunks()]), self.what)


async def stored_result(store: Store, job_id: str, raw: bytes) -> Stored:
    """The stored result of a complete job, from its record's `result`."""
    what = f"result of job {job_id!r}"
    if raw[:1] != REF:
        return Stored(len(raw), 1, raw, _nothing, _nothing_gone, what)
    try:
        size, count = msgpack.unpackb(raw[1:])
        if not (isinstance(size, int) and isinstance(count, int) and 0 < count <= size):
            raise ValueError(f"size {size!r}, chunks {count!r}")
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise MessageError(f"the {what} has an unreadable reference to its chunks: {exc}") from None

    def gone() -> Exception:
        return JobNotFound(job_id, store.keys.queue)  # its chunks expired or were deleted

    first = await store.result_chunk(job_id, 0)
    if first is None:
        raise gone()
    return Stored(size, count, first, functools.partial(store.result_chunk, job_id), gone, what)


async def stored_data(store: Store, key: str, gone: Callable[[], Exception]) -> Stored:
    """The data stored at `key`, read in chunks of CHUNK_BYTES."""
    size, first = await store.data_head(key, CHUNK_BYTES)
    if not size:
        raise gone()

    async def read(index: int) -> bytes | None:
        return await store.data_range(key, index * CHUNK_BYTES, CHUNK_BYTES)

    count = -(-size // CHUNK_BYTES)
    return Stored(size, count, first, read, gone, f"data at key {key!r}")


async def _nothing(index: int) -> bytes | None:
    return None


def _nothing_gone() -> Exception:
    return RuntimeError("a result stored whole has no more chunks")
