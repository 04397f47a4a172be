"""Real redis-server processes, started by the suite on free loopback ports in temp folders;
and the blocking-call guard (tests/blocking.py) around every test."""

from __future__ import annotations

import os
import uuid
import zlib
from collections.abc import AsyncIterator, Generator, Iterator
from pathlib import Path

import pytest

from aqueue import Client
from aqueue.testing import RedisServer

from .blocking import GUARD
from .topologies import Cluster, SentinelSet


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One server for the session; every test gets its own queue (namespace) on it."""
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()  # fails loudly if it cannot
    yield server
    server.stop()


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A server of the test's own, for tests that kill or restart it. AOF fsyncs every write,
    so a SIGKILL loses nothing that was acknowledged."""
    server = RedisServer(tmp_path / "redis", appendfsync="always").start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def sentinel_set(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SentinelSet]:
    """A master, a replica and 3 sentinels for the session, for tests that kill nothing."""
    servers = SentinelSet(tmp_path_factory.mktemp("sentinel")).start()
    yield servers
    servers.stop()


@pytest.fixture
def private_sentinel_set(tmp_path: Path) -> Iterator[SentinelSet]:
    """A Sentinel set of the test's own, for failover tests."""
    servers = SentinelSet(tmp_path / "sentinel").start()
    yield servers
    servers.stop()


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """3 masters with a replica each, for the session."""
    cluster = Cluster(tmp_path_factory.mktemp("cluster")).start()
    yield cluster
    cluster.stop()


@pytest.fixture
def queue() -> str:
    return "t-" + uuid.uuid4().hex[:12]


TOPOLOGIES = ("standalone", "sentinel", "cluster")


@pytest.fixture
def redis_url(request: pytest.FixtureRequest) -> str:
    """Where the test's Redis is: the session's server; or, for a test marked
    `every_topology`, each of the session's server, Sentinel set and cluster in turn."""
    topology = getattr(request, "param", "standalone")
    if topology == "sentinel":
        return str(request.getfixturevalue("sentinel_set").url)
    if topology == "cluster":
        return str(request.getfixturevalue("redis_cluster").url)
    return str(request.getfixturevalue("redis_server").url)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """A test marked `every_topology` that takes `redis_url` (itself or through `client`)
    runs on each topology: the core stories hold on all three. With AQUEUE_TEST_TOPOLOGIES
    unset (CI's bounded sample) on a single server and on one of the other two, the same one
    each run (by the test's name: about half the stories on each); `all` runs every story on
    all three, and a list (`standalone,cluster`) those."""
    if "redis_url" in metafunc.fixturenames and metafunc.definition.get_closest_marker(
        "every_topology"
    ):
        metafunc.parametrize("redis_url", _topologies(metafunc.definition.name), indirect=True)


def _topologies(test: str) -> list[str]:
    chosen = os.environ.get("AQUEUE_TEST_TOPOLOGIES", "")
    if chosen == "all":
        return list(TOPOLOGIES)
    if chosen:
        unknown = set(chosen.split(",")) - set(TOPOLOGIES)
        if unknown:
            raise pytest.UsageError(f"AQUEUE_TEST_TOPOLOGIES: unknown {sorted(unknown)}")
        return chosen.split(",")
    return ["standalone", TOPOLOGIES[1 + zlib.crc32(test.encode()) % 2]]


@pytest.fixture
async def client(redis_url: str, queue: str) -> AsyncIterator[Client]:
    async with Client(queue, redis_url=redis_url) as c:
        yield c


def pytest_configure(config: pytest.Config) -> None:
    GUARD.install()


def _fail_on_blocking_calls(phase: str) -> Generator[None, object, object]:
    try:
        return (yield)
    finally:
        if found := GUARD.take():
            pytest.fail(
                f"blocking call(s) in the test's {phase}:\n" + "\n".join(found), pytrace=False
            )


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Generator[None, object, object]:
    return (yield from _fail_on_blocking_calls("setup"))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, object, object]:
    return (yield from _fail_on_blocking_calls("call"))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item) -> Generator[None, object, object]:
    return (yield from _fail_on_blocking_calls("teardown"))
