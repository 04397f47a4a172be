"""Each Lua script is sent with the shared helpers it uses, and only those
(aqueue/_redis/scripts.py): Lua runs a script's whole text on every call, helpers it never
calls included. Key builders and inline helpers are expanded in place (macros.py), and a
script that can end jobs is followed by the tally's flush."""

from __future__ import annotations

import re

import pytest

from aqueue._redis import macros
from aqueue._redis import scripts as _scripts

_DEFINED = re.compile(r"^local (?:function )?([\w, ]+?)\s*(?:=|\()", re.MULTILINE)
_MACROS = set(_scripts._macros())


def _defined(lua: str) -> set[str]:
    return {name.strip() for found in _DEFINED.findall(lua) for name in found.split(",")}


def _parts(name: str) -> tuple[str, str, str]:
    """A script's text as sent: the helpers before it, its own text, and what follows it."""
    text = _scripts.source(name)
    body = macros.expand(_scripts._read(name), _scripts._macros())
    at = text.index(body)
    return text[:at], body, text[at + len(body) :]


def test_a_post_carries_only_the_helpers_it_calls() -> None:
    helpers, _, _ = _parts("post")
    assert _defined(helpers) == {
        "now_ms", "fits", "keyed_call", "lane_served", "call_many", "lease_jobs",
        "PLACEHOLDER", "idle_of", "names_in", "new_claim", "grant", "waiting_for",
        "PUSH_MAX_BYTES", "push_taker", "push_to",
    }  # fmt: skip


def test_key_builders_and_inline_helpers_are_no_functions_in_what_is_sent() -> None:
    assert {"job_key", "lanes_key", "int", "posted_entry", "holds"} <= _MACROS
    for name in _scripts.NAMES:
        assert _scripts._words(_scripts.source(name)).isdisjoint(_MACROS)


@pytest.mark.parametrize("name", _scripts.NAMES)
def test_every_helper_a_script_calls_is_defined_before_it(name: str) -> None:
    library = _defined(_scripts._read("_lib")) - _MACROS
    helpers, body, after = _parts(name)
    # what the script and the helpers sent with it call, the helpers sent define
    assert _scripts._words(helpers + body + after) & library <= _defined(helpers)
    assert _defined(body).isdisjoint(library), "a script redefines a shared helper"
    assert _defined(_scripts._read(name)).isdisjoint(_MACROS), "a script defines a macro's name"


@pytest.mark.parametrize("name", _scripts.NAMES)
def test_a_script_that_can_end_jobs_flushes_its_tally_after_it_whichever_way_it_returns(
    name: str,
) -> None:
    helpers, body, after = _parts(name)
    assert "flush_tally" not in _scripts._words(body), "the runner appends the flush"
    if _scripts.ENDS_JOBS in _defined(helpers):
        assert helpers.endswith("local function script()\n")
        assert after == "\nend\nlocal reply = script()\nflush_tally()\nreturn reply"
    else:
        assert after == ""
        assert "flush_tally" not in _defined(helpers)


def test_the_scripts_that_end_jobs_are_those_that_record_outcomes() -> None:
    ending = {n for n in _scripts.NAMES if _scripts.ENDS_JOBS in _defined(_parts(n)[0])}
    assert ending == {"finish", "reap", "cancel"}


def test_an_unknown_script_is_named_in_the_error() -> None:
    with pytest.raises(KeyError, match="no script named 'nope'"):
        _scripts.source("nope")
