"""A callback receiver that checks each delivery's signature and acts on each outcome once.

    python examples/callback_receiver.py

Callbacks are delivered at least once. A worker daemon that dies after the receiver answered
but before it recorded the delivery delivers it again, with the same `Idempotency-Key`
(`<job id>.<attempt>.<status>`). So a receiver records the key in the same transaction as the
effect of the callback (here, a row in SQLite whose primary key is the key), and answers a
repeat with 200 without acting again: a non-2xx answer would only make the dispatcher retry.

This script starts the receiver on loopback, a worker daemon that may call loopback (callbacks
reach only public addresses unless `callback_allow_networks` says otherwise) and shares its
secret, posts jobs with callbacks, then replays one delivery as a repeat arrives, and sends
one forged delivery.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import signal
import sqlite3
import sys
import time
from pathlib import Path

import aiohttp
import anyio
from aiohttp import web

from aqueue import Client, Context, Listeners

SECRET = "example-secret"  # noqa: S105 - the daemon's callback_secret, for the demo
TOLERANCE = 300  # seconds a delivery's timestamp may be off: older ones are refused

listeners = Listeners()


@listeners.listener
async def square(msg: int, ctx: Context) -> int:
    return msg * msg


class Receiver:
    """An aiohttp app for POST callbacks: verifies, deduplicates, records."""

    def __init__(self, secret: str, database: Path) -> None:
        self.secret = secret.encode()
        self.db = sqlite3.connect(database)
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS outcomes"
            " (idempotency_key TEXT PRIMARY KEY, job_id TEXT, success INTEGER)"
        )
        self.repeats = 0
        self.recorded = anyio.Event()
        self.expected = 0
        self.last: tuple[str, str, dict[str, str], bytes] | None = None  # to replay below

    def verified(self, request: web.Request, body: bytes) -> bool:
        """The signature is over "<timestamp>.<method>.<url>.<body>", the URL as received."""
        timestamp = request.headers.get("X-Aqueue-Timestamp", "")
        if not timestamp.isdigit() or abs(time.time() - int(timestamp)) > TOLERANCE:
            return False
        message = f"{timestamp}.{request.method}.{request.url}.".encode() + body
        expected = "sha256=" + hmac.new(self.secret, message, hashlib.sha256).hexdigest()
        return hmac.compare_digest(expected, request.headers.get("X-Aqueue-Signature", ""))

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        if not self.verified(request, body):
            return web.Response(status=401, text="bad or missing signature")
        key = request.headers["Idempotency-Key"]
        record = await request.json()
        with self.db:  # one transaction: the key and the effect are recorded together
            inserted = self.db.execute(
                "INSERT OR IGNORE INTO outcomes VALUES (?, ?, ?)",
                (key, record["id"], record["success"]),
            ).rowcount
        if not inserted:
            self.repeats += 1
            print(f"repeat of {key} ignored")
            return web.Response(text="already handled")
        print(f"called back: job {record['id']} success={record['success']}")
        signed = {k: v for k, v in request.headers.items() if k.lower().startswith("x-aqueue-")}
        headers = {**signed, "Idempotency-Key": key, "Content-Type": "application/json"}
        self.last = (request.method, str(request.url), headers, body)
        if self.count() >= self.expected:
            self.recorded.set()
        return web.Response(text="ok")

    def count(self) -> int:
        return int(self.db.execute("SELECT COUNT(*) FROM outcomes").fetchone()[0])


async def main(home: str) -> None:
    receiver = Receiver(SECRET, Path(home) / "receiver.sqlite3")
    app = web.Application()
    app.router.add_post("/hook", receiver.handle)
    runner = web.AppRunner(app, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    url = f"http://127.0.0.1:{port}/hook"
    env = {**os.environ, "AQUEUE_HOME": home, "AQUEUE_CALLBACK_SECRET": SECRET,
           "AQUEUE_CALLBACK_ALLOW_NETWORKS": "127.0.0.1"}  # fmt: skip
    try:
        async with Client("callbacks") as client:  # no URL: the embedded Redis
            daemon = await anyio.open_process(
                [sys.executable, "-m", "aqueue", "worker", "callback_receiver:listeners",
                 "--queue", "callbacks"],
                cwd=Path(__file__).parent, env=env, stdout=None, stderr=None,
            )  # fmt: skip
            try:
                before = receiver.count()  # the database outlives runs, as it must
                receiver.expected = before + 3
                for n in (2, 3, 4):
                    await client.post(n, functions=["square"], callback=url, callback_method="POST")
                print(f"posted 3 jobs with callbacks to {url}")
                with anyio.fail_after(60):
                    await receiver.recorded.wait()
            finally:
                daemon.send_signal(signal.SIGTERM)
                with anyio.fail_after(30):
                    status = await daemon.wait()
        assert receiver.last is not None
        method, last_url, headers, body = receiver.last
        async with aiohttp.ClientSession() as session:
            # a repeat is the same request again: same key, same signed body
            async with session.request(method, last_url, headers=headers, data=body) as answer:
                print(f"repeated delivery answered: HTTP {answer.status}")
            forged = {**headers, "X-Aqueue-Signature": "sha256=" + "0" * 64}
            async with session.post(url, headers=forged, data=body) as answer:
                print(f"forged delivery answered: HTTP {answer.status}")
        recorded = receiver.count() - before
        print(f"{recorded} outcomes recorded, once each; {receiver.repeats} repeat ignored")
        print(f"worker daemon exited with status {status}")
    finally:
        await runner.cleanup()
        receiver.db.close()


if __name__ == "__main__":
    anyio.run(main, os.path.abspath(os.environ.get("AQUEUE_HOME", ".aqueue")))
