"""The guard of tests/blocking.py: a blocking sleep on the loop's thread is caught, wherever
it is made from; one in a worker thread, or where no loop runs, is not."""

from __future__ import annotations

import time

import anyio

from ..blocking import GUARD


def load_weights(seconds: float) -> None:
    """A sync helper that blocks: what lint cannot see from the async caller."""
    time.sleep(seconds)


async def test_a_blocking_sleep_on_the_loop_s_thread_is_caught_with_where_it_ran() -> None:
    load_weights(0.01)  # planted
    [found] = GUARD.take()  # taken: this test does not fail for it
    assert found.startswith("time.sleep(0.01) on the event loop's thread, at\n")
    assert "in load_weights" in found and "in test_a_blocking_sleep" in found


async def test_a_sleep_in_a_worker_thread_or_of_zero_is_no_matter() -> None:
    await anyio.to_thread.run_sync(load_weights, 0.01)
    load_weights(0)
    assert GUARD.take() == []


def test_a_sleep_where_no_loop_runs_is_no_matter() -> None:
    load_weights(0.001)
    assert GUARD.take() == []
