"""The msgpack envelope for everything aqueue stores: one version byte, then msgpack.

Bytes stay bytes, str stays str; tuples come back as lists, except as the keys of a map,
where they stay tuples. Nothing here ever unpickles.
"""

from __future__ import annotations

import gc
from itertools import compress, repeat
from typing import Any

import msgpack

from aqueue.errors import MessageError, UnreadableData

VERSION = b"\x01"
# not an envelope: a large result's reference to its chunks, msgpack [size, chunks], in its
# record's `result` (see _results.py); decode() refuses it, as an older build's does
REF = b"\x02"
# The deepest nesting of lists and maps stored: readers (JSON answers, the CLI) walk values
# recursively, and a message nested ~500 deep was stored, then broke every read of its job.
MAX_DEPTH = 100
_NESTED = (list, tuple, dict)
_FLAT = frozenset({int, float, str, bytes, bool, type(None)})


def _refuse(obj: Any) -> Any:
    raise TypeError(
        f"cannot encode an object of type {type(obj).__module__}.{type(obj).__qualname__}"
    )


def encode(value: Any, what: str = "message") -> bytes:
    """Encode `value`; a value msgpack cannot carry (or nested deeper than MAX_DEPTH) raises
    MessageError naming why."""
    try:
        packed: bytes = msgpack.packb(value, use_bin_type=True, default=_refuse, datetime=False)
    except (TypeError, BufferError) as exc:  # BufferError: a memoryview not contiguous
        raise MessageError(f"{what} is not encodable with msgpack: {exc}") from None
    except (ValueError, OverflowError) as exc:  # e.g. ints beyond 64 bits, too-deep nesting
        if not _within_depth(value):
            raise _too_deep(what) from None
        raise MessageError(f"{what} is not encodable with msgpack: {exc}") from None
    # each level of nesting packs to a byte at least: a short message needs no walk
    if len(packed) > MAX_DEPTH and not _within_depth(value):
        raise _too_deep(what)
    return VERSION + packed


def _too_deep(what: str) -> MessageError:
    return MessageError(
        f"{what} is nested more than {MAX_DEPTH} levels deep (lists and maps within one "
        "another): flatten it, or send it as bytes"
    )


def _within_depth(value: Any) -> bool:
    """Whether `value` nests at most MAX_DEPTH lists and maps, read a level at a time in C:
    gc.get_referents gives every item, value and key of a level's containers at once (what
    their tp_traverse visits: at least every object that can hold others; str keys are left
    out, and cannot nest). About a microsecond for a typical message, twice msgpack's own
    time for 1,000 records, nothing for a scalar."""
    if not isinstance(value, _NESTED):
        return True
    level = [value]
    for _ in range(MAX_DEPTH):
        below = gc.get_referents(*level)
        if _FLAT.issuperset(map(type, below)):
            return True
        level = list(compress(below, map(isinstance, below, repeat(_NESTED))))
        if not level:
            return True
    return False


def decode(data: bytes, what: str = "value") -> Any:
    """Decode what `encode` made; UnreadableData naming `what` for anything else."""
    if data[:1] != VERSION:
        raise UnreadableData(f"{what} cannot be decoded: unknown envelope version {data[:1]!r}")
    try:
        try:
            return msgpack.unpackb(data[1:], raw=False, strict_map_key=False)
        except TypeError:  # a map keyed by tuples, packed as arrays (lists): rare, read again
            return msgpack.unpackb(
                data[1:], raw=False, strict_map_key=False, object_pairs_hook=_tuple_keyed
            )
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise UnreadableData(f"{what} cannot be decoded: {exc}") from None


def _tuple_keyed(pairs: list[tuple[Any, Any]]) -> dict[Any, Any]:
    return {_hashable(key): value for key, value in pairs}


def _hashable(key: Any) -> Any:
    return tuple(_hashable(k) for k in key) if isinstance(key, list) else key
