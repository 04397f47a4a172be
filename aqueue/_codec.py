"""The msgpack envelope for everything aqueue stores: one version byte, then msgpack.

Bytes stay bytes, str stays str; tuples come back as lists, except as the keys of a map,
where they stay tuples. Nothing here ever unpickles.
"""

from __future__ import annotations

from typing import Any

import msgpack

from .errors import MessageError

VERSION = b"\x01"
# not an envelope: a large result's reference to its chunks, msgpack [size, chunks], in its
# record's `result` (see _results.py); decode() refuses it, as an older build's does
REF = b"\x02"


def _refuse(obj: Any) -> Any:
    raise TypeError(
        f"cannot encode an object of type {type(obj).__module__}.{type(obj).__qualname__}"
    )


def encode(value: Any, what: str = "message") -> bytes:
    """Encode `value`; a value msgpack cannot carry raises MessageError naming its type."""
    try:
        packed: bytes = msgpack.packb(value, use_bin_type=True, default=_refuse, datetime=False)
        return VERSION + packed
    except TypeError as exc:
        raise MessageError(f"{what} is not encodable with msgpack: {exc}") from None
    except (ValueError, OverflowError) as exc:  # e.g. ints beyond 64 bits, too-deep nesting
        raise MessageError(f"{what} is not encodable with msgpack: {exc}") from None


def decode(data: bytes) -> Any:
    if data[:1] != VERSION:
        raise ValueError(f"unknown aqueue envelope version {data[:1]!r}")
    try:
        return msgpack.unpackb(data[1:], raw=False, strict_map_key=False)
    except TypeError:  # a map keyed by tuples, packed as arrays (lists): rare, read again
        return msgpack.unpackb(
            data[1:], raw=False, strict_map_key=False, object_pairs_hook=_tuple_keyed
        )


def _tuple_keyed(pairs: list[tuple[Any, Any]]) -> dict[Any, Any]:
    return {_hashable(key): value for key, value in pairs}


def _hashable(key: Any) -> Any:
    return tuple(_hashable(k) for k in key) if isinstance(key, list) else key
