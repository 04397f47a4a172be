"""The reaper: a periodic pass over one queue, safe with any number running at once.

Each pass reclaims jobs whose lease lapsed (back to the queue with the attempt counted, or to
the dead-letter queue once the budget is spent), promotes due scheduled jobs, forgets dead
workers and deletes finished jobs past their time to live — all in the `reap` script, so two
reapers never handle the same job.
"""

from __future__ import annotations

import logging

import anyio

from aqueue._redis.store import Store
from aqueue.errors import RedisUnavailable

log = logging.getLogger(__name__)

BATCH = 1000


async def reap_once(store: Store) -> tuple[int, int, int]:
    """Passes until nothing is left to do; totals of (requeued, dead, promoted)."""
    totals = (0, 0, 0)
    queue = store.keys.queue
    while True:
        reaped = await store.reap_pass(BATCH)
        for job_id, why in reaped.buried:
            log.error(
                "reaper: job %s of queue %r dead-lettered, as %s",
                job_id,
                queue,
                why,
                extra={"job_id": job_id, "queue": queue},
            )
        requeued, dead, promoted = reaped.requeued, reaped.dead, reaped.promoted
        totals = (totals[0] + requeued, totals[1] + dead, totals[2] + promoted)
        if max(requeued + dead, promoted, reaped.expired) < BATCH:
            return totals


async def reap_forever(store: Store, interval: float) -> None:
    queue = store.keys.queue
    while True:
        try:
            requeued, dead, _ = await reap_once(store)
        except RedisUnavailable as exc:
            log.warning("reaper pass on %r failed: %s", queue, exc, extra={"queue": queue})
        else:
            if requeued or dead:
                log.warning(
                    "reaper: %d lapsed lease(s) requeued, %d dead-lettered on %r",
                    requeued,
                    dead,
                    queue,
                    extra={"queue": queue},
                )
        await anyio.sleep(interval)
