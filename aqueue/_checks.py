"""Checks of the numbers callers hand over, with errors that name the option.

A NaN, an infinity or a huge value would otherwise get past a `< 0` test and fail later, as
a bare ValueError or OverflowError where it is turned into milliseconds, or in Redis.
"""

from __future__ import annotations

from typing import Any

from .errors import TEN_YEARS, MessageError


def is_number(value: Any) -> bool:
    """An int or a float, not a bool (True is not 1 second)."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def seconds(
    name: str,
    value: Any,
    *,
    least: float = 0.0,
    most: float = TEN_YEARS,
    error: type[ValueError] = MessageError,
) -> float:
    """`value`, a number of seconds from `least` to `most`; else `error` naming `name`."""
    if not is_number(value) or not least <= value <= most:  # NaN fails every comparison
        raise error(
            f"{name} must be a number of seconds from {least:g} to {most:.0f}, got {value!r}"
        )
    return float(value)
