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


def every_key(keys: Keys) -> dict[str, str]:
    """Each key and channel of a queue by the name of its property or method (a method is
    given "x" for each argument)."""
    found = {}
    for name, member in vars(Keys).items():
        if name.startswith("_") or name in ("queue", "prefix", "pattern"):
            continue
        if isinstance(member, property):
            found[name] = getattr(keys, name)
        elif callable(member):
            found[name] = getattr(keys, name)(*["x"] * (member.__code__.co_argcount - 1))
    return found


def test_every_key_is_the_queue_s_own_and_no_two_are_one() -> None:
    keys = every_key(Keys("app"))
    assert len(keys) > 30  # the walk found them
    assert [name for name, key in keys.items() if not key.startswith("aq:{app}:")] == []
    names_of: dict[str, list[str]] = {}
    for name, key in keys.items():
        names_of.setdefault(key, []).append(name)
    assert [names for names in names_of.values() if len(names) > 1] == []
