"""The msgpack envelope for everything aqueue stores: one version byte, then msgpack.

Bytes stay bytes, str stays str; tuples come back as lists, except as the keys of a map,
where they stay tuples. Nothing here ever unpickles.
"""

from __future__ import annotations

from typing import Any

import msgpack

from .errors import MessageError, UnreadableData

VERSION = b"\x01"


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
