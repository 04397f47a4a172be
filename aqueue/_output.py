"""What the CLI prints: tables that fit the terminal, colour only on a TTY, stable JSON, the
answer to "where did it stop?" per queue, and a progress bar for long waits."""

from __future__ import annotations

import base64
import dataclasses
import enum
import json
import math
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

from aqueue._client.trace import Trace
from aqueue._redis.records import worker_infos
from aqueue._redis.store import Store
from aqueue.job import Job


def jsonable(value: Any) -> Any:
    """A JSON-safe copy: bytes become {"base64": ...}, enums their value, records dicts."""
    if isinstance(value, bytes):
        return {"base64": base64.b64encode(value).decode()}
    if isinstance(value, enum.Enum):
        return value.value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value


def plain(value: Any) -> Any:
    """jsonable(), and floats JSON cannot carry (NaN, ±Infinity) as strings."""
    return _finite(jsonable(value))


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def dumps(value: Any) -> str:
    """JSON by the HTTP API's rule: plain(), and any other value JSON has no form for (a msgpack
    Timestamp or ext type in a message) as its str(), never a TypeError."""
    return json.dumps(
        plain(value), sort_keys=True, ensure_ascii=False, allow_nan=False, default=str
    )


class Style:
    """ANSI colour when writing to a terminal, plain text otherwise."""

    def __init__(self, stream: TextIO) -> None:
        self.on = stream.isatty()

    def _wrap(self, code: str, text: str) -> str:
        return f"\033[{code}m{text}\033[0m" if self.on else text

    def bad(self, text: str) -> str:
        return self._wrap("31;1", text)

    def good(self, text: str) -> str:
        return self._wrap("32", text)

    def dim(self, text: str) -> str:
        return self._wrap("2", text)


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns padded to fit; the last column is cut to the terminal's width."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    width = shutil.get_terminal_size((120, 24)).columns
    lines = []
    for row in [header, *rows]:
        line = "  ".join(str(cell).ljust(w) for cell, w in zip(row, widths, strict=True))
        lines.append(line.rstrip()[:width])
    return "\n".join(lines)


def describe_job(job: Job) -> str:
    """A human view of a job record, one field a line."""
    lines = []
    for f in dataclasses.fields(job):
        value = getattr(job, f.name)
        if value is None or value == ():
            continue
        if isinstance(value, bytes):
            value = f"<{len(value)} bytes>"
        elif isinstance(value, enum.Enum):
            value = value.value
        elif f.name.endswith("_at"):
            value = f"{value:.3f}"
        text = str(value)
        if "\n" in text:
            text = "\n    " + text.rstrip().replace("\n", "\n    ")
        lines.append(f"{f.name}: {text}")
    return "\n".join(lines)


def age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f}{unit}"
    return f"{seconds:.1f}s"


@dataclass(frozen=True)
class QueueStatus:
    """One queue at one moment: the numbers of `aqueue status` and what needs attention."""

    queue: str
    queued: int
    scheduled: int
    active: int
    dead: int
    stalled: int
    oldest_queued_age: float | None
    jobs_per_second: float  # finished (any outcome) over the last minute
    failed_last_minute: int
    dead_last_minute: int
    totals: dict[str, int]
    workers: list[dict[str, Any]] = field(default_factory=list)
    node: str = ""  # where the queue is: host:port of its Redis node (a cluster's master)
    # the queues its live workers' listeners post to (outputs, on_error): the pipeline graph
    outputs: list[str] = field(default_factory=list)

    @classmethod
    def build(cls, queue: str, snapshot: dict[str, Any], infos: list[bytes]) -> QueueStatus:
        now = snapshot["now_ms"]
        minute: dict[str, int] = {}
        for bucket in snapshot["last_minute"]:
            for name, n in bucket.items():
                minute[name] = minute.get(name, 0) + n
        oldest = snapshot["oldest_queued_ms"]
        workers = []
        for info in worker_infos(infos):
            if info["queue"] == queue:
                # its own count is as old as its last heartbeat; finish keeps this one current
                info["processed"] = snapshot["done"].get(info.get("id"), info.get("processed", 0))
                workers.append(info)
        return cls(
            queue=queue,
            queued=snapshot["queued"],
            scheduled=snapshot["scheduled"],
            active=snapshot["active"],
            dead=snapshot["dead"],
            stalled=snapshot["stalled"],
            oldest_queued_age=None if oldest is None else max(0.0, (now - oldest) / 1000),
            jobs_per_second=sum(minute.get(s, 0) for s in ("complete", "failed", "dead"))
            / snapshot["window_s"],
            failed_last_minute=minute.get("failed", 0),
            dead_last_minute=minute.get("dead", 0),
            totals=snapshot["totals"],
            workers=workers,
            node=snapshot["node"],
            outputs=sorted(
                {q for w in workers for qs in (w.get("outputs") or {}).values() for q in qs}
            ),
        )

    @classmethod
    async def read(cls, store: Store, queue: str) -> tuple[QueueStatus, float]:
        """The status of `queue`, read over `store`'s connections; and Redis's time (s)."""
        view = store.view(queue)
        snapshot = await view.snapshot()
        return cls.build(queue, snapshot, await view.live_workers()), snapshot["now_ms"] / 1000

    def to_json(self) -> dict[str, Any]:
        """The stable machine form: every number, plus what needs attention."""
        return {**jsonable(self), "attention": self.attention}

    @property
    def attention(self) -> list[str]:
        """Why someone should look, if anyone should."""
        reasons = []
        if (self.queued or self.active) and not self.workers:
            reasons.append(f"{self.queued + self.active} job(s) waiting and no live worker")
        if self.dead_last_minute:
            reasons.append(f"dead letters growing: +{self.dead_last_minute} in the last minute")
        if self.stalled:
            reasons.append(f"{self.stalled} lapsed lease(s) not yet reaped (is a reaper running?)")
        return reasons


def render_status(statuses: Sequence[QueueStatus], now: float, style: Style) -> str:
    header = [
        "QUEUE",
        "QUEUED",
        "SCHED",
        "ACTIVE",
        "DEAD",
        "FAILED/1m",
        "OLDEST",
        "JOBS/S",
        "WORKERS",
        "NODE",
    ]
    rows = [
        [
            s.queue, str(s.queued), str(s.scheduled), str(s.active), str(s.dead),
            str(s.failed_last_minute), age(s.oldest_queued_age), f"{s.jobs_per_second:.1f}",
            str(len(s.workers)), s.node,
        ]
        for s in statuses
    ]  # fmt: skip
    out = [table(header, rows)] if rows else ["no queues"]
    for s in statuses:
        for w in s.workers:
            running = ", ".join(
                f"{job_id} (attempt {attempt}, {age(now - started)})"
                for job_id, attempt, started in w.get("running", [])
            )
            out.append(
                style.dim(f"  {s.queue}: worker {w['id']} up {age(now - w['started_at'])}, "
                          f"{w.get('processed', 0)} done; running: {running or 'nothing'}")
            )  # fmt: skip
        for reason in s.attention:
            out.append(style.bad(f"! {s.queue}: {reason}"))
    out += pipeline_lines(statuses)
    if all(not s.attention for s in statuses):
        out.append(style.good("all queues healthy"))
    return "\n".join(out)


def pipeline_lines(statuses: Sequence[QueueStatus]) -> list[str]:
    """The pipeline as the live workers declare it: each queue's outputs (and inputs), and
    each cycle (allowed: a job may loop back, but it is worth seeing)."""
    graph = {s.queue: s.outputs for s in statuses if s.outputs}
    lines = []
    for queue, outputs in graph.items():
        inputs = sorted(q for q, outs in graph.items() if queue in outs)
        came = f" (from {', '.join(inputs)})" if inputs else ""
        lines.append(f"pipeline: {queue}{came} -> {', '.join(outputs)}")
    for cycle in _cycles(graph):
        lines.append(f"pipeline: a cycle {' -> '.join([*cycle, cycle[0]])}")
    return lines


def _cycles(graph: dict[str, list[str]]) -> list[list[str]]:
    """The cycles of the graph, each once (from its least queue name)."""
    found: list[list[str]] = []
    for start in sorted(graph):
        _walk(graph, start, [start], found)
    return found


def _walk(graph: dict[str, list[str]], start: str, path: list[str], found: list[list[str]]) -> None:
    for nxt in graph.get(path[-1], []):
        if nxt == start:
            found.append(list(path))
        elif nxt > start and nxt not in path:
            _walk(graph, start, [*path, nxt], found)


def render_trace(found: Trace) -> str:
    """`aqueue trace`: a line per stage, then what stopped where."""
    header = ["STAGE", "QUEUED", "ACTIVE", "COMPLETE", "FAILED", "DEAD", "ROUTED", "WORKERS"]
    rows = [
        [s.queue, *(str(s.counts.get(k, 0)) for k in ("queued", "active", "complete", "failed",
         "dead")), str(s.routed), "-" if s.attention is None and not s.live_workers
         else str(s.live_workers)]
        for s in found.stages
    ]  # fmt: skip
    out = [
        f"trace of {found.root} ({found.jobs} jobs from queue {found.queue})",
        table(header, rows),
    ]
    for stage in found.stages:
        if stage.attention:
            out.append(f"! {stage.queue}: {stage.attention}")
        for job in stage.stopped[:10]:
            out.append(f"! {stage.queue}: job {job['id']} {job['status']}: {job['why']}")
        if len(stage.stopped) > 10:
            out.append(f"! {stage.queue}: and {len(stage.stopped) - 10} more stopped")
    if found.truncated:
        out.append(f"(followed the first {found.jobs} jobs only)")
    if not found.stopped_at:
        out.append("the line runs on: nothing stopped")
    return "\n".join(out)


def progress_bar(value: Any, message: str | None, stream: TextIO = sys.stderr) -> None:
    """Redraw one line: a bar when the value is a percentage, the value otherwise."""
    if isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value <= 100:
        filled = int(value / 5)
        text = f"[{'#' * filled}{'.' * (20 - filled)}] {value:5.1f}%"
    else:
        text = f"progress: {value}"
    if message:
        text += f"  {message}"
    width = shutil.get_terminal_size((80, 24)).columns
    stream.write("\r" + text[: width - 1].ljust(width - 1))
    stream.flush()
