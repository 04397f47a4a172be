"""The blocking face of Client, for Flask apps, scripts and plain notebooks.

Every method runs the async Client's method of the same name on one portal thread; there is
no logic here. `tests/unit/test_public_api.py` checks the two faces offer the same methods.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from functools import partial
from types import TracebackType
from typing import Any, Self, TypeVar

from anyio.from_thread import BlockingPortal, start_blocking_portal

from aqueue.client import Client
from aqueue.config import ClientConfig
from aqueue.job import Job, JobStatus, Progress
from aqueue.retry import RetryPolicy

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

    def _call(self, method: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if self._portal is None:
            raise RuntimeError("open the client first: `with SyncClient(...) as client:`")
        return self._portal.call(partial(method, *args, **kwargs))

    def post(
        self,
        msg: Any,
        *,
        functions: Sequence[str] | None = None,
        callback: str | None = None,
        callback_method: str = "GET",
        priority: int = 0,
        delay: float | None = None,
        at: datetime | float | None = None,
        timeout: float | None = None,
        retry: RetryPolicy | int | None = None,
        key: str | None = None,
        ttl: float | None = None,
    ) -> str:
        return str(
            self._call(
                self._client.post, msg, functions=functions, callback=callback,
                callback_method=callback_method, priority=priority, delay=delay, at=at,
                timeout=timeout, retry=retry,
                key=key, ttl=ttl,
            )
        )  # fmt: skip

    def post_many(
        self,
        msgs: Iterable[Any],
        *,
        functions: Sequence[str] | None = None,
        callback: str | None = None,
        callback_method: str = "GET",
        priority: int = 0,
        delay: float | None = None,
        at: datetime | float | None = None,
        timeout: float | None = None,
        retry: RetryPolicy | int | None = None,
        keys: Sequence[str] | None = None,
        ttl: float | None = None,
    ) -> list[str]:
        return list(
            self._call(
                self._client.post_many, list(msgs), functions=functions, callback=callback,
                callback_method=callback_method, priority=priority, delay=delay, at=at,
                timeout=timeout, retry=retry,
                keys=keys, ttl=ttl,
            )
        )  # fmt: skip

    def get_job(self, job_id: str) -> Job:
        return self._call(self._client.get_job, job_id)  # type: ignore[no-any-return]

    def get_progress(self, job_id: str) -> Progress | None:
        return self._call(self._client.get_progress, job_id)  # type: ignore[no-any-return]

    def get_result(self, job_id: str) -> Any:
        return self._call(self._client.get_result, job_id)

    def block_until_result(self, job_id: str, timeout: float | None = None) -> Any:
        return self._call(self._client.block_until_result, job_id, timeout)

    def cancel(self, job_id: str) -> JobStatus:
        return self._call(self._client.cancel, job_id)  # type: ignore[no-any-return]

    def dead_letters(self, offset: int = 0, count: int = 100) -> list[Job]:
        return self._call(self._client.dead_letters, offset, count)  # type: ignore[no-any-return]

    def requeue(self, job_id: str) -> JobStatus:
        return self._call(self._client.requeue, job_id)  # type: ignore[no-any-return]

    def purge_dead(self) -> int:
        return int(self._call(self._client.purge_dead))

    def purge(self) -> int:
        return int(self._call(self._client.purge))

    def counts(self) -> dict[str, int]:
        return self._call(self._client.counts)  # type: ignore[no-any-return]

    def store_data(self, data: Any, key: str | None = None, expiry: float | None = None) -> str:
        return str(self._call(self._client.store_data, data, key, expiry))

    def fetch_data(self, key: str) -> Any:
        return self._call(self._client.fetch_data, key)
