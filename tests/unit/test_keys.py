"""The keyspace is written once, in keys.KEYSPACE: `Keys` builds exactly its keys, and no Lua
script or Python module spells a key out instead of using a builder."""

from __future__ import annotations

import fnmatch
import re
from importlib import resources
from pathlib import Path

import pytest

from aqueue import ConfigError
from aqueue._redis import macros
from aqueue._redis.keys import ALL_SEQS, KEYSPACE, Keys, queue_of

LUA = sorted((Path(str(resources.files("aqueue._redis"))) / "lua").glob("*.lua"))
PACKAGE = Path(__file__).resolve().parents[2] / "aqueue"
_COMMENT = re.compile(r"--[^\n]*")
_STRING = re.compile(r"'((?:[^'\\\n]|\\.)*)'|\"((?:[^\"\\\n]|\\.)*)\"")
_FIXED = {k.template for k in KEYSPACE if not k.fields}
# fixed key names that are also job statuses, which the scripts write as such
_ALSO_WORDS = {"active", "scheduled", "dead"}


def _fields(template: str) -> dict[str, str]:
    return {name: f"<{name}>" for name in re.findall(r"\{(\w+)\}", template)}


def test_every_key_of_the_table_is_a_member_of_keys_that_builds_it() -> None:
    keys = Keys("q")
    for key in KEYSPACE:
        member = getattr(keys, key.attr)
        built = member(*_fields(key.template).values()) if key.fields else member
        assert built == "aq:{q}:" + key.template.format(**_fields(key.template)), key.attr


def test_every_member_of_keys_is_in_the_table() -> None:
    members = {name for name in dir(Keys) if not name.startswith("_")}
    assert members - {"queue", "prefix", "pattern"} == {key.attr for key in KEYSPACE}


def test_the_table_names_each_key_once_and_says_what_it_holds() -> None:
    assert len({key.attr for key in KEYSPACE}) == len(KEYSPACE)
    heads = [key.template.split("{")[0] for key in KEYSPACE]
    for i, head in enumerate(heads):  # no key can be read as another's
        others = [k.template for j, k in enumerate(KEYSPACE) if j != i]
        assert not any(other.startswith(head) for other in others if "{" in KEYSPACE[i].template)
        assert head not in heads[:i]
    for key in KEYSPACE:
        assert key.type in {"hash", "zset", "set", "list", "string", "counter", "channel", "none"}
        assert len(key.meaning) > 20, key.attr


def test_a_queue_is_found_again_from_its_seq_key() -> None:
    for queue in ("a", "a.b-c_1", "x" * 100):
        assert fnmatch.fnmatchcase(Keys(queue).seq, ALL_SEQS)
        assert queue_of(Keys(queue).seq) == queue
    assert not fnmatch.fnmatchcase(Keys("a").stats, ALL_SEQS)


def spelled_out_keys(lua: str) -> list[str]:
    """The places in Lua code that build a key by hand instead of by its builder."""
    code = _COMMENT.sub("", lua)
    found = [m[0] for m in re.finditer(r"\bprefix\s*\.\.[^\n]*", code)]  # onto the prefix
    for match in _STRING.finditer(code):
        text = match[1] if match[1] is not None else match[2]
        if text.endswith(":") or text.startswith("aq:") or text in _FIXED - _ALSO_WORDS:
            found.append(match[0])  # a key's name, or the head of one
    for call in re.finditer(r"\b(\w+_key)\(", code):
        if call[1] not in macros.KEY_MACROS:
            found.append(call[0])  # a builder keys.py does not have
    return found


@pytest.mark.parametrize("path", LUA, ids=lambda p: p.name)
def test_no_script_spells_a_key_out(path: Path) -> None:
    assert spelled_out_keys(path.read_text()) == []


@pytest.mark.parametrize(
    "planted",
    [
        "redis.call('GET', prefix .. 'foo')",
        "local k = 'foo:' .. id",
        "redis.call('ZCARD', 'aq:{q}:lanes')",
        "redis.call('SMEMBERS', 'draining')",
        "redis.call('GET', foo_key(prefix))",
    ],
)
def test_the_scan_finds_a_key_spelled_out(planted: str) -> None:
    assert spelled_out_keys(f"local x = 1\n{planted}\n-- prefix .. 'in a comment'\n")


def test_no_python_module_spells_a_key_out() -> None:
    spelled = re.compile(r"\.prefix\s*\+|prefix\}|[\"']aq:\{")
    found = [
        f"{path.relative_to(PACKAGE)}:{n}: {line.strip()}"
        for path in sorted(PACKAGE.rglob("*.py"))
        if path.name != "keys.py"
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if spelled.search(line)
    ]
    assert found == []


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
