"""The callback dispatcher: delivers the outbox that job outcomes write, off the workers' path.

A job's outcome and its callback record are written in one atomic step (`finish_terminal` in
lua/_lib.lua), so a crash between "done" and "called back" loses nothing. Deliveries are
claimed under a lease (`claim_callbacks`), so a dispatcher killed mid-delivery is replaced by
another without losing the callback, and recorded under a token (`callback_done`), so a
delivered callback is never recorded twice. Each attempt is logged on the job.

MLQ-compatible GET: `success`, `job_id` and `short_result` are added to the URL's own query.
POST: the job's record as JSON. Every delivery carries an `Idempotency-Key` and, with a secret,
`X-Aqueue-Signature: sha256=<hex HMAC-SHA256 of "<timestamp>.<method>.<url>.<body>">` with the
`X-Aqueue-Timestamp` it names, so receivers can check the origin and drop duplicates. The
signed URL is the one the receiver gets (`as_sent`): a URL's userinfo goes as Basic auth and its
fragment is never sent, so neither is signed.

Deliveries are at least once: a dispatcher that stops between the receiver's answer and
recording it (a crash, a lease lapsed in a Redis outage) leaves the delivery to be made again,
with the same Idempotency-Key. Such re-tries spend none of the job's attempts (see
claim_callbacks.lua).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import anyio

from aqueue import _output
from aqueue._checks import whole
from aqueue._redis.backoff import Backoff, follow
from aqueue._redis.store import Store
from aqueue._services.callback_guard import (
    CallbackRefused,
    Network,
    guarded_resolver,
    literal_refusal,
    parse_networks,
)
from aqueue._states import GONE, STALE, CallbackEvent, CallbackReply, CallbackState
from aqueue.client import Client
from aqueue.errors import ConfigError, JobNotFound, RedisUnavailable
from aqueue.job import Job, JobStatus

if TYPE_CHECKING:
    import aiohttp
    import yarl

# aiohttp and yarl (~10 MB of RSS) are imported at the first delivery, not with this module:
# every worker runs a dispatcher, and the memory of idle workers matters more than the first
# callback's few milliseconds.

log = logging.getLogger(__name__)


# Deliveries lost to a dispatcher's crash (its lease lapsed) are tried again this many times,
# apart from the job's callback_attempts, which count only the receiver's answers.
CRASH_RETRIES = 3


@dataclass(frozen=True, slots=True)
class CallbackConfig:
    timeout: float = 10.0  # seconds one attempt may take
    attempts: int = 3  # deliveries tried per outcome
    backoff: float = 1.0  # seconds before the second attempt; doubles each time
    secret: str | None = None  # HMAC-SHA256 key for X-Aqueue-Signature
    allowed_hosts: tuple[str, ...] | None = None  # None: any host
    # Networks callbacks may reach though they are not public (loopback, private, link-local,
    # metadata): none by default. CIDRs or addresses; `networks` holds them parsed.
    allow_networks: tuple[str, ...] = ()
    lease: float = 60.0  # a delivery whose dispatcher vanished is retried after this
    concurrency: int = 16  # deliveries in flight at once
    idle_wait: float = 5.0
    networks: tuple[Network, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "networks", parse_networks(tuple(self.allow_networks)))
        except ValueError as exc:
            raise ConfigError(f"callback allow_networks: {exc}") from None
        if self.allowed_hosts is not None:  # host names are case-insensitive
            hosts = tuple(name.lower() for name in self.allowed_hosts)
            object.__setattr__(self, "allowed_hosts", hosts)
        whole("callback_attempts", self.attempts, label="callback attempts")
        whole("callback_concurrency", self.concurrency, label="callback concurrency")
        if self.lease <= self.timeout:
            raise ConfigError(
                f"callback lease ({self.lease:g} s) must be longer than the per-attempt "
                f"timeout ({self.timeout:g} s)"
            )

    def delay_before(self, attempt: int) -> float:
        """Seconds to wait after failed attempt `attempt` (1-based)."""
        return float(self.backoff * 2 ** max(attempt - 1, 0))


def signature(secret: str, timestamp: str, method: str, url: str, body: bytes) -> str:
    message = f"{timestamp}.{method}.{url}.".encode() + body
    return "sha256=" + hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


@dataclass(frozen=True, slots=True)
class CallbackRequest:
    method: str
    url: str  # as the receiver gets it (see `as_sent`): what is signed
    body: bytes
    authorization: str | None  # the URL's userinfo, sent as Basic auth, never on the URL


def as_sent(url: yarl.URL) -> str:
    """The URL a receiver rebuilds from the request it gets: the scheme, then the Host header
    aiohttp sends (the host in ASCII, the port only when not the scheme's default), then the
    request target. Userinfo and fragment are never on the request line, so never signed."""
    host = url.raw_host or ""
    if ":" in host:  # IPv6
        host = f"[{host}]"
    if not url.is_default_port():
        host += f":{url.port}"
    return f"{url.scheme}://{host}{url.raw_path_qs}"


def request_for(job: Job) -> CallbackRequest:
    """The callback request for a finished job."""
    import yarl  # lazily: the memory of idle workers (see the top)

    assert job.callback is not None
    given = yarl.URL(job.callback)
    authorization = None
    if given.raw_user is not None or given.raw_password is not None:
        userinfo = f"{given.user or ''}:{given.password or ''}".encode()
        authorization = "Basic " + base64.b64encode(userinfo).decode()
    url = given.with_user(None).with_fragment(None)
    success = "1" if job.status is JobStatus.COMPLETE else "0"
    if job.callback_method == "POST":
        body = _output.dumps({**_output.jsonable(job), "success": success == "1"}).encode()
        return CallbackRequest("POST", as_sent(url), body, authorization)
    url = url.extend_query(success=success, job_id=job.id, short_result=job.short_result or "")
    return CallbackRequest("GET", as_sent(url), b"", authorization)


class Dispatcher:
    def __init__(self, store: Store, client: Client, config: CallbackConfig) -> None:
        self.store = store
        self.client = client
        self.config = config
        self.delivered = 0
        self._wake = anyio.Event()
        self._session: aiohttp.ClientSession | None = None  # made by the first delivery

    def _http_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            import aiohttp  # lazily: the memory of idle workers (see the top)

            timeout = aiohttp.ClientTimeout(total=self.config.timeout)
            # every name resolves through the guard: only the addresses it passes are dialled
            connector = aiohttp.TCPConnector(resolver=guarded_resolver(self.config.networks))
            self._session = aiohttp.ClientSession(connector=connector, timeout=timeout)
        return self._session

    @contextlib.asynccontextmanager
    async def _closing_session(self) -> AsyncIterator[None]:
        try:
            yield
        finally:
            if self._session is not None:
                session, self._session = self._session, None
                await session.close()

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        slots = anyio.Semaphore(self.config.concurrency)
        async with self._closing_session(), anyio.create_task_group() as tg:
            await tg.start(self._listen)
            task_status.started()
            backoff = Backoff()
            while True:
                self._wake = anyio.Event()  # before the claim: a wake-up during it is kept
                free = slots.value
                try:
                    due, claimed = await self.store.claim_callbacks(
                        int(self.config.lease * 1000), max(free, 1), CRASH_RETRIES
                    )
                except RedisUnavailable as exc:
                    log.warning(
                        "claiming callbacks failed, retrying in %.2f s: %s", backoff.delay, exc
                    )
                    await backoff.sleep()
                    continue
                backoff.reset()
                for job_id, token in claimed:
                    await slots.acquire()
                    session = self._http_session()
                    tg.start_soon(self._deliver_in_slot, session, slots, job_id, token)
                if claimed:
                    continue
                wait = self.config.idle_wait
                if due is not None:
                    wait = min(wait, due / 1000 + 0.01)
                with anyio.move_on_after(wait):
                    await self._wake.wait()

    async def _listen(self, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        """Wake the claim loop when an outcome lands in the outbox (pub/sub)."""

        async def on_message(channel: str, data: bytes | None) -> None:
            self._wake.set()

        channels = [self.store.keys.callbacks]
        await follow(self.store, channels, on_message, task_status.started, "callback")

    async def _deliver_in_slot(
        self, session: aiohttp.ClientSession, slots: anyio.Semaphore, job_id: str, token: int
    ) -> None:
        try:
            await self.deliver(session, job_id, token)
        except RedisUnavailable as exc:
            # its lease lapses and another attempt is made: at least once, never lost
            log.warning("callback of job %s left to its lease: %s", job_id, exc,
                        extra={"job_id": job_id, "queue": self.store.keys.queue})  # fmt: skip
        except Exception:
            # one delivery's fault must not stop the daemon: the same lease takes it over
            log.exception("callback of job %s failed unexpectedly", job_id,
                          extra={"job_id": job_id, "queue": self.store.keys.queue})  # fmt: skip
        finally:
            slots.release()

    async def deliver(self, session: aiohttp.ClientSession, job_id: str, token: int) -> None:
        try:
            job = await self.client.get_job(job_id)
        except JobNotFound:  # expired or purged before delivery: nothing to call
            await self.store.callback_done(job_id, token, CallbackEvent.FAILED, 0, 1, "")  # lets go
            return
        if job.callback is None:  # an outbox entry someone wrote for a job without one
            await self.store.callback_done(
                job_id, token, CallbackEvent.FAILED, 0, 1, "the job has no callback"
            )
            return
        delivered, note = await self._attempt(session, job)
        event = CallbackEvent.DELIVERED if delivered else CallbackEvent.FAILED
        attempt = job.callback_attempts + 1
        state = await self._record(
            job_id, token, event, int(self.config.delay_before(attempt) * 1000), note
        )
        if state == CallbackState.DELIVERED:
            self.delivered += 1
        elif state == CallbackState.RETRYING:
            self._wake.set()  # the claim loop learns when the retry is due
        settled = (CallbackState.DELIVERED, STALE, GONE)  # or no longer its to record
        level = logging.INFO if state in settled else logging.WARNING
        log.log(level, "callback of job %s attempt %d: %s (%s)", job_id, attempt, note, state,
                extra={"job_id": job_id, "queue": self.store.keys.queue})  # fmt: skip

    async def _record(
        self, job_id: str, token: int, event: CallbackEvent, delay_ms: int, note: str
    ) -> CallbackReply:
        """Record an attempt that was made, riding out a Redis outage while its lease lasts
        (after that, another delivery has been claimed, and this record would be stale)."""
        backoff = Backoff()
        outage = RedisUnavailable(f"recording the callback of job {job_id}: no answer")
        # the attempt itself took up to `timeout` of the lease
        with anyio.move_on_after(self.config.lease - self.config.timeout):
            while True:
                try:
                    return await self.store.callback_done(
                        job_id, token, event, delay_ms, self.config.attempts, note
                    )
                except RedisUnavailable as exc:
                    outage = exc
                    await backoff.sleep()
        raise outage

    async def _attempt(self, session: aiohttp.ClientSession, job: Job) -> tuple[bool, str]:
        import aiohttp  # lazily: the memory of idle workers (see the top)
        import yarl

        request = request_for(job)
        target = yarl.URL(request.url, encoded=True)
        host = target.host or ""
        allowed = self.config.allowed_hosts  # lower case (see CallbackConfig)
        if allowed is not None and host.lower() not in allowed:
            return False, f"host {host!r} is not in the callback allowlist"
        if refused := literal_refusal(target.raw_host or "", self.config.networks):
            return False, refused
        timestamp = str(int(time.time()))
        headers = {
            "Idempotency-Key": f"{job.id}.{job.attempt}.{job.status}",
            "X-Aqueue-Timestamp": timestamp,
            "User-Agent": "aqueue-callbacks",
        }
        if request.method == "POST":
            headers["Content-Type"] = "application/json"
        if request.authorization is not None:
            headers["Authorization"] = request.authorization
        if self.config.secret:
            headers["X-Aqueue-Signature"] = signature(
                self.config.secret, timestamp, request.method, request.url, request.body
            )
        try:
            async with session.request(
                request.method, target, data=request.body or None, headers=headers,
                allow_redirects=False,
            ) as response:  # fmt: skip
                await response.read()
                if 200 <= response.status < 300:
                    return True, f"HTTP {response.status}"
                return False, f"HTTP {response.status}"
        except TimeoutError:
            return False, f"no answer within {self.config.timeout:g} s"
        except aiohttp.ClientConnectorError as exc:
            if isinstance(exc.os_error, CallbackRefused):  # from the guard, not the network
                return False, str(exc.os_error)
            return False, f"{type(exc).__name__}: {exc}"
        except aiohttp.ClientError as exc:
            return False, f"{type(exc).__name__}: {exc}"
