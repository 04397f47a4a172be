"""Calls expanded in place as a script is loaded: the key builders, and `_lib.lua`'s one-line
helpers marked `-- inline`.

The key builders are made from `keys.KEYSPACE`, the keyspace written once for both languages:
scripts and helpers name every key by its builder, `<attr>_key(prefix, <its fields>)`, e.g.
`job_key(prefix, id)` or `lanes_key(prefix)`, and never spell a key out (tests/unit/test_keys.py
fails on one that does). Each call becomes the expression it stands for, `(prefix .. 'job:' ..
id)`. As Lua functions, the builders and the wire encoders cost a single post 12% more of
Redis's instructions, and a bulk post 3% (each function is a closure made on every call, and a
call costs more than its concatenation), measured with benchmarks/redis_cost.py.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from aqueue._redis.keys import KEYSPACE, KeyName

# what is no code, passed over whole: a comment, a string (with its escapes); scripts.py reads
# the words a script uses outside them the same way
NOT_CODE = re.compile(r"--[^\n]*|'(?:[^'\\\n]|\\.)*'|\"(?:[^\"\\\n]|\\.)*\"")
_WORD = re.compile(r"[A-Za-z_]\w*")
_PLAIN = re.compile(r"[A-Za-z_][\w.]*(?:\[[^\]]*\])*")  # a name, field or index: no parentheses
_INLINE = re.compile(
    r"local function (\w+)\(([\w, ]*)\) -- inline\n  return ([^\n]+)\nend", re.MULTILINE
)


@dataclass(frozen=True, slots=True)
class Macro:
    """A call `name(params)` that stands for the Lua expression `body` (one value)."""

    name: str
    params: tuple[str, ...]
    body: str

    def expand(self, args: list[str]) -> str:
        if len(args) != len(self.params):
            raise ValueError(f"{self.name} takes {', '.join(self.params)}, not {', '.join(args)}")
        pairs = zip(self.params, args, strict=True)
        bound = {p: a if _PLAIN.fullmatch(a) else f"({a})" for p, a in pairs}

        def code(text: str) -> str:
            return _WORD.sub(lambda w: bound.get(w[0], w[0]), text)

        return "(" + _outside_strings(self.body, code) + ")"


def key_macro(key: KeyName) -> Macro:
    pieces = ["prefix"]
    for i, part in enumerate(re.split(r"\{(\w+)\}", key.template)):  # literal, field, ...
        if i % 2:
            pieces.append(part)
        elif part:
            pieces.append(f"'{part}'")
    return Macro(key.lua_builder, ("prefix", *key.fields), " .. ".join(pieces))


KEY_MACROS = {key.lua_builder: key_macro(key) for key in KEYSPACE}


def inline_helpers(lua: str) -> dict[str, Macro]:
    """The helpers of `lua` written `local function f(...) -- inline` with one `return`."""
    return {
        name: Macro(name, tuple(p.strip() for p in params.split(",") if p.strip()), body)
        for name, params, body in _INLINE.findall(lua)
    }


def expand(lua: str, macros: dict[str, Macro]) -> str:
    """`lua` with every call of a macro in its code replaced by the expression it stands for."""
    call = re.compile(r"\b(" + "|".join(map(re.escape, macros)) + r")\(")
    out: list[str] = []
    at = 0
    while True:
        found, skip = call.search(lua, at), NOT_CODE.search(lua, at)
        if found is None:
            return "".join([*out, lua[at:]])
        if skip is not None and skip.start() < found.start():
            out.append(lua[at : skip.end()])
            at = skip.end()
            continue
        args, end = _arguments(lua, found.end())
        expanded = macros[found[1]].expand([expand(a, macros) for a in args])
        out += [lua[at : found.start()], expand(expanded, macros)]
        at = end


def _outside_strings(lua: str, change: Callable[[str], str]) -> str:
    """`lua` with `change` applied to its code between strings and comments."""
    out: list[str] = []
    at = 0
    for skip in NOT_CODE.finditer(lua):
        out += [change(lua[at : skip.start()]), skip[0]]
        at = skip.end()
    return "".join([*out, change(lua[at:])])


def _arguments(lua: str, at: int) -> tuple[list[str], int]:
    """The arguments of the call whose '(' ends at `at`, and where the call ends."""
    depth, start, args = 1, at, []
    while depth:
        if at >= len(lua):
            raise ValueError(f"a call is not closed: {lua[max(0, start - 30) : start + 30]!r}")
        skip = NOT_CODE.match(lua, at)
        if skip:
            at = skip.end()
            continue
        char = lua[at]
        depth += (char in "({[") - (char in ")}]")
        if depth == 0 or (depth == 1 and char == ","):
            args.append(lua[start:at].strip())
            start = at + 1
        at += 1
    if args == [""]:  # f()
        args = []
    return args, at
