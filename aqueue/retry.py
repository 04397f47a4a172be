"""Retry policy as a value object: how many attempts, and how long to wait between them."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from aqueue._checks import is_number, seconds, whole
from aqueue.errors import ConfigError


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff with full jitter, in seconds.

    `retries` is the number of attempts after the first; a lost lease counts as one too,
    unless its worker held other jobs as well (see aqueue/_redis/lua/reap.lua).
    """

    retries: int = 3
    delay: float = 1.0
    backoff: float = 2.0
    max_delay: float = 300.0
    jitter: bool = True

    def __post_init__(self) -> None:
        whole("retries", self.retries)
        for name in ("delay", "max_delay"):
            # NaN, infinity and huge delays crashed the worker when it scheduled a retry
            seconds(name, getattr(self, name), error=ConfigError)
        if not is_number(self.backoff) or not 1 <= self.backoff < math.inf:
            raise ConfigError(f"backoff must be a finite factor >= 1, got {self.backoff!r}")

    @property
    def max_attempts(self) -> int:
        return self.retries + 1

    def delay_before(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait before attempt `attempt + 1`, after attempt `attempt` failed."""
        try:
            grown = self.delay * self.backoff ** max(attempt - 1, 0)
        except OverflowError:  # a big backoff, many attempts in: the cap applies
            grown = math.inf
        ceiling = min(self.max_delay, grown)
        if not self.jitter:
            return ceiling
        return (rng or random).uniform(0, ceiling)


DEFAULT_POLICY = RetryPolicy()  # 3 retries, the policy of a job posted without one
