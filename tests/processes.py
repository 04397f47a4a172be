"""Real `python -m aqueue` processes for the tests: started from the project root, killed
(even if paused) when the test leaves them."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
from anyio.abc import Process

ROOT = Path(__file__).parents[1]


@asynccontextmanager
async def aqueue_process(
    args: list[str], *, log: Path | None = None, env: dict[str, str] | None = None
) -> AsyncIterator[Process]:
    """`python -m aqueue <args>`, its output in `log` if given, `env` added to the
    environment."""
    output: dict[str, Any] = {}
    sink = log.open("wb") if log is not None else None
    if sink is not None:
        output = {"stdout": sink, "stderr": sink}
    try:
        process = await anyio.open_process(
            [sys.executable, "-m", "aqueue", *args],
            cwd=ROOT,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
            **output,
        )
    finally:
        if sink is not None:
            sink.close()
    try:
        yield process
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGCONT)
            process.kill()
            await process.wait()
        await process.aclose()
