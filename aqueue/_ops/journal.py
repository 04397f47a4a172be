"""Logging to the systemd journal with structured fields (JOB_ID, QUEUE, WORKER), over the
journal's native datagram protocol, so `journalctl JOB_ID=...` finds a job's lines."""

from __future__ import annotations

import logging
import os
import socket
import struct
import traceback

SOCKET = "/run/systemd/journal/socket"

# logging levels -> syslog priorities
_PRIORITY = {
    logging.DEBUG: 7,
    logging.INFO: 6,
    logging.WARNING: 4,
    logging.ERROR: 3,
    logging.CRITICAL: 2,
}
_EXTRA = {"job_id": "JOB_ID", "queue": "QUEUE", "worker": "WORKER"}


def journal_available() -> bool:
    """systemd connected our stderr to the journal (it sets $JOURNAL_STREAM) and it listens."""
    return bool(os.environ.get("JOURNAL_STREAM")) and os.path.exists(SOCKET)


def encode_fields(fields: dict[str, str]) -> bytes:
    """The native protocol: KEY=value lines; a value with a newline is length-prefixed."""
    out = bytearray()
    for key, value in fields.items():
        data = value.encode("utf-8", errors="replace")
        if b"\n" in data:
            out += key.encode() + b"\n" + struct.pack("<Q", len(data)) + data + b"\n"
        else:
            out += key.encode() + b"=" + data + b"\n"
    return bytes(out)


class JournalHandler(logging.Handler):
    def __init__(self, address: str = SOCKET, identifier: str = "aqueue") -> None:
        super().__init__()
        self.address = address
        self.identifier = identifier
        self.socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)

    def fields(self, record: logging.LogRecord) -> dict[str, str]:
        message = record.getMessage()
        if record.exc_info:
            message += "\n" + "".join(traceback.format_exception(*record.exc_info))
        fields = {
            "MESSAGE": message,
            "PRIORITY": str(_PRIORITY.get(record.levelno, 6)),
            "SYSLOG_IDENTIFIER": self.identifier,
            "LOGGER": record.name,
            "CODE_FILE": record.pathname,
            "CODE_LINE": str(record.lineno),
        }
        for attribute, key in _EXTRA.items():
            if hasattr(record, attribute):
                fields[key] = str(getattr(record, attribute))
        return fields

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.socket.sendto(encode_fields(self.fields(record)), self.address)
        except Exception:
            self.handleError(record)

    def close(self) -> None:
        self.socket.close()
        super().close()
