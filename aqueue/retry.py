"""Retry policy as a value object: how many attempts, and how long to wait between them."""

from __future__ import annotations

import random
from dataclasses import dataclass

from .errors import ConfigError


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff with full jitter, in seconds.

    `retries` is the number of attempts after the first; every lost lease counts as one too.
    """

    retries: int = 3
    delay: float = 1.0
    backoff: float = 2.0
    max_delay: float = 300.0
    jitter: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.retries, int) or isinstance(self.retries, bool):
            raise ConfigError(f"retries must be an int, got {type(self.retries).__name__}")
        if not 0 <= self.retries <= 1000:
            raise ConfigError(f"retries must be between 0 and 1000, got {self.retries}")
        for name in ("delay", "max_delay"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or value < 0:
                raise ConfigError(f"{name} must be a number of seconds >= 0, got {value!r}")
        if not isinstance(self.backoff, int | float) or self.backoff < 1:
            raise ConfigError(f"backoff must be a factor >= 1, got {self.backoff!r}")

    @property
    def max_attempts(self) -> int:
        return self.retries + 1

    def delay_before(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait before attempt `attempt + 1`, after attempt `attempt` failed."""
        ceiling = min(self.max_delay, self.delay * self.backoff ** max(attempt - 1, 0))
        if not self.jitter:
            return ceiling
        return (rng or random).uniform(0, ceiling)


DEFAULT_POLICY = RetryPolicy()  # 3 retries, the policy of a job posted without one
