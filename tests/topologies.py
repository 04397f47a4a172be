"""The multi-node Redis topologies the suite starts on loopback: a master with a replica, a
Sentinel set (a master, a replica, 3 sentinels) and a Redis Cluster (3 masters, a replica
each). Each node is a RedisServer on a free port in a folder of its own; `stop` stops them
all."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import redis

from aqueue._redis.server import RedisServer, free_port

MASTER_NAME = "aqueue-master"
SLOTS = 16384
# A replica's first sync starts at once, rather than after the 5 s that diskless sync waits
# by default for more replicas to join it (either node may be the master after a failover)
FAST_SYNC = {"repl-diskless-sync-delay": "0"}


def _until(condition: Callable[[], object], timeout: float, what: str) -> None:
    """Poll (in a thread of its own: these are started outside the event loop)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if condition():
                return
        except redis.RedisError:
            pass  # not up yet
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout} s")
        time.sleep(0.05)


def _cluster_port() -> int:
    """A free port whose cluster bus port (10000 above: 6.2 cannot set it) is free too."""
    while True:
        port = free_port()
        if port <= 55535:
            try:
                with socket.socket() as bus:
                    bus.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
            return port


def _client(server: RedisServer) -> redis.Redis:
    return redis.Redis(port=server.port, socket_timeout=2, decode_responses=True)


def _replication(server: RedisServer) -> dict[str, Any]:
    return _client(server).info("replication")


def _named_port(sentinel: RedisServer) -> int:
    """The master's port, as `sentinel` names it."""
    address = _client(sentinel).sentinel_get_master_addr_by_name(MASTER_NAME)
    return int(cast(tuple[str, int], address)[1])


@dataclass
class Replicated:
    """A master and one replica of it, in sync before `start` returns: what durable writes
    (WAIT) need to be acknowledged."""

    directory: Path
    appendfsync: str = "everysec"
    master: RedisServer = field(init=False)
    replica: RedisServer = field(init=False)

    def start(self, timeout: float = 20.0) -> Replicated:
        self.master = RedisServer(
            self.directory / "master", appendfsync=self.appendfsync, extra=dict(FAST_SYNC)
        ).start()
        self.replica = RedisServer(  # FAST_SYNC too: after a failover it may be the master
            self.directory / "replica",
            appendfsync=self.appendfsync,
            extra={**FAST_SYNC, "replicaof": f"127.0.0.1 {self.master.port}"},
        )
        try:
            self.replica.start()
            _until(self._online, timeout, "the replica in sync with its master")
        except BaseException:
            self.stop()
            raise
        return self

    def _online(self) -> bool:
        return bool(_replication(self.master).get("slave0", {}).get("state") == "online")

    def stop(self) -> None:
        for name in ("replica", "master"):  # (either may not be made yet, if start failed)
            server: RedisServer | None = getattr(self, name, None)
            if server is not None:
                server.stop()


@dataclass
class SentinelSet:
    """A master, one replica, 3 sentinels watching it under MASTER_NAME (quorum 2). A master
    down for `down_after_ms` is failed over to the replica."""

    directory: Path
    appendfsync: str = "everysec"
    down_after_ms: int = 500
    master: RedisServer = field(init=False)
    replica: RedisServer = field(init=False)
    sentinels: list[RedisServer] = field(init=False, default_factory=list)

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)
        return f"redis+sentinel://{hosts}/{MASTER_NAME}"

    @property
    def data_nodes(self) -> list[RedisServer]:
        return [self.master, self.replica]

    def start(self, timeout: float = 20.0) -> SentinelSet:
        pair = Replicated(self.directory, self.appendfsync).start(timeout)
        self.master, self.replica = pair.master, pair.replica
        for n in range(3):
            self.sentinels.append(
                RedisServer(
                    self.directory / f"sentinel-{n}",
                    sentinel=True,
                    extra={
                        "sentinel monitor": f"{MASTER_NAME} 127.0.0.1 {self.master.port} 2",
                        "sentinel down-after-milliseconds": f"{MASTER_NAME} {self.down_after_ms}",
                        "sentinel failover-timeout": f"{MASTER_NAME} 5000",
                        "sentinel parallel-syncs": f"{MASTER_NAME} 1",
                    },
                ).start()
            )
        try:
            _until(self._agreed, timeout, "the sentinels agreeing on the master and replica")
        except BaseException:
            self.stop()
            raise
        return self

    def _agreed(self) -> bool:
        """Every sentinel sees the master, its replica and the 2 other sentinels."""
        for sentinel in self.sentinels:
            state = cast(dict[str, Any], _client(sentinel).sentinel_master(MASTER_NAME))
            if (int(state["port"]), state["num-slaves"], state["num-other-sentinels"]) != (
                self.master.port,
                1,
                2,
            ):
                return False
        return bool(_replication(self.replica)["master_link_status"] == "up")

    def master_port(self) -> int:
        """The master's port, as the first sentinel that answers names it."""
        for sentinel in self.sentinels:
            try:
                return _named_port(sentinel)
            except redis.RedisError:
                continue
        raise RuntimeError("no sentinel answers")

    def wait_for_failover(self, old_port: int, timeout: float = 30.0) -> RedisServer:
        """Until every sentinel names another master than `old_port`, and that master takes
        writes; returns it."""

        def promoted() -> bool:
            ports = {_named_port(s) for s in self.sentinels}
            if len(ports) != 1 or old_port in ports:
                return False
            return bool(_replication(self._node(ports.pop()))["role"] == "master")

        _until(promoted, timeout, f"a failover from 127.0.0.1:{old_port}")
        return self._node(self.master_port())

    def _node(self, port: int) -> RedisServer:
        return next(s for s in self.data_nodes if s.port == port)

    def stop(self) -> None:
        for server in [*self.sentinels, *self.data_nodes]:
            server.kill()  # nothing here is kept: no clean shutdown to wait for


@dataclass
class Cluster:
    """3 masters holding a third of the slots each, and a replica of each."""

    directory: Path
    node_timeout_ms: int = 1000
    nodes: list[RedisServer] = field(init=False, default_factory=list)

    @property
    def masters(self) -> list[RedisServer]:
        return self.nodes[:3]

    @property
    def url(self) -> str:
        """The URL aqueue takes: any master tells the client of the rest."""
        return "redis+cluster://" + ",".join(f"127.0.0.1:{n.port}" for n in self.masters)

    def start(self, timeout: float = 30.0) -> Cluster:
        for n in range(6):
            self.nodes.append(
                RedisServer(
                    self.directory / f"node-{n}",
                    port=_cluster_port(),
                    appendonly=False,
                    extra={
                        **FAST_SYNC,
                        "cluster-enabled": "yes",
                        "cluster-config-file": "nodes.conf",
                        "cluster-node-timeout": str(self.node_timeout_ms),
                    },
                ).start()
            )
        try:
            self._form(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _form(self, timeout: float) -> None:
        """ADDSLOTS, MEET and REPLICATE over redis-py rather than `redis-cli --cluster
        create`: one way, needing no redis-cli of the same version (6.2 has no ADDSLOTSRANGE)."""
        clients = [_client(node) for node in self.nodes]
        third = SLOTS // 3
        for k, client in enumerate(clients[:3]):
            last = SLOTS if k == 2 else (k + 1) * third
            client.cluster("addslots", *range(k * third, last))
        for node in self.nodes[1:]:
            clients[0].cluster("meet", "127.0.0.1", node.port)
        ids = [c.cluster("myid") for c in clients]

        def all_known() -> bool:
            return all(len(c.cluster("nodes")) == 6 for c in clients)

        _until(all_known, timeout, "every node knowing the 5 others")
        for replica, master_id in zip(clients[3:], ids[:3], strict=True):
            replica.cluster("replicate", master_id)

        def ok() -> bool:
            for c in clients:
                if c.cluster("info")["cluster_state"] != "ok":
                    return False
                nodes = c.cluster("nodes").values()  # {"host:port": {...}}
                if sum("slave" in node["flags"] for node in nodes) != 3:
                    return False
            return all(_replication(n)["master_link_status"] == "up" for n in self.nodes[3:])

        _until(ok, timeout, "cluster_state:ok with 3 replicas in sync")

    def node_id(self, node: RedisServer) -> str:
        return str(_client(node).cluster("myid"))

    def live_nodes(self) -> list[RedisServer]:
        """The nodes whose process runs (a killed one stays listed in `nodes`)."""
        return [n for n in self.nodes if n.process is not None and n.process.poll() is None]

    def master_of_slot(self, slot: int, node: RedisServer | None = None) -> RedisServer:
        """The master that holds `slot`, as `node` (else the first live node) says."""
        for asked in [node] if node is not None else self.live_nodes():
            try:
                ranges = _client(asked).cluster("slots")
            except redis.RedisError:
                continue
            for first, last, (_, port, *_), *_ in ranges:
                if first <= slot <= last:
                    return self._node(port)
            raise LookupError(f"no master holds slot {slot}, as :{asked.port} says")
        raise RuntimeError("no node of the cluster answers")

    def replica_of(self, master: RedisServer) -> RedisServer:
        """The node replicating `master` (each master has one)."""
        master_id = self.node_id(master)
        for address, node in _client(master).cluster("nodes").items():
            if node["master_id"] == master_id:
                return self._node(int(address.rsplit(":", 1)[1].split("@")[0]))
        raise LookupError(f"no replica of 127.0.0.1:{master.port}")

    def wait_for_failover(self, slot: int, old: RedisServer, timeout: float = 30.0) -> RedisServer:
        """Until every live node names the same master of `slot`, another than `old`, and it
        says it is a master; returns it."""

        def promoted() -> bool:
            named = {self.master_of_slot(slot, node).port for node in self.live_nodes()}
            if len(named) != 1 or old.port in named:
                return False
            return bool(_replication(self._node(named.pop()))["role"] == "master")

        _until(promoted, timeout, f"a failover of slot {slot} from 127.0.0.1:{old.port}")
        return self.master_of_slot(slot)

    def migrate_slot(
        self, slot: int, target: RedisServer, batch: int = 10, pause: float = 0.0
    ) -> int:
        """Move `slot` from its master to `target` (another master) as `redis-cli --cluster
        reshard` does: IMPORTING on the target, MIGRATING on the source, its keys MIGRATEd
        `batch` at a time (`pause` s apart: writes to the slot meet the half-moved state),
        then the slot assigned to the target on every master. Returns how many keys moved."""
        source = self.master_of_slot(slot)
        if source.port == target.port:
            raise ValueError(f"slot {slot} is on 127.0.0.1:{target.port} already")
        src, dst = _client(source), _client(target)
        src_id, dst_id = self.node_id(source), self.node_id(target)
        dst.cluster("setslot", slot, "IMPORTING", src_id)
        src.cluster("setslot", slot, "MIGRATING", dst_id)
        moved = 0
        while keys := src.cluster("getkeysinslot", slot, batch):
            src.migrate("127.0.0.1", target.port, keys, 0, 5000)
            moved += len(keys)
            time.sleep(pause)  # (in a thread of its own: see _until)
        for node in [target, source]:  # the target first (as redis-cli): MOVED leads to it
            _client(node).cluster("setslot", slot, "NODE", dst_id)
        for master in self._masters_now():
            if master.port not in (source.port, target.port):
                _client(master).cluster("setslot", slot, "NODE", dst_id)
        return moved

    def _masters_now(self) -> list[RedisServer]:
        return [n for n in self.live_nodes() if _replication(n)["role"] == "master"]

    def errors(self, kind: str) -> int:
        """How many replies of error `kind` (e.g. TRYAGAIN) the live nodes gave, all told."""
        stats = (_client(n).info("errorstats") for n in self.live_nodes())
        return sum(int(s.get(f"errorstat_{kind}", {}).get("count", 0)) for s in stats)

    def _node(self, port: int) -> RedisServer:
        return next(n for n in self.nodes if n.port == port)

    def stop(self) -> None:
        for server in self.nodes:
            server.kill()
