"""The daemon's log lines, as a machine reads them."""

from __future__ import annotations

import json
import logging
from datetime import datetime

from aqueue._ops.daemon import JsonFormatter


def test_json_log_lines_carry_an_iso_8601_time_with_its_zone_and_the_job_fields() -> None:
    """The time was `2026-12-03 12:18:10,172`: local, with no zone, a comma for the dot."""
    record = logging.LogRecord(
        "aqueue._worker.worker", logging.INFO, __file__, 1, "job %s", ("a",), None
    )
    record.job_id = "a"
    entry = json.loads(JsonFormatter().format(record))
    stamp = datetime.fromisoformat(entry["time"])
    assert stamp.utcoffset() is not None  # a zone, so it means one instant anywhere
    assert abs(stamp.timestamp() - record.created) < 0.001
    assert (entry["message"], entry["job_id"], entry["level"]) == ("job a", "a", "INFO")
