"""The streams of Client.watch, by job: each gets the job's events as they are heard."""

from __future__ import annotations

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from aqueue._client.by_job import ByJob
from aqueue.job import JobEvent

_BUFFER = 256  # events a slow reader may fall behind by before it misses intermediate ones


class Watchers:
    def __init__(self) -> None:
        self._streams: ByJob[MemoryObjectSendStream[JobEvent]] = ByJob()
        # a watcher's final event that found its buffer full (see tell)
        self._finals: dict[MemoryObjectSendStream[JobEvent], JobEvent] = {}

    def __bool__(self) -> bool:
        return bool(self._streams)

    def __contains__(self, job_id: str) -> bool:
        return job_id in self._streams

    def ids(self) -> list[str]:
        return self._streams.ids()

    def open(
        self, job_id: str
    ) -> tuple[MemoryObjectSendStream[JobEvent], MemoryObjectReceiveStream[JobEvent]]:
        send, receive = anyio.create_memory_object_stream[JobEvent](_BUFFER)
        self._streams.add(job_id, send)
        return send, receive

    def close(
        self,
        job_id: str,
        send: MemoryObjectSendStream[JobEvent],
        receive: MemoryObjectReceiveStream[JobEvent],
    ) -> None:
        receive.close()
        self._finals.pop(send, None)
        self._streams.discard(job_id, send)
        send.close()

    def final(self, send: MemoryObjectSendStream[JobEvent]) -> JobEvent | None:
        """The final event that found this stream full, and ended it instead."""
        return self._finals.pop(send, None)

    def tell(self, event: JobEvent) -> None:
        for stream in self._streams.of(event.job_id):
            try:
                stream.send_nowait(event)
            except anyio.WouldBlock:  # a slow reader misses intermediate events...
                if event.is_final:  # ...but not the last: its stream ends, then it comes
                    self._finals[stream] = event
                    stream.close()
            except anyio.ClosedResourceError:  # ended so, above
                pass
