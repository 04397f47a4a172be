"""The chart of a results file: `python plot.py results/<timestamp>.json results/latest.png`.

Run by run.py with the matplotlib of benchmarks/.venvs/plot (not a dependency of aqueue).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

AQUEUE_COLOR = "#d62728"
PEER_COLOR = "#7f7f7f"

Medians = dict[str, dict[str, dict[str, Any]]]
Figure = Callable[[Medians, str], float | None]


def _field(case: str, name: str) -> Figure:
    def figure(medians: Medians, peer: str) -> float | None:
        result = medians.get(case, {}).get(peer, {})
        value = result.get(name)
        return value if isinstance(value, int | float) else None

    return figure


def _post_and_run(name: str) -> Figure:
    """One awaited post (enqueue-serial) plus the drain window's share (drain-1), per job."""

    def figure(medians: Medians, peer: str) -> float | None:
        post = _field("enqueue-serial", name)(medians, peer)
        run = _field("drain-1", name)(medians, peer)
        return None if post is None or run is None else post + run

    return figure


@dataclass(frozen=True)
class Panel:
    title: str
    figure: Figure
    better: str = "higher"
    log: bool = False


PANELS = [
    Panel("enqueue, one by one (jobs/s)", _field("enqueue-serial", "rate")),
    Panel("enqueue, concurrently (jobs/s)", _field("enqueue-concurrent", "rate")),
    Panel("enqueue, bulk (jobs/s)", _field("enqueue-bulk", "rate")),
    Panel("no-op drain, 1 worker process (jobs/s)", _field("drain-1", "rate")),
    Panel("no-op drain, 2 worker processes (jobs/s)", _field("drain-2", "rate")),
    Panel("10 ms jobs, concurrency 100 (jobs/s)", _field("sleep", "rate")),
    Panel("round trip p50, defaults (ms)", _field("roundtrip-default", "p50_ms"), "lower", True),
    Panel("round trip p50, tuned (ms)", _field("roundtrip-tuned", "p50_ms"), "lower", True),
    Panel("worker CPU per no-op job (µs)", _field("drain-1", "worker_cpu_us_per_job"), "lower"),
    Panel("Redis commands per job, post + run", _post_and_run("redis_cmds_per_job"), "lower"),
    Panel("Redis CPU per job, post + run (µs)", _post_and_run("redis_cpu_us_per_job"), "lower"),
    Panel("worker peak RSS, no-op drain (MiB)", _field("drain-1", "worker_peak_rss_mb"), "lower"),
    Panel("3-stage pipeline, end to end (messages/s)", _field("pipeline-throughput", "rate")),
    Panel(
        "pipeline hop p50, one message at a time (ms)",
        _field("pipeline-latency", "hop_p50_ms"),
        "lower",
        True,
    ),
]


def main(source: Path, target: Path) -> None:
    report = json.loads(source.read_text())
    medians: Medians = report["medians"]
    peers: list[str] = report["peers_run"]
    panels = [p for p in PANELS if any(p.figure(medians, peer) is not None for peer in peers)]
    columns = 3
    rows = max(1, -(-len(panels) // columns))
    fig, axes = plt.subplots(rows, columns, figsize=(15, 3.4 * rows), squeeze=False)
    for ax in axes.flat[len(panels) :]:
        ax.set_visible(False)
    for ax, panel in zip(axes.flat, panels, strict=False):
        values = [panel.figure(medians, peer) for peer in peers]
        shown = [v or 0.0 for v in values]
        top = max(shown, default=0.0) or 1.0
        colors = [AQUEUE_COLOR if peer == "aqueue" else PEER_COLOR for peer in peers]
        ax.barh(peers, shown, color=colors)
        ax.invert_yaxis()
        ax.set_title(f"{panel.title}: {panel.better} is better", fontsize=10)
        log = panel.log
        if log:
            ax.set_xscale("log")
            ax.set_xlim(0.1, top * 8)
        else:
            ax.set_xlim(0, top * 1.25)
        for y, value in enumerate(values):
            label = "n/a" if value is None else f"{value:,.1f}" if value < 100 else f"{value:,.0f}"
            ax.text(value or (0.1 if log else 0), y, f" {label}", va="center", fontsize=8)
        ax.tick_params(labelsize=8)
    m = report["machine"]
    fig.suptitle(
        f"aqueue and its peers: {report['mode']} run, {report['started']}, median of "
        f"{report['repeats']}; {m['cores']} cores ({m['cpu']}), Redis {report['redis_version']}",
        fontsize=11,
    )
    fig.tight_layout()
    fig.savefig(target, dpi=110)


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
