"""The keyspace (aqueue/_redis/keys.py): one hash tag per queue."""

from __future__ import annotations

import pytest

from aqueue import ConfigError
from aqueue._redis.keys import Keys


def test_a_queue_s_keys_share_one_hash_tag_and_its_pattern_excludes_other_queues() -> None:
    keys = Keys("app")
    assert keys.job("x") == "aq:{app}:job:x"
    assert keys.lane("a,b").startswith("aq:{app}:")
    assert keys.pattern == "aq:{app}:*"
    assert not "aq:{app2}:job:x".startswith(keys.pattern[:-1])
    with pytest.raises(ConfigError, match="queue name 'a b'"):
        Keys("a b")
    with pytest.raises(ConfigError, match="queue name"):
        Keys("x*")
