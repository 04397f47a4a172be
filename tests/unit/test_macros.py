"""Calls expanded in place as a script is loaded (aqueue/_redis/macros.py): the key builders
and the helpers marked `-- inline` become the expressions they stand for, in code only."""

from __future__ import annotations

import pytest

from aqueue._redis import macros
from aqueue._redis.macros import KEY_MACROS, Macro

INLINE = """-- a helper
local function pair(a, b) -- inline
  return a .. '|a|' .. b
end

local function count() -- inline
  return 1
end

local function big(x)
  return x
end"""


def expand(lua: str) -> str:
    return macros.expand(lua, KEY_MACROS | macros.inline_helpers(INLINE))


def test_a_builder_call_becomes_its_key() -> None:
    assert expand("x = job_key(prefix, id)") == "x = (prefix .. 'job:' .. id)"
    assert expand("x = lanes_key(p)") == "x = (p .. 'lanes')"
    assert expand("upload_key(prefix, id, t)") == "(prefix .. 'upload:' .. id .. ':' .. t)"


def test_an_argument_that_is_no_plain_name_is_parenthesized() -> None:
    assert expand("lane_key(prefix, heads[k][3])") == "(prefix .. 'lane:' .. heads[k][3])"
    assert expand("job_key(prefix, a or b)") == "(prefix .. 'job:' .. (a or b))"
    assert expand("rate_key(prefix, f(x, 'y)'))") == "(prefix .. 'rate:' .. (f(x, 'y)')))"


def test_calls_inside_calls_and_inside_arguments_are_expanded_too() -> None:
    # (an argument that is an expansion is parenthesized once more: harmless)
    assert expand("pair(job_key(p, i), count())") == "(((p .. 'job:' .. i)) .. '|a|' .. ((1)))"
    assert expand("f({job_key(p, i)}, [[x]])") == "f({(p .. 'job:' .. i)}, [[x]])"


def test_comments_and_strings_are_left_as_they_are() -> None:
    lua = "-- job_key(prefix, id) here\nx = 'job_key(p, i)' .. \"lanes_key(p)\" -- lanes_key(\n"
    assert expand(lua) == lua
    assert (
        expand("x = 'it''s' .. job_key(p, 'a\\'b')") == "x = 'it''s' .. (p .. 'job:' .. ('a\\'b'))"
    )


def test_a_parameter_is_substituted_in_code_only() -> None:
    assert expand("pair(x, y)") == "(x .. '|a|' .. y)"  # not inside '|a|'


def test_only_one_line_helpers_marked_inline_are_macros() -> None:
    found = macros.inline_helpers(INLINE)
    assert found == {
        "pair": Macro("pair", ("a", "b"), "a .. '|a|' .. b"),
        "count": Macro("count", (), "1"),
    }
    assert expand("big(1)") == "big(1)"


def test_a_call_with_the_wrong_arguments_or_unclosed_is_refused() -> None:
    with pytest.raises(ValueError, match="job_key takes prefix, job_id, not p"):
        expand("job_key(p)")
    with pytest.raises(ValueError, match="not closed"):
        expand("x = job_key(p, (i)")
