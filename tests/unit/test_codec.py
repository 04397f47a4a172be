"""The msgpack envelope (aqueue/_codec.py): bytes stay bytes, and what it refuses, by name."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from aqueue import MessageError
from aqueue._codec import MAX_DEPTH, decode, encode


def test_the_codec_keeps_bytes_bytes_and_refuses_unknown_types_by_name() -> None:
    value = {"b": b"\x00\xff", "s": "text", "n": [1, 2.5, None, True], "nested": {"k": b""}}
    assert decode(encode(value)) == value
    assert decode(encode((1, 2))) == [1, 2]
    with pytest.raises(MessageError, match=r"datetime\.datetime"):
        encode({"when": datetime.now(UTC)})
    with pytest.raises(MessageError, match="message is not encodable"):
        encode(2**70)


def nested(depth: int, inner: Any = 1) -> Any:
    """`inner` within `depth` lists and maps, alternating."""
    for level in range(depth):
        inner = [inner] if level % 2 else {"k": inner}
    return inner


def test_the_codec_refuses_values_nested_deeper_than_its_limit_naming_it() -> None:
    assert decode(encode(nested(MAX_DEPTH))) == nested(MAX_DEPTH)
    for too_deep in (nested(MAX_DEPTH + 1), [nested(MAX_DEPTH)], {(1,): nested(MAX_DEPTH)}):
        with pytest.raises(MessageError, match=f"message is nested more than {MAX_DEPTH} levels"):
            encode(too_deep)
    with pytest.raises(MessageError, match="result is nested"):
        encode(nested(500), "result")
    wide = [{"id": i, "tags": ["a", [i]]} for i in range(1000)]  # wide, not deep: fine
    assert decode(encode(wide)) == wide
