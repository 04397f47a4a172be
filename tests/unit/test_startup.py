"""What a process loads at start: a worker carries no HTTP stack."""

from __future__ import annotations

import subprocess
import sys


def test_a_worker_process_starts_without_the_http_stack() -> None:
    # An idle worker's memory: aiohttp and yarl load only for callbacks and the HTTP API.
    code = (
        "import sys, aqueue, aqueue._ops.cli, aqueue._ops.daemon, aqueue._worker.worker; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('aiohttp', 'yarl')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
