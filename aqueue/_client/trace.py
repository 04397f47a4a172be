"""Where did it stop? A pipeline's jobs from one root, stage by stage.

Each job's record notes where its outputs went (`out`, written as they are forwarded: see
forward_done.lua), and every output's id is derived from its parent's (`output_id`): so the
jobs of a line are found from its root alone, queue after queue, without a scan or an index,
on one node or across a cluster's slots.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from aqueue._redis.calls import text
from aqueue._redis.records import output_id, unpack_forwarded, worker_infos
from aqueue._redis.store import Store
from aqueue._states import GONE

MOST_JOBS = 10_000  # followed in one trace; past it, `truncated` says so
WAITING = ("queued", "scheduled", "active")
ENDED_BADLY = ("failed", "dead", "cancelled", str(GONE))


@dataclass
class Stage:
    """One queue of the line: its jobs by status, those that stopped, and whether anyone
    serves it."""

    queue: str
    counts: dict[str, int] = field(default_factory=dict)
    routed: int = 0  # errors routed here (on_error), among `counts`
    stopped: list[dict[str, str]] = field(default_factory=list)  # {id, status, why}
    live_workers: int = 0
    attention: str | None = None  # work waiting here, and no live worker serves the queue


@dataclass
class Trace:
    root: str
    queue: str
    stages: list[Stage]
    jobs: int
    truncated: bool

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def stopped_at(self) -> list[str]:
        """The stages where work waits with nobody to run it, or jobs ended badly."""
        return [s.queue for s in self.stages if s.attention or s.stopped]


async def trace(store: Store, queue: str, root: str, most: int = MOST_JOBS) -> Trace:
    """The line of jobs from `root` (a job of `queue`), as it stands now."""
    stages: dict[str, Stage] = {}
    frontier: dict[str, list[tuple[str, bool]]] = {queue: [(root, False)]}  # (id, routed)
    seen = 0
    truncated = False
    while frontier:
        following: dict[str, list[tuple[str, bool]]] = {}
        for name, jobs in frontier.items():
            if seen + len(jobs) > most:
                jobs, truncated = jobs[: most - seen], True
            seen += len(jobs)
            stage = stages.setdefault(name, Stage(name))
            view = store.view(name)
            rows = await view.lineage([job_id for job_id, _ in jobs])
            for (job_id, routed), (status, out, err_type, reason) in zip(jobs, rows, strict=True):
                state = text(status) if status is not None else str(GONE)
                stage.counts[state] = stage.counts.get(state, 0) + 1
                stage.routed += routed
                if state in ENDED_BADLY:
                    why = (
                        text(err_type or b"")
                        or text(reason or b"")
                        or ("expired or purged" if state == str(GONE) else state)
                    )
                    stage.stopped.append({"id": job_id, "status": state, "why": why})
                for target, count, tag in unpack_forwarded(out or b""):
                    following.setdefault(target, []).extend(
                        (output_id(name, job_id, target, i, tag), bool(tag)) for i in range(count)
                    )
            if any(stage.counts.get(s) for s in WAITING) and not stage.live_workers:
                infos = worker_infos(await view.live_workers())
                stage.live_workers = sum(1 for i in infos if i.get("queue") == name)
                if not stage.live_workers:
                    waiting = sum(stage.counts.get(s, 0) for s in WAITING)
                    stage.attention = f"{waiting} job(s) waiting and no live worker serves {name}"
        frontier = {} if truncated else following
    return Trace(root, queue, list(stages.values()), seen, truncated)
