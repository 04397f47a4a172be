"""The state diagrams in docs/states.md, generated from the lifecycle tables (never drawn by
hand): `python -m aqueue._diagram > docs/states.md`; a test checks the file is current."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TypeVar

from aqueue._states import BRANCHES, CALLBACK_BRANCHES, GONE, Branch

K = TypeVar("K")  # a state before
E = TypeVar("E")  # an event
T = TypeVar("T")  # a target
Table = Mapping[tuple[K, E], Sequence[Branch[T]]]


def _node(state: object) -> str:
    """A state's name in the diagram: `[*]` for none yet (a start) and for gone (an end)."""
    return "[*]" if state is None or state is GONE else str(state)


def _label(event: object, branch: Branch[T]) -> str:
    return f"{event} ({branch.when.name})" if branch.when.name else str(event)


def mermaid(table: Table[K, E, T]) -> str:
    lines = ["stateDiagram-v2"]
    for (before, event), branches in table.items():
        for branch in branches:
            if branch.to != before:  # a branch that stays (a retry not due yet) draws no arrow
                edge = f"{_node(before)} --> {_node(branch.to)}"
                lines.append(f"    {edge}: {_label(event, branch)}")
    return "\n".join(lines)


def rows(table: Table[K, E, T]) -> str:
    """The table as markdown: every branch, in the order the scripts try them."""
    lines = ["| from | event | when | to | publishes |", "|---|---|---|---|---|"]
    for (before, event), branches in table.items():
        for branch in branches:
            cells = (before or "—", event, branch.when.name or "always", branch.to or "—",
                     branch.publishes or "—")  # fmt: skip
            lines.append("| " + " | ".join(str(cell) for cell in cells) + " |")
    return "\n".join(lines)


def document() -> str:
    return (
        "# Job states\n\n"
        "Generated from `aqueue/_states.py` by `python -m aqueue._diagram > docs/states.md`.\n"
        "Each arrow is one Lua script run atomically in Redis; any (state, event) pair not drawn\n"
        "is refused and leaves the job as it was. Where an event has several branches, the\n"
        "script takes the first whose condition holds; `[*]` is a job not posted yet, or one\n"
        "whose record is gone (purged, or expired after its time to live).\n\n"
        f"```mermaid\n{mermaid(BRANCHES)}\n```\n\n"
        'Job events on the queue\'s `events` channel: `status` ([id, "status", status,\n'
        'result?]) or `active` (["", "active", [ids]]); "if watched": only while a client\n'
        "awaits the job.\n\n"
        f"{rows(BRANCHES)}\n\n"
        "## Callback delivery\n\n"
        "The callback of a finished job (its record's `cb_state`), from the outbox its end\n"
        "writes to a receiver's answer. `[*]`: no callback state (before the job's end, after a\n"
        "requeue), or the record gone.\n\n"
        f"```mermaid\n{mermaid(CALLBACK_BRANCHES)}\n```\n\n"
        f"{rows(CALLBACK_BRANCHES)}\n"
    )


if __name__ == "__main__":
    print(document(), end="")
