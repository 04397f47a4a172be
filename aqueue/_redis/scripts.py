"""The Lua scripts in `lua/`, loaded as package data, each with the shared helpers it uses."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from importlib import resources

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
)

_NOT_CODE = re.compile(r"'[^'\n]*'|\"[^\"\n]*\"|--[^\n]*")  # strings and comments
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
    return set(_WORD.findall(_NOT_CODE.sub(" ", lua)))


@cache
def _helpers() -> tuple[_Helper, ...]:
    helpers = []
    for paragraph in _read("_lib").split("\n\n"):
        defined = {n.strip() for m in _DEFINES.findall(paragraph) for n in m.split(",")}
        if defined:
            helpers.append(_Helper(paragraph, frozenset(defined), frozenset(_words(paragraph))))
    return tuple(helpers)


@cache
def source(name: str) -> str:
    """The full text of script `name`: the shared helpers it uses, in their order in
    `_lib.lua`, then the script itself. Only those: Lua runs a script's whole text on every
    call, and defining all the helpers cost each call more than many a Redis command."""
    if name not in NAMES:
        raise KeyError(f"no script named {name!r}; known: {', '.join(NAMES)}")
    script = _read(name)
    wanted = _words(script)
    chosen: set[int] = set()
    grew = True
    while grew:  # the helpers the script uses, and those they use in turn
        grew = False
        for i, helper in enumerate(_helpers()):
            if i not in chosen and helper.defines & wanted:
                chosen.add(i)
                wanted |= helper.uses
                grew = True
    parts = [helper.text for i, helper in enumerate(_helpers()) if i in chosen]
    return "\n\n".join([*parts, script])
