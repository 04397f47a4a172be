"""The exception tree (aqueue/errors.py), and `Retry`, the control flow beside it."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize("delay", [float("nan"), float("inf"), 1e16, -1, True, "5"])
def test_a_retry_delay_must_be_a_number_of_seconds_up_to_ten_years(delay: object) -> None:
    from aqueue import Retry

    with pytest.raises(ValueError, match="Retry delay must be from 0 to 315360000 seconds"):
        Retry(delay=delay)  # type: ignore[arg-type]
    assert Retry(delay=0).delay == 0 and Retry(delay=3600.5).delay == 3600.5
