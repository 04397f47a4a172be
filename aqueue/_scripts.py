"""The Lua scripts in `lua/`, loaded as package data, each with the shared prelude prepended."""

from __future__ import annotations

from functools import cache
from importlib import resources

NAMES = (
    "post",
    "claim",
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


def _read(name: str) -> str:
    return (resources.files("aqueue") / "lua" / f"{name}.lua").read_text(encoding="utf-8")


@cache
def source(name: str) -> str:
    """The full text of script `name`: the shared helpers, then the script itself."""
    if name not in NAMES:
        raise KeyError(f"no script named {name!r}; known: {', '.join(NAMES)}")
    return _read("_lib") + "\n" + _read(name)
