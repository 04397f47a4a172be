"""What a listener returned or raised becomes one outcome, typed by the lifecycle's Event."""

from __future__ import annotations

from typing import Any, cast

import pytest

from aqueue import _codec
from aqueue._redis.calls import Claimed, Outcome, unpack_outputs
from aqueue._redis.results import CHUNK_BYTES, envelope
from aqueue._states import Event
from aqueue._worker.outcomes import (
    MESSAGE_LIMIT,
    TRACEBACK_LIMIT,
    ErrorHandling,
    Outcomes,
    Upload,
    message_of,
    printable,
)
from aqueue.errors import ConfigError, MessageError, Retry
from aqueue.job import Output

# 1 s, doubling, at most 5 s, no jitter: delays that can be asserted
STEADY = _codec.encode([1.0, 2.0, 5.0, False])


def _job(*, attempt: int = 1, released: int = 0, retry: bytes = STEADY) -> Claimed:
    return Claimed("j1", attempt, b"", ("f",), 0, 5, released, retry, 60, False)


OUTCOMES = Outcomes("q", envelope, 1024, CHUNK_BYTES)


def _returned(value: Any, outcomes: Outcomes = OUTCOMES) -> Outcome:
    ended = outcomes.returned(_job(), value)
    assert isinstance(ended, Outcome)
    return ended


def test_a_value_completes_with_its_envelope_and_a_str_is_its_own_short_result() -> None:
    assert _returned(None) == _job().outcome(Event.COMPLETE, 0, ["result", _codec.encode(None)])
    text = _returned("done")
    assert text.kind is Event.COMPLETE and not text.chunked
    assert text.fields == ["result", _codec.encode("done"), "short", "done"]
    both = _returned(Output([1, 2], short="two"))
    assert both.fields == ["result", _codec.encode([1, 2]), "short", "two"]
    assert _returned(Output(b"x")).fields == ["result", _codec.encode(b"x")]


@pytest.mark.parametrize(
    ("value", "why"),
    [
        (Output(1, short=cast(Any, 3)), "short result must be a str, got int"),
        (Output(1, short="\ud800"), "is not valid Unicode text"),
        (b"x" * 2000, "result"),  # over the worker's max_result_bytes (1024 here)
    ],
)
def test_a_value_that_cannot_be_stored_fails_its_job_for_good(value: Any, why: str) -> None:
    failed = _returned(value)
    assert failed.kind is Event.FAIL and failed.delay_ms == 0
    fields = dict(zip(failed.fields[::2], failed.fields[1::2], strict=True))
    assert fields["err_type"] in ("aqueue.errors.MessageError", "aqueue.errors.MessageTooLarge")
    assert why in str(fields["err_msg"])


def test_a_result_too_large_for_its_record_is_uploaded_then_completes_chunked() -> None:
    small_records = Outcomes("q", envelope, 1 << 20, record_bytes=16)
    upload = small_records.returned(_job(), Output("x" * 100, short="s"))
    assert isinstance(upload, Upload)
    assert upload.size == len(_codec.encode("x" * 100)) and upload.short == "s"
    ref: list[str | bytes] = ["result", b"\x02ref", "blob", "token"]
    done = small_records.uploaded(_job(), ref, upload.short)
    assert (done.kind, done.chunked) == (Event.COMPLETE, True)
    assert done.fields == [*ref, "short", "s"]
    assert ref == ["result", b"\x02ref", "blob", "token"]  # not the caller's list, grown
    assert small_records.uploaded(_job(), ref, None).fields == ref


def test_retry_asks_for_its_own_delay_and_counts_as_an_attempt() -> None:
    retried = OUTCOMES.raised(_job(), Retry(delay=2.5), (KeyError,))
    assert (retried.kind, retried.delay_ms) == (Event.RETRY, 2500)


def test_an_error_its_listener_retries_waits_as_the_jobs_policy_says() -> None:
    assert OUTCOMES.raised(_job(attempt=1), ValueError("x"), (Exception,)).delay_ms == 1000
    assert OUTCOMES.raised(_job(attempt=3), ValueError("x"), (ValueError,)).delay_ms == 4000
    # attempts handed back at shutdown do not count: the third attempt after two releases
    assert OUTCOMES.raised(_job(attempt=3, released=2), ValueError(), (Exception,)).delay_ms == 1000
    # a policy this build cannot read: the default's (jittered, at most 1 s the first time)
    default = OUTCOMES.raised(_job(retry=b"\x01junk"), ValueError(), (Exception,))
    assert default.kind is Event.RETRY and 0 <= default.delay_ms <= 1000


def test_other_errors_fail_and_what_is_no_exception_fails_whatever_retry_on_says() -> None:
    assert OUTCOMES.raised(_job(), ValueError(), (KeyError,)).kind is Event.FAIL
    assert OUTCOMES.raised(_job(), KeyboardInterrupt(), (BaseException,)).kind is Event.FAIL
    bad_policy = OUTCOMES.failed(_job(retry=b"\x01junk"), ConfigError("x"), retryable=False)
    assert bad_policy.kind is Event.FAIL


def test_a_failure_records_the_errors_name_message_and_traceback_cut_to_size() -> None:
    def raise_it() -> None:
        raise MessageError("m" * (MESSAGE_LIMIT + 10))

    with pytest.raises(MessageError) as caught:
        raise_it()
    failed = OUTCOMES.failed(_job(), caught.value, retryable=False)
    fields = dict(zip(failed.fields[::2], failed.fields[1::2], strict=True))
    assert fields["err_type"] == "aqueue.errors.MessageError"
    assert fields["err_msg"] == "m" * MESSAGE_LIMIT
    assert "raise_it" in str(fields["err_tb"])
    deep = OUTCOMES.failed(_job(), ValueError("v" * (TRACEBACK_LIMIT + 10)), retryable=False)
    deep_fields = dict(zip(deep.fields[::2], deep.fields[1::2], strict=True))
    assert deep_fields["err_type"] == "ValueError"  # a builtin: its bare name
    assert len(deep_fields["err_tb"]) == TRACEBACK_LIMIT


def test_an_error_whose_text_fails_or_is_not_unicode_is_still_recorded() -> None:
    class Unprintable(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no")

    assert message_of(Unprintable()) == "<str() of the error failed: RuntimeError>"
    assert message_of(ValueError("fine")) == "fine"
    assert printable("a\udcffb") == "a\\udcffb"
    failed = OUTCOMES.failed(_job(), ValueError("\ud800"), retryable=False)
    assert failed.fields[3] == "\\ud800"


def test_a_job_handed_back_is_released_with_no_attempt_used() -> None:
    assert OUTCOMES.handed_back(_job()) == _job().outcome(Event.RELEASE)


def _outputs(outcome: Outcome | Upload) -> list[tuple[str, list[Any]]]:
    return [(q, [_codec.decode(m) for m in ms]) for q, ms, _ in unpack_outputs(outcome.outputs)]


def test_a_listener_s_return_value_is_a_message_to_each_of_its_output_queues() -> None:
    ended = OUTCOMES.returned(_job(), 21, ("doubled", "audit"))
    assert isinstance(ended, Outcome) and ended.kind is Event.COMPLETE
    assert _outputs(ended) == [("doubled", [21]), ("audit", [21])]
    assert OUTCOMES.returned(_job(), None, ("doubled",)).outputs == b""  # None: no message
    assert _returned(21).outputs == b""  # a listener without outputs posts nothing
    shown = OUTCOMES.returned(_job(), Output(result=[1, 2], short="two"), ("doubled",))
    assert _outputs(shown) == [("doubled", [[1, 2]])]  # the result, not its short form


def test_iter_output_posts_each_element_a_none_element_too() -> None:
    ended = OUTCOMES.returned(_job(), iter(["a", None, "b"]), ("words",), iter_output=True)
    assert _outputs(ended) == [("words", ["a", None, "b"])]
    assert isinstance(ended, Outcome)  # a generator's elements are its result too
    assert _codec.decode(bytes(_field(ended, "result"))) == ["a", None, "b"]
    assert OUTCOMES.returned(_job(), [], ("words",), iter_output=True).outputs == b""
    for not_a_list in (7, "words", b"bytes", {"a": 1}):
        failed = OUTCOMES.returned(_job(), not_a_list, ("words",), iter_output=True)
        assert isinstance(failed, Outcome) and failed.kind is Event.FAIL
        assert "with iter_output must return an iterable" in _field(failed, "err_msg")


def test_an_output_that_cannot_be_posted_fails_its_job_saying_why() -> None:
    failed = OUTCOMES.returned(_job(), object(), ("doubled",))
    assert isinstance(failed, Outcome) and failed.kind is Event.FAIL
    assert "the output is not encodable with msgpack" in _field(failed, "err_msg")
    small = Outcomes("q", envelope, 1 << 20, CHUNK_BYTES, max_message_bytes=16)
    over = small.returned(_job(), ["x" * 40], ("words",), iter_output=True)
    assert "output 0 is 43 bytes, over the 16 a message may have" in _field(over, "err_msg")


def test_outputs_ride_with_a_result_too_large_for_the_record() -> None:
    big = Outcomes("q", envelope, 1 << 20, 8)
    upload = big.returned(_job(), "x" * 100, ("doubled",))
    assert isinstance(upload, Upload)
    done = big.uploaded(_job(), ["result", b"ref", "blob", b"token"], None, upload.outputs)
    assert done.chunked and _outputs(done) == [("doubled", ["x" * 100])]


def _field(outcome: Outcome | Upload, name: str) -> Any:
    assert isinstance(outcome, Outcome)
    fields = list(outcome.fields)
    return fields[fields.index(name) + 1]


class BadInput(ValueError):
    pass


ROUTES = ErrorHandling(((ValueError, "bad-input"), (Exception, "errors")))


def _routed(outcome: Outcome) -> tuple[str, dict[str, Any], str]:
    [(queue, [message], tag)] = unpack_outputs(outcome.outputs)
    return queue, _codec.decode(message), tag


def test_a_job_that_fails_for_good_goes_to_the_queue_of_its_error_s_closest_class() -> None:
    job = Claimed("j1", 2, _codec.encode({"url": "x"}), ("f",), 0, 5, 0, STEADY, 60, False)
    failed = OUTCOMES.raised(job, BadInput("no scheme"), (), ROUTES)  # not retryable: ends
    assert failed.kind is Event.FAIL
    queue, message, tag = _routed(failed)
    assert (queue, tag) == ("bad-input", "2")  # ValueError is closer than Exception
    assert message["source_message"] == {"url": "x"}
    assert message["exc_type"] == "test_outcomes.BadInput" or message["exc_type"].endswith(
        "BadInput"
    )
    assert message["exc_message"] == "no scheme" and "BadInput: no scheme" in message["traceback"]
    assert (message["attempt"], message["job_id"], message["queue"]) == (2, "j1", "q")
    assert _routed(OUTCOMES.raised(job, KeyError("k"), (), ROUTES))[0] == "errors"
    assert OUTCOMES.raised(job, KeyboardInterrupt(), (), ROUTES).outputs == b""  # no route
    assert OUTCOMES.raised(job, BadInput("x"), ()).outputs == b""  # a listener without routes


def test_retries_run_before_routing_and_a_spent_budget_routes_too() -> None:
    early = OUTCOMES.raised(_job(attempt=1), BadInput("x"), (Exception,), ROUTES)
    assert early.kind is Event.RETRY and early.outputs == b""  # retried: not routed yet
    last = OUTCOMES.raised(_job(attempt=5), BadInput("x"), (Exception,), ROUTES)
    assert last.kind is Event.RETRY  # finish.lua makes it dead: its budget of 5 is spent
    assert _routed(last)[0] == "bad-input"
    handed = OUTCOMES.raised(_job(attempt=5, released=1), BadInput("x"), (Exception,), ROUTES)
    assert handed.outputs == b""  # one attempt was handed back: one left in the budget


def test_a_listener_s_max_retries_and_retry_delay_and_retry_s_own_cap() -> None:
    capped = ErrorHandling(max_retries=1, retry_delay=7.0)
    assert OUTCOMES.raised(_job(attempt=1), ValueError(), (Exception,), capped).delay_ms == 7000
    assert OUTCOMES.raised(_job(attempt=2), ValueError(), (Exception,), capped).kind is Event.FAIL
    asked = Retry(delay=0.5, max_retries=2)
    assert OUTCOMES.raised(_job(attempt=2), asked, ()).kind is Event.RETRY  # 1 made, 2 allowed
    assert OUTCOMES.raised(_job(attempt=2), asked, ()).delay_ms == 500
    assert OUTCOMES.raised(_job(attempt=3), asked, ()).kind is Event.FAIL  # 2 made: no third
    assert OUTCOMES.raised(_job(attempt=3, released=1), asked, ()).kind is Event.RETRY
    with pytest.raises(ValueError, match="max_retries must be a whole number"):
        Retry(max_retries=-1)


def test_a_message_that_cannot_be_decoded_is_routed_as_its_bytes() -> None:
    job = Claimed("j1", 1, b"\xc1", ("f",), 0, 1, 0, STEADY, 60, False)
    _, message, _ = _routed(OUTCOMES.raised(job, ValueError("x"), (), ROUTES))
    assert message["source_message"] == b"\xc1"
