"""The package's layers, top to bottom: what tests/unit/test_layers.py checks the imports
against, and what the coverage gate (tests/pure_coverage.py) holds to 100 % branch coverage
(the pure core). One list for both."""

from __future__ import annotations

# Unit-tested without Redis, sockets or an event loop, and imports no I/O library.
PURE_CORE = (
    "aqueue.errors",
    "aqueue.config",
    "aqueue.job",
    "aqueue.retry",
    "aqueue._states",
    "aqueue._codec",
    "aqueue._checks",
    "aqueue._options",
    "aqueue._diagram",
    "aqueue._redis.keys",
    "aqueue._redis.records",
    "aqueue._redis.macros",
    "aqueue._redis.wire",
    "aqueue._redis.calls",
    "aqueue._redis.urls",
    "aqueue._worker.prefetch",
    "aqueue._worker.capacity",
    "aqueue._worker.outcomes",
)

# Top to bottom. A module belongs to the layer of the longest prefix that names it.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("public faces", ("aqueue", "aqueue.__main__", "aqueue.testing")),
    ("process edge", ("aqueue._ops",)),
    ("worker", ("aqueue._worker",)),
    ("services", ("aqueue._services", "aqueue._http")),
    (
        "client",
        ("aqueue.client", "aqueue._client", "aqueue.sync", "aqueue.listeners", "aqueue._output"),
    ),
    ("redis", ("aqueue._redis",)),
    ("pure core", PURE_CORE),
]
