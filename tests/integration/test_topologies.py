"""The topologies the suite starts (tests/topologies.py): a cluster that routes keys by slot,
and a stop that leaves no process behind."""

from __future__ import annotations

from pathlib import Path

import redis
from redis.cluster import RedisCluster

from aqueue._redis.server import ping

from ..topologies import Cluster, SentinelSet


def test_the_cluster_routes_each_key_to_the_master_of_its_slot(redis_cluster: Cluster) -> None:
    keys = [f"key-{n}" for n in range(30)]
    with RedisCluster(host="127.0.0.1", port=redis_cluster.nodes[0].port) as cluster:
        for key in keys:
            cluster.set(key, key)
        slots = {key: cluster.keyslot(key) for key in keys}
    holders: dict[str, int] = {}
    for n, master in enumerate(redis_cluster.masters):
        with redis.Redis(port=master.port) as node:
            for key in keys:
                try:
                    assert node.get(key) == key.encode()
                except redis.exceptions.MovedError:
                    continue  # another master's slot
                assert key not in holders
                holders[key] = n
    assert set(holders) == set(keys)  # each on exactly one master: the third of its slot
    assert all(slots[key] * 3 // 16384 == n for key, n in holders.items())
    assert set(holders.values()) == {0, 1, 2}


def test_stop_leaves_no_server_of_a_topology_running(tmp_path: Path) -> None:
    servers = SentinelSet(tmp_path / "sentinel").start()
    cluster = Cluster(tmp_path / "cluster").start()
    nodes = [*servers.sentinels, *servers.data_nodes, *cluster.nodes]
    assert len(nodes) == 11 and all(ping("127.0.0.1", node.port) for node in nodes)
    servers.stop()
    cluster.stop()
    for node in nodes:
        assert node.process is not None and node.process.poll() is not None
        assert not ping("127.0.0.1", node.port)
