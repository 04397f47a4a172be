"""The msgpack envelope (aqueue/_codec.py): bytes stay bytes, and what it refuses, by name."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from aqueue import MessageError, UnreadableData
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


def test_text_msgpack_cannot_carry_is_refused_naming_why() -> None:
    with pytest.raises(MessageError, match="message is not encodable with msgpack: 'utf-8'"):
        encode("\ud800")  # a lone surrogate, as a JSON escape can carry


def test_nesting_past_msgpack_s_own_limit_is_refused_as_too_deep() -> None:
    with pytest.raises(MessageError, match=f"result is nested more than {MAX_DEPTH} levels"):
        encode(nested(1100), "result")  # msgpack itself gives up at 1,024


def test_long_values_of_any_flat_kind_pass_the_depth_walk() -> None:
    text = "x" * (MAX_DEPTH + 1)  # packs longer than MAX_DEPTH bytes: the walk looks
    assert decode(encode(text)) == text
    assert decode(encode([bytearray(MAX_DEPTH)])) == [bytes(MAX_DEPTH)]  # no nested, no flat


def test_maps_keyed_by_tuples_come_back_keyed_by_tuples_at_any_depth() -> None:
    value = {(1, (2, 3)): "a", "k": [{(4,): b"b"}]}
    assert decode(encode(value)) == value


@pytest.mark.parametrize(
    ("data", "complaint"),
    [
        (b"", r"job 7 cannot be decoded: unknown envelope version b''"),
        (b"\x02\x92\x01\x02", r"unknown envelope version b'\\x02'"),  # a large result's ref
        (b"\x01\xc1", "job 7 cannot be decoded: "),  # 0xc1: never used by msgpack
        (b"\x01\x92\x01", "job 7 cannot be decoded: "),  # an array cut short
    ],
)
def test_anything_encode_did_not_make_is_unreadable_naming_what(
    data: bytes, complaint: str
) -> None:
    with pytest.raises(UnreadableData, match=complaint):
        decode(data, "job 7")


def test_a_memoryview_msgpack_cannot_carry_is_a_message_error_naming_why() -> None:
    strided = memoryview(bytes(range(10)))[::2]  # not contiguous: msgpack raises BufferError
    with pytest.raises(MessageError, match="message is not encodable with msgpack: memoryview"):
        encode(strided)
