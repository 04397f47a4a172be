"""How the store (aqueue/_redis/store.py) packs outcomes into finish.lua calls, without Redis."""

from __future__ import annotations

import msgpack
import pytest

from aqueue._redis.store import FINISH_BATCH, MOST_CALL_BYTES, Outcome, _finish_calls


@pytest.mark.parametrize("count", [0, 15, 16, 65_535, 65_536])
def test_values_are_packed_one_after_another_without_an_array_header(count: int) -> None:
    # finish.lua reads the outcomes as a stream of values (cmsgpack.unpack_limit)
    from aqueue._redis.store import _values

    items = [f"v{k}" for k in range(count)]
    unpacker = msgpack.Unpacker(raw=False)
    unpacker.feed(_values(items))
    assert list(unpacker) == items


def test_outcomes_go_in_calls_cut_by_count_and_by_bytes_never_empty() -> None:
    def outcome(size: int) -> Outcome:
        return Outcome("id", 1, "complete", 0, ["result", b"x" * size], 60, False, 1)

    def sizes(outcomes: list[Outcome]) -> list[int]:
        return [len(call) for call in _finish_calls(outcomes)]

    assert sizes([outcome(1)] * 2500) == [FINISH_BATCH, FINISH_BATCH, 500]
    half = MOST_CALL_BYTES // 2 - 100
    assert sizes([outcome(half)] * 5) == [2, 2, 1]
    assert sizes([outcome(3 * MOST_CALL_BYTES), outcome(1)]) == [1, 1]  # a big one goes alone
    assert sizes([]) == []
