"""The README's quick start, run exactly as a new user runs it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[2]


def test_the_quickstart_runs_a_daemon_on_real_jobs_and_prints_their_results(
    tmp_path: Path,
) -> None:
    env = {k: v for k, v in os.environ.items() if k != "AQUEUE_REDIS_URL"}
    env["AQUEUE_HOME"] = str(tmp_path)  # a fresh embedded Redis of its own
    done = subprocess.run(
        [sys.executable, "examples/quickstart.py"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    progress = [
        line.strip() for line in lines if line.strip().startswith("train: ") and "%" in line
    ]
    assert progress == [f"train: {p}% (epoch {e})" for e, p in enumerate((20, 40, 60, 80, 100), 1)]
    assert "train -> 'trained 5 epochs', 32 bytes of weights" in lines
    assert "infer -> 14.0" in lines
    assert "fragile -> dead: ValueError: cannot parse 'garbage'" in lines
    assert lines[-1] == "worker daemon exited with status 0"
    assert not (tmp_path / "redis" / "redis.url").exists()  # the embedded server was stopped
