"""The rows scripts take and answer, read into Python values: a claim's or a push's jobs, and a
spec as the record fields it stands for. One unreadable row costs its own job, never the rest."""

from __future__ import annotations

from aqueue._redis.calls import DEFAULT_TTL_S, claimed_rows, spec_fields, text
from aqueue._redis.records import SpecShape
from aqueue._states import Event

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
