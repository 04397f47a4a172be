"""Sentinel URLs: read into their parts, or refused saying what is wrong (by the CLI's and
TOML's check too)."""

from __future__ import annotations

import pytest

from aqueue._ops import settings
from aqueue._redis.sentinel import parse_url


def test_sentinel_urls_are_read_and_bad_ones_refused_with_the_reason() -> None:
    assert parse_url("redis://127.0.0.1:6379/0") is None
    target = parse_url("rediss+sentinel://app:p%40ss@h1:26379,[::1]:26380/mymaster?db=3")
    assert target is not None
    assert target.sentinels == (("h1", 26379), ("::1", 26380))
    assert (target.master, target.db, target.username, target.password, target.ssl) == (
        "mymaster", 3, "app", "p@ss", True,
    )  # fmt: skip
    plain = parse_url("redis+sentinel://:pw@h1:1/m")
    assert plain is not None and (plain.username, plain.password, plain.ssl) == (None, "pw", False)
    bad = {
        "redis+sentinel://h1/m": "HOST:PORT",
        "redis+sentinel://h1:26379,/m": "HOST:PORT",
        "redis+sentinel://h1:0/m": "HOST:PORT",
        "redis+sentinel://h1:26379/": "master's name",
        "redis+sentinel://h1:26379/m/0": "master's name",
        "redis+sentinel://h1:26379/m?db=x": "db must be a number",
        "redis+sentinel://h1:26379/m?password=x": "only db",
    }
    for url, reason in bad.items():
        with pytest.raises(ValueError, match=reason):
            parse_url(url)
        with pytest.raises(ValueError, match=reason):  # the CLI's and TOML's check says why
            settings.redis_url(url)
    assert settings.redis_url("redis+sentinel://h1:26379/m") == "redis+sentinel://h1:26379/m"
    with pytest.raises(ValueError, match="redis\\+sentinel://"):
        settings.redis_url("http://h1:1/m")
