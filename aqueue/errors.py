"""The whole aqueue exception tree.

    AqueueError
    ├── ConfigError (ValueError)          a setting is invalid; names the setting and the value
    ├── MessageError (ValueError)         a message or option is refused at post, before Redis
    │   ├── MessageTooLarge               the encoded message is over the configured limit
    │   └── TooManyLanes                  the post would add a lane no live worker can serve,
    │                                     past the queue's bound
    ├── JobNotFound (LookupError)         no job with that id in this queue (or it expired)
    ├── DataNotFound (LookupError)        nothing stored at that data key (or it expired)
    ├── UnreadableData (ValueError)       a stored value (result, progress, data) this build
    │                                     cannot decode; names it (get_job flags it instead)
    ├── InvalidTransition                 the job's state does not allow that (e.g. cancel a
    │                                     finished job); carries the current status
    ├── JobFailed                         the job ended failed, dead or cancelled; carries the
    │                                     remote error as strings, never as an unpickled object
    ├── ResultTimeout (TimeoutError)      block_until_result gave up waiting
    ├── JobTimeout (TimeoutError)         a listener ran past the job's timeout (recorded as
    │                                     the attempt's error; the worker cancelled it)
    ├── LeaseLost                         a worker's write was refused: its attempt is not current
    ├── ListenerError (LookupError)       a listener name or import path does not resolve
    ├── RedisUnavailable (ConnectionError) Redis cannot be reached or answered with an error
    └── NotDurable                        a durable write was made, but fewer replicas (or no
                                          local fsync) acknowledged it in time than asked; it
                                          is not rolled back; names what was met

`Retry` is control flow a listener raises to ask for another attempt; it is not an error.
"""

from __future__ import annotations

from collections.abc import Sequence

TEN_YEARS = 10 * 365 * 86400  # seconds: the longest a job's ttl or a retry's delay may be


class AqueueError(Exception):
    """The root of every error aqueue raises."""


class ConfigError(AqueueError, ValueError):
    """A configuration value is invalid."""


class MessageError(AqueueError, ValueError):
    """A message or post option cannot be accepted."""


class MessageTooLarge(MessageError):
    """An encoded message (or a listener's result) is larger than the configured limit."""

    def __init__(
        self,
        size: int,
        limit: int,
        what: str = "message",
        remedy: str = "raise ClientConfig.max_message_bytes, or store the payload elsewhere "
        "and post a reference",
    ) -> None:
        super().__init__(
            f"{what} is {size} bytes encoded, over the limit of {limit} bytes ({remedy})"
        )
        self.size = size
        self.limit = limit


class TooManyLanes(MessageError):
    """A post names listeners no live worker serves, and the queue already has as many such
    lanes (listener sets) with waiting jobs as it may."""

    def __init__(self, queue: str, signature: str, limit: int) -> None:
        super().__init__(
            f"queue {queue!r} already has {limit} lanes of waiting jobs that no live worker "
            f"can serve, its limit (ClientConfig.max_unserved_lanes): a job for listeners "
            f"{signature!r} would add one more. Start a worker with those listeners, check "
            "the names, or cancel jobs that no worker will ever take"
        )
        self.queue = queue
        self.signature = signature
        self.limit = limit


class JobNotFound(AqueueError, LookupError):
    """No job with that id exists in this queue (never posted, or expired)."""

    def __init__(self, job_id: str, queue: str) -> None:
        super().__init__(f"job {job_id!r} not found in queue {queue!r}")
        self.job_id = job_id
        self.queue = queue


class DataNotFound(AqueueError, LookupError):
    """Nothing is stored at that data key in this queue (never stored, or expired)."""

    def __init__(self, key: str, queue: str) -> None:
        super().__init__(f"no data at key {key!r} in queue {queue!r}")
        self.key = key
        self.queue = queue


class UnreadableData(AqueueError, ValueError):
    """A stored value cannot be decoded (an older or newer build's, or a hostile write): that
    value alone. `Client.get_job` reads such a record anyway, flagging it (`Job.unreadable`)."""


class InvalidTransition(AqueueError):
    """The job's current status does not allow the requested change."""

    def __init__(self, job_id: str, action: str, status: str) -> None:
        super().__init__(f"cannot {action} job {job_id!r}: it is {status}")
        self.job_id = job_id
        self.action = action
        self.status = status


class JobFailed(AqueueError):
    """A job ended without a result: failed, dead-lettered or cancelled."""

    def __init__(
        self,
        job_id: str,
        status: str,
        error_type: str | None,
        error_message: str | None,
        traceback: str | None,
    ) -> None:
        detail = f"{error_type}: {error_message}" if error_type else "no error recorded"
        super().__init__(f"job {job_id!r} is {status}: {detail}")
        self.job_id = job_id
        self.status = status
        self.error_type = error_type
        self.error_message = error_message
        self.traceback = traceback


class ResultTimeout(AqueueError, TimeoutError):
    """block_until_result timed out before the job finished."""

    def __init__(self, job_id: str, timeout: float, status: str) -> None:
        super().__init__(f"job {job_id!r} still {status} after waiting {timeout:g} s")
        self.job_id = job_id
        self.timeout = timeout
        self.status = status


class JobTimeout(AqueueError, TimeoutError):
    """A job's listeners ran longer than its timeout and were cancelled."""

    def __init__(self, job_id: str, timeout: float) -> None:
        super().__init__(f"job {job_id!r} ran past its timeout of {timeout:g} s")
        self.job_id = job_id
        self.timeout = timeout


class LeaseLost(AqueueError):
    """A worker's write was refused because its attempt is no longer the current one."""

    def __init__(self, job_id: str, attempt: int) -> None:
        super().__init__(f"attempt {attempt} of job {job_id!r} no longer holds the lease")
        self.job_id = job_id
        self.attempt = attempt


class ListenerError(AqueueError, LookupError):
    """A listener name or import path does not resolve."""


class RedisUnavailable(AqueueError, ConnectionError):
    """Redis could not be reached, or refused the command."""


class NotDurable(AqueueError):
    """A write asked to be durable was made, but not acknowledged as asked within its timeout:
    fewer than `replicas` replicas (WAIT), or no local AOF fsync (WAITAOF, with `local`). The
    write stands (it is not rolled back): `job_ids` are posted, or their outcomes recorded."""

    def __init__(
        self,
        job_ids: Sequence[str],
        *,
        replicas: int,
        acknowledged: int,
        local: bool,
        synced: bool,
        timeout: float,
    ) -> None:
        self.job_ids = list(job_ids)
        self.replicas, self.acknowledged = replicas, acknowledged
        self.local, self.synced = local, synced
        self.timeout = timeout
        met = [f"{acknowledged} of {replicas} replicas acknowledged"] if replicas else []
        if local:
            met.append(f"the local AOF fsync {'confirmed' if synced else 'not confirmed'}")
        jobs = ", ".join(map(repr, self.job_ids[:3])) + (", ..." if len(self.job_ids) > 3 else "")
        super().__init__(
            f"not durable: {' and '.join(met)} within {timeout:g} s; the write stands, it is not "
            f"rolled back (job(s) {jobs})"
        )

    def of(self, job_ids: Sequence[str]) -> NotDurable:
        """The same shortfall, for some of the jobs (one post's, of a call that sent many)."""
        return NotDurable(
            job_ids, replicas=self.replicas, acknowledged=self.acknowledged, local=self.local,
            synced=self.synced, timeout=self.timeout,
        )  # fmt: skip


class Retry(Exception):
    """Raise in a listener to ask for another attempt after `delay` seconds; with
    `max_retries`, only while fewer retries than that were made (`ctx.retries`), else the job
    fails for good.

    The attempt still counts against the job's retry budget.
    """

    def __init__(
        self, delay: float = 0.0, reason: str = "", *, max_retries: int | None = None
    ) -> None:
        if (
            isinstance(delay, bool)
            or not isinstance(delay, int | float)
            or not 0 <= delay <= TEN_YEARS  # NaN included
        ):
            raise ValueError(f"Retry delay must be from 0 to {TEN_YEARS} seconds, got {delay!r}")
        if max_retries is not None and (
            isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0
        ):
            raise ValueError(f"Retry max_retries must be a whole number >= 0, got {max_retries!r}")
        super().__init__(reason or f"retry requested in {delay:g} s")
        self.delay = delay
        self.reason = reason
        self.max_retries = max_retries
