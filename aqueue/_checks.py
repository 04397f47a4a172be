"""The limits of what callers hand over (ranges, lengths, name patterns), and checks of the
numbers among them, with errors that name the option.

A NaN, an infinity or a huge value would otherwise get past a `< 0` test and fail later, as
a bare ValueError or OverflowError where it is turned into milliseconds, or in Redis. Every
face (Python, HTTP and its OpenAPI schema, the command line, TOML) takes its limits from here.
"""

from __future__ import annotations

from typing import Any

from aqueue.errors import TEN_YEARS, ConfigError, MessageError

# Names and texts, as Redis keys and the HTTP routes take them.
QUEUE_NAME = r"^[A-Za-z0-9_.\-]{1,100}$"
LISTENER_NAME = r"^[A-Za-z_][A-Za-z0-9_.:\-]{0,199}$"
MOST_JOB_ID_CHARS = 200
MOST_KEY_CHARS = 500  # an idempotency key, or the key of stored data

# What one GET /queues/{name}/dead-letters may ask for: a page of at most 1000 jobs.
DEAD_LETTER_OFFSETS = (0, 10**9)
DEAD_LETTER_PAGE = (1, 1000)

# The latest time a post may name: 9999-12-31T23:59:59Z, the last a datetime can say.
MOST_EPOCH = 253402300799.0


def is_number(value: Any) -> bool:
    """An int or a float, not a bool (True is not 1 second)."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def seconds(
    name: str,
    value: Any,
    *,
    least: float = 0.0,
    most: float = TEN_YEARS,
    error: type[ValueError] = MessageError,
) -> float:
    """`value`, a number of seconds from `least` to `most`; else `error` naming `name`."""
    if not is_number(value) or not least <= value <= most:  # NaN fails every comparison
        raise error(
            f"{name} must be a number of seconds from {least:g} to {most:.0f}, got {value!r}"
        )
    return float(value)


def check_job_id(job_id: str) -> str:
    return check_text("job id", job_id, MOST_JOB_ID_CHARS)


def check_key(key: str) -> str:
    """An idempotency key, or the key of stored data."""
    return check_text("key", key, MOST_KEY_CHARS)


def check_text(name: str, text: Any, most: int) -> str:
    """Text Redis takes as a key or value: `name` must be 1 to `most` characters of it."""
    if not isinstance(text, str) or not text or len(text) > most:
        raise MessageError(
            f"{name} must be a non-empty string of at most {most} characters, got {text!r}"
        )
    try:
        text.encode()
    except UnicodeEncodeError:
        raise MessageError(
            f"{name} {text!r} is not valid Unicode text (a lone surrogate?)"
        ) from None
    return text


# The range of every whole-number setting and option, wherever it is given: WorkerConfig,
# ClientConfig, CallbackConfig, RetryPolicy, a post, TOML, AQUEUE_* and the command line.
# Past the top is a slip (an extra zero, a 10**18), never a wish: a worker would spend all
# its memory on slots or claim places before it served a job.
WHOLE: dict[str, tuple[int, int]] = {
    "concurrency": (1, 10_000),  # runner tasks, and threads for plain functions, per queue
    "prefetch": (0, 10_000),
    "claim_batch": (1, 10_000),
    "max_connections": (1, 10_000),  # Redis's own maxclients default
    "http_max_connections": (1, 10_000),
    "http_max_body_bytes": (1, 512 * 1024 * 1024),
    "max_message_bytes": (1, 512 * 1024 * 1024),  # Redis takes no argument over 512 MB
    # A worker holds a result whole (a value not bytes or str twice: it and its encoding), and
    # so does a Python reader; over one chunk it is stored in chunks (aqueue/_redis/results.py), so
    # Redis's 512 MB a value never applies.
    "max_result_bytes": (1, 2048 * 1024 * 1024),
    "max_unserved_lanes": (1, 1_000_000),  # lanes no live worker serves, per queue
    "callback_attempts": (1, 100),
    "callback_concurrency": (1, 10_000),
    "retries": (0, 1000),
    "replicas": (0, 1000),  # replicas a durable write waits for (WAIT numreplicas)
    "priority": (-100, 100),
}


def whole_range(name: str) -> str:
    """What the setting `name` takes, as errors say it."""
    least, most = WHOLE[name]
    return f"a whole number from {least} to {most}"


def is_whole(name: str, value: Any) -> bool:
    least, most = WHOLE[name]
    return isinstance(value, int) and not isinstance(value, bool) and least <= value <= most


def whole(
    name: str, value: Any, *, label: str | None = None, error: type[ValueError] = ConfigError
) -> int:
    """`value`, within the range of the setting `name`; else `error` naming `label or name`."""
    if not is_whole(name, value):
        raise error(f"{label or name} must be {whole_range(name)}, got {value!r}")
    return int(value)
