"""The state diagram in docs/states.md, generated from the transition table (never drawn by
hand): `python -m aqueue._diagram > docs/states.md`; a test checks the file is current."""

from __future__ import annotations

from aqueue._states import TRANSITIONS


def mermaid() -> str:
    lines = ["stateDiagram-v2"]
    for (before, event), afters in TRANSITIONS.items():
        for after in sorted(afters):
            lines.append(f"    {'[*]' if before is None else before} --> {after}: {event}")
    return "\n".join(lines)


def document() -> str:
    return (
        "# Job states\n\n"
        "Generated from `aqueue/_states.py` by `python -m aqueue._diagram > docs/states.md`.\n"
        "Each arrow is one Lua script run atomically in Redis; any (state, event) pair not drawn\n"
        "is refused and leaves the job as it was.\n\n"
        f"```mermaid\n{mermaid()}\n```\n"
    )


if __name__ == "__main__":
    print(document(), end="")
