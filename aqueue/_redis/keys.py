"""The whole keyspace in one place: `KEYSPACE` names and explains every key and channel.

Every key and channel of a queue starts with `aq:{<queue>}:`; the braces are a Redis Cluster hash
tag, so all of one queue's keys live in one slot and each Lua script touches one slot.

`KEYSPACE` is the source of both languages' builders: `Keys` here (its members are checked
against the table by tests/unit/test_keys.py), and the Lua builders made from it in macros.py
(`job_key(prefix, id)`, `lanes_key(prefix)`, ...), which every script uses: the same test
fails on a key a script or a module spells out itself. Each entry's `meaning` is the glossary.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from aqueue._checks import QUEUE_NAME
from aqueue.errors import ConfigError

_NAME = re.compile(QUEUE_NAME)
# A job's score in its lane: (100 - priority) * PRIORITY_BAND + seq, its post order (post.lua)
PRIORITY_BAND = 2**44
ALL_SEQS = "aq:{*}:seq"  # a SCAN pattern for every queue's `seq`: those that have seen a post
RATE_BUCKET_MS = 10_000  # a `rate:<bucket>` hash counts the outcomes of one such span


@dataclass(frozen=True, slots=True)
class KeyName:
    """One key (or channel) of a queue: `template` follows the prefix, its `{fields}` are the
    builder's arguments; `attr` names the `Keys` member and, with `_key`, the Lua builder."""

    attr: str
    template: str
    type: str  # hash, zset, set, list, string, counter, channel, or none (never written)
    meaning: str

    @property
    def fields(self) -> tuple[str, ...]:
        return tuple(re.findall(r"\{(\w+)\}", self.template))

    @property
    def lua_builder(self) -> str:
        return f"{self.attr}_key"


KEYSPACE: tuple[KeyName, ...] = (
    # a job
    KeyName(
        "job",
        "job:{job_id}",
        "hash",
        "a job's record: status, posted, reason, outcome "
        "fields; deleted when it expires (expiries) or is purged",
    ),
    KeyName(
        "spec",
        "spec",
        "hash",
        "job id -> what a worker needs to run it (msgpack: "
        "records.SpecShape), kept as long as its record; and a placeholder",
    ),
    KeyName(
        "idempotency",
        "key:{key}",
        "string",
        "an idempotency key -> the id of the job posted with it, for the post's key lifetime",
    ),
    KeyName("data", "data:{key}", "string", "a value a listener or client stored (store/fetch)"),
    KeyName(
        "blob",
        "blob:{job_id}",
        "list",
        "a large result's chunks (results.py), kept an hour past its record",
    ),
    KeyName(
        "upload",
        "upload:{job_id}:{token}",
        "list",
        "a large result's chunks while they upload, until finish adopts them as the job's blob",
    ),
    KeyName(
        "callback_log",
        "cblog:{job_id}",
        "list",
        "one line per delivery attempt of a job's callback, deleted with its record",
    ),
    # waiting
    KeyName(
        "lanes", "lanes", "set", "the signatures of lanes with ready jobs (and some emptied since)"
    ),
    KeyName(
        "lane",
        "lane:{signature}",
        "zset",
        "ready job ids of one signature, by score: (100 - priority) * PRIORITY_BAND + post order",
    ),
    KeyName(
        "kinds",
        "kinds",
        "zset",
        "kind of live worker (its listener names, sorted, "
        "joined by ',') -> latest liveness deadline of one (ms)",
    ),
    KeyName(
        "serving",
        "serves:{kind}",
        "set",
        "the signatures of the lanes with ready jobs "
        "that workers of `kind` can serve (and some emptied since)",
    ),
    KeyName(
        "unserved",
        "unserved",
        "zset",
        "lanes no live kind can serve -> +inf (ready "
        "jobs), or when their latest scheduled job is due (ms)",
    ),
    KeyName("scheduled", "scheduled", "zset", "job id -> when it is due (ms, Redis clock)"),
    KeyName("suspects", "suspects", "set", "the signatures with suspects waiting (reap.lua)"),
    KeyName(
        "suspect_lane",
        "suspect:{signature}",
        "zset",
        "suspects (jobs whose lease lapsed) of one signature, by their lane's score, to run alone",
    ),
    KeyName(
        "tries", "tries", "hash", "job id -> its tries (wire.Tries) once tried and back waiting"
    ),
    KeyName(
        "seq", "seq", "counter", "jobs ever posted: their order in a lane, and the posted total"
    ),
    # running
    KeyName(
        "running",
        "running",
        "hash",
        "job id -> its attempt (wire.Run) while active; and a placeholder",
    ),
    KeyName(
        "active",
        "active",
        "zset",
        "job id -> lease deadline (ms, Redis clock); and a placeholder at +inf",
    ),
    KeyName(
        "held",
        "held:{worker_id}",
        "counter",
        "jobs a worker holds, as of its last heartbeat plus its claims since (reap.lua)",
    ),
    KeyName("draining", "draining", "set", "worker ids draining to run suspects alone (claim.lua)"),
    KeyName(
        "idle",
        "idle",
        "hash",
        "worker id -> its wait for pushes (wire.Idle), while a "
        "short claim left it waiting (see post.lua)",
    ),
    KeyName(
        "watched",
        "watched",
        "set",
        "live job ids a client awaits: only their status changes are published (watch.lua)",
    ),
    # workers
    KeyName("workers", "workers", "zset", "worker id -> liveness deadline (ms)"),
    KeyName(
        "worker",
        "worker:{worker_id}",
        "string",
        "a worker's info (msgpack: what it is and runs), expiring with its liveness",
    ),
    KeyName("done", "done", "hash", "worker id -> outcomes it recorded (finish), for status"),
    # ended
    KeyName(
        "expiries",
        "expiries",
        "zset",
        "groups of finished job ids (one finish call's, "
        "joined by ',') -> when their records go (ms)",
    ),
    KeyName("dead", "dead", "zset", "job id -> when it died (ms): dead letters, kept until purged"),
    KeyName("stats", "stats", "hash", "outcome -> jobs that ended so, ever"),
    KeyName(
        "fence",
        "fence",
        "none",
        "never written: on a cluster every script declares it beside `stats`, so that none "
        "runs while the queue's slot migrates (Redis answers TRYAGAIN: see Store._call)",
    ),
    KeyName(
        "rate",
        "rate:{bucket}",
        "hash",
        "outcome -> jobs that ended so in one 10 s "
        "bucket (ms // 10000), kept 130 s: jobs/s over the last minute",
    ),
    # callbacks
    KeyName("outbox", "outbox", "list", "job ids whose callback is due"),
    KeyName(
        "callbacks_active", "cb:active", "zset", "job id -> its delivery's lease deadline (ms)"
    ),
    KeyName("callbacks_retry", "cb:retry", "zset", "job id -> when to try delivering again (ms)"),
    # outputs to other queues (the forward outbox, see aqueue/_services/forwarder.py)
    KeyName(
        "outputs",
        "outputs",
        "hash",
        "job id -> its outputs to forward, msgpack [[queue, [message, ...]], ...], until forwarded",
    ),
    KeyName("forward", "forward", "list", "job ids whose outputs wait to be forwarded"),
    KeyName(
        "forwarding",
        "forwarding",
        "zset",
        "job id -> its forwarding's lease deadline (ms): a forwarder that stopped lets it lapse",
    ),
    # channels
    KeyName(
        "events",
        "events",
        "channel",
        "[job id, kind, ...] for status and progress; ['', 'active', [ids]] for a batch's start",
    ),
    KeyName("wake", "wake", "channel", "new ready work (posted, requeued, promoted, reaped)"),
    KeyName("control", "control", "channel", "['cancel', job id] for the worker running it"),
    KeyName("callbacks", "callbacks", "channel", "a callback was put in the outbox"),
    KeyName("forwards", "forwards", "channel", "a job's outputs were put in the forward outbox"),
    KeyName(
        "push",
        "push:{worker_id}",
        "channel",
        "jobs a post leased to this waiting "
        "worker (rows as claim returns them); b'' ends them (Store.stop_waiting)",
    ),
)


def check_queue_name(queue: str) -> str:
    if not isinstance(queue, str) or not _NAME.match(queue):
        raise ConfigError(
            f"queue name {queue!r} is invalid: use 1-100 letters, digits, '_', '.' or '-'"
        )
    return queue


def queue_of(seq_key: str) -> str:
    """The queue whose `seq` key (matched by ALL_SEQS) this is."""
    return seq_key[len("aq:{") : -len("}:seq")]


@dataclass(frozen=True, slots=True)
class Keys:
    """A queue's keys, one member per `KEYSPACE` entry (the table says what each holds)."""

    queue: str

    def __post_init__(self) -> None:
        check_queue_name(self.queue)

    @property
    def prefix(self) -> str:
        return f"aq:{{{self.queue}}}:"

    @property
    def pattern(self) -> str:
        """A SCAN pattern matching this queue's keys and no other queue's."""
        return self.prefix + "*"

    def job(self, job_id: str) -> str:
        return f"{self.prefix}job:{job_id}"

    @property
    def spec(self) -> str:
        return self.prefix + "spec"

    def idempotency(self, key: str) -> str:
        return f"{self.prefix}key:{key}"

    def data(self, key: str) -> str:
        return f"{self.prefix}data:{key}"

    def blob(self, job_id: str) -> str:
        return f"{self.prefix}blob:{job_id}"

    def upload(self, job_id: str, token: str) -> str:
        return f"{self.prefix}upload:{job_id}:{token}"

    def callback_log(self, job_id: str) -> str:
        return f"{self.prefix}cblog:{job_id}"

    @property
    def lanes(self) -> str:
        return self.prefix + "lanes"

    def lane(self, signature: str) -> str:
        return f"{self.prefix}lane:{signature}"

    @property
    def kinds(self) -> str:
        return self.prefix + "kinds"

    def serving(self, kind: str) -> str:
        return f"{self.prefix}serves:{kind}"

    @property
    def unserved(self) -> str:
        return self.prefix + "unserved"

    @property
    def scheduled(self) -> str:
        return self.prefix + "scheduled"

    @property
    def suspects(self) -> str:
        return self.prefix + "suspects"

    def suspect_lane(self, signature: str) -> str:
        return f"{self.prefix}suspect:{signature}"

    @property
    def tries(self) -> str:
        return self.prefix + "tries"

    @property
    def seq(self) -> str:
        return self.prefix + "seq"

    @property
    def running(self) -> str:
        return self.prefix + "running"

    @property
    def active(self) -> str:
        return self.prefix + "active"

    def held(self, worker_id: str) -> str:
        return f"{self.prefix}held:{worker_id}"

    @property
    def draining(self) -> str:
        return self.prefix + "draining"

    @property
    def idle(self) -> str:
        return self.prefix + "idle"

    @property
    def watched(self) -> str:
        return self.prefix + "watched"

    @property
    def workers(self) -> str:
        return self.prefix + "workers"

    def worker(self, worker_id: str) -> str:
        return f"{self.prefix}worker:{worker_id}"

    @property
    def done(self) -> str:
        return self.prefix + "done"

    @property
    def expiries(self) -> str:
        return self.prefix + "expiries"

    @property
    def dead(self) -> str:
        return self.prefix + "dead"

    @property
    def stats(self) -> str:
        return self.prefix + "stats"

    @property
    def fence(self) -> str:
        return self.prefix + "fence"

    def rate(self, bucket: str) -> str:
        return f"{self.prefix}rate:{bucket}"

    @property
    def outbox(self) -> str:
        return self.prefix + "outbox"

    @property
    def callbacks_active(self) -> str:
        return self.prefix + "cb:active"

    @property
    def callbacks_retry(self) -> str:
        return self.prefix + "cb:retry"

    @property
    def outputs(self) -> str:
        return self.prefix + "outputs"

    @property
    def forward(self) -> str:
        return self.prefix + "forward"

    @property
    def forwarding(self) -> str:
        return self.prefix + "forwarding"

    @property
    def forwards(self) -> str:
        return self.prefix + "forwards"

    @property
    def events(self) -> str:
        return self.prefix + "events"

    @property
    def wake(self) -> str:
        return self.prefix + "wake"

    @property
    def control(self) -> str:
        return self.prefix + "control"

    @property
    def callbacks(self) -> str:
        return self.prefix + "callbacks"

    def push(self, worker_id: str) -> str:
        return f"{self.prefix}push:{worker_id}"
