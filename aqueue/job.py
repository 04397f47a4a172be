"""Plain records: job status, the job record, progress, and a listener's explicit output."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


class JobStatus(enum.StrEnum):
    """Where a job is in its life. Terminal statuses end it; `requeue` may restart them."""

    QUEUED = "queued"  # ready, waiting for a worker that has all its listeners
    SCHEDULED = "scheduled"  # waiting for a time (a delay, `at`, or a retry's backoff)
    ACTIVE = "active"  # claimed by a worker, under a lease
    COMPLETE = "complete"  # finished with a result
    FAILED = "failed"  # a listener raised an error the retry policy does not retry
    DEAD = "dead"  # the retry budget is spent (errors or lost leases); in the dead-letter queue
    CANCELLED = "cancelled"  # cancelled by a client

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL


TERMINAL = frozenset({JobStatus.COMPLETE, JobStatus.FAILED, JobStatus.DEAD, JobStatus.CANCELLED})


@dataclass(frozen=True, slots=True)
class Progress:
    """A listener's latest progress report: a value (e.g. percent) and an optional message."""

    value: Any
    message: str | None


@dataclass(frozen=True, slots=True)
class JobEvent:
    """One change seen by `Client.watch`: a new status, or a progress report."""

    job_id: str
    status: JobStatus | None = None
    progress: Progress | None = None

    @property
    def is_final(self) -> bool:
        return self.status is not None and self.status.is_terminal


@dataclass(frozen=True, slots=True)
class Output:
    """What a listener returns when it wants a short (string) result beside the full one.

    A plain return value `v` is the full result; if `v` is a `str` it is also the short result.
    """

    result: Any = None
    short: str | None = None


@dataclass(frozen=True, slots=True)
class Job:
    """The whole record of a job, as stored. Times are seconds since the epoch (Redis's clock)."""

    id: str
    queue: str
    status: JobStatus
    msg: Any
    functions: tuple[str, ...]
    priority: int
    attempt: int
    max_attempts: int
    timeout: float | None
    callback: str | None
    key: str | None
    posted_at: float
    started_at: float | None = None
    finished_at: float | None = None
    due_at: float | None = None
    worker: str | None = None
    progress: Progress | None = None
    short_result: str | None = None
    # A result over 4 MiB is not in the record (None here; its size in result_bytes): read it
    # with get_result, or GET /jobs/{id}/result, which stream it
    result: Any = None
    result_bytes: int | None = None  # the stored result's size (its msgpack envelope)
    error_type: str | None = None
    error_message: str | None = None
    traceback: str | None = None
    reason: str | None = None
    waiting_for: tuple[str, ...] = field(default=())
    callback_method: str = "GET"
    callback_state: str | None = None  # pending, delivering, retrying, delivered, failed
    callback_attempts: int = 0
    callback_log: tuple[str, ...] = ()  # "<epoch ms> <what happened>" per delivery attempt
    # Where a pipeline's output came from: the first job of its line (`root`), the job whose
    # return value it is (`parent`), and that job's queue (`stage`); None for a job posted
    root: str | None = None
    parent: str | None = None
    stage: str | None = None
    # the jobs its outputs became, once forwarded: (queue, job id), in order (a routed error's
    # too); read each with a Client of that queue
    outputs: tuple[tuple[str, str], ...] = ()
    # fields of the stored record this build could not read -> why (each reads as its default,
    # a message, result or progress value as its raw bytes): the rest of the record is sound
    unreadable: Mapping[str, str] = field(default_factory=dict)

    @property
    def is_finished(self) -> bool:
        return self.status.is_terminal
