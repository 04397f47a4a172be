"""Each Lua script is sent with the shared helpers it uses, and only those
(aqueue/_redis/scripts.py): Lua runs a script's whole text on every call, helpers it never
calls included."""

from __future__ import annotations

import re

import pytest

from aqueue._redis import scripts as _scripts

_DEFINED = re.compile(r"^local (?:function )?([\w, ]+?)\s*(?:=|\()", re.MULTILINE)


def _defined(lua: str) -> set[str]:
    return {name.strip() for found in _DEFINED.findall(lua) for name in found.split(",")}


def _helpers_and_body(name: str) -> tuple[str, str]:
    text = _scripts.source(name)
    body = _scripts._read(name)
    assert text.endswith(body)
    return text[: len(text) - len(body)], body


def test_a_post_carries_only_the_helpers_it_calls() -> None:
    helpers, _ = _helpers_and_body("post")
    assert _defined(helpers) == {
        "int", "now_ms", "fits", "keyed_call", "lane_served", "call_many", "lease_jobs",
        "PLACEHOLDER",
    }  # fmt: skip


@pytest.mark.parametrize("name", _scripts.NAMES)
def test_every_helper_a_script_calls_is_defined_before_it(name: str) -> None:
    library = _defined(_scripts._read("_lib"))
    helpers, body = _helpers_and_body(name)
    # what the script and the helpers sent with it call, the helpers sent define
    assert _scripts._words(helpers + body) & library <= _defined(helpers)
    assert _defined(body).isdisjoint(library), "a script redefines a shared helper"


def test_an_unknown_script_is_named_in_the_error() -> None:
    with pytest.raises(KeyError, match="no script named 'nope'"):
        _scripts.source("nope")
