"""How an attempt ended, from what its listeners returned or raised: its outcome for finish.lua.

Pure: the worker's shell runs the listeners, and uploads a result too large for its job's record
(`Upload`, then `uploaded`); this module only decides. An outcome is typed by the lifecycle's
`Event` (`aqueue/_states.py`): complete, retry, fail, or release (handed back, no attempt used).
"""

from __future__ import annotations

import dataclasses
import logging
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

from aqueue import _codec
from aqueue._redis.calls import Claimed, Outcome, pack_outputs
from aqueue._redis.records import retry_policy
from aqueue._states import Event
from aqueue.errors import ConfigError, MessageError, Retry, UnreadableData
from aqueue.job import Output
from aqueue.retry import DEFAULT_POLICY

log = logging.getLogger(__name__)

TRACEBACK_LIMIT = 64 * 1024  # characters of a traceback kept, its end
MESSAGE_LIMIT = 8192  # characters of an error's message kept
RESULT_REMEDY = (
    "raise the worker's max_result_bytes (--max-result-bytes, AQUEUE_MAX_RESULT_BYTES), "
    "or store it elsewhere and return a reference"
)

Pieces = Sequence[bytes | memoryview]
# a result's envelope: (value, most bytes, remedy) -> its size and pieces, or MessageError
# when over the most (aqueue/_redis/results.py's envelope)
Envelope = Callable[[Any, int, str], tuple[int, Pieces]]


@dataclass(frozen=True, slots=True)
class ErrorHandling:
    """A listener's way with errors (see `Listeners.listener`)."""

    on_error: tuple[tuple[type[BaseException], str], ...] = ()  # class -> queue
    max_retries: int | None = None  # None: as the job's budget allows
    retry_delay: float | None = None  # None: as the job's retry policy says

    def route(self, exc: BaseException) -> str | None:
        """The queue of the closest class of `exc`'s MRO that `on_error` names, if any."""
        routes = dict(self.on_error)
        for kind in type(exc).__mro__:
            if kind in routes:
                return routes[kind]
        return None


NO_HANDLING = ErrorHandling()


@dataclass(frozen=True, slots=True)
class Upload:
    """A result too large for its job's record: it goes up in chunks first, then `uploaded`."""

    size: int
    pieces: Pieces
    short: str | None
    outputs: bytes = b""  # see Outcomes.returned


class Outcomes:
    """The outcomes of one worker's attempts."""

    def __init__(
        self,
        queue: str,
        envelope: Envelope,
        max_result_bytes: int,
        record_bytes: int,
        max_message_bytes: int = 1 << 20,
    ) -> None:
        self.queue = queue
        self.envelope = envelope
        self.max_result_bytes = max_result_bytes
        self.record_bytes = record_bytes  # a result up to this size goes in the record itself
        self.max_message_bytes = max_message_bytes  # each output's, as a post's

    def returned(
        self, job: Claimed, value: Any, outputs: Sequence[str] = (), iter_output: bool = False
    ) -> Outcome | Upload:
        """The listeners returned `value`: complete, unless it cannot be stored (then fail).
        With `outputs` (queues), the value (or each of its elements, with `iter_output`) is
        also a message to post to each: encoded here, so that one that cannot be fails its
        job, saying why, and never the forwarder."""
        if iter_output and (elements := _elements(value)) is not None:
            value = elements  # a generator is read once: its elements are the result too
        try:
            packed = self.outputs_of(value, outputs, iter_output) if outputs else b""
        except MessageError as exc:
            return self.failed(job, exc, retryable=False)
        if isinstance(value, Output):
            result, short = value.result, value.short
        elif isinstance(value, str):
            result, short = value, value
        else:
            result, short = value, None
        try:
            size, pieces = self.envelope(result, self.max_result_bytes, RESULT_REMEDY)
            if short is not None and not isinstance(short, str):
                raise MessageError(f"short result must be a str, got {type(short).__name__}")
            if short is not None and short != printable(short):
                raise MessageError(f"short result {short!r} is not valid Unicode text")
        except MessageError as exc:
            return self.failed(job, exc, retryable=False)
        if size > self.record_bytes:
            return Upload(size, pieces, short, packed)
        fields: list[str | bytes] = ["result", cast(bytes, pieces[0])]  # one: see envelope
        if short is not None:
            fields += ["short", short]
        return job.outcome(Event.COMPLETE, 0, fields, outputs=packed)

    def outputs_of(self, value: Any, queues: Sequence[str], iter_output: bool) -> bytes:
        """The messages `value` makes for `queues`, packed for finish.lua (b"": none)."""
        if isinstance(value, Output):
            value = value.result
        if iter_output:
            elements = _elements(value)
            if elements is None:
                raise MessageError(
                    f"a listener with iter_output must return an iterable (a list, a "
                    f"generator), not {type(value).__name__}"
                )
            messages = elements
        else:
            messages = [] if value is None else [value]
        encoded = []
        for i, message in enumerate(messages):
            what = "the output" if not iter_output else f"output {i}"
            data = _codec.encode(message, what)
            if len(data) > self.max_message_bytes:
                raise MessageError(
                    f"{what} is {len(data)} bytes, over the {self.max_message_bytes} a message "
                    f"may have (max_message_bytes)"
                )
            encoded.append(data)
        return pack_outputs([(queue, encoded) for queue in queues]) if encoded else b""

    def uploaded(
        self, job: Claimed, fields: list[str | bytes], short: str | None, outputs: bytes = b""
    ) -> Outcome:
        """Complete, its result in the chunks an upload stored (`fields` refer to them)."""
        if short is not None:
            fields = [*fields, "short", short]
        return job.outcome(Event.COMPLETE, 0, fields, chunked=True, outputs=outputs)

    def raised(
        self,
        job: Claimed,
        exc: BaseException,
        retry_on: tuple[type[BaseException], ...],
        handling: ErrorHandling | None = None,
    ) -> Outcome:
        """A listener raised `exc`: retried if it asked (`Retry`) or its `retry_on` says so;
        failed otherwise (and always for what is no Exception: SystemExit, say). `handling`
        is the listener's: its caps and delay on retries, and where a job that fails for good
        goes (its `on_error` queue)."""
        handling = handling or NO_HANDLING
        retries = job.attempt - 1 - job.released  # made so far (PiCloud's cur_retry)
        delay = None
        if isinstance(exc, Retry):
            retryable, delay = True, exc.delay
            if exc.max_retries is not None and retries >= exc.max_retries:
                retryable = False
        else:
            retryable = isinstance(exc, Exception) and isinstance(exc, retry_on)
            delay = handling.retry_delay
        if handling.max_retries is not None and retries >= handling.max_retries:
            retryable = False
        outcome = self.failed(job, exc, retryable=retryable, delay=delay)
        # ends for good here: failed, or a retry past its budget (finish.lua makes it dead)
        ends = not retryable or job.attempt - job.released >= job.max_attempts
        queue = handling.route(exc) if ends else None
        if queue is None:
            return outcome
        fields = dict(zip(outcome.fields[::2], outcome.fields[1::2], strict=True))
        try:
            source: Any = _codec.decode(job.msg, "message")
        except (MessageError, UnreadableData):  # (what failed it, maybe): as its raw bytes
            source = job.msg
        routed = {
            "source_message": source,
            "exc_type": fields["err_type"],
            "exc_message": fields["err_msg"],
            "traceback": fields["err_tb"],
            "attempt": job.attempt,
            "job_id": job.id,
            "queue": self.queue,
        }
        # its id tagged by the attempt: a job requeued that fails again is routed again
        packed = pack_outputs(
            [(queue, [_codec.encode(routed, "the routed error")])], f"{job.attempt}"
        )
        return dataclasses.replace(outcome, outputs=packed)

    def failed(
        self,
        job: Claimed,
        exc: BaseException,
        *,
        retryable: bool,
        delay: float | None = None,
    ) -> Outcome:
        """The attempt failed with `exc`: retried after `delay` (None: as the job's retry
        policy says), or failed for good."""
        kind = type(exc)
        name = (
            kind.__qualname__
            if kind.__module__ == "builtins"
            else (f"{kind.__module__}.{kind.__qualname__}")
        )
        message = message_of(exc)
        fields: list[str | bytes] = [
            "err_type", printable(name),
            "err_msg", printable(message[:MESSAGE_LIMIT]),
            "err_tb", printable("".join(traceback.format_exception(exc))[-TRACEBACK_LIMIT:]),
        ]  # fmt: skip
        log.warning(
            "job %s attempt %d failed: %s: %s",
            job.id,
            job.attempt,
            name,
            message[:MESSAGE_LIMIT],
            extra={"job_id": job.id, "queue": self.queue},
        )
        if not retryable:
            return job.outcome(Event.FAIL, 0, fields)
        if delay is None:
            try:
                policy = retry_policy(job.retry, job.max_attempts)
            except ConfigError:  # unreadable (planted, say): the job still runs, by default
                policy = DEFAULT_POLICY
            delay = policy.delay_before(job.attempt - job.released)
        return job.outcome(Event.RETRY, int(delay * 1000), fields)

    def handed_back(self, job: Claimed) -> Outcome:
        """The worker gives the job back unrun or unfinished (it stops): no attempt used."""
        log.info("handing back job %s", job.id, extra={"job_id": job.id})
        return job.outcome(Event.RELEASE)


def _elements(value: Any) -> list[Any] | None:
    """The elements of what an iter_output listener returned; None for what is no list of
    messages (no iterable; text, bytes and mappings, which iterate but are one message)."""
    if isinstance(value, Output | str | bytes | dict):
        return None
    try:
        return list(value)
    except TypeError:
        return None


def message_of(exc: BaseException) -> str:
    """An error's text, even when its own __str__ fails (that must not fail the worker)."""
    try:
        return str(exc)
    except Exception as failure:
        return f"<str() of the error failed: {type(failure).__name__}>"


def printable(text: str) -> str:
    """`text` as it can be stored: a lone surrogate (from a bad decode, say) as its escape."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")
