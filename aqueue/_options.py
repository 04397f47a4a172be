"""The options of a post, defined once: each one's name, type, default, range and help.

Every face is made from OPTIONS, or checked against it where making it is not sensible (a
typed signature): the keywords of Client.post, SyncClient.post and Context.post (PostKwargs),
the POST /jobs body and its OpenAPI schema, and `aqueue post`'s flags; tests/unit/
test_options.py fails when one of them gains or loses an option or a range. PostOptions is
one post's options, checked once.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, TypedDict

from aqueue._checks import LISTENER_NAME, MOST_EPOCH, MOST_KEY_CHARS, WHOLE, is_number, seconds
from aqueue._checks import whole as _whole
from aqueue._redis.records import check_callback, check_callback_method, check_functions, check_ttl
from aqueue.errors import TEN_YEARS, MessageError
from aqueue.retry import DEFAULT_POLICY, RetryPolicy

# what the value is, which says how each face takes it: JSON type, flag parser, schema
Kind = Literal[
    "listeners", "url", "method", "whole", "seconds", "time", "retry", "text", "switch"
]  # fmt: skip


@dataclass(frozen=True, slots=True)
class Option:
    """One post option, as every face offers it."""

    name: str
    kind: Kind
    type: str  # its Python annotation, as PostKwargs and the signatures write it
    help: str
    default: Any = None
    least: float | None = None  # numbers: the range; texts: their length
    most: float | None = None
    above: bool = False  # `least` itself is refused
    pattern: str | None = None  # what each name must match
    http: bool = True  # in a POST /jobs body
    flag: str | None = None  # `aqueue post --<flag>`; None: not on the command line
    shared: bool = True  # False: each job's own (post takes `key`, post_many `keys`)


_PRIORITY, _RETRIES = WHOLE["priority"], WHOLE["retries"]

OPTIONS: tuple[Option, ...] = (
    Option("functions", "listeners", "Sequence[str] | None",
           "listener names to run, in order (comma-separated on the command line; none: "
           "every listener)", pattern=LISTENER_NAME, flag="functions"),
    Option("callback", "url", "str | None", "an http(s) URL called when the job ends",
           flag="callback"),
    Option("callback_method", "method", "str",
           "GET: the outcome in the callback's query; POST: the job's JSON record",
           default="GET", http=False),
    Option("priority", "whole", "int", f"{_PRIORITY[0]}..{_PRIORITY[1]}, higher first",
           default=0, least=_PRIORITY[0], most=_PRIORITY[1], flag="priority"),
    Option("delay", "seconds", "float | None", "seconds before it may run",
           least=0, most=TEN_YEARS, flag="delay"),
    Option("at", "time", "datetime | float | None",
           "run no earlier: an aware time or epoch seconds",
           least=0, most=MOST_EPOCH, above=True),
    Option("timeout", "seconds", "float | None", "seconds each attempt may run",
           least=0, most=TEN_YEARS, above=True, flag="timeout"),
    Option("retry", "retry", "RetryPolicy | int | None",
           "attempts after the first (3); Python and HTTP also take a whole retry policy",
           least=_RETRIES[0], most=_RETRIES[1], flag="retries"),
    Option("key", "text", "str | None",
           "idempotency key: a second post with it returns the first job's id",
           least=1, most=MOST_KEY_CHARS, flag="key", shared=False),
    Option("ttl", "seconds", "float | None",
           "seconds the finished job and its result are kept (the client's result_ttl)",
           least=1, most=TEN_YEARS, flag="ttl"),
    Option("durable", "switch", "bool",
           "return only once replicas (and, if configured, the local fsync) acknowledged the "
           "post, else NotDurable: the client's replicas, durable_timeout and durable_local "
           "settings (one replica where none is set)", default=False, flag="durable"),
)  # fmt: skip


class PostKwargs(TypedDict, total=False):
    """The options every job of a post shares, as keywords: `**options: Unpack[PostKwargs]`.
    (The idempotency key is each job's own: `key=` to post, `keys=` to post_many.)"""

    functions: Sequence[str] | None
    callback: str | None
    callback_method: str
    priority: int
    delay: float | None
    at: datetime | float | None
    timeout: float | None
    retry: RetryPolicy | int | None
    ttl: float | None
    durable: bool


@dataclass(frozen=True, slots=True)
class PostOptions:
    """The options of one post, checked when made: a bad one raises MessageError naming it
    (ConfigError for a retry count out of range, as RetryPolicy says)."""

    functions: Sequence[str] | None = None
    callback: str | None = None
    callback_method: str = "GET"
    priority: int = 0
    delay: float | None = None
    at: datetime | float | None = None
    timeout: float | None = None
    retry: RetryPolicy | int | None = None
    ttl: float | None = None  # None: the client's result_ttl
    durable: bool = False
    # what the checks made of them
    policy: RetryPolicy = field(init=False, repr=False, compare=False)
    delay_ms: int = field(init=False, repr=False, compare=False)
    at_ms: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # in the order posts have always checked them: the first bad one is the one named
        if isinstance(self.retry, RetryPolicy):
            policy = self.retry
        else:
            policy = DEFAULT_POLICY if self.retry is None else RetryPolicy(retries=self.retry)
        functions = check_functions(self.functions)
        _whole("priority", self.priority, error=MessageError)
        if self.timeout is not None:
            seconds("timeout", self.timeout, least=0.001)  # under 1 ms it would be none (0)
        if self.ttl is not None:
            check_ttl(self.ttl)
        if self.callback is not None:
            check_callback(self.callback)
        check_callback_method(self.callback_method)
        delay_ms, at_ms = _when(self.delay, self.at)
        if not isinstance(self.durable, bool):
            raise MessageError(f"durable must be true or false, got {self.durable!r}")
        if self.functions is not None:  # a list of them, say: hashable, as a value should be
            object.__setattr__(self, "functions", functions)
        object.__setattr__(self, "policy", policy)
        object.__setattr__(self, "delay_ms", delay_ms)
        object.__setattr__(self, "at_ms", at_ms)


def post_options(options: Mapping[str, Any]) -> PostOptions:
    """`PostOptions(**options)`, remembered: an app posts with the same few option sets over
    and over, and checking a callback URL alone costs more than the rest of a post's Python."""
    if isinstance(options.get("functions"), list):
        options = {**options, "functions": tuple(options["functions"])}
    try:
        return _remembered(**options)
    except TypeError:  # an unhashable option: not a valid one either, as the checks will say
        return PostOptions(**options)


_remembered = functools.lru_cache(maxsize=256, typed=True)(PostOptions)  # typed: True is no 1


def _when(delay: float | None, at: datetime | float | None) -> tuple[int, int]:
    """(delay, at) in milliseconds, 0 where not given."""
    if delay is not None and at is not None:
        raise MessageError("give delay or at, not both")
    if delay is not None:
        return int(seconds("delay", delay) * 1000), 0
    if at is None:
        return 0, 0
    if isinstance(at, datetime):
        if at.tzinfo is None:
            raise MessageError("at must be a timezone-aware datetime (naive times are ambiguous)")
        return 0, int(at.timestamp() * 1000)
    if not is_number(at) or not 0 < at <= MOST_EPOCH:  # NaN and infinity too
        raise MessageError(f"at must be an aware datetime or epoch seconds, got {at!r}")
    return 0, int(at * 1000)
