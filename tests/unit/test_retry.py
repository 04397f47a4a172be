"""The retry policy (aqueue/retry.py): backoff, its cap, jitter, and the settings it refuses."""

from __future__ import annotations

import random

import pytest

from aqueue import ConfigError, RetryPolicy


def test_backoff_grows_exponentially_up_to_its_cap() -> None:
    policy = RetryPolicy(retries=10, delay=1.0, backoff=2.0, max_delay=10.0, jitter=False)
    assert [policy.delay_before(n) for n in range(1, 7)] == [1, 2, 4, 8, 10, 10]
    assert policy.max_attempts == 11


def test_a_steep_backoff_many_attempts_in_is_capped_not_an_overflow() -> None:
    policy = RetryPolicy(retries=1000, delay=1.0, backoff=1e300, max_delay=60.0, jitter=False)
    assert policy.delay_before(999) == 60.0


def test_jitter_stays_within_the_ceiling_and_follows_the_rng() -> None:
    policy = RetryPolicy(retries=3, delay=4.0)
    delays = [policy.delay_before(2, random.Random(seed)) for seed in range(50)]
    assert all(0 <= d <= 8.0 for d in delays) and len(set(delays)) > 40
    assert policy.delay_before(2, random.Random(7)) == policy.delay_before(2, random.Random(7))


@pytest.mark.parametrize(
    ("kwargs", "complaint"),
    [
        ({"retries": -1}, "retries"),
        ({"retries": 1.5}, "retries must be a whole number"),
        ({"delay": -2}, "delay"),
        ({"backoff": 0.5}, "backoff"),
        # each of these was accepted, then crashed every worker that scheduled a retry
        ({"max_delay": float("nan")}, "max_delay"),
        ({"delay": float("inf"), "max_delay": float("inf")}, "delay"),
        ({"delay": 1e20, "max_delay": 1e20}, "delay"),
        ({"backoff": float("inf")}, "backoff"),
        ({"delay": True}, "delay"),
    ],
)
def test_bad_retry_policies_name_the_setting(kwargs: dict[str, float], complaint: str) -> None:
    with pytest.raises(ConfigError, match=complaint):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]
