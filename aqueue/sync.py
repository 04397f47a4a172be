"""The blocking face of Client, for Flask apps, scripts and plain notebooks.

Every method runs the async Client's method of the same name on one portal thread; there is
no logic here. `tests/unit/test_public_api.py` checks the two faces offer the same methods.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Iterable, Sequence
from functools import partial
from types import TracebackType
from typing import Any, ParamSpec, Self, TypeVar, Unpack

from anyio.from_thread import BlockingPortal, start_blocking_portal

from aqueue._client.trace import Trace
from aqueue._options import PostKwargs
from aqueue.client import Client
from aqueue.config import ClientConfig
from aqueue.job import Job, JobStatus, Progress

P = ParamSpec("P")
T = TypeVar("T")


class SyncClient:
    """`with SyncClient("app") as client: client.post(...)` — or open() / close()."""

    def __init__(
        self,
        queue: str = "default",
        *,
        redis_url: str | None = None,
        config: ClientConfig | None = None,
    ) -> None:
        self._client = Client(queue, redis_url=redis_url, config=config)
        self._stack: contextlib.ExitStack | None = None
        self._portal: BlockingPortal | None = None

    def open(self) -> Self:
        with contextlib.ExitStack() as stack:
            self._portal = stack.enter_context(start_blocking_portal())
            stack.enter_context(self._portal.wrap_async_context_manager(self._client))
            self._stack = stack.pop_all()
        return self

    def close(self) -> None:
        stack, self._stack = self._stack, None
        self._portal = None  # a call after close() is told to open the client first
        if stack is not None:
            stack.close()

    def __enter__(self) -> Self:
        return self.open()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _call(self, method: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs) -> T:
        if self._portal is None:
            raise RuntimeError("open the client first: `with SyncClient(...) as client:`")
        return self._portal.call(partial(method, *args, **kwargs))

    def post(self, msg: Any, *, key: str | None = None, **options: Unpack[PostKwargs]) -> str:
        return self._call(self._client.post, msg, key=key, **options)

    def post_many(
        self,
        msgs: Iterable[Any],
        *,
        keys: Sequence[str] | None = None,
        **options: Unpack[PostKwargs],
    ) -> list[str]:
        return self._call(self._client.post_many, list(msgs), keys=keys, **options)

    def get_job(self, job_id: str) -> Job:
        return self._call(self._client.get_job, job_id)

    def get_progress(self, job_id: str) -> Progress | None:
        return self._call(self._client.get_progress, job_id)

    def trace(self, root: str) -> Trace:
        return self._call(self._client.trace, root)

    def get_result(self, job_id: str) -> Any:
        return self._call(self._client.get_result, job_id)

    def block_until_result(self, job_id: str, timeout: float | None = None) -> Any:
        return self._call(self._client.block_until_result, job_id, timeout)

    def cancel(self, job_id: str) -> JobStatus:
        return self._call(self._client.cancel, job_id)

    def dead_letters(self, offset: int = 0, count: int = 100) -> list[Job]:
        return self._call(self._client.dead_letters, offset, count)

    def requeue(self, job_id: str) -> JobStatus:
        return self._call(self._client.requeue, job_id)

    def purge_dead(self) -> int:
        return self._call(self._client.purge_dead)

    def purge(self) -> int:
        return self._call(self._client.purge)

    def counts(self) -> dict[str, int]:
        return self._call(self._client.counts)

    def store_data(self, data: Any, key: str | None = None, expiry: float | None = None) -> str:
        return self._call(self._client.store_data, data, key, expiry)

    def fetch_data(self, key: str) -> Any:
        return self._call(self._client.fetch_data, key)
