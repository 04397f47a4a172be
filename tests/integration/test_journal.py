"""Under systemd the daemon logs to the journal with structured fields, on a real socket."""

from __future__ import annotations

import logging
import socket
import struct
from pathlib import Path

from aqueue._ops.journal import JournalHandler, encode_fields


def _parse(datagram: bytes) -> dict[str, str]:
    """The journal's native protocol, read back."""
    fields: dict[str, str] = {}
    rest = datagram
    while rest:
        line, _, after = rest.partition(b"\n")
        if b"=" in line:
            key, _, value = line.partition(b"=")
            fields[key.decode()] = value.decode()
            rest = after
        else:  # KEY\n<u64 length><value>\n
            (length,) = struct.unpack("<Q", after[:8])
            fields[line.decode()] = after[8 : 8 + length].decode()
            rest = after[8 + length + 1 :]
    return fields


def test_log_lines_reach_the_journal_with_job_id_and_queue_fields(tmp_path: Path) -> None:
    address = str(tmp_path / "journal.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as journal:
        journal.bind(address)
        handler = JournalHandler(address)
        logger = logging.getLogger("aqueue.test-journal")
        logger.addHandler(handler)
        logger.propagate = False
        try:
            logger.warning("job %s failed", "j1", extra={"job_id": "j1", "queue": "train"})
            try:
                raise ValueError("two\nlines")
            except ValueError:
                logger.exception("with a traceback")
        finally:
            logger.removeHandler(handler)
            handler.close()
        first = _parse(journal.recv(65536))
        second = _parse(journal.recv(65536))
    assert first["MESSAGE"] == "job j1 failed"
    assert (first["JOB_ID"], first["QUEUE"], first["PRIORITY"]) == ("j1", "train", "4")
    assert first["SYSLOG_IDENTIFIER"] == "aqueue" and first["LOGGER"] == "aqueue.test-journal"
    assert second["MESSAGE"].startswith("with a traceback\nTraceback")
    assert "ValueError: two\nlines" in second["MESSAGE"] and second["PRIORITY"] == "3"


def test_values_with_newlines_are_length_prefixed() -> None:
    assert encode_fields({"A": "x", "B": "1\n2"}) == b"A=x\nB\n" + struct.pack("<Q", 3) + b"1\n2\n"
