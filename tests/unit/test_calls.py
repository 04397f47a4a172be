"""The rows scripts take and answer, as Python values: a claim's or a push's jobs, a spec as the
record fields it stands for, outcomes cut into finish calls. One unreadable row costs its own
job, never the rest."""

from __future__ import annotations

import msgpack
import pytest

from aqueue._redis.calls import (
    DEFAULT_TTL_S,
    FINISH_BATCH,
    MOST_CALL_BYTES,
    Outcome,
    claimed_rows,
    finish_calls,
    pack_outputs,
    spec_fields,
    text,
    unpack_outputs,
    values,
)
from aqueue._redis.records import SpecShape, output_id, pack_forwarded, unpack_forwarded
from aqueue._states import Event
from aqueue.errors import MessageError

SHAPE = SpecShape("f,g", 1500, 3, b"\x01policy", 60, "http://h/cb")


def test_claimed_rows_read_each_job_and_an_unreadable_spec_costs_only_its_job() -> None:
    good = SHAPE.pack(b"msg")
    jobs = claimed_rows([b"a", b"2", b"1", good, b"b", b"1", b"0", b"garbage"])
    first, second = jobs
    assert (first.id, first.attempt, first.released, first.msg) == ("a", 2, 1, b"msg")
    assert (first.functions, first.timeout_ms, first.max_attempts) == (("f", "g"), 1500, 3)
    assert (first.retry, first.ttl_s, first.calls_back, first.unreadable) == (
        b"\x01policy", 60, True, ""
    )  # fmt: skip
    assert (second.id, second.attempt, second.released) == ("b", 1, 0)
    assert second.unreadable and second.functions == () and second.ttl_s == DEFAULT_TTL_S
    outcome = second.outcome(Event.FAIL, 0, ["err_msg", "x"])
    assert (outcome.id, outcome.attempt, outcome.kind, outcome.max_attempts) == (
        "b", 1, Event.FAIL, 1
    )  # fmt: skip


def test_a_spec_reads_as_its_record_fields_or_as_why_it_cannot() -> None:
    assert spec_fields(SHAPE.pack(b"m")) == {
        "msg": b"m", "fns": b"f,g", "timeout": b"1500", "max_att": b"3",
    }  # fmt: skip
    assert set(spec_fields(b"garbage")) == {"spec_error"}


def test_text_of_what_someone_wrote_never_fails() -> None:
    assert text(b"\xffjob") == "\ufffdjob"
    assert text(7) == "7"


@pytest.mark.parametrize("count", [0, 15, 16, 65_535, 65_536])
def test_values_are_packed_one_after_another_without_an_array_header(count: int) -> None:
    # finish.lua reads the outcomes as a stream of values (cmsgpack.unpack_limit)
    items = [f"v{k}" for k in range(count)]
    unpacker = msgpack.Unpacker(raw=False)
    unpacker.feed(values(items))
    assert list(unpacker) == items


def test_outcomes_go_in_calls_cut_by_count_and_by_bytes_never_empty() -> None:
    def outcome(size: int) -> Outcome:
        return Outcome("id", 1, Event.COMPLETE, 0, ["result", b"x" * size], 60, False, 1)

    def sizes(outcomes: list[Outcome]) -> list[int]:
        return [len(call) for call in finish_calls(outcomes)]

    assert sizes([outcome(1)] * 2500) == [FINISH_BATCH, FINISH_BATCH, 500]
    half = MOST_CALL_BYTES // 2 - 100
    assert sizes([outcome(half)] * 5) == [2, 2, 1]
    assert sizes([outcome(3 * MOST_CALL_BYTES), outcome(1)]) == [1, 1]  # a big one goes alone
    assert sizes([]) == []


def test_outputs_are_read_back_as_packed_and_a_foreign_entry_is_refused_saying_why() -> None:
    packed = pack_outputs([("doubled", [b"\x01", b"\x02"]), ("audit", [])])
    assert unpack_outputs(packed) == [("doubled", [b"\x01", b"\x02"], ""), ("audit", [], "")]
    assert unpack_outputs(pack_outputs([("errors", [b"e"])], "3")) == [("errors", [b"e"], "3")]
    bad = {
        b"\xc1": "outputs are not msgpack",
        msgpack.packb({"a": 1}): "outputs are not an array: dict",
        msgpack.packb([["q"]]): "not \\[queue, \\[message, ...\\], tag\\]",
        msgpack.packb([[1, [], ""]], use_bin_type=False): "not \\[queue",
        msgpack.packb([["q", "m", ""]], use_bin_type=False): "not \\[queue",
        msgpack.packb([["q", [1], ""]], use_bin_type=False): "not \\[queue",
        msgpack.packb([["q", [], 3]], use_bin_type=False): "not \\[queue",
        msgpack.packb(["q"]): "not \\[queue",
    }
    for entry, reason in bad.items():
        with pytest.raises(MessageError, match=reason):
            unpack_outputs(entry)


def test_outputs_count_toward_a_finish_call_s_bytes() -> None:
    heavy = [
        Outcome(
            f"j{i}",
            1,
            Event.COMPLETE,
            0,
            (),
            DEFAULT_TTL_S,
            False,
            1,
            False,
            b"x" * MOST_CALL_BYTES,
        )
        for i in range(2)
    ]
    assert [len(call) for call in finish_calls(heavy)] == [1, 1]


def test_an_output_s_id_is_the_same_each_time_and_no_other_output_s() -> None:
    one = output_id("numbers", "j1", "doubled", 0)
    assert one == output_id("numbers", "j1", "doubled", 0) and len(one) == 32
    others = {
        output_id("numbers", "j1", "doubled", 1), output_id("numbers", "j2", "doubled", 0),
        output_id("numbers", "j1", "tripled", 0), output_id("other", "j1", "doubled", 0),
        output_id("numbers", "j1", "doubled", 0, "2"),
    }  # fmt: skip
    assert len(others) == 5 and one not in others
    int(one, 16)  # hex, as a posted job's id


def test_where_outputs_went_reads_back_and_a_foreign_note_reads_as_none() -> None:
    note = pack_forwarded([("doubled", 3, ""), ("errors", 1, "2")])
    assert unpack_forwarded(note) == [("doubled", 3, ""), ("errors", 1, "2")]
    assert unpack_forwarded(b"\xc1") == [] and unpack_forwarded(msgpack.packb({"a": 1})) == []
    assert unpack_forwarded(msgpack.packb([["q", "3", ""], ["r", 1, ""]])) == [("r", 1, "")]
