"""What the claim loop and the runners both work on: made together when a run starts."""

from __future__ import annotations

import math
from dataclasses import dataclass

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from aqueue._worker.capacity import Capacity
from aqueue._worker.leases import Held, Running
from aqueue._worker.outcomes import Outcomes
from aqueue._worker.prefetch import PrefetchGauge


@dataclass(frozen=True, slots=True)
class Shared:
    worker_id: str
    capacity: Capacity[anyio.Event]  # claim places, slots and threads
    prefetch: PrefetchGauge
    held: Held  # the leases this worker holds, and the jobs it runs
    outcomes: Outcomes
    # claimed jobs wait here for a runner; None in it: a nudge for an idle runner to see
    # whether it retires (a job gave back the slot it had lent: see runners.py)
    inbox_in: MemoryObjectSendStream[Running | None]
    inbox: MemoryObjectReceiveStream[Running | None]

    @classmethod
    def make(
        cls,
        worker_id: str,
        concurrency: int,
        prefetch: PrefetchGauge,
        outcomes: Outcomes,
    ) -> Shared:
        """Inside the event loop (the inbox and the ledger's events are bound to it)."""
        inbox_in, inbox = anyio.create_memory_object_stream[Running | None](math.inf)
        capacity = Capacity[anyio.Event](concurrency, prefetch.most)
        return cls(worker_id, capacity, prefetch, Held(), outcomes, inbox_in, inbox)
