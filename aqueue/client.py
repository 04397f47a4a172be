"""The async producer API: post jobs, read them, await their results, cancel, manage dead letters.

async with Client("app") as client:
    job_id = await client.post({"x": 1}, functions=["train"])
    result = await client.block_until_result(job_id, timeout=60)
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import os
import uuid
from collections.abc import AsyncGenerator, Iterable, Sequence
from dataclasses import replace
from types import TracebackType
from typing import Any, Self, Unpack

import anyio

from aqueue import _codec
from aqueue._checks import check_job_id, check_key, is_number, seconds
from aqueue._client import trace as _trace
from aqueue._client.events import TERMINAL_NAMES, JobEvents, stored_progress
from aqueue._client.trace import Trace
from aqueue._options import PostKwargs, post_options
from aqueue._redis.backoff import Backoff
from aqueue._redis.calls import NewJobs
from aqueue._redis.coalesce import Coalescer
from aqueue._redis.connection import open_store
from aqueue._redis.pubsub import SharedSubscription
from aqueue._redis.records import decode_job, remembered_job_fields, worker_infos
from aqueue._redis.results import REF, Stored, stored_data, stored_result
from aqueue._redis.store import Store
from aqueue._states import GONE, CallbackState, Event
from aqueue.config import ClientConfig
from aqueue.errors import (
    DataNotFound,
    InvalidTransition,
    JobFailed,
    JobNotFound,
    MessageError,
    MessageTooLarge,
    NotDurable,
    RedisUnavailable,
    ResultTimeout,
)
from aqueue.job import Job, JobEvent, JobStatus, Progress

log = logging.getLogger(__name__)

# the most message bytes one post_many takes: it goes to Redis as one argument of one script
# call, and Redis takes none over 512 MB (proto-max-bulk-len)
MOST_POST_BYTES = 256 * 1024 * 1024


class Client:
    """A connection to one queue. Use it as an async context manager."""

    def __init__(
        self,
        queue: str = "default",
        *,
        redis_url: str | None = None,
        config: ClientConfig | None = None,
    ) -> None:
        self.config = config or ClientConfig(queue=queue, redis_url=redis_url)
        self._store: Store | None = None
        self._stack: contextlib.AsyncExitStack | None = None
        self._events = JobEvents(lambda: self.store, self.config.queue)
        self._posts: Coalescer | None = None  # posts made at the same time go together
        self._durable_posts: Coalescer | None = None  # and those asked to be durable, apart

    @classmethod
    def over(
        cls, store: Store, config: ClientConfig, shared: SharedSubscription | None = None
    ) -> Client:
        """A client sharing an open Store (the worker's, for listeners' contexts). With
        `shared`, it listens for events there, and only while someone of its own waits: a
        service's clients of many queues then hold no connection each."""
        client = cls(config=config)
        client._store = store
        client._events = JobEvents(lambda: client.store, config.queue, shared)
        return client

    async def __aenter__(self) -> Self:
        stack = contextlib.AsyncExitStack()
        async with stack:
            if self._store is None:
                self._store = await stack.enter_async_context(
                    open_store(
                        self.config.redis_url,
                        self.config.queue,
                        self.config.max_connections,
                        name=f"aqueue-client-{os.getpid()}",
                    )
                )
            stack.push_async_callback(self._events.stop)
            stack.push_async_callback(self._close_posts)  # (before the store closes)
            self._stack = stack.pop_all()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        stack, self._stack = self._stack, None
        if stack is not None:
            await stack.__aexit__(exc_type, exc, tb)

    async def _close_posts(self) -> None:
        posts, self._posts, durable, self._durable_posts = (
            self._posts,
            None,
            self._durable_posts,
            None,
        )
        for coalescer in (posts, durable):
            if coalescer is not None:
                await coalescer.aclose()

    def _open_posts(self, asked: bool) -> Coalescer:
        """Where posts go: those `asked` to be durable (post(durable=True)) apart from the
        others; either waits for its threshold (ClientConfig.durability), if any."""
        durability = self.config.durability(asked)
        send = self.store.post if durability is None else functools.partial(
            self.store.post, durable=durability
        )  # fmt: skip
        coalescer = Coalescer(send)
        if asked:
            self._durable_posts = coalescer
        else:
            self._posts = coalescer
        return coalescer

    @property
    def store(self) -> Store:
        if self._store is None:
            raise RuntimeError("use the client inside `async with Client(...) as client:`")
        return self._store

    @property
    def queue(self) -> str:
        return self.config.queue

    # -- posting -------------------------------------------------------------------------

    async def post(self, msg: Any, *, key: str | None = None, **options: Unpack[PostKwargs]) -> str:
        """Enqueue `msg`; returns the job's id at once.

        `functions`: the listeners to run, in order (None: every listener of the worker);
        `callback`: a URL called when the job ends (MLQ-style GET with success, job_id and
        short_result added to its query; with `callback_method` "POST", the JSON record);
        `priority`: -100..100, higher first;
        `delay` seconds or `at` (an aware datetime or epoch seconds): run no earlier;
        `timeout`: seconds each attempt may run; `retry`: a RetryPolicy or a number of retries;
        `key`: idempotency key, a second post with it returns the first job's id;
        `ttl`: seconds the finished job and its result are kept;
        `durable`: return only once replicas acknowledged the post (WAIT; and the local fsync,
        WAITAOF, with durable_local), as ClientConfig's replicas, durable_timeout and
        durable_local say (one replica where none is set), else NotDurable (the job stands).
        (All of them: aqueue/_options.py.)
        """
        [job_id] = await self.post_many([msg], keys=None if key is None else [key], **options)
        return job_id

    async def post_many(
        self,
        msgs: Iterable[Any],
        *,
        keys: Sequence[str] | None = None,
        **options: Unpack[PostKwargs],
    ) -> list[str]:
        """Enqueue many messages with the same options in one round trip; their ids in order.

        Every message is encoded and checked before anything is sent: one bad message
        refuses the whole batch.
        """
        messages = list(msgs)
        # A client that awaits results hears every outcome of its own single posts: they are
        # posted watched, and block_until_result then needs no watch round trip of its own.
        watched = len(messages) == 1 and self._events.subscription.listening
        if keys is not None and len(keys) != len(messages):
            raise MessageError(f"keys has {len(keys)} entries for {len(messages)} messages")
        checked = post_options(options)
        ttl = self.config.result_ttl if checked.ttl is None else checked.ttl
        common, signature, shape = remembered_job_fields(
            functions=checked.functions,
            callback=checked.callback,
            callback_method=checked.callback_method,
            priority=checked.priority,
            timeout=checked.timeout,
            retry=checked.policy,
            ttl=ttl,
        )
        jobs = []
        total = 0
        for i, msg in enumerate(messages):
            encoded = _codec.encode(msg, "message" if len(messages) == 1 else f"message {i}")
            if len(encoded) > self.config.max_message_bytes:
                raise MessageTooLarge(len(encoded), self.config.max_message_bytes)
            total += len(encoded)
            if total > MOST_POST_BYTES:  # one post is one script call, never split
                raise MessageTooLarge(
                    total, MOST_POST_BYTES, f"the batch, up to message {i},", "post fewer at once"
                )
            key = "" if keys is None else check_key(keys[i])
            # as random as uuid4, without the UUID object
            jobs.append((os.urandom(16).hex(), key, shape.pack(encoded)))
        key_ttl_ms = int(1000 * ttl)
        new = NewJobs(
            signature, checked.priority, checked.delay_ms, checked.at_ms, watched,
            common, jobs,
            self.config.max_unserved_lanes,
        )  # fmt: skip
        posts = self._durable_posts if checked.durable else self._posts
        if posts is None:
            posts = self._open_posts(checked.durable)
        if not watched:
            return await posts.post(new, key_ttl_ms)
        new_ids = [new_id for new_id, _, _ in jobs]
        self._events.watched.posting(new_ids)
        ids: list[str] = []
        try:
            ids = await posts.post(new, key_ttl_ms)
        except NotDurable as exc:  # posted all the same
            ids = exc.job_ids
            raise
        finally:
            self._events.watched.posted(new_ids, set(ids))
        return ids

    # -- reading -------------------------------------------------------------------------

    async def get_job(self, job_id: str) -> Job:
        """The whole record of a job; JobNotFound if there is none."""
        fields = await self.store.job_fields(check_job_id(job_id))
        if "status" not in fields:  # none, or stray fields with no record (a late write)
            raise JobNotFound(job_id, self.queue)
        job = decode_job(job_id, self.queue, fields)
        if job.callback_state not in (None, CallbackState.PENDING):  # claimed: maybe lost
            job = replace(job, callback_log=tuple(await self.store.callback_log(job_id)))
        if job.status is JobStatus.QUEUED:
            job = await self._explain_wait(job)
        return job

    async def _explain_wait(self, job: Job) -> Job:
        """Say what a queued job waits for, and whether any live worker can run it."""
        infos = worker_infos(await self.store.live_workers())
        needed = set(job.functions)
        able = [i for i in infos if needed <= set(i.get("listeners", ())) and i.get("listeners")]
        if able:
            reason = f"waiting for a free slot on one of {len(able)} live worker(s) that can run it"
        else:
            wanted = ", ".join(job.functions) or "any listener"
            reason = f"waiting for a worker with listeners: {wanted} (no live worker has them)"
        return replace(job, waiting_for=job.functions, reason=job.reason or reason)

    async def trace(self, root: str) -> Trace:
        """Where did it stop? The pipeline's jobs from `root` (a job of this queue), stage by
        stage: per queue, its jobs by status, those that ended badly and why, errors routed
        there, and work waiting where no live worker serves the queue (`Trace.stopped_at`)."""
        return await _trace.trace(self.store, self.queue, check_job_id(root))

    async def get_progress(self, job_id: str) -> Progress | None:
        """The latest progress a listener reported, or None if none yet."""
        value, message, status = await self.store.job_field_values(
            check_job_id(job_id), ["progress", "progress_msg", "status"]
        )
        if status is None:
            raise JobNotFound(job_id, self.queue)
        if value is None:
            return None
        return stored_progress(job_id, value, message)

    async def get_result(self, job_id: str) -> Any:
        """The result of a finished job; JobFailed if it did not complete, InvalidTransition
        (status still pending) if it has not finished."""
        stored = await self._stored_result(job_id)
        return None if stored is None else await stored.value()

    async def _stored_result(self, job_id: str) -> Stored | None:
        """A complete job's stored result (None: it has none), read no further than its first
        chunk; the errors of get_result."""
        status, result, err_type, err_msg, err_tb = await self.store.job_field_values(
            check_job_id(job_id), ["status", "result", "err_type", "err_msg", "err_tb"]
        )
        if status is None:
            raise JobNotFound(job_id, self.queue)
        name = status.decode()
        if name == JobStatus.COMPLETE:
            return None if result is None else await stored_result(self.store, job_id, result)
        if status in TERMINAL_NAMES:
            raise JobFailed(job_id, name, _str(err_type), _str(err_msg), _str(err_tb))
        raise InvalidTransition(job_id, "read the result of", name)

    async def block_until_result(self, job_id: str, timeout: float | None = None) -> Any:
        """Wait for the job to finish and return its result (a value, not a string of it).

        Completion is pushed (one subscription per client, however many jobs are awaited);
        the stored state is read after subscribing, so a job that already finished returns
        at once. Raises JobFailed (carrying the remote error), ResultTimeout, JobNotFound.
        A Redis outage (a failover, say) is waited out, as the subscription waits it out:
        its reads are tried again with backoff, logged, and RedisUnavailable is raised only
        once `timeout` has passed.
        """
        check_job_id(job_id)
        if timeout is not None and (not is_number(timeout) or math.isnan(timeout)):
            raise MessageError(f"timeout must be a number of seconds or None, got {timeout!r}")
        deadline = None if timeout is None else anyio.current_time() + timeout
        backoff = Backoff()
        left = timeout
        while True:
            try:
                return await self._await_result(job_id, left, timeout or 0.0)
            except RedisUnavailable as exc:
                if deadline is not None and (left := deadline - anyio.current_time()) <= 0:
                    raise
                log.warning(
                    "awaiting job %s: %s; trying again in %.2f s", job_id, exc, backoff.delay
                )
                with anyio.move_on_after(left):
                    await backoff.sleep()
                if deadline is not None:
                    left = max(0.0, deadline - anyio.current_time())

    async def _await_result(self, job_id: str, timeout: float | None, asked: float) -> Any:
        """block_until_result, once: `timeout` is what is left of the `asked` seconds."""
        await self._events.listen_or_leave()
        ended = self._events.watched.take_ended(job_id)
        if ended is not None:  # posted watched, and its outcome already heard
            if ended[1] is not None:
                return await self._pushed_result(job_id, ended[1])
            return await self.get_result(job_id)
        # posted watched in this subscription: its outcome will reach us, no watch needed
        heard = self._events.watched.heard_from_the_start(job_id)
        done = self._events.waiters.add(job_id)
        try:
            [status] = [b"posted"] if heard else await self.store.watch([job_id])
            if status is None:
                raise JobNotFound(job_id, self.queue)
            if status not in TERMINAL_NAMES:
                with anyio.move_on_after(timeout) as scope:
                    await done.wait()
                if scope.cancelled_caught:
                    [status] = await self.store.statuses([job_id])
                    if status not in TERMINAL_NAMES:
                        now = status.decode() if status else str(GONE)
                        raise ResultTimeout(job_id, asked, now)
            pushed = self._events.waiters.result(job_id)
        finally:
            self._events.waiters.remove(job_id, done)
            self._events.leave_if_idle()
        if pushed is not None:  # came with the completion event: no read needed
            return await self._pushed_result(job_id, pushed)
        return await self.get_result(job_id)

    async def _pushed_result(self, job_id: str, pushed: bytes) -> Any:
        """A result that came with its completion event: the value, or a large one's reference
        to its chunks (aqueue/_redis/results.py), read from them."""
        if pushed[:1] != REF:
            return _codec.decode(pushed, f"result of job {job_id!r}")
        return await (await stored_result(self.store, job_id, pushed)).value()

    async def watch(self, job_id: str) -> AsyncGenerator[JobEvent, None]:
        """The job's progress and status changes as they happen: first its current state,
        then each change, ending with its final status. Pushed, never polled.

        Leaving early? Close it: `async with contextlib.aclosing(client.watch(id)) as events`.
        """
        check_job_id(job_id)
        await self._events.listen_or_leave()
        send, receive = self._events.watchers.open(job_id)
        try:
            for event in await self._events.current(job_id):
                yield event
                if event.is_final:
                    return
            async for event in receive:
                yield event
                if event.is_final:
                    return
            final = self._events.watchers.final(send)
            if final is not None:
                yield final
        finally:
            self._events.watchers.close(job_id, send, receive)
            self._events.leave_if_idle()

    # -- changing ------------------------------------------------------------------------

    async def cancel(self, job_id: str) -> JobStatus:
        """Cancel a job: a queued one never runs, a running one's listener is cancelled.
        Returns the status it had; InvalidTransition if it already finished."""
        verdict, before = await self.store.cancel(check_job_id(job_id))
        if verdict == "missing":
            raise JobNotFound(job_id, self.queue)
        if verdict == "refused":
            raise InvalidTransition(job_id, Event.CANCEL, before or "?")
        return JobStatus(before or "")

    async def dead_letters(self, offset: int = 0, count: int = 100) -> list[Job]:
        """Jobs in the dead-letter queue, oldest first."""
        for name, value in (("offset", offset), ("count", count)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise MessageError(f"{name} must be an int >= 0, got {value!r}")
        jobs = []
        for job_id in await self.store.dead_ids(offset, count):
            with contextlib.suppress(JobNotFound, MessageError):  # an entry naming no job
                jobs.append(await self.get_job(job_id))
        return jobs

    async def requeue(self, job_id: str) -> JobStatus:
        """Put a dead, failed or cancelled job back in the queue with a fresh retry budget.
        Returns the status it had."""
        verdict, before = await self.store.requeue(check_job_id(job_id))
        if verdict == "missing":
            raise JobNotFound(job_id, self.queue)
        if verdict == "refused":
            raise InvalidTransition(job_id, Event.REQUEUE, before or "?")
        return JobStatus(before or "")

    async def purge_dead(self) -> int:
        """Delete every dead-lettered job of this queue; how many."""
        return await self.store.purge_dead()

    async def purge(self) -> int:
        """Delete everything of this queue: jobs, results, data, counters. Other queues stay."""
        return await self.store.purge_queue()

    async def counts(self) -> dict[str, int]:
        return await self.store.counts()

    # -- data ----------------------------------------------------------------------------

    async def store_data(
        self, data: Any, key: str | None = None, expiry: float | None = None
    ) -> str:
        """Store any msgpack value (bytes stay bytes) under `key` (a new one if None), expiring
        after `expiry` seconds (the configured default if None). Returns the key."""
        key = uuid.uuid4().hex if key is None else check_key(key)
        ttl = self.config.data_ttl if expiry is None else seconds("expiry", expiry, least=0.001)
        await self.store.set_data(key, _codec.encode(data, "data"), int(ttl * 1000))
        return key

    async def fetch_data(self, key: str) -> Any:
        raw = await self.store.get_data(check_key(key))
        if raw is None:
            raise DataNotFound(key, self.queue)
        return _codec.decode(raw, f"data at key {key!r}")

    async def _stored_data(self, key: str) -> Stored:
        """The data at `key`, read no further than its first chunk (for streaming it)."""
        return await stored_data(self.store, check_key(key), lambda: DataNotFound(key, self.queue))


def _str(raw: bytes | None) -> str | None:
    return None if raw is None else raw.decode(errors="replace")
