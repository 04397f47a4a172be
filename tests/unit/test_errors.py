"""The exception tree (aqueue/errors.py), and `Retry`, the control flow beside it."""

from __future__ import annotations

import pytest

from aqueue import Retry
from aqueue.errors import (
    AqueueError,
    DataNotFound,
    InvalidTransition,
    JobFailed,
    JobNotFound,
    JobTimeout,
    LeaseLost,
    MessageTooLarge,
    ResultTimeout,
    TooManyLanes,
)


@pytest.mark.parametrize("delay", [float("nan"), float("inf"), 1e16, -1, True, "5"])
def test_a_retry_delay_must_be_a_number_of_seconds_up_to_ten_years(delay: object) -> None:
    with pytest.raises(ValueError, match="Retry delay must be from 0 to 315360000 seconds"):
        Retry(delay=delay)  # type: ignore[arg-type]
    assert Retry(delay=0).delay == 0 and Retry(delay=3600.5).delay == 3600.5


@pytest.mark.parametrize(
    ("error", "message", "base", "attributes"),
    [
        (
            MessageTooLarge(20, 10),
            "message is 20 bytes encoded, over the limit of 10 bytes (raise "
            "ClientConfig.max_message_bytes, or store the payload elsewhere and post a reference)",
            ValueError,
            {"size": 20, "limit": 10},
        ),
        (
            MessageTooLarge(20, 10, "result", "return less"),
            "result is 20 bytes encoded, over the limit of 10 bytes (return less)",
            ValueError,
            {"size": 20, "limit": 10},
        ),
        (
            TooManyLanes("q", "a,b", 3),
            "queue 'q' already has 3 lanes of waiting jobs that no live worker can serve, its "
            "limit (ClientConfig.max_unserved_lanes): a job for listeners 'a,b' would add one "
            "more. Start a worker with those listeners, check the names, or cancel jobs that "
            "no worker will ever take",
            ValueError,
            {"queue": "q", "signature": "a,b", "limit": 3},
        ),
        (
            JobNotFound("j1", "q"),
            "job 'j1' not found in queue 'q'",
            LookupError,
            {"job_id": "j1", "queue": "q"},
        ),
        (
            DataNotFound("k", "q"),
            "no data at key 'k' in queue 'q'",
            LookupError,
            {"key": "k", "queue": "q"},
        ),
        (
            InvalidTransition("j1", "cancel", "complete"),
            "cannot cancel job 'j1': it is complete",
            AqueueError,
            {"job_id": "j1", "action": "cancel", "status": "complete"},
        ),
        (
            JobFailed("j1", "failed", "KeyError", "'x'", "Traceback ..."),
            "job 'j1' is failed: KeyError: 'x'",
            AqueueError,
            {"error_type": "KeyError", "error_message": "'x'", "traceback": "Traceback ..."},
        ),
        (
            JobFailed("j1", "cancelled", None, None, None),
            "job 'j1' is cancelled: no error recorded",
            AqueueError,
            {"job_id": "j1", "status": "cancelled", "error_type": None},
        ),
        (
            ResultTimeout("j1", 2.5, "active"),
            "job 'j1' still active after waiting 2.5 s",
            TimeoutError,
            {"job_id": "j1", "timeout": 2.5, "status": "active"},
        ),
        (
            JobTimeout("j1", 30.0),
            "job 'j1' ran past its timeout of 30 s",
            TimeoutError,
            {"job_id": "j1", "timeout": 30.0},
        ),
        (
            LeaseLost("j1", 3),
            "attempt 3 of job 'j1' no longer holds the lease",
            AqueueError,
            {"job_id": "j1", "attempt": 3},
        ),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, Exception) else "",
)
def test_each_error_says_what_happened_and_carries_its_parts(
    error: AqueueError, message: str, base: type[Exception], attributes: dict[str, object]
) -> None:
    assert str(error) == message
    assert isinstance(error, AqueueError) and isinstance(error, base)
    assert {name: getattr(error, name) for name in attributes} == attributes


def test_a_retry_says_when_unless_given_a_reason_and_is_no_error() -> None:
    assert str(Retry(2)) == "retry requested in 2 s" and Retry(2).reason == ""
    assert str(Retry(0.5, "rate limited")) == "rate limited"
    assert not isinstance(Retry(), AqueueError)
