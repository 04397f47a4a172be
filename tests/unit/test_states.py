"""The job state table (aqueue/_states.py) and the docs diagram drawn from it."""

from __future__ import annotations

from aqueue import JobStatus
from aqueue._states import TRANSITIONS, Event, allowed, is_allowed
from aqueue.job import TERMINAL


def test_terminal_statuses_only_leave_by_requeue() -> None:
    for (before, event), _ in TRANSITIONS.items():
        if before in TERMINAL:
            assert event is Event.REQUEUE, (before, event)


def test_every_status_is_reachable_and_only_post_creates_jobs() -> None:
    reachable = set().union(*TRANSITIONS.values())
    assert reachable == set(JobStatus)
    assert [event for (before, event) in TRANSITIONS if before is None] == [Event.POST]


def test_forbidden_transitions_are_refused() -> None:
    assert not is_allowed(JobStatus.COMPLETE, Event.CANCEL)
    assert not is_allowed(JobStatus.QUEUED, Event.COMPLETE)
    assert allowed(JobStatus.ACTIVE, Event.LEASE_LAPSED) == {JobStatus.QUEUED, JobStatus.DEAD}


def test_the_state_diagram_in_the_docs_is_generated_from_the_table() -> None:
    from pathlib import Path

    from aqueue._diagram import document

    checked_in = Path(__file__).parents[2] / "docs" / "states.md"
    assert checked_in.read_text() == document(), "run: python -m aqueue._diagram > docs/states.md"
