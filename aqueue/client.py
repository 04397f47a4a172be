"""The async producer API: post jobs, read them, await their results, cancel, manage dead letters.

async with Client("app") as client:
    job_id = await client.post({"x": 1}, functions=["train"])
    result = await client.block_until_result(job_id, timeout=60)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import uuid
from collections.abc import AsyncGenerator, Iterable, Sequence
from dataclasses import replace
from types import TracebackType
from typing import Any, Self, Unpack

import anyio
import msgpack
from anyio.streams.memory import MemoryObjectSendStream

from aqueue import _codec
from aqueue._checks import MOST_JOB_ID_CHARS, MOST_KEY_CHARS, is_number, seconds
from aqueue._options import PostKwargs, post_options
from aqueue._redis.backoff import follow
from aqueue._redis.coalesce import Coalescer
from aqueue._redis.connection import open_store
from aqueue._redis.pubsub import SharedSubscription
from aqueue._redis.records import decode_job, remembered_job_fields, stored_status, worker_infos
from aqueue._redis.results import REF, Stored, stored_data, stored_result
from aqueue._redis.store import NewJobs, Store
from aqueue.config import ClientConfig
from aqueue.errors import (
    DataNotFound,
    InvalidTransition,
    JobFailed,
    JobNotFound,
    MessageError,
    MessageTooLarge,
    RedisUnavailable,
    ResultTimeout,
)
from aqueue.job import TERMINAL, Job, JobEvent, JobStatus, Progress

log = logging.getLogger(__name__)

_TERMINAL_NAMES = frozenset(s.value.encode() for s in TERMINAL)
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
        self._waiters: dict[str, set[anyio.Event]] = {}
        self._results: dict[str, bytes] = {}  # small results pushed with completion events
        # Single posts made while subscribed are watched from the start (see post): job id ->
        # the subscription epoch they were posted in; and those that ended with nobody
        # waiting yet: job id -> (status, small result or None). Both bounded, oldest out.
        self._epoch = 0  # counts (re)subscriptions: events between two may have been lost
        self._subscribed = False
        self._posted: dict[str, int] = {}
        self._ended: dict[str, tuple[bytes, bytes | None]] = {}
        self._watchers: dict[str, set[MemoryObjectSendStream[JobEvent]]] = {}
        # a watcher's final event that found its buffer full (see _tell)
        self._finals: dict[MemoryObjectSendStream[JobEvent], JobEvent] = {}
        self._listener: asyncio.Task[None] | None = None
        self._shared: SharedSubscription | None = None  # listens there instead (see over)
        self._joined = False
        self._listen_lock = anyio.Lock()
        self._posts: Coalescer | None = None  # posts made at the same time go together

    @classmethod
    def over(
        cls, store: Store, config: ClientConfig, shared: SharedSubscription | None = None
    ) -> Client:
        """A client sharing an open Store (the worker's, for listeners' contexts). With
        `shared`, it listens for events there, and only while someone of its own waits: a
        service's clients of many queues then hold no connection each."""
        client = cls(config=config)
        client._store = store
        client._shared = shared
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
            stack.push_async_callback(self._stop_listening)
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
        posts, self._posts = self._posts, None
        if posts is not None:
            await posts.aclose()

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
        short_result added to its query, or with `callback_method="POST"` the JSON record);
        `priority`: -100..100, higher first;
        `delay` seconds or `at` (an aware datetime or epoch seconds): run no earlier;
        `timeout`: seconds each attempt may run; `retry`: a RetryPolicy or a number of retries;
        `key`: idempotency key, a second post with it returns the first job's id;
        `ttl`: seconds the finished job and its result are kept.
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
        watched_in = self._epoch if len(messages) == 1 and self._listening() else None
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
            key = "" if keys is None else _check_key(keys[i])
            # as random as uuid4, without the UUID object
            jobs.append((os.urandom(16).hex(), key, shape.pack(encoded)))
        key_ttl_ms = int(1000 * ttl)
        new = NewJobs(
            signature, checked.priority, checked.delay_ms, checked.at_ms, watched_in is not None,
            common, jobs,
            self.config.max_unserved_lanes,
        )  # fmt: skip
        if self._posts is None:
            self._posts = Coalescer(self.store.post)
        if watched_in is None:
            return await self._posts.post(new, key_ttl_ms)
        # Ours before it is sent: its outcome can reach the subscription before the reply does.
        new_ids = [new_id for new_id, _, _ in jobs]
        for new_id in new_ids:
            _remember(self._posted, new_id, watched_in)
        ids: list[str] = []
        try:
            ids = await self._posts.post(new, key_ttl_ms)
        finally:
            made = set(ids)
            for new_id in new_ids:
                if new_id not in made:  # not posted, or a key's earlier job (not watched)
                    self._posted.pop(new_id, None)
                    self._ended.pop(new_id, None)
        return ids

    # -- reading -------------------------------------------------------------------------

    async def get_job(self, job_id: str) -> Job:
        """The whole record of a job; JobNotFound if there is none."""
        fields = await self.store.job_fields(_check_id(job_id))
        if "status" not in fields:  # none, or callback fields an older build left behind
            raise JobNotFound(job_id, self.queue)
        job = decode_job(job_id, self.queue, fields)
        if job.callback_state not in (None, "pending"):  # claimed: maybe lost to a crash
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

    async def get_progress(self, job_id: str) -> Progress | None:
        """The latest progress a listener reported, or None if none yet."""
        value, message, status = await self.store.job_field_values(
            _check_id(job_id), ["progress", "progress_msg", "status"]
        )
        if status is None:
            raise JobNotFound(job_id, self.queue)
        if value is None:
            return None
        return Progress(
            _codec.decode(value, f"progress of job {job_id!r}"),
            message.decode(errors="replace") if message else None,
        )

    async def get_result(self, job_id: str) -> Any:
        """The result of a finished job; JobFailed if it did not complete, InvalidTransition
        (status still pending) if it has not finished."""
        stored = await self._stored_result(job_id)
        return None if stored is None else await stored.value()

    async def _stored_result(self, job_id: str) -> Stored | None:
        """A complete job's stored result (None: it has none), read no further than its first
        chunk; the errors of get_result."""
        status, result, err_type, err_msg, err_tb = await self.store.job_field_values(
            _check_id(job_id), ["status", "result", "err_type", "err_msg", "err_tb"]
        )
        if status is None:
            raise JobNotFound(job_id, self.queue)
        name = status.decode()
        if name == JobStatus.COMPLETE:
            return None if result is None else await stored_result(self.store, job_id, result)
        if status in _TERMINAL_NAMES:
            raise JobFailed(job_id, name, _str(err_type), _str(err_msg), _str(err_tb))
        raise InvalidTransition(job_id, "read the result of", name)

    async def block_until_result(self, job_id: str, timeout: float | None = None) -> Any:
        """Wait for the job to finish and return its result (a value, not a string of it).

        Completion is pushed (one subscription per client, however many jobs are awaited);
        the stored state is read after subscribing, so a job that already finished returns
        at once. Raises JobFailed (carrying the remote error), ResultTimeout, JobNotFound.
        """
        _check_id(job_id)
        if timeout is not None and (not is_number(timeout) or math.isnan(timeout)):
            raise MessageError(f"timeout must be a number of seconds or None, got {timeout!r}")
        await self._listen_or_leave()
        ended = self._ended.pop(job_id, None)
        if ended is not None:  # posted watched, and its outcome already heard
            self._posted.pop(job_id, None)
            if ended[1] is not None:
                return await self._pushed_result(job_id, ended[1])
            return await self.get_result(job_id)
        # posted watched in this subscription: its outcome will reach us, no watch needed
        heard = self._posted.pop(job_id, None) == self._epoch
        done = anyio.Event()
        self._waiters.setdefault(job_id, set()).add(done)
        try:
            [status] = [b"posted"] if heard else await self.store.watch([job_id])
            if status is None:
                raise JobNotFound(job_id, self.queue)
            if status not in _TERMINAL_NAMES:
                with anyio.move_on_after(timeout) as scope:
                    await done.wait()
                if scope.cancelled_caught:
                    [status] = await self.store.statuses([job_id])
                    if status not in _TERMINAL_NAMES:
                        now = status.decode() if status else "gone"
                        raise ResultTimeout(job_id, timeout or 0.0, now)
            pushed = self._results.get(job_id)
        finally:
            waiters = self._waiters.get(job_id)
            if waiters is not None:
                waiters.discard(done)
                if not waiters:
                    del self._waiters[job_id]
                    self._results.pop(job_id, None)
            self._leave_if_idle()
        if pushed is not None:  # came with the completion event: no read needed
            return await self._pushed_result(job_id, pushed)
        return await self.get_result(job_id)

    async def _pushed_result(self, job_id: str, pushed: bytes) -> Any:
        """A result that came with its completion event: the value, or a large one's reference
        to its chunks (aqueue/_redis/results.py), read from them."""
        if pushed[:1] != REF:
            return _codec.decode(pushed, f"result of job {job_id!r}")
        return await (await stored_result(self.store, job_id, pushed)).value()

    async def _ensure_listening(self) -> None:
        if self._shared is not None:
            await self._join()
            return
        if self._listener is not None and not self._listener.done():
            return
        async with self._listen_lock:
            if self._listener is None or self._listener.done():
                # A task of the client's own rather than a task group's child: a client lives
                # from __aenter__ to __aexit__, which web frameworks and pytest fixtures run in
                # different tasks, so no task group could span it. __aexit__ cancels it.
                started = anyio.Event()
                self._listener = asyncio.get_running_loop().create_task(self._listen(started))
                self._listener.add_done_callback(_log_crash)
                with anyio.move_on_after(30) as waited:
                    await started.wait()
                if waited.cancelled_caught:
                    raise RedisUnavailable("could not subscribe to job events within 30 s")

    async def _listen_or_leave(self) -> None:
        try:
            await self._ensure_listening()
        except BaseException:  # cancelled once joined, say: nobody will wait to leave it
            self._leave_if_idle()
            raise

    async def _join(self) -> None:
        async with self._listen_lock:
            if self._shared is not None and not self._joined:
                with anyio.move_on_after(30) as waited:
                    await self._shared.join(self.store.keys.events, self._on_event)
                    self._joined = True
                if waited.cancelled_caught:
                    raise RedisUnavailable("could not subscribe to job events within 30 s")

    def _leave_if_idle(self) -> None:
        """A client over a shared subscription leaves it once nobody of its own waits."""
        if self._joined and self._shared is not None and not self._waiters and not self._watchers:
            self._shared.leave(self.store.keys.events, self._on_event)
            self._joined = self._subscribed = False

    async def _stop_listening(self) -> None:
        if self._joined and self._shared is not None:
            self._shared.leave(self.store.keys.events, self._on_event)
            self._joined = self._subscribed = False
        task, self._listener = self._listener, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _listen(self, started_event: anyio.Event) -> None:
        """Deliver terminal status events to waiters; after every (re)subscribe, re-read the
        stored status of everything awaited, since events during an outage are lost."""
        await follow(self.store, [self.store.keys.events], self._on_event, started_event.set,
                     "result")  # fmt: skip

    def _listening(self) -> bool:
        if self._joined:
            return self._subscribed
        return self._subscribed and self._listener is not None and not self._listener.done()

    async def _on_event(self, channel: str, data: bytes | None) -> None:
        if data is None:
            self._epoch += 1  # what was posted watched before may have ended unheard
            self._subscribed = True
            await self._recheck_waiters()
            await self._recheck_watchers()
            return
        await self._on_change(data)  # one it cannot read is logged and passed over (follow)

    async def _on_change(self, data: bytes) -> None:
        # raw: Lua's cmsgpack packs every string as str, binary ones included
        raw_id, kind, *rest = msgpack.unpackb(data, raw=True)
        job_id = raw_id.decode()
        if kind == b"status":
            if rest[0] in _TERMINAL_NAMES:
                result = rest[1] if len(rest) > 1 else None
                if job_id in self._waiters:
                    if result is not None:
                        self._results[job_id] = result
                    self._wake(job_id)
                elif job_id in self._posted:  # ours, not awaited yet: keep it for when it is
                    forgotten = _remember(self._ended, job_id, (rest[0], result))
                    if forgotten is not None:  # then awaiting it asks Redis again
                        self._posted.pop(forgotten, None)
            self._tell(JobEvent(job_id, status=stored_status(rest[0])))
        elif kind == b"purged":  # the queue was emptied: whoever waits must look again
            self._posted.clear()
            self._ended.clear()
            await self._recheck_waiters()
        elif kind == b"active":  # a claim: one event for its whole batch
            for claimed in rest[0]:
                if claimed.decode() in self._watchers:
                    self._tell(JobEvent(claimed.decode(), status=JobStatus.ACTIVE))
        elif kind == b"progress" and job_id in self._watchers:
            message = rest[1].decode(errors="replace") or None
            self._tell(JobEvent(job_id, progress=Progress(_codec.decode(rest[0]), message)))

    async def _recheck_waiters(self) -> None:
        ids = list(self._waiters)
        if not ids:
            return
        for job_id, status in zip(ids, await self.store.statuses(ids), strict=True):
            if status is None or status in _TERMINAL_NAMES:
                self._wake(job_id)

    async def _recheck_watchers(self) -> None:
        for job_id in list(self._watchers):
            for event in await self._current_events(job_id):
                self._tell(event)

    def _tell(self, event: JobEvent) -> None:
        for stream in self._watchers.get(event.job_id, ()):
            try:
                stream.send_nowait(event)
            except anyio.WouldBlock:  # a slow reader misses intermediate events...
                if event.is_final:  # ...but not the last: its stream ends, then it comes
                    self._finals[stream] = event
                    stream.close()
            except anyio.ClosedResourceError:  # ended so, above
                pass

    async def _current_events(self, job_id: str) -> list[JobEvent]:
        await self.store.watch([job_id])
        status, value, message = await self.store.job_field_values(
            job_id, ["status", "progress", "progress_msg"]
        )
        if status is None:
            raise JobNotFound(job_id, self.queue)
        events = []
        if value is not None:
            progress = Progress(
                _codec.decode(value, f"progress of job {job_id!r}"),
                message.decode(errors="replace") if message else None,
            )
            events.append(JobEvent(job_id, progress=progress))
        events.append(JobEvent(job_id, status=stored_status(status)))
        return events

    async def watch(self, job_id: str) -> AsyncGenerator[JobEvent, None]:
        """The job's progress and status changes as they happen: first its current state,
        then each change, ending with its final status. Pushed, never polled.

        Leaving early? Close it: `async with contextlib.aclosing(client.watch(id)) as events`.
        """
        _check_id(job_id)
        await self._listen_or_leave()
        send, receive = anyio.create_memory_object_stream[JobEvent](256)
        self._watchers.setdefault(job_id, set()).add(send)
        try:
            for event in await self._current_events(job_id):
                yield event
                if event.is_final:
                    return
            async for event in receive:
                yield event
                if event.is_final:
                    return
            final = self._finals.pop(send, None)
            if final is not None:
                yield final
        finally:
            receive.close()
            self._finals.pop(send, None)
            watchers = self._watchers.get(job_id)
            if watchers is not None:
                watchers.discard(send)
                if not watchers:
                    del self._watchers[job_id]
            send.close()
            self._leave_if_idle()

    def _wake(self, job_id: str) -> None:
        for event in self._waiters.get(job_id, ()):
            event.set()

    # -- changing ------------------------------------------------------------------------

    async def cancel(self, job_id: str) -> JobStatus:
        """Cancel a job: a queued one never runs, a running one's listener is cancelled.
        Returns the status it had; InvalidTransition if it already finished."""
        verdict, before = await self.store.cancel(_check_id(job_id))
        if verdict == "missing":
            raise JobNotFound(job_id, self.queue)
        if verdict == "refused":
            raise InvalidTransition(job_id, "cancel", before or "?")
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
        verdict, before = await self.store.requeue(_check_id(job_id))
        if verdict == "missing":
            raise JobNotFound(job_id, self.queue)
        if verdict == "refused":
            raise InvalidTransition(job_id, "requeue", before or "?")
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
        key = uuid.uuid4().hex if key is None else _check_key(key)
        ttl = self.config.data_ttl if expiry is None else seconds("expiry", expiry, least=0.001)
        await self.store.set_data(key, _codec.encode(data, "data"), int(ttl * 1000))
        return key

    async def fetch_data(self, key: str) -> Any:
        raw = await self.store.get_data(_check_key(key))
        if raw is None:
            raise DataNotFound(key, self.queue)
        return _codec.decode(raw, f"data at key {key!r}")

    async def _stored_data(self, key: str) -> Stored:
        """The data at `key`, read no further than its first chunk (for streaming it)."""
        return await stored_data(self.store, _check_key(key), lambda: DataNotFound(key, self.queue))


_REMEMBERED = 10_000


def _remember(into: dict[str, Any], key: str, value: Any) -> str | None:
    """Keep `key` in a bounded record; the oldest key it pushed out, if any."""
    into[key] = value
    if len(into) > _REMEMBERED:
        oldest = next(iter(into))
        del into[oldest]
        return oldest
    return None


def _log_crash(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("result subscription failed", exc_info=task.exception())


def _check_id(job_id: str) -> str:
    return _check_text("job id", job_id, MOST_JOB_ID_CHARS)


def _check_key(key: str) -> str:
    return _check_text("key", key, MOST_KEY_CHARS)


def _check_text(name: str, text: str, most: int) -> str:
    if not isinstance(text, str) or not text or len(text) > most:
        raise MessageError(
            f"{name} must be a non-empty string of at most {most} characters, got {text!r}"
        )
    try:
        text.encode()
    except UnicodeEncodeError:
        raise MessageError(
            f"{name} {text!r} is not valid Unicode text (a lone surrogate?)"
        ) from None
    return text


def _str(raw: bytes | None) -> str | None:
    return None if raw is None else raw.decode(errors="replace")
