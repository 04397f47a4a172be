"""Reading a job record back (aqueue/_redis/records.py), field by field: what a post writes,
its spec, and a field this build cannot read costing only itself."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest

from aqueue import ConfigError, JobStatus, MessageError, Progress, RetryPolicy
from aqueue._codec import REF, encode
from aqueue._redis.records import (
    SpecShape,
    check_callback,
    check_callback_method,
    check_functions,
    decode_job,
    new_job_fields,
    posted_ms,
    remembered_job_fields,
    retry_policy,
    signature,
    stored_status,
    worker_infos,
)
from aqueue.retry import DEFAULT_POLICY

SHAPE = SpecShape("load,train", 5000, 4, b"", 3600, "http://cb.example/done")


def test_a_spec_comes_back_as_it_was_packed() -> None:
    assert SpecShape.unpack(SHAPE.pack(b"\x01msg")) == (b"\x01msg", SHAPE)


def _packed(*fields: Any) -> bytes:
    return bytes(msgpack.packb(list(fields), use_bin_type=False))


@pytest.mark.parametrize(
    ("spec", "complaint"),
    [
        (b"\xc1", "job spec is not msgpack"),
        (msgpack.packb({"msg": 1}), "not an array of 7 fields .*: it has dict"),
        (_packed(b"m", "f"), "not an array of 7 fields .*: it has 2 fields"),
        (_packed(b"m", "f", "5000", 4, b"", 3600, ""), "field timeout_ms is not int: b'5000'"),
        (_packed(b"m", "f", 0, 4, b"x" * 100, 3600, None), r"callback is not bytes: None"),
        (_packed(b"m", b"\xff", 0, 4, b"", 3600, b""), "a listener or callback that is not text"),
    ],
)
def test_a_spec_this_build_cannot_read_is_refused_naming_why(spec: bytes, complaint: str) -> None:
    with pytest.raises(MessageError, match=complaint):
        SpecShape.unpack(spec)


def test_a_long_field_is_named_cut_short() -> None:
    with pytest.raises(MessageError, match=r"field retry is not bytes: \[0, 1, .{70}\.\.\.$"):
        SpecShape.unpack(_packed(b"m", b"f", 0, 4, list(range(100)), 3600, b""))


def test_listener_names_are_a_list_of_names() -> None:
    assert check_functions(None) == ()
    assert check_functions(["load", "train.v2:gpu-1"]) == ("load", "train.v2:gpu-1")
    for not_a_list in ("train", {"train"}):
        with pytest.raises(MessageError, match="functions must be a list of listener names"):
            check_functions(not_a_list)  # type: ignore[arg-type]
    for bad in ("1st", "a b", "", 7, "x" * 201):
        with pytest.raises(MessageError, match=f"listener name {bad!r} is invalid"):
            check_functions([bad])  # type: ignore[list-item]


def test_a_lane_is_the_set_of_its_listeners_sorted() -> None:
    assert signature(["train", "load", "train"]) == "load,train"
    assert signature([]) == ""


@pytest.mark.parametrize(
    ("url", "complaint"),
    [
        ("ftp://a.example/", "must be an absolute http:// or https:// URL"),
        ("http:///x", "must be an absolute http:// or https:// URL"),
        ("relative/path", "must be an absolute http:// or https:// URL"),
        ("http://a b/", "has no valid host name"),
        ("http://a\x00b/", "has no valid host name"),
        ("\ud800", "is not a URL: 'utf-8' codec"),  # a lone surrogate
        ("http://../", "is not a URL: encoding with 'idna'"),  # an empty label
        ("http://xn--/", "is not a URL: decoding with 'idna'"),
    ],
)
def test_a_callback_must_be_an_http_url_with_a_host(url: str, complaint: str) -> None:
    with pytest.raises(MessageError, match=complaint):
        check_callback(url)


def test_callbacks_that_can_be_delivered_pass_as_given() -> None:
    assert check_callback(None) == ""
    for url in ("http://a.example/x?y=1", "https://[::1]:8080/"):
        assert check_callback(url) == url
    assert [check_callback_method(m) for m in ("GET", "POST")] == ["GET", "POST"]
    with pytest.raises(MessageError, match="callback_method must be 'GET' or 'POST', got 'PUT'"):
        check_callback_method("PUT")


def fields(**options: Any) -> tuple[tuple[str | bytes | int, ...], str, SpecShape]:
    defaults: dict[str, Any] = {
        "functions": None, "callback": None, "callback_method": "GET", "priority": 0,
        "timeout": None, "retry": DEFAULT_POLICY, "ttl": 86400.0,
    }  # fmt: skip
    return new_job_fields(**{**defaults, **options})


def test_a_post_with_the_defaults_stores_no_field_but_its_spec() -> None:
    assert fields() == ((), "", SpecShape("", 0, DEFAULT_POLICY.max_attempts, b"", 86400, ""))


def test_what_differs_from_the_defaults_is_stored() -> None:
    retry = RetryPolicy(retries=1, delay=0.5)
    stored, lane, spec = fields(
        functions=("train", "load"), callback="http://cb.example/", callback_method="POST",
        priority=-5, timeout=2.5, retry=retry, ttl=90.9,
    )  # fmt: skip
    assert stored == ("prio", "-5", "cb", "http://cb.example/", "cbm", "POST")
    assert lane == "load,train"
    assert spec == SpecShape(
        "train,load", 2500, 2, encode([0.5, 2.0, 300.0, True]), 90, "http://cb.example/"
    )
    assert retry_policy(spec.retry, spec.max_attempts) == retry
    assert fields(callback="http://cb.example/")[0] == ("cb", "http://cb.example/")  # GET


@pytest.mark.parametrize(
    ("options", "complaint"),
    [
        ({"priority": 101}, "priority must be a whole number from -100 to 100"),
        ({"timeout": 0.0001}, "timeout must be a number of seconds from 0.001"),
        ({"ttl": 0.5}, "ttl must be from 1 to 315360000 seconds"),
        ({"ttl": True}, "ttl must be from 1"),
        ({"ttl": "60"}, "ttl must be from 1"),
        ({"callback_method": "PUT"}, "callback_method must be"),  # with no callback too
    ],
)
def test_options_out_of_range_are_refused_naming_them(
    options: dict[str, Any], complaint: str
) -> None:
    with pytest.raises(MessageError, match=complaint):
        fields(**options)


def test_option_sets_are_remembered_and_unhashable_ones_still_checked() -> None:
    options: dict[str, Any] = {
        "functions": ["f"], "callback": None, "callback_method": "GET", "priority": 1,
        "timeout": None, "retry": DEFAULT_POLICY, "ttl": 60.0,
    }  # fmt: skip
    first = remembered_job_fields(**options)
    assert remembered_job_fields(**options) is first  # a list of names is made a tuple
    assert remembered_job_fields(**{**options, "functions": ("f",)}) is first
    with pytest.raises(MessageError, match=r"priority must be .*, got \[1\]"):
        remembered_job_fields(**{**options, "priority": [1]})


def test_a_stored_retry_policy_reads_back_or_is_refused() -> None:
    assert retry_policy(b"", 4) == RetryPolicy(3)  # the default's delays
    for garbage in (b"\x01\xc1", encode([1.0, 2.0, 3.0])):
        with pytest.raises(ConfigError, match="stored retry policy cannot be read"):
            retry_policy(garbage, 4)


def _info(**changes: Any) -> bytes:
    info: dict[str, Any] = {"id": "w1", "queue": "q", "listeners": ["f"], "started_at": 1.5}
    info |= {"running": [["j", 1, 2.5]], "processed": 3}
    return bytes(msgpack.packb({**info, **changes}))


def test_worker_infos_that_cannot_be_read_are_passed_over() -> None:
    unreadable = [
        b"\xc1",
        msgpack.packb([1]),
        _info(id=7),
        _info(processed=True),
        _info(listeners=[1]),
        _info(running=[["j", 1]]),
        _info(running=[[1, 1, 2.5]]),
        _info(running=[["j", 1, "2.5"]]),
    ]
    [info] = worker_infos([*unreadable, _info()])
    assert info["id"] == "w1" and info["running"] == [["j", 1, 2.5]]


def test_a_status_this_build_does_not_know_reads_as_dead() -> None:
    assert stored_status(b"queued") is JobStatus.QUEUED
    assert stored_status(b"paused") is JobStatus.DEAD
    assert stored_status(b"\xff") is JobStatus.DEAD


def test_the_posted_time_is_the_head_of_its_field() -> None:
    assert posted_ms(b"1700000000000|123|a,b") == 1700000000000
    assert posted_ms(b"1700000000000") is None  # a pre-release layout: no longer read
    assert posted_ms(b"soon|1|a") is None


RECORD = {
    "status": b"complete",
    "posted": b"1700000000000|1|load,train",
    "ran": b"worker|1|7|1700000001000",  # a worker id may hold "|"
    "msg": encode({"x": 1}),
    "prio": b"5",
    "max_att": b"4",
    "timeout": b"2500",
    "finished": b"1700000002000",
    "progress": encode(50),
    "progress_msg": b"half",
    "result": encode("done"),
    "short": b"done",
    "cb": b"http://cb.example/",
    "cbm": b"POST",
    "cb_state": b"delivered",
    "cb_attempts": b"1",
}


def test_a_record_reads_back_whole() -> None:
    job = decode_job("j1", "q", RECORD)
    assert (job.id, job.queue, job.status, job.msg) == ("j1", "q", JobStatus.COMPLETE, {"x": 1})
    assert (job.worker, job.attempt, job.started_at) == ("worker|1", 7, 1700000001.0)
    assert (job.functions, job.priority, job.max_attempts, job.timeout) == (
        ("load", "train"), 5, 4, 2.5,
    )  # fmt: skip
    assert (job.posted_at, job.finished_at, job.due_at) == (1700000000.0, 1700000002.0, None)
    assert job.progress == Progress(50, "half")
    assert (job.result, job.result_bytes, job.short_result) == ("done", 6, "done")
    assert (job.callback, job.callback_method, job.callback_state) == (
        "http://cb.example/", "POST", "delivered",
    )  # fmt: skip
    assert job.callback_attempts == 1 and job.unreadable == {}


def test_a_record_with_only_a_status_reads_as_the_defaults() -> None:
    job = decode_job("j1", "q", {"status": b"queued", "posted": b"1000|0|f"})
    assert (job.functions, job.attempt, job.worker, job.started_at) == (("f",), 0, None, None)
    assert (job.progress, job.result, job.result_bytes, job.max_attempts) == (None, None, None, 1)
    assert job.callback_method == "GET" and job.unreadable == {}


def test_each_field_this_build_cannot_read_costs_only_itself_and_is_named() -> None:
    garbled = {
        **RECORD,
        "status": b"paused",
        "posted": b"soon",
        "ran": b"no-bars",
        "prio": b"high",
        "msg": b"\x01\xc1",
        "spec_error": b"job spec is not msgpack",
    }
    job = decode_job("j1", "q", garbled)
    unreadable = dict(job.unreadable)
    why_not_msg = unreadable.pop("msg")
    assert why_not_msg.startswith("b'\\x01\\xc1': cannot be decoded (value cannot be decoded: ")
    assert job.status is JobStatus.DEAD and job.priority == 0 and job.msg == b"\x01\xc1"
    assert (job.worker, job.attempt, job.posted_at) == (None, 0, 0.0)
    assert unreadable == {
        "spec": "job spec is not msgpack",
        "ran": "b'no-bars': not worker|attempt|started",
        "posted": "b'soon': not ms|score|lane",
        "status": "b'paused': not a status this build knows",
        "prio": "b'high': not a whole number",
    }


def test_a_large_result_is_its_size_alone_and_a_broken_reference_no_size() -> None:
    reference = REF + msgpack.packb([9_000_000, 3])
    assert decode_job("j1", "q", {**RECORD, "result": reference}).result_bytes == 9_000_000
    for broken in (REF + b"\xc1", REF + msgpack.packb([]), REF + msgpack.packb(["big", 3])):
        job = decode_job("j1", "q", {**RECORD, "result": broken})
        assert (job.result, job.result_bytes) == (None, None)
