"""Cluster URLs: read into their parts, or refused saying what is wrong (by the CLI's and
TOML's check too)."""

from __future__ import annotations

import pytest

from aqueue._ops import settings
from aqueue._redis.cluster import parse_url


def test_cluster_urls_are_read_and_bad_ones_refused_with_the_reason() -> None:
    assert parse_url("redis://127.0.0.1:6379/0") is None
    assert parse_url("redis+sentinel://h1:26379/m") is None
    target = parse_url("rediss+cluster://app:p%40ss@h1:7000,[::1]:7001/")
    assert target is not None
    assert target.nodes == (("h1", 7000), ("::1", 7001))
    assert (target.username, target.password, target.ssl) == ("app", "p@ss", True)
    plain = parse_url("redis+cluster://h1:7000")
    assert plain is not None and (plain.username, plain.password, plain.ssl) == (None, None, False)
    assert parse_url("redis+cluster://h1:7000/0") == plain
    bad = {
        "redis+cluster://h1": "a cluster node's address must be HOST:PORT",
        "redis+cluster://h1:7000,": "HOST:PORT",
        "redis+cluster://h1:70000": "HOST:PORT",
        "redis+cluster://h1:7000/3": "database 0 only",
        "redis+cluster://h1:7000?read_from_replicas=1": "takes no options",
    }
    for url, reason in bad.items():
        with pytest.raises(ValueError, match=reason):
            parse_url(url)
        with pytest.raises(ValueError, match=reason):  # the CLI's and TOML's check says why
            settings.redis_url(url)
    assert settings.redis_url("redis+cluster://h1:7000") == "redis+cluster://h1:7000"
    with pytest.raises(ValueError, match="redis\\+cluster://"):
        settings.redis_url("http://h1:1/m")
