"""A worker prefetches as many jobs as its slots finish during one claim (four times over, for
bursts), up to its most."""

from __future__ import annotations

from aqueue._worker.prefetch import PrefetchGauge


def _gauge(job_seconds: float, claim_seconds: float, slots: int, most: int = 64) -> int:
    gauge = PrefetchGauge(most, slots)
    gauge.job_ran(job_seconds)
    gauge.claim_took(claim_seconds)
    return gauge.now


def test_nothing_is_prefetched_before_a_job_and_a_claim_were_timed() -> None:
    gauge = PrefetchGauge(64, 16)
    assert gauge.now == 0
    gauge.job_ran(0.004)
    assert gauge.now == 0
    gauge.claim_took(0.001)
    assert gauge.now == 16  # 16 slots finish 4 jobs each per claim; four times over


def test_short_jobs_get_the_most_and_long_ones_none() -> None:
    assert _gauge(job_seconds=0.0001, claim_seconds=0.002, slots=16) == 64  # capped
    assert _gauge(job_seconds=0.010, claim_seconds=0.001, slots=100) == 40
    assert _gauge(job_seconds=60.0, claim_seconds=0.002, slots=16) == 0  # a training run


def test_the_running_means_follow_a_change_of_job_length() -> None:
    gauge = PrefetchGauge(64, 8)
    gauge.claim_took(0.001)
    for _ in range(50):
        gauge.job_ran(0.0001)
    assert gauge.now == 64
    for _ in range(50):
        gauge.job_ran(5.0)  # the queue turned to long jobs: stop hoarding them
    assert gauge.now == 0
