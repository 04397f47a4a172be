"""Everything aqueue asks of Redis: one typed wrapper per Lua script, and the plain reads.

The only module that imports redis.asyncio. Redis's exceptions never leave it: they become
`RedisUnavailable`. Values go in and come out as bytes; decoding is the callers' business.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Sequence
from typing import Any, cast

import anyio
import msgpack
import redis.asyncio as aioredis
import redis.exceptions as rexc
from redis.asyncio.client import PubSub
from redis.asyncio.cluster import ClusterPubSub, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.commands.core import AsyncScript

from aqueue._redis import cluster as _cluster
from aqueue._redis import scripts as _scripts
from aqueue._redis import sentinel as _sentinel
from aqueue._redis.calls import (
    Arg,
    ClaimResult,
    NewJobs,
    Outcome,
    Reaped,
    claimed_rows,
    finish_calls,
    spec_fields,
    text,
    values,
)
from aqueue._redis.direct import MISSED, Direct, pool_connection
from aqueue._redis.keys import ALL_SEQS, PRIORITY_BAND, RATE_BUCKET_MS, Keys, queue_of
from aqueue._redis.records import posted_ms
from aqueue._states import (
    ACTIVE,
    CallbackEvent,
    CallbackReply,
    callback_reply,
    live_status,
)
from aqueue.config import Durability
from aqueue.errors import ConfigError, NotDurable, RedisUnavailable, TooManyLanes

log = logging.getLogger(__name__)


@contextlib.contextmanager
def redis_errors(what: str) -> Iterator[None]:
    """Turn redis-py's exceptions into aqueue's, naming what we were doing."""
    try:
        yield
    except rexc.MaxConnectionsError as exc:
        raise RedisUnavailable(
            f"{what}: every Redis connection of the pool to a node is busy ({exc})"
        ) from exc
    except (rexc.ConnectionError, rexc.TimeoutError, OSError) as exc:
        if str(exc) == _POOL_WAIT_TIMED_OUT:
            raise RedisUnavailable(
                f"{what}: every Redis connection of the pool stayed busy past its wait limit"
            ) from exc
        raise RedisUnavailable(f"{what}: Redis unreachable ({exc})") from exc
    except rexc.MovedError as exc:  # (a cluster client follows MOVED: a single Redis's is raw)
        raise RedisUnavailable(
            f"{what}: Redis refused the command: MOVED, the queue's slot is on {exc.host}:"
            f"{exc.port} (this Redis is a node of a Redis Cluster: give its nodes as "
            "redis+cluster://HOST:PORT,HOST:PORT)"
        ) from exc
    except rexc.RedisError as exc:
        raise RedisUnavailable(f"{what}: Redis refused the command ({exc})") from exc
    except (rexc.RedisClusterUnreachableError, rexc.SlotNotCoveredError) as exc:
        # (redis-py's cluster errors are no RedisError)
        raise RedisUnavailable(f"{what}: Redis unreachable ({exc})") from exc
    except rexc.RedisClusterException as exc:
        if _NOT_A_CLUSTER in str(exc):
            raise RedisUnavailable(
                f"{what}: the Redis named is not a node of a Redis Cluster ({exc}): give a "
                "single Redis as redis://HOST:PORT"
            ) from exc
        raise RedisUnavailable(f"{what}: the Redis Cluster refused ({exc})") from exc
    except RuntimeError as exc:
        # uvloop's "unable to perform operation on <TCPTransport closed=True>": redis-py
        # reconnecting onto a socket that dropped again (seen while Redis restarts)
        if "closed" not in str(exc):
            raise
        raise RedisUnavailable(f"{what}: Redis connection lost ({exc})") from exc


_POOL_WAIT_TIMED_OUT = _cluster.POOL_WAIT_TIMED_OUT  # redis-py's BlockingConnectionPool's words
_NOT_A_CLUSTER = _cluster.NOT_A_CLUSTER
# How long a script call waits out its queue's slot migrating (TRYAGAIN: see Store._call)
MIGRATION_WAIT_S = 60.0

Redis = aioredis.Redis | RedisCluster


def connect(url: str, max_connections: int, name: str, pool_timeout: float | None = None) -> Redis:
    """A client with a bounded pool that retries a dropped connection a few times.
    Its connections carry `name` (CLIENT LIST shows who is connected). A command waits for a
    free connection up to `pool_timeout` seconds (None: as long as it takes, rather than fail
    under load), then fails with RedisUnavailable. A Sentinel URL (see `_redis.sentinel`)
    gives a client of its current master; a cluster URL (`_redis.cluster`), a client of the
    cluster, with `max_connections` commands in flight over all its nodes."""
    options: dict[str, Any] = {
        "client_name": name,
        "max_connections": max_connections,
        "timeout": pool_timeout,
        "retry": Retry(ExponentialWithJitterBackoff(base=0.05, cap=1.0), 3),
        "retry_on_error": [rexc.ConnectionError, rexc.TimeoutError],
        "health_check_interval": 30,
    }
    target = _sentinel.parse_url(url)
    if target is not None:
        return _sentinel.master_client(target, **options)
    nodes = _cluster.parse_url(url)
    if nodes is not None:
        return _cluster.cluster_client(nodes, **options)
    pool = aioredis.BlockingConnectionPool.from_url(url, **options)
    return aioredis.Redis(connection_pool=pool)


async def close(redis: Redis) -> None:
    """Close a client that `connect` made, and its pool (a pool we made is ours to close)."""
    await redis.aclose()
    if isinstance(redis, aioredis.Redis):
        await redis.connection_pool.disconnect()


async def _replies(pipe: Any) -> list[Any]:
    """A pipeline's replies, a key of the wrong type (a hostile or corrupt write) read as absent
    (None): one bad key then costs only its own figure in `aqueue status` or GET /queues."""
    replies = await pipe.execute(raise_on_error=False)
    for k, reply in enumerate(replies):
        if isinstance(reply, rexc.ResponseError) and str(reply).startswith("WRONGTYPE"):
            replies[k] = None
        elif isinstance(reply, Exception):
            raise reply
    return list(replies)


def _count_leases(pipe: Any, keys: Keys) -> None:
    """Queue a count of the leased (active) jobs: `active` less its placeholder at +inf."""
    pipe.zcount(keys.active, "-inf", "(+inf")


def _running_fields(run: bytes) -> dict[str, bytes]:
    """A running attempt of an existing record: its live status (see `live_status`), and its
    `running` entry, which is what its record's `ran` will be."""
    return {"status": ACTIVE, "ran": run}


def _finish_args(worker_id: str, batch: Sequence[Outcome]) -> list[Arg]:
    """finish.lua's arguments for one call's outcomes (and their outputs, where any has)."""
    ids = msgpack.packb([o.id for o in batch], use_bin_type=False)  # see post
    flat: list[Arg] = []
    outputs: dict[str, bytes] = {}
    for o in batch:
        kind = "chunked" if o.chunked else o.kind  # see finish.lua
        flat += (str(o.attempt), kind, o.delay_ms, o.ttl_s, int(o.calls_back))
        flat += (o.max_attempts, len(o.fields), *o.fields)
        if o.outputs:
            outputs[o.id] = o.outputs
    if outputs:
        return [worker_id, ids, values(flat), msgpack.packb(outputs, use_bin_type=False)]
    return [worker_id, ids, values(flat)]


ON_NODE_ATTEMPTS = 6  # _on_slot_node's tries, over some 3 s


# redis-py's cluster client's words when its own tries of a command are spent: each was
# redirected (MOVED, ASK) or told TRYAGAIN, so the command ran nowhere
_TRIES_SPENT = "TTL exhausted."


def _migrating(exc: rexc.RedisError) -> bool:
    """Whether `exc` says the call met its slot migrating, and did not run. redis-py tries
    TRYAGAIN again itself, 16 times over some 0.4 s, then raises ClusterError(_TRIES_SPENT),
    not the TryAgainError."""
    if isinstance(exc, rexc.TryAgainError):
        return True
    return isinstance(exc, rexc.ClusterError) and str(exc) == _TRIES_SPENT


async def _past_migration(call: Callable[[], Awaitable[Any]]) -> Any:
    """`call`, made again while Redis answers TRYAGAIN (the queue's slot is migrating: see
    `Store._call`), for up to MIGRATION_WAIT_S. Safe to repeat: TRYAGAIN is answered before a
    script runs."""
    delay, give_up = 0.01, anyio.current_time() + MIGRATION_WAIT_S
    while True:
        try:
            return await call()
        except rexc.RedisError as exc:
            if not _migrating(exc) or anyio.current_time() > give_up:
                raise
            await anyio.sleep(delay)
            delay = min(delay * 2, 0.25)


def _version(text: str) -> tuple[int, ...]:
    """`7.0.15` as (7, 0)."""
    return tuple(int(part) for part in text.split(".")[:2] if part.isdigit())


def _count(value: bytes | None) -> int:
    """A counter; one overwritten with text reads as 0 (the scripts restart it: incr)."""
    try:
        return int(value or 0)
    except ValueError:
        return 0


class Store:
    """One queue's view of Redis. Its script calls go over `direct` when that is free (see
    `Direct`), else through the pool."""

    def __init__(
        self,
        redis: Redis,
        queue: str,
        direct: Direct | None = None,
        scripts: dict[str, AsyncScript] | None = None,
        server: dict[str, Any] | None = None,
    ) -> None:
        self.redis = redis
        self.keys = Keys(queue)
        self._direct = direct
        # On a cluster a queue's messages go to its shard only (see scripts.source)
        self.sharded = isinstance(redis, RedisCluster)
        # the KEYS every script call declares (see _call): the fence on a cluster only, where
        # slots migrate (on one node it would cost each post 1.6 % more of Redis's work)
        self._declared = [self.keys.stats, self.keys.fence] if self.sharded else [self.keys.stats]
        self._server = {} if server is None else server  # what the server can, found once
        self._scripts = scripts or {
            name: redis.register_script(_scripts.source(name, self.sharded))
            for name in _scripts.NAMES
        }

    @classmethod
    @contextlib.asynccontextmanager
    async def opened(cls, redis: Redis, queue: str) -> AsyncIterator[Store]:
        """A store with a direct connection of its own, closed on the way out."""
        if isinstance(redis, RedisCluster):  # to the master of the queue's slot, wherever
            direct = Direct(_cluster.connection_to(redis, Keys(queue).stats))
        else:
            direct = Direct(pool_connection(redis.connection_pool))
        try:
            yield cls(redis, queue, direct)
        finally:  # (shielded, as the pool's close is: see `open_store`)
            with anyio.move_on_after(1.0, shield=True), contextlib.suppress(Exception):
                await direct.aclose()

    def view(self, queue: str) -> Store:
        """Another queue's store over the same connections (and the same scripts: they
        build every key from the queue's prefix). On a cluster, without the direct
        connection: that one goes to this queue's node, the other's may be another."""
        direct = None if self.sharded else self._direct
        return Store(self.redis, queue, direct, self._scripts, self._server)

    def pinned(self) -> contextlib.AbstractAsyncContextManager[Store]:
        """This store with a direct connection of its own (for a loop that calls scripts back
        to back, beside others that do too)."""
        return Store.opened(self.redis, self.keys.queue)

    def _call(self, name: str, args: Sequence[Arg]) -> tuple[AsyncScript, list[str], list[Arg]]:
        """Script `name`, its KEYS and its ARGV. The KEYS are only declared; the scripts build
        every key from the prefix, under the same hash tag. `stats` routes the call to the
        queue's slot on a cluster. `fence` (declared on a cluster only), a key never
        written, keeps every script from running while that slot migrates: Redis checks a
        script's declared keys before it runs, and with one of them missing it answers
        TRYAGAIN (the source node while some of the queue's keys are still there, the
        target's while some are not), where a script that ran would find some of its keys
        moved away, and fail half-applied."""
        return self._scripts[name], self._declared, [self.keys.prefix, *args]

    async def _run(self, name: str, args: Sequence[Arg]) -> Any:
        script, keys, argv = self._call(name, args)
        with redis_errors(f"{name} on queue {self.keys.queue!r}"):
            if self._direct is not None:
                reply = await self._direct.evalsha(script.sha, keys, argv)
                if reply is not MISSED:
                    return reply
            if not self.sharded:
                return await script(keys=keys, args=argv)
            return await _past_migration(lambda: script(keys=keys, args=argv))

    async def _run_durable(
        self, name: str, args: Sequence[Arg], durable: Durability
    ) -> tuple[Any, list[Any]]:
        """`_run`, with the waits of `durable` on the same connection right after the script
        (pipelined: one round trip): the script's reply, and theirs."""
        waits = await self._waits(durable)
        script, keys, argv = self._call(name, args)
        if self.sharded:
            commands = [("EVALSHA", script.sha, len(keys), *keys, *argv), *waits]
            reply, *acks = await self._on_slot_node(
                f"{name} on queue {self.keys.queue!r}",
                commands,
                len(waits) * durable.timeout,
                script,
            )
            return reply, acks
        with redis_errors(f"{name} on queue {self.keys.queue!r}"):
            if self._direct is not None:
                replies = await self._direct.evalsha(
                    script.sha, keys, argv, waits, len(waits) * durable.timeout
                )
                if replies is not MISSED:
                    return replies[0], replies[1:]
            async with self.redis.pipeline(transaction=False) as pipe:
                await script(keys=keys, args=argv, client=cast(aioredis.Redis, pipe))  # (loads it)
                for command in waits:
                    pipe.execute_command(*command)
                reply, *acks = await pipe.execute()
        return reply, acks

    async def _waits(self, durable: Durability) -> list[tuple[Arg, ...]]:
        """The commands that wait for `durable`: WAIT for replicas, WAITAOF for the local
        fsync (refused where the server lacks it: nothing would confirm it)."""
        waits: list[tuple[Arg, ...]] = []
        if durable.replicas:
            waits.append(("WAIT", durable.replicas, durable.timeout_ms))
        if durable.local:
            lacks = await self._lacks_waitaof()
            if lacks:
                raise ConfigError(f"durable_local needs {lacks}: set durable_local = false")
            waits.append(("WAITAOF", 1, 0, durable.timeout_ms))
        return waits

    async def check_topology(self) -> None:
        """ConfigError where this Redis cannot carry aqueue as deployed: a cluster's nodes
        before 7.0 have no sharded pub/sub (see scripts.source); a cluster's node named by a
        single Redis's URL would serve the queues of its own slots only, and those without
        a cluster's rules (see `_call`)."""
        if not self.sharded:
            with redis_errors("reading INFO"):
                try:
                    info = await self.redis.info("cluster")
                except rexc.NoPermissionError:  # an ACL user without +info: nothing to check
                    return
            if int(info.get("cluster_enabled", 0)):
                raise ConfigError(
                    f"{await self.node()} is a node of a Redis Cluster: give its nodes as "
                    "redis+cluster://HOST:PORT,HOST:PORT (a redis:// URL names a single Redis)"
                )
        else:
            facts = await self.server_facts()
            if _version(facts["version"]) < (7, 0):
                raise ConfigError(
                    f"aqueue on a Redis Cluster needs Redis 7.0 or later (sharded pub/sub): "
                    f"the node of queue {self.keys.queue!r} runs {facts['version']}"
                )

    async def check_up(self) -> None:
        """RedisUnavailable unless Redis answers PING; on a cluster, unless the node asked also
        says the cluster is up: a cluster with a slot unserved (under Redis's default
        `cluster-require-full-coverage yes`) answers PING on every node, and refuses the rest."""
        state = "ok"
        with redis_errors("PING"):
            await self.redis.ping()
            if isinstance(self.redis, RedisCluster):
                info = await self.redis.cluster_info(target_nodes=RedisCluster.DEFAULT_NODE)
                state = str(info.get("cluster_state", "?"))
        if state != "ok":
            raise RedisUnavailable(f"the Redis Cluster is down (cluster_state:{state})")

    async def check_durable(self, durable: Durability) -> None:
        """ConfigError if this server cannot confirm `durable` (see _waits)."""
        with redis_errors("reading INFO"):
            await self._waits(durable)

    async def _lacks_waitaof(self) -> str | None:
        """What WAITAOF needs that the server lacks (None: nothing), found once per store."""
        if "lacks_waitaof" not in self._server:
            facts = await self.server_facts()
            version = _version(facts["version"])
            lacks = None
            if version < (7, 2):
                lacks = f"WAITAOF, of Redis 7.2 or later (this server is {facts['version']})"
            elif not facts["aof_enabled"]:
                lacks = "the server's AOF (appendonly yes)"
            if lacks:
                log.warning("this Redis cannot confirm a local fsync: it lacks %s", lacks)
            self._server["lacks_waitaof"] = lacks
        return cast(str | None, self._server["lacks_waitaof"])

    @staticmethod
    def _shortfall(durable: Durability, acks: list[Any], job_ids: list[str]) -> NotDurable | None:
        """NotDurable naming what the waits' replies met, if short of `durable`."""
        acknowledged = int(acks[0]) if durable.replicas else 0
        synced = bool(durable.local and int(acks[-1][0]))
        if acknowledged >= durable.replicas and synced == durable.local:
            return None
        return NotDurable(
            job_ids, replicas=durable.replicas, acknowledged=acknowledged, local=durable.local,
            synced=synced, timeout=durable.timeout,
        )  # fmt: skip

    async def confirm(self, durable: Durability, job_ids: list[str]) -> NotDurable | None:
        """Wait for `durable` again, after a write short of it: a write of its own (a count
        of these waits, in `stats`) and the waits, on one connection. The replication stream
        is in order: a replica that has this write has every earlier one."""
        waits = await self._waits(durable)
        what = f"waiting for durability on queue {self.keys.queue!r}"
        if self.sharded:
            commands = [("HINCRBY", self.keys.stats, "durable_rewaits", 1), *waits]
            _, *acks = await self._on_slot_node(what, commands, len(waits) * durable.timeout)
            return self._shortfall(durable, acks, job_ids)
        with redis_errors(what):
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.hincrby(self.keys.stats, "durable_rewaits", 1)
                for command in waits:
                    pipe.execute_command(*command)
                _, *acks = await pipe.execute()
        return self._shortfall(durable, acks, job_ids)

    async def _on_slot_node(
        self,
        what: str,
        commands: list[tuple[Arg, ...]],
        extra_s: float,
        script: AsyncScript | None = None,
    ) -> list[Any]:
        """The replies of `commands`, sent on one connection to the master of the queue's
        slot (a cluster's): a write and the WAITs that must follow it on its connection,
        which a cluster pipeline cannot send (it routes a keyless WAIT to any node). On the
        store's direct connection, else on one of their own; tried again, a few times,
        where they did not run (moved, migrating, a connection lost, or NOSCRIPT).

        `script`, the one that `commands` call, is loaded (SCRIPT LOAD) ahead of them on
        each retry: a node may never have run it (Redis answers NOSCRIPT), and replicas keep
        no script cache (Redis 7), so a replica a failover promoted has none. The fallback
        that loads scripts, redis-py's script call, cannot carry the WAITs."""
        assert isinstance(self.redis, RedisCluster)
        connect = _cluster.connection_to(self.redis, self.keys.stats)
        with redis_errors(what):
            for attempt in range(ON_NODE_ATTEMPTS):
                sent = commands
                if attempt:
                    await anyio.sleep(0.05 * 2**attempt)
                    await self.redis.nodes_manager.initialize()  # where is the slot now?
                    if script is not None:
                        source = cast(Arg, script.script)  # (registered as str)
                        sent = [("SCRIPT", "LOAD", source), *commands]
                replies: Any = MISSED
                if self._direct is not None:
                    replies = await self._direct.pipelined(sent, extra_s)
                if replies is MISSED:  # busy, or it failed there
                    once = Direct(connect)
                    try:
                        replies = await once.pipelined(sent, extra_s)
                    finally:
                        await once.aclose()
                if replies is not MISSED:
                    return cast(list[Any], replies[len(sent) - len(commands) :])
        raise RedisUnavailable(f"{what}: no answer from its slot's master in {attempt + 1} tries")

    # -- scripts -------------------------------------------------------------------------

    async def post(
        self, new: NewJobs, key_ttl_ms: int, durable: Durability | None = None
    ) -> list[str]:
        """The posted ids; with `durable`, once it is met, else NotDurable (they stand)."""
        shared = [new.signature, new.priority, new.delay_ms, new.at_ms, int(new.watched)]
        packed = msgpack.packb(
            [*shared, list(new.fields), *itertools.chain.from_iterable(new.jobs)],
            use_bin_type=False,  # Lua's cmsgpack predates the bin types; raw str is binary-safe
        )
        args: list[Arg] = [key_ttl_ms, packed, new.most_unserved_lanes]
        if durable is None:
            ids = await self._run("post", args)
        else:
            ids, acks = await self._run_durable("post", args, durable)
        if isinstance(ids, int):  # refused: the limit
            raise TooManyLanes(self.keys.queue, new.signature, ids)
        posted = [text(i) for i in ids]
        if durable is not None and (shortfall := self._shortfall(durable, acks, posted)):
            raise shortfall
        return posted

    async def claim(
        self, worker_id: str, lease_ms: int, count: int, functions: Sequence[str]
    ) -> ClaimResult:
        raw = await self._run("claim", [worker_id, lease_ms, count, *functions])
        next_due, flags = int(raw[1]), int(raw[3])
        return ClaimResult(
            int(raw[0]),
            None if next_due < 0 else next_due,
            claimed_rows(raw[4:]),
            full=bool(flags & 1),
            suspects=bool(flags & 2),
        )

    async def claim_alone(
        self, worker_id: str, lease_ms: int, functions: Sequence[str]
    ) -> ClaimResult:
        """The best suspect this worker can run, to run alone (see claim_alone.lua)."""
        raw = await self._run("claim_alone", [worker_id, lease_ms, *functions])
        return ClaimResult(int(raw[0]), None, claimed_rows(raw[2:]), False, raw[1] == 1)

    async def heartbeat(
        self,
        worker_id: str,
        lease_ms: int,
        info: bytes,
        leases: Sequence[tuple[str, int]],
        listeners: Sequence[str] = (),
    ) -> list[str]:
        """Renew this worker's liveness (and its `listeners`' kind's) and its leases; the
        ids of the jobs it no longer holds."""
        args: list[Arg] = [worker_id, lease_ms, info, ",".join(listeners)]
        for job_id, attempt in leases:
            args += [job_id, attempt]
        return [text(i) for i in await self._run("heartbeat", args)]

    async def finish(self, worker_id: str, outcomes: Sequence[Outcome]) -> list[bool]:
        accepted: list[bool] = []
        for batch in finish_calls(outcomes):
            verdicts = await self._run("finish", _finish_args(worker_id, batch))  # b"1101..."
            accepted += [verdict == ord("1") for verdict in verdicts]
        return accepted

    async def finish_durably(
        self, worker_id: str, outcomes: Sequence[Outcome], durable: Durability
    ) -> tuple[list[bool], NotDurable | None]:
        """`finish`, then the waits of `durable` (pipelined with the last call: the stream
        is in order, so they cover the calls before it too); and whether they fell short."""
        *first, last = finish_calls(outcomes)
        accepted = await self.finish(worker_id, [o for batch in first for o in batch])
        verdicts, acks = await self._run_durable("finish", _finish_args(worker_id, last), durable)
        accepted += [verdict == ord("1") for verdict in verdicts]
        return accepted, self._shortfall(durable, acks, [o.id for o in outcomes])

    async def progress(
        self, job_id: str, attempt: int, worker_id: str, value: bytes, message: str
    ) -> bool:
        return bool(await self._run("progress", [job_id, attempt, worker_id, value, message]))

    async def reap(self, limit: int) -> tuple[int, int, int, int]:
        """One pass: (requeued, dead, promoted, expired) — see reap.lua."""
        reaped = await self.reap_pass(limit)
        return reaped.requeued, reaped.dead, reaped.promoted, reaped.expired

    async def reap_pass(self, limit: int) -> Reaped:
        """One pass, with the jobs it buried for data it could not read."""
        requeued, dead, promoted, expired, buried = await self._run("reap", [limit])
        pairs = [(text(buried[i]), text(buried[i + 1])) for i in range(0, len(buried), 2)]
        return Reaped(int(requeued), int(dead), int(promoted), int(expired), pairs)

    async def cancel(self, job_id: str) -> tuple[str, str | None]:
        return self._verdict(await self._run("cancel", [job_id]))

    async def requeue(self, job_id: str) -> tuple[str, str | None]:
        return self._verdict(await self._run("requeue", [job_id]))

    @staticmethod
    def _verdict(raw: list[Any]) -> tuple[str, str | None]:
        return text(raw[0]), (text(raw[1]) if len(raw) > 1 else None)

    async def purge_dead(self, batch: int = 500) -> int:
        total = 0
        while n := int(await self._run("purge_dead", [batch])):
            total += n
        return total

    async def claim_callbacks(
        self, lease_ms: int, count: int, crash_retries: int
    ) -> tuple[int | None, list[tuple[str, int]]]:
        """(ms until the next retry is due, [(job id, token)]) of the callbacks to deliver now;
        a delivery whose dispatcher stopped is re-tried up to `crash_retries` times."""
        raw = await self._run("claim_callbacks", [lease_ms, count, crash_retries])
        due = int(raw[0])
        pairs = [(text(raw[i]), int(raw[i + 1])) for i in range(1, len(raw), 2)]
        return (None if due < 0 else due), pairs

    async def callback_done(
        self, job_id: str, token: int, event: CallbackEvent, delay_ms: int, most: int, note: str
    ) -> CallbackReply:
        """Record a delivery attempt (`event`: delivered or failed) under its token."""
        args: list[Arg] = [job_id, token, event, delay_ms, most, note]
        return callback_reply(text(await self._run("callback_done", args)))

    async def claim_forwards(
        self, lease_ms: int, count: int
    ) -> tuple[int | None, list[tuple[str, bytes, str]]]:
        """(ms until the first lease held lapses, [(job id, its outputs, its root)]) of the
        jobs whose outputs to forward now (see claim_forwards.lua)."""
        raw = await self._run("claim_forwards", [lease_ms, count])
        due = int(raw[0])
        claimed = [
            (text(raw[i]), cast(bytes, raw[i + 1]), text(raw[i + 2])) for i in range(1, len(raw), 3)
        ]
        return (None if due < 0 else due), claimed

    async def forward_done(self, forwarded: Sequence[tuple[str, bytes]]) -> int:
        """The jobs' outputs are posted: let go of them, noting on each job's record what they
        were forwarded as (job id, `pack_forwarded`'s)."""
        args: list[Arg] = []
        for job_id, summary in forwarded:
            args += (job_id, summary)
        return int(await self._run("forward_done", args))

    async def callback_log(self, job_id: str) -> list[str]:
        with redis_errors(f"reading the callback log of {job_id!r}"):
            return [
                text(line)
                for line in await self.redis.lrange(self.keys.callback_log(job_id), 0, -1)
            ]

    # -- plain reads and writes ----------------------------------------------------------

    async def job_fields(self, job_id: str) -> dict[str, bytes]:
        """A job's record as it is now: a running attempt's facts (status, attempt, worker,
        started) are in the queue's `running` hash, and its msg in the `spec` hash."""
        k = self.keys
        with redis_errors(f"reading job {job_id!r}"):
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.hgetall(k.job(job_id))
                pipe.hget(k.running, job_id)
                pipe.hget(k.spec, job_id)
                raw, run, spec = await _replies(pipe)
        # a record of the wrong type (planted) holds nothing of ours: no record, as absent
        fields = {text(key): cast(bytes, v) for key, v in (raw or {}).items()}
        if fields and spec is not None:
            fields.update(spec_fields(spec))
        if fields and run is not None:
            fields.update(_running_fields(run))
        return fields

    async def job_field_values(self, job_id: str, fields: Sequence[str]) -> list[bytes | None]:
        k = self.keys
        with redis_errors(f"reading job {job_id!r}"):
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.hmget(k.job(job_id), fields)
                pipe.hget(k.running, job_id)
                pipe.exists(k.job(job_id))
                values, run, exists = await _replies(pipe)
        if values is None:  # a record of the wrong type: nothing of ours, as absent
            values, exists = [None] * len(fields), 0
        if run is not None and exists:
            live = _running_fields(run)
            values = [live.get(name, value) for name, value in zip(fields, values, strict=True)]
        return cast(list[bytes | None], values)

    async def watch(self, job_ids: Sequence[str]) -> list[bytes | None]:
        """Mark jobs as awaited (their status changes get published); their statuses."""
        raw = await self._run("watch", list(job_ids))
        return [None if s is None or s is False else cast(bytes, s) for s in raw]

    async def lineage(
        self, job_ids: Sequence[str]
    ) -> list[tuple[bytes | None, bytes | None, bytes | None, bytes | None]]:
        """Per job, in one round trip: its status (None: no record), where its outputs went
        (`out`), and why it stopped (`err_type`, `reason`): what `trace` reads of a stage."""
        with redis_errors("reading jobs for a trace"):
            async with self.redis.pipeline(transaction=False) as pipe:
                for job_id in job_ids:
                    pipe.hmget(self.keys.job(job_id), ["status", "out", "err_type", "reason"])
                pipe.hmget(self.keys.running, list(job_ids))
                *records, running = await _replies(pipe)
        rows = []
        for record, run in zip(records, running or [None] * len(job_ids), strict=True):
            status, out, err_type, reason = record or (None, None, None, None)
            live = live_status(status, running=status is not None and run is not None)
            rows.append((live, out, err_type, reason))
        return rows

    async def statuses(self, job_ids: Sequence[str]) -> list[bytes | None]:
        """The status of each job (None where missing), in one round trip."""
        with redis_errors("reading job statuses"):
            async with self.redis.pipeline(transaction=True) as pipe:
                for job_id in job_ids:
                    pipe.hget(self.keys.job(job_id), "status")
                pipe.hmget(self.keys.running, list(job_ids))
                *stored, running = await pipe.execute()
        return [
            live_status(status, running=status is not None and run is not None)
            for status, run in zip(stored, running, strict=True)
        ]

    async def set_data(self, key: str, data: bytes, ttl_ms: int | None) -> None:
        with redis_errors(f"storing data at {key!r}"):
            await self.redis.set(self.keys.data(key), data, px=ttl_ms)

    async def get_data(self, key: str) -> bytes | None:
        with redis_errors(f"fetching data at {key!r}"):
            return cast(bytes | None, await self.redis.get(self.keys.data(key)))

    async def data_head(self, key: str, most: int) -> tuple[int, bytes]:
        """The size of the data at `key` (0: none) and its first `most` bytes, at one moment."""
        k = self.keys.data(key)
        with redis_errors(f"fetching data at {key!r}"):
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.strlen(k)
                pipe.getrange(k, 0, most - 1)
                size, head = await pipe.execute()
        return int(size), cast(bytes, head)

    async def data_range(self, key: str, start: int, count: int) -> bytes:
        with redis_errors(f"fetching data at {key!r}"):
            return cast(
                bytes, await self.redis.getrange(self.keys.data(key), start, start + count - 1)
            )

    async def upload_chunks(
        self, key: str, chunks: Iterable[bytes | memoryview], ttl_ms: int, in_flight: int = 4
    ) -> int:
        """Append `chunks` to the list at `key` (expiring after `ttl_ms`), a few per round
        trip and one per command; deleted again if that fails or is cancelled. How many."""
        count = 0

        async def send(batch: list[bytes | memoryview]) -> None:
            async with self.redis.pipeline(transaction=False) as pipe:
                for item in batch:
                    pipe.rpush(key, item)
                pipe.pexpire(key, ttl_ms)
                await pipe.execute()

        try:
            with redis_errors(f"uploading {key!r}"):
                batch: list[bytes | memoryview] = []
                for chunk in chunks:
                    batch.append(chunk)
                    if len(batch) == in_flight:
                        await send(batch)
                        count, batch = count + len(batch), []
                if batch:
                    await send(batch)
                    count += len(batch)
        except BaseException:
            with anyio.CancelScope(shield=True), anyio.move_on_after(5):
                with contextlib.suppress(Exception):
                    await self.redis.unlink(key)
            raise
        return count

    async def result_chunk(self, job_id: str, index: int) -> bytes | None:
        """Chunk `index` of a large result (see aqueue/_redis/results.py); None when gone."""
        with redis_errors(f"reading the result of job {job_id!r}"):
            return cast(bytes | None, await self.redis.lindex(self.keys.blob(job_id), index))

    async def dead_ids(self, offset: int, count: int) -> list[str]:
        with redis_errors("listing dead letters"):
            raw = await self.redis.zrange(self.keys.dead, offset, offset + count - 1)
        return [text(i) for i in raw]

    async def counts(self) -> dict[str, int]:
        """Jobs per list: queued (over all lanes), scheduled, active, dead; live workers."""
        k = self.keys
        with redis_errors("counting jobs"):
            lanes = await self._queued_keys()
            async with self.redis.pipeline(transaction=False) as pipe:
                for lane in lanes:
                    pipe.zcard(lane)
                pipe.zcard(k.scheduled)
                _count_leases(pipe, k)
                pipe.zcard(k.dead)
                pipe.zcard(k.workers)
                raw = [n or 0 for n in await _replies(pipe)]
        *lane_counts, scheduled, active, dead, workers = raw
        return {
            "queued": sum(lane_counts),
            "scheduled": scheduled,
            "active": active,
            "dead": dead,
            "workers": workers,
        }

    async def live_workers(self) -> list[bytes]:
        """The info of every worker whose liveness has not lapsed."""
        with redis_errors("listing workers"):
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.zrange(self.keys.workers, 0, -1)
                [ids] = await _replies(pipe)  # of the wrong type (planted): none listed
            if not ids:
                return []
            infos = await self.redis.mget([self.keys.worker(text(i)) for i in ids])
        return [cast(bytes, i) for i in infos if i is not None]

    async def snapshot(self) -> dict[str, Any]:
        """What `aqueue status` shows of this queue, read in a few round trips."""
        k = self.keys
        with redis_errors(f"reading the status of queue {k.queue!r}"):
            seconds, micros = await self._on_queue_node("TIME")
            now = int(seconds) * 1000 + int(micros) // 1000
            lanes = await self._queued_keys()
            buckets = [k.rate(str(now // RATE_BUCKET_MS - i)) for i in range(6)]
            async with self.redis.pipeline(transaction=False) as pipe:
                for lane in lanes:
                    pipe.zcard(lane)
                pipe.zcard(k.scheduled)
                _count_leases(pipe, k)
                pipe.zcard(k.dead)
                pipe.zcount(k.active, "-inf", f"({now}")
                pipe.hgetall(k.stats)
                pipe.get(k.seq)
                pipe.hgetall(k.done)
                for bucket in buckets:
                    pipe.hgetall(bucket)
                raw = await _replies(pipe)
            queued = sum(n or 0 for n in raw[: len(lanes)])
            figures = raw[len(lanes) :]
            scheduled, active, dead, stalled = (n or 0 for n in figures[:4])
            posted = figures[5]
            stats, done, *rates = (found or {} for found in (figures[4], *figures[6:]))
            oldest = await self._oldest_queued(lanes)
            oldest_posted: bytes | None = None
            if oldest is not None:
                async with self.redis.pipeline(transaction=False) as pipe:
                    pipe.hget(k.job(text(oldest)), "posted")
                    [oldest_posted] = await _replies(pipe)  # a record of the wrong type: none
        return {
            "now_ms": now,
            "node": await self.node(),
            "queued": queued,
            "scheduled": scheduled,
            "active": active,
            "dead": dead,
            "stalled": stalled,
            "oldest_queued_ms": posted_ms(oldest_posted) if oldest_posted else None,
            # posts are counted by `seq` alone (a `posted` in `stats` is none of ours)
            "totals": {"posted": _count(posted)}
            | {text(a): _count(b) for a, b in stats.items() if a != b"posted"},
            # the current (partial) 10 s bucket and the five before it: about the last minute
            "last_minute": [{text(a): _count(b) for a, b in r.items()} for r in rates],
            "window_s": 50 + (now % RATE_BUCKET_MS) / 1000,
            # per worker, the outcomes it recorded: current, where its info is a heartbeat old
            "done": {text(w): int(n) for w, n in done.items() if n.isdigit()},
        }

    async def _queued_keys(self) -> list[str]:
        """The zsets of queued jobs: the lanes, and the suspect lanes (see reap.lua)."""
        k = self.keys
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.smembers(k.lanes)
            pipe.smembers(k.suspects)
            lanes, suspects = (found or set() for found in await _replies(pipe))
        return [k.lane(text(s)) for s in lanes] + [k.suspect_lane(text(s)) for s in suspects]

    async def _oldest_queued(self, lanes: list[str]) -> bytes | None:
        """The id of the queued job posted first. A lane's head is its best job by priority,
        then age; so the oldest is the first of some priority band of some lane: found by
        reading each lane's bands' first jobs, a step per band in use."""
        firsts: list[tuple[int, bytes]] = []  # (seq: the post order, id)
        frontier = {lane: 0 for lane in lanes}  # score from which to read each's next band
        while frontier:
            async with self.redis.pipeline(transaction=False) as pipe:
                for lane, lowest in frontier.items():
                    pipe.zrangebyscore(lane, lowest, "+inf", 0, 1, withscores=True)
                found = await _replies(pipe)
            following = {}
            for lane, first in zip(frontier, found, strict=True):
                if first:
                    job_id, score = first[0]
                    band, seq = divmod(int(score), PRIORITY_BAND)
                    firsts.append((seq, job_id))
                    following[lane] = (band + 1) * PRIORITY_BAND
            frontier = following
        return min(firsts)[1] if firsts else None

    async def purge_queue(self) -> int:
        """Delete every key of this queue (and no other queue's)."""
        deleted = 0
        with redis_errors(f"purging queue {self.keys.queue!r}"):
            batch: list[bytes] = []
            where: dict[str, Any] = {}
            if isinstance(self.redis, RedisCluster):  # the queue's keys are on its node only
                where["target_nodes"] = await _cluster.master_of(self.redis, self.keys.stats)
            async for key in self.redis.scan_iter(match=self.keys.pattern, count=1000, **where):
                batch.append(key)
                if len(batch) >= 1000:
                    deleted += await self.redis.unlink(*batch)
                    batch = []
            if batch:
                deleted += await self.redis.unlink(*batch)
            # clients waiting on this queue's jobs look again (they find them gone)
            await self.publish(self.keys.events, msgpack.packb(["", "purged"]))
        return deleted

    async def publish(self, channel: str, message: bytes) -> None:
        """Send `message` on a channel of this queue (its shard's, on a cluster)."""
        with redis_errors(f"publishing on {channel!r}"):
            if self.sharded:
                await self.redis.spublish(channel, message)
            else:
                await self.redis.publish(channel, message)

    async def retire_worker(self, worker_id: str) -> None:
        """A worker that stopped cleanly is no longer listed as live."""
        with redis_errors(f"retiring worker {worker_id!r}"):
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.zrem(self.keys.workers, worker_id)
                pipe.delete(self.keys.worker(worker_id), self.keys.held(worker_id))
                pipe.srem(self.keys.draining, worker_id)
                pipe.hdel(self.keys.idle, worker_id)
                pipe.hdel(self.keys.done, worker_id)
                await pipe.execute()

    async def stop_waiting(self, worker_id: str) -> bool:
        """Posts hand this worker no more jobs (it registered for them in a short claim).

        In the same transaction, an empty message goes to its push channel, after any jobs
        already pushed to it: once its subscription reads that, it has read them all. Returns
        whether a subscriber heard it (False: none will come)."""
        with redis_errors(f"unregistering idle worker {worker_id!r}"):
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.hdel(self.keys.idle, worker_id)
                if self.sharded:
                    pipe.spublish(self.keys.push(worker_id), b"")
                else:
                    pipe.publish(self.keys.push(worker_id), b"")
                _, heard = await pipe.execute()
        return bool(heard)

    async def server_facts(self) -> dict[str, Any]:
        """Version, eviction policy and persistence, from INFO (which a least-privilege ACL
        user may read, unlike CONFIG)."""
        with redis_errors(f"reading INFO from the node of queue {self.keys.queue!r}"):
            info = await self._on_queue_node("INFO")
        return {
            "version": str(info.get("redis_version", "0")),
            "maxmemory_policy": str(info.get("maxmemory_policy", "?")),
            "aof_enabled": bool(int(info.get("aof_enabled", 0))),
        }

    async def queue_names(self) -> list[str]:
        """Every queue on this Redis that has seen a post (from their `seq` counters)."""
        with redis_errors("listing queues"):
            keys = [text(key) async for key in self.redis.scan_iter(match=ALL_SEQS)]
        return sorted(map(queue_of, keys))

    async def _on_queue_node(self, *command: Arg) -> Any:
        """A keyless command's reply from the queue's node (a cluster's master of its slot)."""
        redis: Any = self.redis  # (redis-py leaves execute_command untyped)
        if isinstance(self.redis, RedisCluster):
            node = await _cluster.master_of(self.redis, self.keys.stats)
            return await redis.execute_command(*command, target_nodes=node)
        return await redis.execute_command(*command)

    async def node(self) -> str:
        """Where the queue lives: `host:port` of its node (a cluster's master of its slot)."""
        if isinstance(self.redis, RedisCluster):
            with redis_errors("finding the queue's node"):
                return str((await _cluster.master_of(self.redis, self.keys.stats)).name)
        pool = self.redis.connection_pool
        if isinstance(pool, _sentinel.BlockingSentinelPool):  # the master the sentinels name
            with redis_errors("asking the sentinels for the master"):
                host, port = await pool.get_master_address()  # type: ignore[no-untyped-call]
            return f"{host}:{port}"
        kwargs = pool.connection_kwargs
        return f"{kwargs['host']}:{kwargs['port']}" if "host" in kwargs else str(kwargs["path"])

    @contextlib.asynccontextmanager
    async def subscribe(self, *channels: str) -> AsyncIterator[Subscription]:
        pubsub = self.redis.pubsub()
        subscription = Subscription(pubsub)
        try:
            await subscription.add(*channels)
            yield subscription
        finally:
            with contextlib.suppress(Exception):
                await pubsub.aclose()


class Subscription:
    """Messages from subscribed channels. A `(channel, None)` pair means "(re)subscribed":
    messages may have been missed before it, so the caller re-reads the stored state.

    On a cluster, a queue's channels are its shard's (SSUBSCRIBE: see scripts.source), and
    redis-py keeps each on the node that holds its slot, moving it after a failover or a
    migration: that node's confirmation is a `(channel, None)` too."""

    def __init__(self, pubsub: PubSub) -> None:
        self._pubsub = pubsub
        self._sharded = isinstance(pubsub, ClusterPubSub)

    async def add(self, *channels: str) -> None:
        """Subscribe to more channels too (each confirmed by a `(channel, None)` from get)."""
        with redis_errors(f"subscribing to {', '.join(channels)}"):
            if not self._sharded:
                await self._pubsub.subscribe(*channels)
                return
            try:
                await cast(ClusterPubSub, self._pubsub).ssubscribe(*channels)
            except rexc.ResponseError as exc:
                if "unknown command" not in str(exc).lower():
                    raise
                raise ConfigError(
                    "aqueue on a Redis Cluster needs Redis 7.0 or later (sharded pub/sub): "
                    f"a node refused SSUBSCRIBE ({exc})"
                ) from exc

    async def drop(self, *channels: str) -> None:
        with redis_errors(f"unsubscribing from {', '.join(channels)}"):
            if self._sharded:
                await cast(ClusterPubSub, self._pubsub).sunsubscribe(*channels)
            else:
                await self._pubsub.unsubscribe(*channels)

    async def get(self, timeout: float | None) -> tuple[str, bytes | None] | None:
        with redis_errors("reading subscription"):
            if self._sharded:
                message = await self._sharded_message(timeout)
            else:
                message = await self._pubsub.get_message(timeout=timeout)
        if message is None:
            return None
        channel = text(message["channel"])
        if message["type"] in (b"message", "message", b"smessage", "smessage"):
            return channel, cast(bytes, message["data"])
        if message["type"] in (b"subscribe", "subscribe", b"ssubscribe", "ssubscribe"):
            return channel, None
        return None

    async def _sharded_message(self, timeout: float | None) -> dict[str, Any] | None:
        """The next message of any node. redis-py reads the nodes in turn, each for the
        whole timeout when it is None: with channels on several nodes (the HTTP service's),
        one quiet node would hold back the others' messages. So it waits in short slices."""
        pubsub = cast(ClusterPubSub, self._pubsub)
        deadline = None if timeout is None else anyio.current_time() + timeout
        while True:
            many = len(pubsub.node_pubsub_mapping) > 1
            left = 1.0 if deadline is None else max(0.0, deadline - anyio.current_time())
            message = await pubsub.get_sharded_message(timeout=min(left, 0.02 if many else 1.0))
            if message is not None or (deadline is not None and anyio.current_time() >= deadline):
                return message
