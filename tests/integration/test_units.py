"""The unit files in systemd/ pass `systemd-analyze verify`, and their exposure stays low."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

# -- the unit files -------------------------------------------------------------------------

UNITS = Path(__file__).resolve().parents[2] / "systemd"
INSTANCES = [
    "aqueue-worker@cpu.service",
    "aqueue-worker@gpu0.service",  # the template plus the GPU drop-in
    "aqueue-reaper.service",
    "aqueue-http.service",
    "aqueue.target",
]
# Exposure of `systemd-analyze security --offline=yes`, 0 (locked down) to 10 (unprotected):
# a regression guard; lower them when the units get tighter.
MAX_EXPOSURE = {
    "aqueue-worker@cpu.service": 1.2,
    "aqueue-worker@gpu0.service": 1.4,
    "aqueue-reaper.service": 1.1,
    "aqueue-http.service": 1.1,
}


def _systemd_analyze(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # `bash .ci/task test` installs it where it is missing; without it this fails, never skips
    assert shutil.which("systemd-analyze"), "systemd-analyze is missing: apt-get install systemd"
    unit_dir = tmp_path / "units"
    shutil.copytree(UNITS, unit_dir)
    return subprocess.run(
        ["systemd-analyze", *args],
        env={**os.environ, "SYSTEMD_UNIT_PATH": f"{unit_dir}:", "SYSTEMD_LOG_COLOR": "0"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    done = _systemd_analyze(tmp_path, "verify", *INSTANCES)
    complaints = [line for line in (done.stdout + done.stderr).splitlines() if "aqueue" in line]
    assert done.returncode == 0, done.stderr
    assert complaints == []


@pytest.mark.parametrize("unit", sorted(MAX_EXPOSURE))
def test_unit_exposure_stays_low(tmp_path: Path, unit: str) -> None:
    done = _systemd_analyze(tmp_path, "security", "--offline=yes", unit)
    assert done.returncode == 0, done.stderr
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", done.stdout)
    assert match is not None, done.stdout
    assert float(match[1]) <= MAX_EXPOSURE[unit], done.stdout
