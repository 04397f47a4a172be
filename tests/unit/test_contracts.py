"""Each script's contract header (its KEYS and ARGV lines) says what its wrapper in store.py
passes, and what the script reads: a wrapper that passes one argument more or less, a script
that reads an argument its header does not name, or a header line for one it never reads,
fails here."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

import pytest
from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot

from aqueue._redis import scripts
from aqueue._redis.calls import Claimed, NewJobs
from aqueue._redis.keys import Keys
from aqueue._redis.store import Store
from aqueue._states import CallbackEvent, Event

_ARG = re.compile(r"\bARGV\[(\d+)(\.\.)?\]")
_VARIADIC_READS = [  # the ways a script reads its arguments from one on
    r"unpack\(ARGV, (\d+)\)", r"#ARGV >= (\d+)", r"for \w+ = (\d+), #ARGV",
    r"concat\(ARGV, '[^']*', (\d+)\)",
]  # fmt: skip


@dataclass(frozen=True)
class Contract:
    keys: int  # KEYS[1..keys]
    fixed: int  # ARGV[1..fixed]
    variadic: int | None  # ARGV[variadic..], if any


def header(lua: str) -> str:
    lines = []
    for line in lua.splitlines():
        if not line.startswith("--"):
            break
        lines.append(line)
    return "\n".join(lines)


def contract(lua: str) -> Contract:
    head = header(lua)
    keys = {int(n) for n in re.findall(r"\bKEYS\[(\d+)\]", head)}
    named = _ARG.findall(head)
    fixed = sorted({int(n) for n, rest in named if not rest})
    variadic = [int(n) for n, rest in named if rest]
    assert fixed == list(range(1, len(fixed) + 1)), f"ARGV lines {fixed} leave a gap"
    assert keys == set(range(1, len(keys) + 1)), f"KEYS lines {sorted(keys)} leave a gap"
    assert len(variadic) <= 1 and all(v == len(fixed) + 1 for v in variadic), variadic
    return Contract(len(keys), len(fixed), variadic[0] if variadic else None)


def reads(lua: str) -> tuple[set[int], set[int]]:
    """The argument indices a script's code reads one by one, and those it reads on from."""
    code = re.sub(r"--[^\n]*", "", lua)
    one = {int(n) for n in re.findall(r"\bARGV\[(\d+)\]", code)}
    on = {int(n) for pattern in _VARIADIC_READS for n in re.findall(pattern, code)}
    return one, on


@pytest.mark.parametrize("name", scripts.NAMES)
def test_a_script_reads_the_arguments_its_header_names_and_no_other(name: str) -> None:
    lua = scripts._read(name)
    said, (one, on) = contract(lua), reads(lua)
    assert one == set(range(1, said.fixed + 1)), "ARGV read one by one"
    assert on == ({said.variadic} if said.variadic else set()), "ARGV read from one on"


class Recorder:
    """Stands for a registered script: records the KEYS and ARGV of each call."""

    def __init__(
        self, name: str, calls: dict[str, tuple[int, int]], reply: Any, keys_of: KeysOf
    ) -> None:
        self.name, self.calls, self.reply, self.sha = name, calls, reply, "0" * 40
        self.keys_of = keys_of

    async def __call__(self, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        self.calls[self.name] = (len(keys), len(args))
        self.keys_of[self.name] = [str(key) for key in keys]
        return self.reply


KeysOf = dict[str, list[str]]


REPLIES: dict[str, Any] = {
    "post": [b"a", b"b"], "claim": [0, -1, 0, 0], "claim_alone": [0, 0], "heartbeat": [],
    "finish": b"1", "progress": 1, "reap": [0, 0, 0, 0, []], "cancel": [b"missing"],
    "requeue": [b"missing"], "purge_dead": 0, "claim_callbacks": [-1],
    "callback_done": b"delivered", "watch": [b"queued"], "claim_forwards": [-1],
    "forward_done": 1,
}  # fmt: skip
_JOB = Claimed("j", 1, b"", ("f",), 0, 1, 0, b"", 60, False)
CALLS: dict[str, Callable[[Store], Awaitable[object]]] = {
    "post": lambda s: s.post(NewJobs("f", 0, 0, 0, False, (), [("a", "", b"x")] * 2), 1000),
    "claim": lambda s: s.claim("w", 1000, 2, ["f", "g"]),
    "claim_alone": lambda s: s.claim_alone("w", 1000, ["f"]),
    "heartbeat": lambda s: s.heartbeat("w", 1000, b"info", [("j", 1), ("k", 2)], ["f"]),
    # (with outputs: ARGV[5], which a call of outcomes without any leaves out)
    "finish": lambda s: s.finish("w", [_JOB.outcome(Event.COMPLETE, outputs=b"\x90")]),
    "progress": lambda s: s.progress("j", 1, "w", b"v", "note"),
    "reap": lambda s: s.reap_pass(10),
    "cancel": lambda s: s.cancel("j"),
    "requeue": lambda s: s.requeue("j"),
    "purge_dead": lambda s: s.purge_dead(10),
    "claim_callbacks": lambda s: s.claim_callbacks(1000, 10, 3),
    "callback_done": lambda s: s.callback_done("j", 1, CallbackEvent.DELIVERED, 100, 3, "note"),
    "watch": lambda s: s.watch(["a", "b"]),
    "claim_forwards": lambda s: s.claim_forwards(1000, 10),
    "forward_done": lambda s: s.forward_done([("a", b"\x90"), ("b", b"\x90")]),
}


async def passed(
    name: str, keys_of: KeysOf | None = None, on_cluster: bool = True
) -> tuple[int, int]:
    """What the wrapper of script `name` passes (on a cluster, or on one node): how many KEYS,
    how many ARGV (and, into `keys_of`, the KEYS themselves)."""
    calls: dict[str, tuple[int, int]] = {}
    keys_of = {} if keys_of is None else keys_of
    fakes = {n: Recorder(n, calls, REPLIES[n], keys_of) for n in scripts.NAMES}
    redis = RedisCluster.__new__(RedisCluster) if on_cluster else None  # (never connected)
    store = Store(cast(Any, redis), "q", None, cast(Any, fakes))
    await CALLS[name](store)
    return calls[name]


@pytest.mark.parametrize("name", scripts.NAMES)
async def test_every_script_is_routed_by_its_queue_s_slot(name: str) -> None:
    """On a cluster a script runs on the node of the slot its KEYS name: each declares one key
    at least, and every key it is given is in its queue's slot (none crosses slots); among
    them the fence, which keeps it from running while the slot migrates."""
    keys_of: KeysOf = {}
    await passed(name, keys_of)
    assert keys_of[name], f"{name} declares no key: a cluster would send it to any node"
    assert Keys("q").fence in keys_of[name]
    slots = {key_slot(key.encode()) for key in keys_of[name]}
    assert slots == {key_slot(Keys("q").stats.encode())}, keys_of[name]


@pytest.mark.parametrize("name", scripts.NAMES)
async def test_on_one_node_a_script_declares_only_the_key_that_routes_it(name: str) -> None:
    keys_of: KeysOf = {}
    assert (await passed(name, keys_of, on_cluster=False))[0] == 1
    assert keys_of[name] == [Keys("q").stats]


def test_every_script_has_a_wrapper_call_here() -> None:
    assert set(CALLS) == set(REPLIES) == set(scripts.NAMES)


@pytest.mark.parametrize("name", scripts.NAMES)
async def test_a_wrapper_passes_what_its_script_s_header_says(name: str) -> None:
    said = contract(scripts._read(name))
    keys, argv = await passed(name)
    assert keys == said.keys
    if said.variadic is None:
        assert argv == said.fixed
    else:
        assert argv > said.fixed  # each call here passes some of the variadic arguments


@pytest.mark.parametrize(
    "lua",
    [
        "-- ARGV[1] a\n-- ARGV[3] c\nlocal a, c = ARGV[1], ARGV[3]",
        "-- ARGV[1] a\n-- ARGV[3..] c\nlocal a = ARGV[1]",
        "-- KEYS[2] b\n-- ARGV[1] a\nlocal a = ARGV[1]",
    ],
)
def test_a_header_with_a_gap_is_refused(lua: str) -> None:
    with pytest.raises(AssertionError):
        contract(lua)


def test_reads_finds_each_way_a_script_reads_its_arguments() -> None:
    lua = "local a = ARGV[2] -- ARGV[9]\nfor k = 3, #ARGV do end\nif #ARGV >= 4 then end"
    assert reads(lua) == ({2}, {3, 4})
