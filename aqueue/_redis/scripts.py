"""The Lua scripts in `lua/`, loaded as package data, each with the shared helpers it uses.

The helpers are the paragraphs of `lua/_lib.lua`; the key builders and the helpers marked
`-- inline` are no functions there: their calls are expanded in place (see macros.py).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from importlib import resources

from aqueue._redis import macros

NAMES = (
    "post",
    "claim",
    "claim_alone",
    "heartbeat",
    "finish",
    "progress",
    "reap",
    "cancel",
    "requeue",
    "purge_dead",
    "claim_callbacks",
    "callback_done",
    "watch",
    "claim_forwards",
    "forward_done",
)

_WORD = re.compile(r"[A-Za-z_]\w*")
_DEFINES = re.compile(r"^local (?:function )?([\w, ]+?)\s*(?:=|\()", re.MULTILINE)


@dataclass(frozen=True)
class _Helper:
    """One paragraph of `_lib.lua`: the names it defines, and the words its code uses."""

    text: str
    defines: frozenset[str]
    uses: frozenset[str]


def _read(name: str) -> str:
    return (resources.files("aqueue._redis") / "lua" / f"{name}.lua").read_text(encoding="utf-8")


def _words(lua: str) -> set[str]:
    return set(_WORD.findall(macros.NOT_CODE.sub(" ", lua)))


@cache
def _helpers() -> tuple[_Helper, ...]:
    helpers = []
    for paragraph in _read("_lib").split("\n\n"):
        if macros.inline_helpers(paragraph):
            continue  # expanded where it is called
        text = macros.expand(paragraph, _macros())
        defined = {n.strip() for m in _DEFINES.findall(text) for n in m.split(",")}
        if defined:
            helpers.append(_Helper(text, frozenset(defined), frozenset(_words(text))))
    return tuple(helpers)


@cache
def _macros() -> dict[str, macros.Macro]:
    return macros.KEY_MACROS | macros.inline_helpers(_read("_lib"))


@cache
def source(name: str, sharded: bool = False) -> str:
    """The full text of script `name`: the shared helpers it uses, in their order in
    `_lib.lua`, then the script itself. Only those: Lua runs a script's whole text on every
    call, and defining all the helpers cost each call more than many a Redis command.

    `sharded` (on a cluster): its messages go by SPUBLISH, to the subscribers of the shard
    that holds the queue's slot, where its workers and clients subscribe (see `Subscription`).
    A PUBLISH there would go to every node of the cluster, and count only one node's
    subscribers: post.lua decides from that count whether a waiting worker heard its push."""
    if name not in NAMES:
        raise KeyError(f"no script named {name!r}; known: {', '.join(NAMES)}")
    text = with_helpers(_read(name))
    return text.replace("redis.call('PUBLISH'", "redis.call('SPUBLISH'") if sharded else text


# A script that can record a terminal outcome (finish_terminal) runs as a function, and the
# call's tally is flushed after it returns, whichever way it returns: the counters, `expiries`
# and the let-go of the jobs that ended can then never be forgotten.
ENDS_JOBS, FLUSH = "finish_terminal", "flush_tally"
_FLUSHED = """local function script()
{body}
end
local reply = script()
flush_tally()
return reply"""


def with_helpers(script: str) -> str:
    """Lua code `script` preceded by the helpers it uses (and only those), and followed by the
    tally's flush if it can end jobs."""
    script = macros.expand(script, _macros())
    wanted = _words(script)
    chosen = _chosen(wanted)
    ends_jobs = any(ENDS_JOBS in _helpers()[i].defines for i in chosen)
    if ends_jobs:
        chosen = _chosen(wanted | {FLUSH})
        script = _FLUSHED.format(body=script)
    parts = [helper.text for i, helper in enumerate(_helpers()) if i in chosen]
    return "\n\n".join([*parts, script])


def _chosen(wanted: set[str]) -> set[int]:
    """The helpers that define the names `wanted`, and those they use in turn."""
    wanted = set(wanted)
    chosen: set[int] = set()
    grew = True
    while grew:
        grew = False
        for i, helper in enumerate(_helpers()):
            if i not in chosen and helper.defines & wanted:
                chosen.add(i)
                wanted |= helper.uses
                grew = True
    return chosen
