"""The command line's own texts: each command's --help and the README's list of commands."""

from __future__ import annotations

import argparse
import dataclasses
import re
from typing import Any

from aqueue import WorkerConfig
from aqueue._ops import cli
from aqueue._services.callbacks import CallbackConfig

from ..processes import ROOT


def _commands() -> dict[str, argparse.ArgumentParser]:
    [commands] = [a for a in cli._parser()._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(commands.choices)


def test_every_command_says_what_it_does_in_its_help() -> None:
    """`job`, `cancel`, `dlq` (and `check`) had no description in their --help."""
    undescribed = [name for name, parser in _commands().items() if not parser.description]
    assert undescribed == []


def _shown(default: float) -> str:
    """A default as the help says it: 16, 0.5, or a size in MiB (--max-result-bytes)."""
    mib = 2**20
    if isinstance(default, int) and default >= mib and default % mib == 0:
        return f"{default // mib}MiB"
    return f"{default:g}"


def test_every_option_of_a_daemon_setting_states_its_real_default() -> None:
    """`--callback-lease`'s help was cut off before it said anything of the kind."""
    defaults: dict[str, Any] = {f.name: f.default for f in dataclasses.fields(WorkerConfig)}
    defaults |= {f"callback_{f.name}": f.default for f in dataclasses.fields(CallbackConfig)}
    checked = []
    for command in ("worker", "reaper"):
        for action in _commands()[command]._actions:
            if action.dest in defaults and action.type is not None:  # not the on/off flags
                shown = _shown(defaults[action.dest])
                assert re.search(rf"\({shown}[;)]", action.help or ""), action.dest
                checked.append(action.dest)
    assert "callback_lease" in checked and "concurrency" in checked


def test_the_readme_lists_every_command() -> None:
    """`aqueue http` was missing from the README's command list."""
    readme = (ROOT / "README.md").read_text()
    block = readme.split("## The `aqueue` command", 1)[1].split("```")[1]
    listed = {line.split()[1] for line in block.splitlines() if line.startswith("aqueue ")}
    assert listed == set(_commands())
