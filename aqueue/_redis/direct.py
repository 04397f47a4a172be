"""A Redis connection used straight, for script calls made one after another."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any, Final

import hiredis
import redis.asyncio as aioredis
import redis.exceptions as rexc
from redis.asyncio.connection import AbstractConnection

MISSED: Final = object()  # the call did not run here: make it through the pool
# Replies that say a script did not run on this node: its slot is elsewhere (MOVED, ASK) or
# migrating (TRYAGAIN), or the cluster is down. The connection is dropped, so that the next
# call reconnects to wherever the slot is by then.
ELSEWHERE: Final = (rexc.AskError, rexc.TryAgainError, rexc.ClusterDownError)
Connect = Callable[[], AbstractConnection]


def pool_connection(pool: aioredis.ConnectionPool) -> Connect:
    """Makes a connection of the pool's own kind (same address, auth, name, checks)."""
    return lambda: pool.connection_class(**pool.connection_kwargs)


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

    def __init__(self, connect: Connect) -> None:
        self._make = connect  # of the pool's kind (`pool_connection`), or to a cluster's node
        self._connection: AbstractConnection | None = None
        self._busy = False
        self._closed = False  # closed for good: it would otherwise connect again on use
        self._timeout: float | None = None

    def _connect(self) -> AbstractConnection:
        connection = self._make()
        # One deadline for the whole call, of the pool's socket timeout (the URL's, else
        # redis-py's default), rather than redis-py's per write and per read: a write's is a
        # task of its own, made on every call.
        self._timeout, connection.socket_timeout = connection.socket_timeout, None
        return connection

    async def evalsha(
        self,
        sha: str,
        keys: Sequence[Any],
        args: Sequence[Any],
        then: Sequence[Sequence[Any]] = (),
        then_s: float = 0.0,
    ) -> Any:
        """The script's reply. With `then`, those commands go in the same write, right after
        it on this connection (a WAIT after a durable write), and may take `then_s` seconds
        more: the replies of all, the script's first."""
        command = ("EVALSHA", sha, len(keys), *keys, *args)
        if then:
            return await self._exchange([command, *map(tuple, then)], then_s)
        return await self._exchange(command, 0.0)

    async def pipelined(self, commands: Sequence[Sequence[Any]], extra_s: float = 0.0) -> Any:
        """The replies of `commands`, sent in one write (and given `extra_s` seconds more than
        one call), or MISSED as for `evalsha`."""
        return await self._exchange(list(commands), extra_s)

    async def _exchange(self, what: tuple[Any, ...] | list[Sequence[Any]], extra_s: float) -> Any:
        """The reply of one command (a tuple), or the replies of several (a list)."""
        if self._busy or self._closed:
            return MISSED
        if self._connection is None:
            try:
                self._connection = self._connect()
            except (rexc.RedisError, ConnectionError):  # a cluster's map not yet read
                return MISSED
        connection = self._connection
        self._busy = True
        try:
            # redis-py closes the connection itself when a send or read fails or is cut
            # short, so it is never left with a reply unread
            if isinstance(what, list):
                return await self._pipelined(connection, what, extra_s)
            async with asyncio.timeout(self._timeout):
                # hiredis's C packer: redis-py's own, in Python, costs more than the rest here
                await connection.send_packed_command(hiredis.pack_command(what))
                return await connection.read_response()
        except (rexc.NoScriptError, rexc.ConnectionError, rexc.TimeoutError, OSError):
            return MISSED  # (asyncio's TimeoutError is an OSError)
        except ELSEWHERE:
            self._connection = None
            await connection.disconnect()
            return MISSED
        finally:
            self._busy = False

    async def _pipelined(
        self, connection: AbstractConnection, commands: Sequence[Sequence[Any]], then_s: float
    ) -> list[Any]:
        async with asyncio.timeout(None if self._timeout is None else self._timeout + then_s):
            await connection.send_packed_command(
                b"".join(hiredis.pack_command(tuple(command)) for command in commands)
            )
            replies: list[Any] = []
            refused: rexc.ResponseError | None = None
            for _ in commands:  # every reply read, an error one too: none left unread
                try:
                    replies.append(await connection.read_response())
                except rexc.ResponseError as exc:
                    refused = refused or exc
                    replies.append(exc)
        if refused is not None:
            raise refused
        return replies

    async def aclose(self) -> None:
        self._closed = True
        connection, self._connection = self._connection, None
        if connection is not None:
            await connection.disconnect()
