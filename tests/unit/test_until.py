"""`aqueue.testing.until`: a wait on a condition that nothing announces, bounded, and clear
about what it waited for when it gives up."""

from __future__ import annotations

import functools
import itertools

import anyio
import pytest

from aqueue.testing import until


async def test_a_plain_predicate_is_asked_until_it_holds_and_its_value_returned() -> None:
    answers: list[object] = [0, None, [], "ready"]
    assert await until(lambda: answers.pop(0), 1, interval=0) == "ready"


async def test_an_async_predicate_is_awaited() -> None:
    calls = itertools.count()

    async def third_call() -> int | None:
        await anyio.lowlevel.checkpoint()
        return n if (n := next(calls)) == 2 else None

    assert await until(third_call, 1, interval=0) == 2


async def test_at_the_deadline_it_names_the_function_and_the_last_value() -> None:
    def finished() -> list[str]:
        return []

    with pytest.raises(
        TimeoutError, match=r"^waited 0.05 s for .*finished; the last value was \[\]$"
    ):
        await until(finished, 0.05)


async def test_a_lambda_is_named_by_its_source_and_what_overrides_either() -> None:
    with pytest.raises(TimeoutError, match=r"for await until\(lambda: \{\}, 0.02\); .* \{\}$"):
        await until(lambda: {}, 0.02)
    with pytest.raises(TimeoutError, match="for the queue to drain; the last value was False"):
        await until(lambda: False, 0.02, what="the queue to drain")


async def test_a_callable_without_source_is_named_by_its_repr() -> None:
    with pytest.raises(TimeoutError, match=r"for functools\.partial\(<class 'bool'>, 0\)"):
        await until(functools.partial(bool, 0), 0.02)


async def test_a_predicate_that_hangs_is_bounded_by_the_timeout_too() -> None:
    async def hangs() -> bool:
        await anyio.sleep_forever()
        raise AssertionError("unreachable")

    with pytest.raises(TimeoutError, match=r"hangs; it never answered$"):
        await until(hangs, 0.05)


async def test_an_exception_from_the_predicate_is_the_failure_not_retried() -> None:
    calls = itertools.count()

    def broken() -> bool:
        next(calls)
        raise LookupError("no such job")

    with pytest.raises(LookupError, match="no such job"):
        await until(broken, 1)
    assert next(calls) == 1
