"""The plain records (aqueue/job.py): which statuses are final."""

from __future__ import annotations

from aqueue import Job, JobEvent, JobStatus
from aqueue.job import TERMINAL


def test_complete_failed_dead_and_cancelled_are_final_the_rest_not() -> None:
    assert TERMINAL == {s for s in JobStatus if s.is_terminal}
    assert {s.value for s in TERMINAL} == {"complete", "failed", "dead", "cancelled"}
    for status in JobStatus:
        job = Job(
            id="j", queue="q", status=status, msg=None, functions=(), priority=0, attempt=1,
            max_attempts=1, timeout=None, callback=None, key=None, posted_at=0.0,
        )  # fmt: skip
        assert job.is_finished is status.is_terminal
        assert JobEvent("j", status=status).is_final is status.is_terminal


def test_a_progress_event_is_not_final() -> None:
    assert not JobEvent("j").is_final
