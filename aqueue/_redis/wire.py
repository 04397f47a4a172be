"""The wire formats: fields joined by '|' or ',' in one Redis value, written once for both
languages. Each is a class here with `encode` and `decode`, and a pair of functions in
`lua/_lib.lua` (named in its docstring); tests/integration/test_data_model.py round-trips each
through both, hostile values included.

A decoder answers None for a value it cannot read (a hostile or corrupt write): the caller
treats it as absent, or buries the job it belongs to, as the Lua side does (see bury in
`_lib.lua`). The text field, last in each format, may hold '|' itself; text that is not UTF-8
decodes with replacement characters, as everything read from Redis does.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Self

# \Z, not $: as Lua's patterns, a trailing newline is no end (and '.' matches it too)
_NUMBER_NUMBER_TEXT = re.compile(rb"(\d+)\|(\d+)\|(.*)\Z", re.DOTALL)  # posted, idle
_RUN = re.compile(rb"(.*)\|(\d+)\|(\d+)\Z", re.DOTALL)
_TRIES = re.compile(rb"(\d+)\|(\d+)(\|alone)?\Z")


def _text(raw: bytes) -> str:
    return raw.decode(errors="replace")


@dataclass(frozen=True, slots=True)
class Posted:
    """A record's `posted`, "ms|score|sig": when it was posted, and its lane and score there
    (Lua: posted_entry, lane_of)."""

    ms: int
    score: int
    signature: str

    def encode(self) -> bytes:
        return b"%d|%d|%s" % (self.ms, self.score, self.signature.encode())

    @classmethod
    def decode(cls, raw: bytes) -> Self | None:
        found = _NUMBER_NUMBER_TEXT.match(raw)
        return cls(int(found[1]), int(found[2]), _text(found[3])) if found else None


@dataclass(frozen=True, slots=True)
class Run:
    """An attempt, "worker|attempt|started ms": a job's `running` entry while it runs, then
    its record's `ran` (Lua: run_entry, run_parts; holds, the fence, reads its head)."""

    worker: str
    attempt: int
    started_ms: int

    def encode(self) -> bytes:
        return b"%s|%d|%d" % (self.worker.encode(), self.attempt, self.started_ms)

    @classmethod
    def decode(cls, raw: bytes) -> Self | None:
        found = _RUN.match(raw)
        return cls(_text(found[1]), int(found[2]), int(found[3])) if found else None


@dataclass(frozen=True, slots=True)
class Tries:
    """A job's `tries` entry, "attempts|released" or "attempts|released|alone": its attempts,
    those not counted against its budget, and whether the current one runs alone (Lua:
    tries_entry, tries_of, which reads one it cannot read as none: 0, 0, not alone)."""

    attempts: int
    released: int
    alone: bool = False

    def encode(self) -> bytes:
        return b"%d|%d%s" % (self.attempts, self.released, b"|alone" if self.alone else b"")

    @classmethod
    def decode(cls, raw: bytes) -> Self | None:
        found = _TRIES.match(raw)
        return cls(int(found[1]), int(found[2]), bool(found[3])) if found else None


@dataclass(frozen=True, slots=True)
class Idle:
    """A waiting worker's `idle` entry, "free places|lease ms|listener,names" (Lua:
    idle_entry, idle_of; see waiting_for)."""

    free: int
    lease_ms: int
    names: str

    def encode(self) -> bytes:
        return b"%d|%d|%s" % (self.free, self.lease_ms, self.names.encode())

    @classmethod
    def decode(cls, raw: bytes) -> Self | None:
        found = _NUMBER_NUMBER_TEXT.match(raw)
        return cls(int(found[1]), int(found[2]), _text(found[3])) if found else None


@dataclass(frozen=True, slots=True)
class Names:
    """Listener names joined by ',': a lane's signature and a worker's kind are the sorted
    set of them (Lua: kind_of, names_in)."""

    names: tuple[str, ...]

    @classmethod
    def kind(cls, names: Iterable[str]) -> Self:
        """The sorted set of `names`: the signature of a lane, the kind of a worker."""
        return cls(tuple(sorted(set(names))))

    @property
    def text(self) -> str:
        return ",".join(self.names)

    def encode(self) -> bytes:
        return self.text.encode()

    @classmethod
    def decode(cls, raw: bytes) -> Self:
        return cls(tuple(_text(name) for name in raw.split(b",") if name))


@dataclass(frozen=True, slots=True)
class ExpiryGroup:
    """A member of `expiries`: the ids of the records of one call that go at one time, joined
    by ',' (ids are hex) (Lua: expiry_group, expiry_group_ids)."""

    ids: tuple[str, ...]

    def encode(self) -> bytes:
        return ",".join(self.ids).encode()

    @classmethod
    def decode(cls, raw: bytes) -> Self:
        return cls(tuple(_text(job_id) for job_id in raw.split(b",") if job_id))
