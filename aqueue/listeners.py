"""The listener registry, and the context a listener gets while it runs.

    listeners = Listeners()

    @listeners.listener
    async def train(msg: dict, ctx: Context) -> Output:
        await ctx.update_progress(50, "half way")
        return Output(result=weights_bytes, short="ok")

A daemon runs it with `aqueue worker mymodule:listeners`.
"""

from __future__ import annotations

import importlib
import inspect
import logging
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Unpack, overload

import anyio.from_thread

from aqueue import _codec
from aqueue._options import PostKwargs
from aqueue._redis.keys import check_queue_name
from aqueue._redis.records import check_functions
from aqueue._worker.outcomes import NO_HANDLING, ErrorHandling
from aqueue.errors import TEN_YEARS, ConfigError, LeaseLost, ListenerError, RedisUnavailable
from aqueue.job import Job

if TYPE_CHECKING:
    from aqueue.client import Client

AsyncListener = Callable[[Any, "Context"], Awaitable[Any]]
SyncListener = Callable[[Any, "SyncContext"], Any]
ListenerFunc = AsyncListener | SyncListener

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Listener:
    name: str
    func: ListenerFunc
    is_async: bool
    retry_on: tuple[type[BaseException], ...]  # errors that earn another attempt
    # queues its return value is posted to (see aqueue/_services/forwarder.py); with
    # iter_output, each element of it (None suppresses the output; as an element it is one)
    outputs: tuple[str, ...] = ()
    iter_output: bool = False
    handling: ErrorHandling = NO_HANDLING  # on_error, max_retries, retry_delay


class Listeners:
    """Listeners by name. Plain functions run in a thread pool; coroutines on the loop."""

    def __init__(self) -> None:
        self._by_name: dict[str, Listener] = {}

    @overload
    def listener(self, func: ListenerFunc, /) -> ListenerFunc: ...
    @overload
    def listener(
        self,
        func: None = None,
        /,
        *,
        name: str | None = None,
        retry_on: Sequence[type[BaseException]] = (Exception,),
        outputs: Sequence[str] = (),
        iter_output: bool = False,
        on_error: Mapping[type[BaseException], str] | None = None,
        max_retries: int | None = None,
        retry_delay: float | None = None,
    ) -> Callable[[ListenerFunc], ListenerFunc]: ...

    def listener(
        self,
        func: ListenerFunc | None = None,
        /,
        *,
        name: str | None = None,
        retry_on: Sequence[type[BaseException]] = (Exception,),
        outputs: Sequence[str] = (),
        iter_output: bool = False,
        on_error: Mapping[type[BaseException], str] | None = None,
        max_retries: int | None = None,
        retry_delay: float | None = None,
    ) -> ListenerFunc | Callable[[ListenerFunc], ListenerFunc]:
        """Register a listener (as a decorator, bare or with options).

        `outputs`: queues each return value is posted to, once per job whatever crashes
        (PiCloud's output queues): a pipeline is a chain of queues. None posts nothing; with
        `iter_output`, each element of the returned iterable is a message of its own (a None
        element too). A job running several listeners posts the outputs of its last.

        `on_error` ({ValueError: "bad-input", Exception: "errors"}): a job that fails for good
        (not retried, or its budget spent) is posted to the queue of the closest class of its
        error's MRO, as {source_message, exc_type, exc_message, traceback, attempt, job_id,
        queue}; it still ends failed (or dead) in its own queue, its record the audit.
        `max_retries`: retries past this many are not made (`ctx.retries` counts them);
        `retry_delay`: seconds before each retry `retry_on` earns, in place of the job's
        retry policy's."""

        def register(f: ListenerFunc) -> ListenerFunc:
            self.add(
                f, name=name, retry_on=retry_on, outputs=outputs, iter_output=iter_output,
                on_error=on_error, max_retries=max_retries, retry_delay=retry_delay,
            )  # fmt: skip
            return f

        return register if func is None else register(func)

    def add(
        self,
        func: ListenerFunc,
        *,
        name: str | None = None,
        retry_on: Sequence[type[BaseException]] = (Exception,),
        outputs: Sequence[str] = (),
        iter_output: bool = False,
        on_error: Mapping[type[BaseException], str] | None = None,
        max_retries: int | None = None,
        retry_delay: float | None = None,
    ) -> Listener:
        listener_name = str(name or getattr(func, "__name__", ""))
        check_functions([listener_name])
        if listener_name in self._by_name:
            raise ListenerError(f"a listener named {listener_name!r} is already registered")
        if not callable(func):
            raise ListenerError(f"listener {listener_name!r} is not callable: {func!r}")
        for exc_type in retry_on:
            if not (isinstance(exc_type, type) and issubclass(exc_type, BaseException)):
                raise ListenerError(f"retry_on must hold exception types, got {exc_type!r}")
        # an object whose __call__ is async (a stateful handler) is async too
        is_async = inspect.iscoroutinefunction(func) or (
            not inspect.isroutine(func) and inspect.iscoroutinefunction(type(func).__call__)
        )
        if isinstance(outputs, str):
            raise ListenerError(f"outputs of {listener_name!r} must be a list of queue names")
        for queue in outputs:
            try:
                check_queue_name(queue)
            except ConfigError as exc:
                raise ListenerError(f"output of listener {listener_name!r}: {exc}") from None
        if not isinstance(iter_output, bool):
            raise ListenerError(f"iter_output of {listener_name!r} must be True or False")
        handling = _error_handling(listener_name, on_error or {}, max_retries, retry_delay)
        listener = Listener(
            listener_name, func, is_async, tuple(retry_on), tuple(outputs), iter_output, handling
        )
        self._by_name[listener_name] = listener
        return listener

    def __iter__(self) -> Iterator[Listener]:
        return iter(self._by_name.values())

    def __len__(self) -> int:
        return len(self._by_name)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._by_name)

    @property
    def outputs(self) -> dict[str, tuple[str, ...]]:
        """Each listener's output queues (its `outputs`, then its `on_error` queues), of those
        that have any: the pipeline it declares."""
        declared = {}
        for name, listener in self._by_name.items():
            routes = tuple(queue for _, queue in listener.handling.on_error)
            queues = tuple(dict.fromkeys((*listener.outputs, *routes)))
            if queues:
                declared[name] = queues
        return declared

    def resolve(self, names: Sequence[str]) -> list[Listener]:
        """The listeners a job names, in its order; all of them when it names none."""
        if not names:
            return list(self._by_name.values())
        missing = [n for n in names if n not in self._by_name]
        if missing:
            raise ListenerError(f"no listener named {', '.join(map(repr, missing))}")
        return [self._by_name[n] for n in names]


def _error_handling(
    name: str,
    on_error: Mapping[type[BaseException], str],
    max_retries: int | None,
    retry_delay: float | None,
) -> ErrorHandling:
    """A listener's error options, checked: a ListenerError names the one that is wrong."""
    if not isinstance(on_error, Mapping):
        raise ListenerError(f"on_error of {name!r} must map exception types to queue names")
    for kind, queue in on_error.items():
        if not (isinstance(kind, type) and issubclass(kind, BaseException)):
            raise ListenerError(f"on_error of {name!r} maps {kind!r}, which is no exception type")
        try:
            check_queue_name(queue)
        except ConfigError as exc:
            raise ListenerError(f"on_error of listener {name!r}: {exc}") from None
    if max_retries is not None and (
        isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0
    ):
        raise ListenerError(f"max_retries of {name!r} must be a whole number >= 0")
    if retry_delay is not None and (
        isinstance(retry_delay, bool)
        or not isinstance(retry_delay, int | float)
        or not 0 <= retry_delay <= TEN_YEARS
    ):
        raise ListenerError(f"retry_delay of {name!r} must be seconds from 0 to {TEN_YEARS}")
    return ErrorHandling(tuple(on_error.items()), max_retries, retry_delay)


def load_listeners(target: str) -> Listeners:
    """Import `module:attribute` and return the Listeners registry it names."""
    module_name, _, attribute = target.partition(":")
    if not module_name or not attribute:
        raise ListenerError(f"listeners must be given as module:object, got {target!r}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ListenerError(f"cannot import {module_name!r} for {target!r}: {exc}") from exc
    registry = getattr(module, attribute, None)
    if not isinstance(registry, Listeners):
        raise ListenerError(
            f"{target!r} is {type(registry).__name__}, not an aqueue.Listeners registry"
        )
    if not len(registry):
        raise ListenerError(f"{target!r} has no listeners registered")
    return registry


class Context:
    """What a running listener can do. Writes are fenced: after the attempt lost its lease,
    `update_progress` raises LeaseLost and the listener is being cancelled."""

    def __init__(
        self,
        client: Client,
        *,
        job_id: str,
        attempt: int,
        max_attempts: int,
        worker_id: str,
        release_slot: Callable[[], Awaitable[Callable[[], Awaitable[None]]]],
        released: int = 0,
    ) -> None:
        self._client = client
        self.job_id = job_id
        self.attempt = attempt
        self.max_attempts = max_attempts
        # retries made before this attempt (PiCloud's cur_retry): attempts less the first and
        # those handed back unfinished (a worker stopping), which spend none of the budget
        self.retries = attempt - 1 - released
        self.worker_id = worker_id
        self.queue = client.queue
        self._release_slot = release_slot

    async def update_progress(self, value: Any, message: str | None = None) -> None:
        """Record progress (any msgpack value, e.g. a percentage) and push it to watchers."""
        if message is not None and not isinstance(message, str):
            raise TypeError(f"progress message must be a str, got {type(message).__name__}")
        encoded = _codec.encode(value, "progress value")
        try:
            accepted = await self._client.store.progress(
                self.job_id, self.attempt, self.worker_id, encoded, message or ""
            )
        except RedisUnavailable as exc:
            # a report, not the work: an outage loses it rather than failing the attempt
            # (the heartbeat, not this, is what tells a job it lost its lease)
            log.warning("progress of job %s not recorded: %s", self.job_id, exc,
                        extra={"job_id": self.job_id})  # fmt: skip
            return
        if not accepted:
            raise LeaseLost(self.job_id, self.attempt)

    async def job(self) -> Job:
        """The job's whole record, as stored now."""
        return await self._client.get_job(self.job_id)

    async def store_data(
        self, data: Any, key: str | None = None, expiry: float | None = None
    ) -> str:
        return await self._client.store_data(data, key, expiry)

    async def fetch_data(self, key: str) -> Any:
        return await self._client.fetch_data(key)

    async def post(self, msg: Any, *, key: str | None = None, **options: Unpack[PostKwargs]) -> str:
        """Post a job to this queue (the same options as Client.post)."""
        return await self._client.post(msg, key=key, **options)

    async def block_until_result(self, job_id: str, timeout: float | None = None) -> Any:
        """Await another job's result. This job's execution slot is lent out meanwhile, so even
        a worker with a single slot can run the job awaited."""
        reacquire = await self._release_slot()
        try:
            return await self._client.block_until_result(job_id, timeout)
        finally:
            await reacquire()


class SyncContext:
    """The same context for plain-function listeners, which run in worker threads."""

    def __init__(self, context: Context) -> None:
        self._context = context
        self.job_id = context.job_id
        self.attempt = context.attempt
        self.max_attempts = context.max_attempts
        self.retries = context.retries
        self.worker_id = context.worker_id
        self.queue = context.queue

    def update_progress(self, value: Any, message: str | None = None) -> None:
        anyio.from_thread.run(self._context.update_progress, value, message)

    def job(self) -> Job:
        return anyio.from_thread.run(self._context.job)

    def store_data(self, data: Any, key: str | None = None, expiry: float | None = None) -> str:
        return anyio.from_thread.run(self._context.store_data, data, key, expiry)

    def fetch_data(self, key: str) -> Any:
        return anyio.from_thread.run(self._context.fetch_data, key)

    def post(self, msg: Any, *, key: str | None = None, **options: Unpack[PostKwargs]) -> str:
        return anyio.from_thread.run(lambda: self._context.post(msg, key=key, **options))

    def block_until_result(self, job_id: str, timeout: float | None = None) -> Any:
        return anyio.from_thread.run(self._context.block_until_result, job_id, timeout)
