"""Stateful handlers' setup and teardown (PiCloud's pre_handling and post_handling).

A listener may be an object (its `__call__` the handler) with a `setup()` and a `teardown()`
(or PiCloud's `pre_handling()` and `post_handling()`), plain or async: a model loaded once, a
connection opened once. The worker calls each setup once before its first job, and each
teardown once it has drained (or its grace ran out) on a stop or SIGTERM. One that fails is
logged, the first such error kept in the worker's status, and the handler served all the same,
as PiCloud did: a job that needs what setup failed to make fails on its own, saying why.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Iterable

import anyio.to_thread

from aqueue._worker.outcomes import message_of
from aqueue.listeners import Listener

log = logging.getLogger(__name__)

SETUP = ("setup", "pre_handling")
TEARDOWN = ("teardown", "post_handling")


class Handlers:
    def __init__(self, listeners: Iterable[Listener]) -> None:
        self.listeners = list(listeners)
        self.first_error: str | None = None  # "<listener>.<method>: <type>: <message>"

    async def setup(self) -> None:
        await self._each(SETUP)

    async def teardown(self) -> None:
        await self._each(TEARDOWN)

    async def _each(self, names: tuple[str, ...]) -> None:
        for listener in self.listeners:
            method = next((getattr(listener.func, n) for n in names if _has(listener, n)), None)
            if method is None:
                continue
            try:
                if inspect.iscoroutinefunction(method):
                    await method()
                else:  # it may block (a model loading): in a thread, as plain listeners run
                    await anyio.to_thread.run_sync(method)
            except Exception as exc:
                what = f"{listener.name}.{method.__name__}"
                log.exception("%s failed; the handler is served all the same", what)
                if self.first_error is None:
                    self.first_error = f"{what}: {type(exc).__name__}: {message_of(exc)}"


def _has(listener: Listener, name: str) -> bool:
    """Whether the listener is an object (not a function) with a method `name`."""
    return not inspect.isroutine(listener.func) and callable(getattr(listener.func, name, None))
