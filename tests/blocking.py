"""A guard that fails a test when a blocking call runs on an event loop's thread.

`time.sleep` on that thread stops every task of the loop (heartbeats, claims, the HTTP API)
for its whole length. The guard sees each call where it happens, however short and however
loaded the machine: deterministic, unlike asyncio's slow-callback log, which times callbacks.
(Python 3.13 announces each sleep as the audit event `time.sleep`; 3.11 does not, so the guard
wraps `time.sleep` itself: a caller that looks it up when it sleeps, as aqueue's code does,
is seen.) tests/conftest.py installs it for the session and fails the phase (setup, call,
teardown) in which one ran. A sleep in a worker thread (`anyio.to_thread`), or where no loop
runs, is no matter: nothing waits behind it. Ruff's ASYNC251 sees a sleep written in an async
function; this sees one a sync helper makes on its behalf.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
import traceback
from typing import SupportsIndex


class BlockingCalls:
    """What ran blocking on a loop's thread since it was last taken, by where it ran."""

    def __init__(self) -> None:
        self.found: dict[str, list[str]] = {}  # the stack -> the calls made there
        self.installed = False

    def install(self) -> None:
        if self.installed:
            return
        sleep = time.sleep

        @functools.wraps(sleep)
        def guarded_sleep(seconds: float | SupportsIndex) -> None:
            if seconds:  # sleep(0) only yields the CPU
                self.check(f"time.sleep({seconds!r})")
            sleep(seconds)

        time.sleep = guarded_sleep
        self.installed = True

    def check(self, call: str) -> None:
        try:
            asyncio.get_running_loop()
        except RuntimeError:  # no loop runs on this thread
            return
        where = "".join(traceback.format_stack(limit=6)[:-2])
        self.found.setdefault(where, []).append(call)  # (a wait's many short sleeps: one)

    def take(self) -> list[str]:
        """Each place that blocked, with its calls, as a failure names them; forgotten here."""
        found, self.found = self.found, {}
        return [
            f"{', '.join(calls)} on the event loop's thread, at\n{where}"
            for where, calls in found.items()
        ]


GUARD = BlockingCalls()


def is_slow_callback_report(record: logging.LogRecord) -> bool:
    """asyncio's debug mode logs a callback that ran longer than 0.1 s: advice that a loaded
    machine triggers too, so no test fails on it (the guard above is the check)."""
    return record.name == "asyncio" and str(record.msg).startswith("Executing ")
