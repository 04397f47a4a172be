"""The systemd notify protocol, against a real AF_UNIX datagram socket standing in for systemd.

No mocks: each test binds the socket systemd would listen on (in a temp dir, or in the abstract
namespace), points `$NOTIFY_SOCKET` at it and reads the exact datagrams aqueue sends.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from aqueue._ops.systemd import Notifier, watchdog_loop


class FakeSystemd:
    """The receiving end of `$NOTIFY_SOCKET`."""

    def __init__(self, sock: socket.socket, env_value: str) -> None:
        self.sock = sock
        self.env_value = env_value

    def receive(self) -> bytes:
        return self.sock.recv(4096)  # settimeout() bounds the wait

    async def areceive(self) -> bytes:
        while True:
            await anyio.wait_readable(self.sock)
            try:
                return self.sock.recv(4096)
            except BlockingIOError:
                continue

    def assert_nothing_pending(self) -> None:
        timeout = self.sock.gettimeout()
        self.sock.setblocking(False)
        try:
            with pytest.raises(BlockingIOError):
                self.sock.recv(4096)
        finally:
            self.sock.settimeout(timeout)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.fixture
def systemd(tmp_path: Path, clean_env: pytest.MonkeyPatch) -> Iterator[FakeSystemd]:
    path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        sock.settimeout(5)
        clean_env.setenv("NOTIFY_SOCKET", str(path))
        yield FakeSystemd(sock, str(path))


@pytest.fixture
def abstract_systemd(clean_env: pytest.MonkeyPatch) -> Iterator[FakeSystemd]:
    name = f"aqueue-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(5)
        clean_env.setenv("NOTIFY_SOCKET", "@" + name)
        yield FakeSystemd(sock, "@" + name)


# -- the messages ---------------------------------------------------------------------------


def test_ready_sends_exactly_ready(systemd: FakeSystemd) -> None:
    notifier = Notifier.from_environment()
    assert notifier.enabled
    assert notifier.ready() is True
    assert systemd.receive() == b"READY=1"
    systemd.assert_nothing_pending()


def test_ready_with_status_is_one_datagram(systemd: FakeSystemd) -> None:
    assert Notifier.from_environment().ready("serving queue 'gpu' (8 slots)")
    assert systemd.receive() == b"READY=1\nSTATUS=serving queue 'gpu' (8 slots)"
    systemd.assert_nothing_pending()


def test_stopping_status_and_watchdog(systemd: FakeSystemd) -> None:
    notifier = Notifier.from_environment()
    assert notifier.status("3 running, 120 processed")
    assert notifier.stopping()
    assert notifier.stopping("draining 2 jobs")
    assert notifier.watchdog()
    assert notifier.extend_timeout(1.5)
    assert [systemd.receive() for _ in range(5)] == [
        b"STATUS=3 running, 120 processed",
        b"STOPPING=1",
        b"STOPPING=1\nSTATUS=draining 2 jobs",
        b"WATCHDOG=1",
        b"EXTEND_TIMEOUT_USEC=1500000",
    ]
    systemd.assert_nothing_pending()


def test_status_is_kept_on_one_line_and_utf8(systemd: FakeSystemd) -> None:
    assert Notifier.from_environment().status("line one\nline two\r\nthree — ✓")
    assert systemd.receive() == "STATUS=line one line two three — ✓".encode()


def test_assignments_that_would_break_the_protocol_are_refused(systemd: FakeSystemd) -> None:
    notifier = Notifier.from_environment()
    with pytest.raises(ValueError, match="KEY=value"):
        notifier.notify("READY")
    with pytest.raises(ValueError, match="KEY=value"):
        notifier.notify("STATUS=a\nREADY=1")
    with pytest.raises(ValueError, match="positive"):
        notifier.extend_timeout(0)
    systemd.assert_nothing_pending()


def test_abstract_socket(abstract_systemd: FakeSystemd) -> None:
    notifier = Notifier.from_environment()
    assert notifier.ready()
    assert notifier.watchdog()
    assert abstract_systemd.receive() == b"READY=1"
    assert abstract_systemd.receive() == b"WATCHDOG=1"


def test_explicit_environment_mapping(systemd: FakeSystemd) -> None:
    notifier = Notifier.from_environment({"NOTIFY_SOCKET": systemd.env_value})
    assert notifier.ready()
    assert systemd.receive() == b"READY=1"


# -- off, or failing ------------------------------------------------------------------------


def test_everything_is_a_noop_without_notify_socket(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("WATCHDOG_USEC", "30000000")  # ignored: nobody to ping
    notifier = Notifier.from_environment()
    assert not notifier.enabled
    assert notifier.watchdog_interval() is None
    assert notifier.ready("x") is False
    assert notifier.stopping() is False
    assert notifier.status("x") is False
    assert notifier.watchdog() is False
    assert notifier.extend_timeout(1) is False


def test_empty_notify_socket_is_off(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("NOTIFY_SOCKET", "")
    assert not Notifier.from_environment().enabled


def test_unsupported_address_is_off_and_says_so(
    clean_env: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    clean_env.setenv("NOTIFY_SOCKET", "vsock:2:1234")
    with caplog.at_level(logging.WARNING, logger="aqueue._ops.systemd"):
        notifier = Notifier.from_environment()
    assert not notifier.enabled
    assert "vsock:2:1234" in caplog.text


def test_a_failed_send_is_logged_not_raised(
    tmp_path: Path, clean_env: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    clean_env.setenv("NOTIFY_SOCKET", str(tmp_path / "nobody-listens"))
    notifier = Notifier.from_environment()
    assert notifier.enabled
    with caplog.at_level(logging.WARNING, logger="aqueue._ops.systemd"):
        assert notifier.ready() is False
    assert "READY=1" in caplog.text


# -- the watchdog ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("usec", "pid", "expected"),
    [
        ("30000000", None, 15.0),  # WatchdogSec=30: ping every 15 s
        ("30000000", "self", 15.0),
        ("1000", None, 0.0005),
        ("30000000", "other", None),  # meant for another process (e.g. our parent)
        ("0", None, None),
        ("-5", None, None),
        ("soon", None, None),
        ("30000000", "not-a-pid", None),
        (None, "self", None),
    ],
)
def test_watchdog_interval(
    systemd: FakeSystemd,
    clean_env: pytest.MonkeyPatch,
    usec: str | None,
    pid: str | None,
    expected: float | None,
) -> None:
    if usec is not None:
        clean_env.setenv("WATCHDOG_USEC", usec)
    if pid == "self":
        clean_env.setenv("WATCHDOG_PID", str(os.getpid()))
    elif pid == "other":
        clean_env.setenv("WATCHDOG_PID", str(os.getpid() + 1))
    elif pid is not None:
        clean_env.setenv("WATCHDOG_PID", pid)
    assert Notifier.from_environment().watchdog_interval() == expected


def test_watchdog_pid_is_compared_with_the_given_pid(systemd: FakeSystemd) -> None:
    env = {"NOTIFY_SOCKET": systemd.env_value, "WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "42"}
    assert Notifier.from_environment(env, pid=42).watchdog_interval() == 1.0
    assert Notifier.from_environment(env, pid=43).watchdog_interval() is None


async def test_watchdog_loop_pings_from_the_event_loop(
    systemd: FakeSystemd, clean_env: pytest.MonkeyPatch
) -> None:
    clean_env.setenv("WATCHDOG_USEC", "20000")  # ping every 10 ms
    clean_env.setenv("WATCHDOG_PID", str(os.getpid()))
    notifier = Notifier.from_environment()
    systemd.sock.setblocking(False)
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            await tg.start(watchdog_loop, notifier)
            pings = [await systemd.areceive() for _ in range(3)]
            tg.cancel_scope.cancel()
    assert pings == [b"WATCHDOG=1"] * 3


async def test_watchdog_loop_returns_at_once_when_the_watchdog_is_off(
    systemd: FakeSystemd,
) -> None:
    notifier = Notifier.from_environment()  # NOTIFY_SOCKET set, WATCHDOG_USEC not
    assert notifier.watchdog_interval() is None
    with anyio.fail_after(5):
        await watchdog_loop(notifier)
    systemd.assert_nothing_pending()
