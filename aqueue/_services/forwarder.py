"""The forwarder: posts each completed job's outputs to their queues, exactly once.

A listener declared with `outputs=[...]` returns a value; its worker encodes the messages it
makes and sends them with the job's completion, and finish.lua puts them in the queue's forward
outbox in the same atomic step (`outputs`, `forward`): a completion recorded has its outputs
recorded, a refused or repeated one has none. A forwarder (in every worker daemon serving a queue
whose listeners have outputs) takes them under a lease (claim_forwards.lua), posts them, and
lets go (forward_done.lua). Each output's id is derived from its job, its queue and its place
(`output_id`), and a post of an id that exists returns it (post.lua): a forwarder killed
between its post and its let-go leaves the lease to lapse, another takes it, posts again, and
nothing is posted twice. Outputs cross queues, so slots on a cluster: they are posted by the
client, each to its queue's own slot, never inside a script.
"""

from __future__ import annotations

import logging
from functools import cache

import anyio
import anyio.abc

from aqueue._redis.backoff import Backoff, follow
from aqueue._redis.calls import NewJobs, unpack_outputs
from aqueue._redis.records import SpecShape, output_id, pack_forwarded, remembered_job_fields
from aqueue._redis.store import Store
from aqueue.config import ClientConfig
from aqueue.errors import MessageError, RedisUnavailable, TooManyLanes
from aqueue.retry import DEFAULT_POLICY

log = logging.getLogger(__name__)

LEASE_S = 30.0  # a forwarding not let go of within this long is taken again
BATCH = 64  # jobs' outputs taken at once


@cache
def _defaults(ttl: float) -> tuple[tuple[str | bytes | int, ...], str, SpecShape]:
    """What an output's record and spec hold besides its message: a posted job's defaults (any
    listener of its queue's workers runs it)."""
    return remembered_job_fields(
        functions=None, callback=None, callback_method="GET", priority=0, timeout=None,
        retry=DEFAULT_POLICY, ttl=ttl,
    )  # fmt: skip


class Forwarder:
    """Forwards the outputs of one queue's completed jobs."""

    def __init__(self, store: Store, config: ClientConfig, idle_wait: float = 1.0) -> None:
        self.store = store
        self.config = config
        self.idle_wait = idle_wait
        self._wake = anyio.Event()

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        async with anyio.create_task_group() as tg:
            await tg.start(self._listen)
            task_status.started()
            backoff = Backoff()
            while True:
                self._wake = anyio.Event()  # before the claim: a wake-up during it is kept
                try:
                    due = await self.forward_once()
                except RedisUnavailable as exc:
                    log.warning("forwarding failed, retrying in %.2f s: %s", backoff.delay, exc)
                    await backoff.sleep()
                    continue
                backoff.reset()
                if due == 0:
                    continue  # took a full batch: more may wait
                wait = self.idle_wait if due is None else min(self.idle_wait, due / 1000 + 0.01)
                with anyio.move_on_after(wait):
                    await self._wake.wait()

    async def forward_once(self) -> int | None:
        """Forward what waits now: 0 if a full batch was taken (more may wait), else the ms
        until a lease held lapses (None: none is held)."""
        due, claimed = await self.store.claim_forwards(int(LEASE_S * 1000), BATCH)
        done: list[tuple[str, bytes]] = []
        for job_id, packed, root in claimed:
            try:
                outputs = unpack_outputs(packed)
            except MessageError as exc:  # a planted or foreign entry: it costs only itself
                log.error("outputs of job %s dropped: %s", job_id, exc, extra={"job_id": job_id})
                done.append((job_id, pack_forwarded([])))
                continue
            try:
                for target, messages, tag in outputs:
                    await self._post(job_id, root or job_id, target, messages, tag)
            except TooManyLanes as exc:  # the target refuses for now: its lease lapses, and
                # it is tried again (what was posted of it stands, and is not posted twice)
                log.warning("outputs of job %s wait: %s", job_id, exc, extra={"job_id": job_id})
                continue
            summary = [(target, len(messages), tag) for target, messages, tag in outputs]
            done.append((job_id, pack_forwarded(summary)))
        if done:
            await self.store.forward_done(done)
        return 0 if len(claimed) == BATCH else due

    async def _post(
        self, job_id: str, root: str, target: str, messages: list[bytes], tag: str
    ) -> None:
        """One job's outputs to one queue, in one post: they share their lineage."""
        stage = self.store.keys.queue
        common, signature, shape = _defaults(self.config.result_ttl)
        lineage = ("root", root, "parent", job_id, "stage", stage)
        jobs = [
            (output_id(stage, job_id, target, i, tag), "", shape.pack(m))
            for i, m in enumerate(messages)
        ]
        new = NewJobs(
            signature, 0, 0, 0, False, (*common, *lineage), jobs, self.config.max_unserved_lanes
        )
        await self.store.view(target).post(new, int(1000 * self.config.result_ttl))

    async def _listen(self, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        """Wake the loop when a completion puts outputs in the outbox (pub/sub)."""

        async def on_message(channel: str, data: bytes | None) -> None:
            self._wake.set()

        channels = [self.store.keys.forwards]
        await follow(self.store, channels, on_message, task_status.started, "forward")
