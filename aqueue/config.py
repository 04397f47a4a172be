"""Frozen, validated configuration. Every duration is float seconds."""

from __future__ import annotations

import math
from dataclasses import dataclass

from aqueue._checks import WHOLE, whole
from aqueue._redis.keys import check_queue_name
from aqueue.errors import ConfigError

MOST_UNSERVED_LANES = 1000  # ClientConfig.max_unserved_lanes's default

DAY = 86400.0
MIB = 1024 * 1024
MOST_RESULT_BYTES = WHOLE["max_result_bytes"][1]  # whatever the setting (see _checks.WHOLE)


def _positive(name: str, value: object) -> None:
    # NaN passes `<= 0`, and infinity overflows as milliseconds
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < math.inf:
        raise ConfigError(f"{name} must be a positive number of seconds, got {value!r}")


@dataclass(frozen=True, slots=True)
class Durability:
    """What a durable write waits for before it returns: `replicas` replicas acknowledging it
    (WAIT) and, with `local`, the master's own AOF fsync (WAITAOF: Redis 7.2 or later), each
    within `timeout` seconds; short of it, NotDurable (the write stands)."""

    replicas: int = 1
    timeout: float = 1.0
    local: bool = False

    def __post_init__(self) -> None:
        whole("replicas", self.replicas)
        _positive("durable_timeout", self.timeout)
        if not isinstance(self.local, bool):
            raise ConfigError(f"durable_local must be true or false, got {self.local!r}")
        if not self.replicas and not self.local:
            raise ConfigError("a durable write waits for a replica or the local fsync: neither set")

    @property
    def timeout_ms(self) -> int:
        return max(1, round(self.timeout * 1000))  # WAIT 0 would wait forever


def durability(replicas: int, timeout: float, local: bool, asked: bool) -> Durability | None:
    """The threshold of a write: every write's where `replicas` or `local` is set; else one
    replica's, for a write `asked` to be durable (post(durable=True)); else none."""
    if replicas or local:
        return Durability(replicas, timeout, local)
    return Durability(1, timeout) if asked else None


@dataclass(frozen=True, slots=True)
class ClientConfig:
    """How a client reaches its queue. `redis_url=None` means the embedded default."""

    queue: str = "default"
    redis_url: str | None = None
    max_message_bytes: int = 16 * 1024 * 1024
    result_ttl: float = 7 * DAY  # how long finished jobs and their results are kept
    data_ttl: float = 7 * DAY  # default expiry of store_data
    # the pool's bound, however many jobs are awaited (script calls made one after another
    # use one more connection, of their own: aqueue/_redis/direct.py)
    max_connections: int = 32
    # the most lanes (sets of listener names) with waiting jobs that no live worker serves:
    # a post past it is refused (TooManyLanes), so that junk names cannot grow the queue
    max_unserved_lanes: int = MOST_UNSERVED_LANES
    # Every post durable (see Durability) where `replicas` or `durable_local` is set; a post
    # made with durable=True waits for them, or for one replica where neither is set.
    replicas: int = 0
    durable_timeout: float = 1.0
    durable_local: bool = False

    def __post_init__(self) -> None:
        check_queue_name(self.queue)
        whole("max_message_bytes", self.max_message_bytes)
        whole("max_unserved_lanes", self.max_unserved_lanes)
        _positive("result_ttl", self.result_ttl)
        _positive("data_ttl", self.data_ttl)
        whole("max_connections", self.max_connections)
        durability(self.replicas, self.durable_timeout, self.durable_local, asked=True)

    def durability(self, asked: bool = False) -> Durability | None:
        """What a post waits for (`asked`: post(durable=True)); None: nothing."""
        return durability(self.replicas, self.durable_timeout, self.durable_local, asked)


@dataclass(frozen=True, slots=True)
class WorkerConfig:
    """How a worker serves its queue."""

    queue: str = "default"
    concurrency: int = 16  # jobs run at once (async listeners; threads for plain functions)
    lease: float = 30.0  # a claim lapses this long after the last heartbeat
    heartbeat: float = 10.0  # how often leases are renewed; at most a third of the lease
    grace: float = 30.0  # on stop, how long running jobs may take before they are handed back
    reaper_interval: float = 5.0  # how often this daemon's reaper looks for lapsed leases
    idle_wait: float = 5.0  # longest block on Redis between claims when nothing is posted
    claim_batch: int = 64  # most jobs taken in one claim
    # The most jobs claimed ahead, beyond the free slots, so that a freed slot starts its next
    # job at once instead of after a round trip to Redis: as many as finish during one claim
    # (none for jobs much longer than a claim). They are leased like running ones: on a crash
    # they are reclaimed like running ones; on a stop they are handed back at once.
    prefetch: int = 64
    worker_id: str | None = None
    reaper: bool = True  # run the reaper in this daemon
    # The largest result (its msgpack encoding) a listener may return; over it the job fails
    # with MessageTooLarge. Up to MOST_RESULT_BYTES; it is Redis memory, for the result's ttl.
    max_result_bytes: int = 16 * MIB
    # Every finish durable (see Durability) where `replicas` or `durable_local` is set: a
    # finish short of it is logged and its WAIT retried (the outcome is written already).
    replicas: int = 0
    durable_timeout: float = 1.0
    durable_local: bool = False

    def __post_init__(self) -> None:
        check_queue_name(self.queue)
        durability(self.replicas, self.durable_timeout, self.durable_local, asked=True)
        for name in ("concurrency", "claim_batch", "prefetch", "max_result_bytes"):
            whole(name, getattr(self, name))
        for name in ("lease", "heartbeat", "grace", "reaper_interval", "idle_wait"):
            _positive(name, getattr(self, name))
        if self.heartbeat > self.lease / 3:
            raise ConfigError(
                f"heartbeat must be at most a third of the lease so that one late beat does "
                f"not lose it: heartbeat={self.heartbeat:g} s, lease={self.lease:g} s"
            )

    def durability(self) -> Durability | None:
        """What every finish waits for; None: nothing."""
        return durability(self.replicas, self.durable_timeout, self.durable_local, asked=False)
