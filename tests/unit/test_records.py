"""How a job is laid out in Redis and read back (aqueue/_redis/records.py): what a post writes,
and a record or spec that cannot be read costing only the field or job it is."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest

from aqueue import _codec
from aqueue._redis import records
from aqueue._redis.records import SpecShape, decode_job
from aqueue.errors import ConfigError, MessageError
from aqueue.job import JobStatus
from aqueue.retry import DEFAULT_POLICY, RetryPolicy

SHAPE = SpecShape("f,g", 1500, 3, b"", 60, "http://h/cb")
OPTIONS: dict[str, Any] = dict(
    functions=("f",), callback=None, callback_method="GET", priority=0, timeout=None,
    retry=DEFAULT_POLICY, ttl=60,
)  # fmt: skip


def test_a_spec_round_trips() -> None:
    assert SpecShape.unpack(SHAPE.pack(b"msg")) == (b"msg", SHAPE)


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        (b"\xc1", "not msgpack"),
        (msgpack.packb([1, 2]), "has 2 fields"),
        (msgpack.packb({"a": 1}), "has dict"),
        (msgpack.packb([b"m", b"f", "x", 1, b"", 60, b""], use_bin_type=True), "timeout_ms"),
        (msgpack.packb([b"m", b"\xff", 0, 1, b"", 60, b""], use_bin_type=False), "not text"),
    ],
)
def test_a_spec_that_cannot_be_read_says_why(spec: bytes, says: str) -> None:
    with pytest.raises(MessageError, match=says):
        SpecShape.unpack(spec)


def test_listener_names_are_checked() -> None:
    assert records.check_functions(None) == ()
    assert records.check_functions(["a.b", "c:d"]) == ("a.b", "c:d")
    for bad in ("f", 3, ["1f"], [None]):
        with pytest.raises(MessageError):
            records.check_functions(bad)  # type: ignore[arg-type]


def test_a_lane_is_the_sorted_set_of_its_listeners() -> None:
    assert records.signature(["b", "a", "b"]) == "a,b"


@pytest.mark.parametrize(
    "url",
    ["ftp://h/x", "http:///x", "http://a b/", "http://\x00/", "http://h\ud800/", "http://../"],
)
def test_a_callback_must_be_an_absolute_http_url(url: str) -> None:
    with pytest.raises(MessageError):
        records.check_callback(url)


def test_a_good_callback_and_method_pass() -> None:
    assert records.check_callback(None) == ""
    assert records.check_callback("https://example.com/x?y=1") == "https://example.com/x?y=1"
    assert records.check_callback_method("POST") == "POST"
    with pytest.raises(MessageError, match="callback_method"):
        records.check_callback_method("PUT")


def test_a_post_s_fields_hold_only_what_differs_from_the_defaults() -> None:
    fields, lane, shape = records.new_job_fields(**OPTIONS)
    assert (fields, lane, shape) == ((), "f", SpecShape("f", 0, 4, b"", 60, ""))
    options = OPTIONS | dict(
        priority=5, callback="http://h/c", callback_method="POST", timeout=0.5,
        retry=RetryPolicy(1, delay=2.0), ttl=90.5,
    )  # fmt: skip
    fields, _, shape = records.new_job_fields(**options)
    assert fields == ("prio", "5", "cb", "http://h/c", "cbm", "POST")
    assert (shape.timeout_ms, shape.max_attempts, shape.ttl_s) == (500, 2, 90)
    assert records.retry_policy(shape.retry, 2) == RetryPolicy(1, delay=2.0)


@pytest.mark.parametrize("ttl", [0, True, "1", 11 * 365 * 86400])
def test_a_ttl_out_of_range_is_refused(ttl: Any) -> None:
    with pytest.raises(MessageError, match="ttl"):
        records.new_job_fields(**OPTIONS | {"ttl": ttl})


def test_a_bad_callback_method_is_refused_without_a_callback_too() -> None:
    with pytest.raises(MessageError):
        records.new_job_fields(**OPTIONS | {"callback_method": "PUT"})


def test_remembered_fields_take_lists_and_unhashable_options() -> None:
    assert records.remembered_job_fields(**OPTIONS | {"functions": ["f"]})[1] == "f"
    with pytest.raises(MessageError):
        records.remembered_job_fields(**OPTIONS | {"priority": []})  # unhashable, and invalid


def test_a_stored_retry_policy_that_cannot_be_read_is_a_config_error() -> None:
    assert records.retry_policy(b"", 4) == RetryPolicy(3)
    with pytest.raises(ConfigError, match="cannot be read"):
        records.retry_policy(_codec.encode([1, 2]), 3)


def test_worker_infos_that_cannot_be_read_are_passed_over() -> None:
    good = {"id": "w", "queue": "q", "listeners": ["f"], "running": [["j", 1, 2.5]],
            "started_at": 1.0, "processed": 3}  # fmt: skip
    raws = [msgpack.packb(good), b"\xc1", msgpack.packb([1]), msgpack.packb(good | {"id": 1})]
    raws.append(msgpack.packb(good | {"running": [["j", 1]]}))
    assert records.worker_infos(raws) == [good]


def test_a_status_this_build_does_not_know_reads_as_dead() -> None:
    assert records.stored_status(b"queued") is JobStatus.QUEUED
    assert records.stored_status(b"later") is JobStatus.DEAD
    assert records.stored_status(b"\xff") is JobStatus.DEAD


def test_when_a_job_was_posted_is_read_from_posted() -> None:
    assert records.posted_ms(b"1500|7|f") == 1500
    assert records.posted_ms(b"1500") is None


def test_a_record_reads_whole() -> None:
    fields = {
        "status": b"complete", "posted": b"1000|5|f,g", "ran": b"w|2|1500", "finished": b"2000",
        "result": _codec.encode(7), "short": b"7", "prio": b"3", "max_att": b"4",
        "timeout": b"250", "progress": _codec.encode(0.5), "progress_msg": b"half",
        "key": b"k", "cb": b"http://h/", "cbm": b"POST", "cb_state": b"delivered",
        "cb_attempts": b"1", "due": b"0", "msg": _codec.encode("m"), "fns": b"f,g",
    }  # fmt: skip
    job = decode_job("j", "q", fields)
    assert (job.status, job.functions, job.worker, job.attempt) == ("complete", ("f", "g"), "w", 2)
    assert (job.posted_at, job.started_at, job.finished_at, job.due_at) == (1.0, 1.5, 2.0, None)
    assert (job.result, job.result_bytes, job.timeout, job.max_attempts) == (7, 2, 0.25, 4)
    assert job.progress is not None and job.progress.value == 0.5
    assert (job.callback_method, job.callback_attempts, job.unreadable) == ("POST", 1, {})


def test_a_record_s_fields_that_cannot_be_read_cost_only_themselves() -> None:
    fields = {
        "status": b"later", "posted": b"1000", "ran": b"w|x|1", "prio": b"high",
        "result": b"\xc1", "spec_error": b"job spec is not msgpack",
    }  # fmt: skip
    job = decode_job("j", "q", fields)
    assert (job.status, job.functions, job.worker, job.priority, job.result) == (
        "dead", (), None, 0, b"\xc1",
    )  # fmt: skip
    assert set(job.unreadable) == {"status", "posted", "ran", "prio", "result", "spec"}
    assert job.posted_at == 0


@pytest.mark.parametrize(
    ("ref", "size"),
    [(msgpack.packb([123, 2]), 123), (b"\xc1", None), (msgpack.packb(["x", 1]), None)],
)
def test_a_large_result_s_size_is_read_from_its_reference(ref: bytes, size: int | None) -> None:
    job = decode_job(
        "j", "q", {"status": b"complete", "posted": b"1|1|f", "result": _codec.REF + ref}
    )
    assert (job.result, job.result_bytes) == (None, size)


def test_a_get_callback_is_not_stored_as_a_method_and_a_bare_record_has_no_result() -> None:
    fields, _, _ = records.new_job_fields(**OPTIONS | {"callback": "http://h/"})
    assert fields == ("cb", "http://h/")
    job = decode_job("j", "q", {"status": b"queued", "posted": b"1|1|f"})
    assert (job.result, job.result_bytes, job.functions, job.unreadable) == (None, None, ("f",), {})
