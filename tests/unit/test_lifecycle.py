"""The lifecycle tables (aqueue/_states.py) and the diagrams drawn from them (aqueue/_diagram.py),
without Redis: the scripts' side is tests/integration/test_state_conformance.py and
test_callback_states.py."""

from __future__ import annotations

import itertools
import runpy
from pathlib import Path

import pytest

from aqueue import _diagram
from aqueue._diagram import document, mermaid, rows
from aqueue._states import (
    ACTIVE,
    ACTIVE_IF_WATCHED,
    ALWAYS,
    BRANCHES,
    CALLBACK_BRANCHES,
    GONE,
    STALE,
    STATUS,
    STATUS_IF_WATCHED,
    TRANSITIONS,
    Branch,
    CallbackEvent,
    CallbackState,
    Event,
    Facts,
    allowed,
    callback_reply,
    is_allowed,
    live_status,
    published,
    reads,
    take,
    take_callback,
)
from aqueue.job import TERMINAL, JobStatus

S = JobStatus


def _every(names: tuple[str, ...]) -> list[Facts]:
    """Facts under every combination of the named ones."""
    return [
        Facts(**dict(zip(names, values, strict=True)))
        for values in itertools.product([False, True], repeat=len(names))
    ]


@pytest.mark.parametrize(
    ("facts", "to"),
    [
        (Facts(), S.QUEUED),
        (Facts(delay=True), S.SCHEDULED),
        (Facts(budget_spent=True), S.DEAD),
        (Facts(budget_spent=True, delay=True), S.DEAD),  # the budget is checked first
    ],
)
def test_a_retry_takes_the_first_branch_whose_condition_holds(facts: Facts, to: S) -> None:
    branch = take(S.ACTIVE, Event.RETRY, facts)
    assert branch is not None and branch.to is to


def test_a_lapsed_lease_is_counted_against_the_budget_only_where_the_blame_is_clear() -> None:
    lapse = S.ACTIVE, Event.LEASE_LAPSED
    assert take(*lapse, Facts(budget_spent=True)) == Branch(BRANCHES[lapse][0].when, S.DEAD, STATUS)
    beside = take(*lapse, Facts(budget_spent=True, beside_others=True))
    assert beside is not None and beside.to is S.QUEUED


def test_a_post_waits_for_its_time_before_it_is_handed_to_an_idle_worker() -> None:
    outcomes = {
        facts: getattr(take(None, Event.POST, facts), "to", None)
        for facts in _every(("delay", "idle_worker"))
    }
    assert outcomes == {
        Facts(): S.QUEUED,
        Facts(idle_worker=True): S.ACTIVE,
        Facts(delay=True): S.SCHEDULED,
        Facts(delay=True, idle_worker=True): S.SCHEDULED,
    }


def test_every_row_takes_a_branch_whatever_the_facts_it_reads() -> None:
    for key, branches in BRANCHES.items():
        assert all(take(*key, facts) for facts in _every(reads(branches))), key
    for (state, event), callback in CALLBACK_BRANCHES.items():
        assert all(take_callback(state, event, f) for f in _every(reads(callback))), state


def test_refused_events_take_no_branch() -> None:
    assert take(S.COMPLETE, Event.CANCEL, Facts()) is None
    assert take(None, Event.CLAIM, Facts()) is None
    assert take_callback(CallbackState.DELIVERED, CallbackEvent.DELIVERED, Facts()) is None


def test_what_a_branch_publishes_depends_on_whether_the_job_is_watched() -> None:
    watched, unwatched = Facts(watched=True), Facts()
    claim = BRANCHES[(S.QUEUED, Event.CLAIM)][0]
    assert (published(claim, watched), published(claim, unwatched)) == (ACTIVE_IF_WATCHED, None)
    cancel = BRANCHES[(S.QUEUED, Event.CANCEL)][0]
    assert published(cancel, watched) == published(cancel, unwatched) == STATUS
    purge = BRANCHES[(S.DEAD, Event.PURGE)][0]
    assert published(purge, watched) is None
    assert (str(STATUS), str(STATUS_IF_WATCHED)) == ("status", "status if watched")


def test_a_row_reads_the_facts_of_its_conditions_and_watched_where_that_decides() -> None:
    assert reads(BRANCHES[(S.ACTIVE, Event.RETRY)]) == ("budget_spent", "delay", "watched")
    assert reads(BRANCHES[(S.ACTIVE, Event.LEASE_LAPSED)]) == ("budget_spent", "beside_others")
    assert reads(BRANCHES[(None, Event.POST)]) == ("delay", "idle_worker")
    assert reads([Branch(ALWAYS, S.QUEUED)]) == ()


def test_gone_ends_records_and_is_no_status() -> None:
    assert take(S.DEAD, Event.PURGE, Facts()) == Branch(ALWAYS, GONE)
    assert is_allowed(S.DEAD, Event.PURGE) and allowed(S.DEAD, Event.PURGE) == frozenset()
    assert (S.DEAD, Event.PURGE) not in TRANSITIONS
    assert not is_allowed(S.DEAD, Event.EXPIRE)  # dead letters are kept until purged
    assert {s for (s, e) in BRANCHES if e is Event.EXPIRE} == TERMINAL - {S.DEAD}
    assert str(GONE) == "gone"


def test_the_terminal_statuses_are_those_the_table_lets_go_only_by_requeue_or_removal() -> None:
    later = {Event.REQUEUE, Event.PURGE, Event.EXPIRE}
    leaves: dict[S, set[Event]] = {s: set() for s in S}
    for before, event in BRANCHES:
        if before is not None:
            leaves[before].add(event)
    assert {s for s, events in leaves.items() if events <= later} == TERMINAL


def test_every_event_and_state_is_in_the_tables() -> None:
    assert {event for (_, event) in BRANCHES} == set(Event)
    assert {event for (_, event) in CALLBACK_BRANCHES} == set(CallbackEvent)
    callback_ends = {b.to for branches in CALLBACK_BRANCHES.values() for b in branches}
    assert callback_ends == {*CallbackState, None, GONE}


def test_a_callback_failure_retries_until_its_attempts_are_spent() -> None:
    fail = CallbackState.DELIVERING, CallbackEvent.FAILED
    assert getattr(take_callback(*fail, Facts()), "to", None) is CallbackState.RETRYING
    spent = take_callback(*fail, Facts(attempts_spent=True))
    assert spent is not None and spent.to is CallbackState.FAILED
    due = take_callback(CallbackState.RETRYING, CallbackEvent.CLAIM, Facts())
    assert due is not None and due.to is CallbackState.DELIVERING
    waits = take_callback(CallbackState.RETRYING, CallbackEvent.CLAIM, Facts(retry_waits=True))
    assert waits is not None and waits.to is CallbackState.RETRYING


def test_a_running_job_reads_as_active_whatever_its_record_says() -> None:
    assert live_status(b"queued", running=True) == ACTIVE == b"active"
    assert live_status(b"queued", running=False) == b"queued"
    assert live_status(None, running=False) is None


def test_the_diagram_labels_branches_with_their_conditions_and_draws_no_stay() -> None:
    drawn = mermaid(BRANCHES).splitlines()
    assert "    active --> dead: retry (budget spent)" in drawn
    assert "    [*] --> active: post (a worker waits idle)" in drawn
    assert "    dead --> [*]: purge" in drawn
    callbacks = mermaid(CALLBACK_BRANCHES)
    assert "retrying --> retrying" not in callbacks  # a retry not due yet stays
    assert "| active | lease_lapsed | otherwise | queued | status |" in rows(BRANCHES)
    assert "| pending | requeue | always | — | — |" in rows(CALLBACK_BRANCHES)


def test_the_state_diagram_in_the_docs_is_generated_from_the_tables(
    capsys: pytest.CaptureFixture[str],
) -> None:
    checked_in = Path(__file__).parents[2] / "docs" / "states.md"
    assert checked_in.read_text() == document(), "run: python -m aqueue._diagram > docs/states.md"
    runpy.run_path(_diagram.__file__, run_name="__main__")  # as `python -m aqueue._diagram`
    assert capsys.readouterr().out == document()


def test_callback_done_replies_read_as_the_state_left_or_why_nothing_changed() -> None:
    assert callback_reply("retrying") is CallbackState.RETRYING
    assert callback_reply("stale") is STALE and str(STALE) == "stale"
    assert callback_reply("gone") is GONE
    with pytest.raises(ValueError, match="'lost'"):
        callback_reply("lost")  # no script answers that
