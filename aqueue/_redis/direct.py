"""A Redis connection used straight, for script calls made one after another."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, Final

import hiredis
import redis.asyncio as aioredis
import redis.exceptions as rexc
from redis.asyncio.connection import AbstractConnection

MISSED: Final = object()  # the call did not run here: make it through the pool


class Direct:
    """One connection of the pool's own kind (same address, auth, name and health checks),
    used without redis-py's pool and command layers. Those cost about as much as the round
    trip itself (some 50 µs a call on a small machine), and calls made back to back (an app's
    awaited posts, a worker's claim and ack loops) spend most of their time there.

    One call at a time: a call that finds it busy, or that fails on it (a connection lost,
    which redis-py then closes; a script Redis does not have; no reply within the pool's
    socket timeout), returns MISSED, and the caller goes through the pool, whose retries and
    script loading apply as to any command. It is one connection more than the pool's bound.
    """

    def __init__(self, pool: aioredis.ConnectionPool) -> None:
        self._pool = pool
        self._connection: AbstractConnection | None = None
        self._busy = False
        self._closed = False  # closed for good: it would otherwise connect again on use
        self._timeout: float | None = None

    def _connect(self) -> AbstractConnection:
        connection: AbstractConnection = self._pool.connection_class(**self._pool.connection_kwargs)
        # One deadline for the whole call, of the pool's socket timeout (the URL's, else
        # redis-py's default), rather than redis-py's per write and per read: a write's is a
        # task of its own, made on every call.
        self._timeout, connection.socket_timeout = connection.socket_timeout, None
        return connection

    async def evalsha(self, sha: str, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        if self._busy or self._closed:
            return MISSED
        if self._connection is None:
            self._connection = self._connect()
        connection = self._connection
        self._busy = True
        try:
            # redis-py closes the connection itself when a send or read fails or is cut
            # short, so it is never left with a reply unread
            async with asyncio.timeout(self._timeout):
                # hiredis's C packer: redis-py's own, in Python, costs more than the rest here
                await connection.send_packed_command(
                    hiredis.pack_command(("EVALSHA", sha, len(keys), *keys, *args))
                )
                return await connection.read_response()
        except (rexc.NoScriptError, rexc.ConnectionError, rexc.TimeoutError, OSError):
            return MISSED  # (asyncio's TimeoutError is an OSError)
        finally:
            self._busy = False

    async def aclose(self) -> None:
        self._closed = True
        connection, self._connection = self._connection, None
        if connection is not None:
            await connection.disconnect()
