"""The README's quick start, run exactly as a new user runs it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[2]


def run_example(name: str, home: Path) -> list[str]:
    """Run examples/`name` as a new user does, with a fresh embedded Redis; its output lines."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AQUEUE_")}
    env["AQUEUE_HOME"] = str(home)
    done = subprocess.run(
        [sys.executable, f"examples/{name}"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert not (home / "redis" / "redis.url").exists()  # the embedded server was stopped
    return done.stdout.splitlines()


def test_the_quickstart_runs_a_daemon_on_real_jobs_and_prints_their_results(
    tmp_path: Path,
) -> None:
    lines = run_example("quickstart.py", tmp_path)
    progress = [
        line.strip() for line in lines if line.strip().startswith("train: ") and "%" in line
    ]
    assert progress == [f"train: {p}% (epoch {e})" for e, p in enumerate((20, 40, 60, 80, 100), 1)]
    assert "train -> 'trained 5 epochs', 32 bytes of weights" in lines
    assert "infer -> 14.0" in lines
    assert "fragile -> dead: ValueError: cannot parse 'garbage'" in lines
    assert lines[-1] == "worker daemon exited with status 0"


def test_the_callback_receiver_acts_on_each_outcome_once_and_refuses_forgeries(
    tmp_path: Path,
) -> None:
    # Deliveries are at least once: the receiver must drop a repeat by its Idempotency-Key.
    lines = run_example("callback_receiver.py", tmp_path)
    called = [line for line in lines if line.startswith("called back: job ")]
    assert len(called) == 3 and all(line.endswith("success=True") for line in called)
    [repeat] = [line for line in lines if line.startswith("repeat of ")]
    assert repeat.endswith(".1.complete ignored")
    assert "repeated delivery answered: HTTP 200" in lines
    assert "forged delivery answered: HTTP 401" in lines
    assert "3 outcomes recorded, once each; 1 repeat ignored" in lines
    assert lines[-1] == "worker daemon exited with status 0"


def test_picloud_s_pipeline_examples_run_as_stage_daemons(tmp_path: Path) -> None:
    lines = run_example("pipelines.py", tmp_path)
    assert "double: [[2], [4], [6], []]" in lines  # -1 returned None: nothing went on
    assert "split: ['to', 'be', 'or', 'not', 'to', 'be']" in lines
    assert "prices: [[{'item': 'apple', 'price': 0.5}], [{'item': 'fig', 'price': 1.25}]]" in lines
    assert "scrape https://example.org: [['info@example.org']]" in lines
    assert "scrape htp:/typo: ['bad-urls: ValueError after 1 attempt(s)']" in lines
    assert (
        "scrape https://down.example: ['errors: pipelines.Unreachable after 3 attempt(s)']" in lines
    )
    assert lines[-1] == "stage daemons exited with statuses [0, 0, 0, 0]"
