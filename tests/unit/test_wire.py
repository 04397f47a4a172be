"""The wire formats (aqueue/_redis/wire.py): each value round-trips, and a value that is not
one decodes to None, never to a wrong reading. Their Lua halves are checked against these in
tests/integration/test_data_model.py."""

from __future__ import annotations

import pytest

from aqueue._redis.wire import ExpiryGroup, Idle, Names, Posted, Run, Tries

HOSTILE = [
    b"", b"|", b"||", b"1|", b"|1|2", b"x|1|2", b"1|x|2", b"1|2", b"1|2\n", b"1|2|\n", b"-1|2|a",
    b"1.5|2|a", b"1|2|a|b", b"w|1|2", b"w|x|1", b"a|b|1|2", b"\xff\xfe|1|2", b"1|2|\xff",
    b"1|2|alone", b"1|2|alone\n", b"1|2|Alone", b"\xd9\xa1|2|a",
]  # fmt: skip


@pytest.mark.parametrize(
    "value",
    [
        Posted(1700000000000, 17592186044416 * 100 + 3, "a,b"),
        Posted(0, 0, ""),
        Posted(1, 2, "odd|name|"),
        Run("worker-1", 3, 1700000000000),
        Run("", 1, 0),
        Run("a|b|1|2", 12, 9),
        Tries(0, 0),
        Tries(7, 2, alone=True),
        Idle(5, 30000, "a,b"),
        Idle(0, 1, ""),
        Idle(1, 1, "x|y"),
    ],
)
def test_a_value_round_trips(value: Posted | Run | Tries | Idle) -> None:
    assert type(value).decode(value.encode()) == value


def test_the_formats_are_the_ones_stored() -> None:
    assert Posted(5, 6, "f").encode() == b"5|6|f"
    assert Run("w", 2, 7).encode() == b"w|2|7"
    assert Tries(3, 1).encode() == b"3|1"
    assert Tries(3, 1, alone=True).encode() == b"3|1|alone"
    assert Idle(4, 1000, "f,g").encode() == b"4|1000|f,g"
    assert Names(("f", "g")).encode() == b"f,g"
    assert ExpiryGroup(("ab", "cd")).encode() == b"ab,cd"


@pytest.mark.parametrize("raw", HOSTILE)
def test_a_value_that_is_none_decodes_to_none_or_to_what_it_says(raw: bytes) -> None:
    for kind in (Posted, Run, Tries, Idle):
        decoded = kind.decode(raw)
        if decoded is not None:  # only where it is one: then it says the same again
            assert kind.decode(decoded.encode()) == decoded


def test_what_is_not_one_is_none() -> None:
    assert Posted.decode(b"1|2") is None  # before 0.1.0: `posted` was "ms" alone
    assert Posted.decode(b"5") is None
    assert Posted.decode(b"1|2\n") is None  # a trailing newline is no end, as in Lua
    assert Run.decode(b"w|x|1") is None
    assert Tries.decode(b"1|2|alone\n") is None
    assert Tries.decode(b"1|2|Alone") is None
    assert Idle.decode(b"x|1|f") is None
    assert Posted.decode("\u0661|2|a".encode()) is None  # digits of other scripts are none


def test_text_that_is_not_utf8_reads_with_replacement_characters() -> None:
    assert Run.decode(b"\xff|1|2") == Run("\ufffd", 1, 2)
    assert Posted.decode(b"1|2|\xff") == Posted(1, 2, "\ufffd")
    assert Idle.decode(b"1|2|\xff") == Idle(1, 2, "\ufffd")
    assert Names.decode(b"a,\xff") == Names(("a", "\ufffd"))


def test_a_worker_id_may_hold_the_separator() -> None:
    assert Run.decode(b"a|b|1|2") == Run("a|b", 1, 2)


def test_names_of_a_kind_are_sorted_once_each_and_empty_names_are_none() -> None:
    assert Names.kind(["b", "a", "b"]) == Names(("a", "b"))
    assert Names.kind([]).text == ""
    assert Names.decode(b",a,,b,") == Names(("a", "b"))
    assert Names.decode(b"") == Names(())


def test_an_expiry_group_holds_its_ids_in_order() -> None:
    assert ExpiryGroup.decode(b"c,a,b") == ExpiryGroup(("c", "a", "b"))
    assert ExpiryGroup.decode(ExpiryGroup(("x",)).encode()) == ExpiryGroup(("x",))
    assert ExpiryGroup.decode(b",,") == ExpiryGroup(())
