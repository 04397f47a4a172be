"""Server-Sent Events of a job's progress and status (GET /jobs/{id}/events)."""

from __future__ import annotations

import contextlib
import logging
from typing import Any

import anyio
from aiohttp import web
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from aqueue._http.base import STATE, _dumps
from aqueue._http.jobs import _job_client
from aqueue._redis.records import stored_status
from aqueue.client import Client
from aqueue.errors import (
    AqueueError,
    JobNotFound,
)
from aqueue.job import JobEvent, JobStatus

log = logging.getLogger(__name__)

# -- Server-Sent Events ----------------------------------------------------------------------


async def job_events(request: web.Request) -> web.StreamResponse:
    """Server-Sent Events of a job: `progress` and `status` as they happen, then `outcome`.

    Each event has an id `<n>:<status>` (a counter, and the job's status when it was sent).
    Progress is a level, not a log: a client that reconnects with `Last-Event-ID` resumes from
    the job's current state (its latest progress and status), not from the events it missed,
    and its ids go on from n. One whose last event was the outcome gets 204 No Content, which
    tells a browser's EventSource to stop reconnecting. A comment every `keepalive` seconds
    keeps proxies from closing an idle stream; the service ends a stream at its shutdown, and
    after `stream_limit` seconds if set: clients reconnect, with the last id they saw.
    """
    state = request.app[STATE]
    client, job_id = await _job_client(request)
    seq, seen = _last_event_id(request.headers.get("Last-Event-ID", ""))
    [raw] = await client.store.statuses([job_id])
    if raw is None:
        raise JobNotFound(job_id, client.queue)
    if seen is not None and seen.is_terminal:
        return web.Response(status=204)
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream; charset=utf-8",
            "Cache-Control": "no-cache, no-transform",
            "X-Accel-Buffering": "no",  # nginx: pass each event on at once
        }
    )
    await response.prepare(request)
    sse = _EventWriter(response, job_id, seq, stored_status(raw))
    closing = state.closing or anyio.Event()
    with anyio.move_on_after(state.config.stream_limit):
        await _stream(sse, client, closing, state.config.keepalive)
    with contextlib.suppress(ConnectionResetError):
        await response.write_eof()
    return response


def _last_event_id(value: str) -> tuple[int, JobStatus | None]:
    """The counter and the status of an id `<n>:<status>`; what cannot be read, (0, None)."""
    number, _, status = value.strip()[:64].partition(":")
    seq = int(number) if number.isascii() and number.isdigit() else 0
    return seq, JobStatus(status) if status in set(JobStatus) else None


class _EventWriter:
    def __init__(self, response: web.StreamResponse, job_id: str, seq: int, status: JobStatus):
        self.response, self.job_id, self.seq, self.status = response, job_id, seq, status

    async def write(self, data: bytes) -> None:
        await self.response.write(data)

    async def event(self, kind: str, data: dict[str, Any]) -> None:
        self.seq += 1
        body = _dumps({"id": self.job_id, **data})
        await self.write(f"id: {self.seq}:{self.status}\nevent: {kind}\ndata: {body}\n\n".encode())


async def _stream(
    sse: _EventWriter, client: Client, closing: anyio.Event, keepalive: float
) -> None:
    send, receive = anyio.create_memory_object_stream[JobEvent | Exception](64)
    async with anyio.create_task_group() as tg:
        tg.start_soon(_pump, client, sse.job_id, send)
        tg.start_soon(_cancel_on, closing, tg.cancel_scope)
        with receive:
            try:
                await sse.write(b"retry: 3000\n\n")
                await _relay(sse, client, receive, keepalive)
            except ConnectionResetError:  # the browser went away
                log.debug("event stream of job %s closed by the client", sse.job_id)
        tg.cancel_scope.cancel()


async def _relay(
    sse: _EventWriter,
    client: Client,
    receive: MemoryObjectReceiveStream[JobEvent | Exception],
    keepalive: float,
) -> None:
    """Write each event as it comes, a comment while none does; return after the outcome."""
    while True:
        with anyio.move_on_after(keepalive) as idle:
            try:
                item = await receive.receive()
            except anyio.EndOfStream:
                return
        if idle.cancelled_caught:
            await sse.write(b": keep-alive\n\n")
        elif isinstance(item, Exception):
            await sse.event("error", {"error": type(item).__name__, "detail": str(item)})
            return
        elif item.progress is not None:
            progress = {"value": item.progress.value, "message": item.progress.message}
            await sse.event("progress", progress)
        elif item.status is not None:
            sse.status = item.status
            if not item.is_final:
                await sse.event("status", {"status": item.status})
            else:
                await sse.event("outcome", await _outcome(client, sse.job_id, item.status))
                return


async def _pump(
    client: Client, job_id: str, send: MemoryObjectSendStream[JobEvent | Exception]
) -> None:
    with send:
        try:
            async with contextlib.aclosing(client.watch(job_id)) as events:
                async for event in events:
                    await send.send(event)
        except AqueueError as exc:  # gone (expired, purged), or Redis lost for good
            await send.send(exc)
        except Exception as exc:  # the stream has begun: tell its reader, never a 500
            log.exception("event stream of job %s failed", job_id, extra={"job_id": job_id})
            await send.send(exc)


async def _cancel_on(event: anyio.Event, scope: anyio.CancelScope) -> None:
    await event.wait()
    scope.cancel()


async def _outcome(client: Client, job_id: str, status: JobStatus) -> dict[str, Any]:
    try:
        job = await client.get_job(job_id)
    except AqueueError:
        return {"status": status}
    if status is JobStatus.COMPLETE:
        return {"status": status, "short_result": job.short_result}
    return {"status": status, "error_type": job.error_type, "error_message": job.error_message}
