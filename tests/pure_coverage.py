"""The coverage gate: the pure core (tests/layers.py) at 100 % branch coverage from tests/unit
alone, which runs in seconds. `python -m tests.pure_coverage [pytest args]`; `bash .ci/task
test` runs it before the whole suite."""

from __future__ import annotations

import sys

import pytest

from tests.layers import PURE_CORE


def arguments(extra: list[str]) -> list[str]:
    return [
        "tests/unit",
        "--cov-branch",
        *(f"--cov={module}" for module in PURE_CORE),
        "--cov-report=term-missing:skip-covered",
        "--cov-fail-under=100",
        *extra,
    ]


if __name__ == "__main__":
    sys.exit(pytest.main(arguments(sys.argv[1:])))
