"""A property-based fuzz of the running HTTP service against its own /openapi.json: whatever
schemathesis sends, no answer is a 5xx and every answer matches the description.

The service, a worker and Redis are real; the service runs on a loop of its own in a thread,
since schemathesis calls it synchronously.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import anyio.from_thread
import hypothesis
import msgpack
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ignored_auth,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
    unsupported_method,
)

from aqueue import Client, Context, Listeners
from aqueue._codec import MAX_DEPTH
from aqueue._http.openapi import openapi_spec
from aqueue._http.service import HttpConfig, serve_http
from aqueue.testing import RedisServer, running_worker
from tests.topologies import Replicated

READ, WRITE = "r" * 24, "w" * 24
AUTH = {"Authorization": f"Bearer {WRITE}"}
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
    ignored_auth,
    unsupported_method,
]
SETTINGS = hypothesis.settings(
    max_examples=40,
    deadline=None,
    database=None,  # no .hypothesis/ folder in the work tree
    suppress_health_check=list(HealthCheck),
    derandomize=True,  # the same requests on every run: a failure is reproducible
)


# Callback URLs of the kinds a hand probe broke (lone surrogates, empty or non-round-tripping
# IDNA labels) beside good ones; every host is loopback or no host at all, so that the worker's
# deliveries never leave the machine.
_HOSTS = st.sampled_from(
    ["127.0.0.1:9", "localhost:9", "[::1]:9", "xn--", "xn--lcalhost-", "xn--ls8h", "xn--a.xn--",
     "\ud800", "a\udfff", "127.0.0.1:99999", "[::1", "%00", "a b", "", "..", "\u0130"]
)  # fmt: skip
_PATHS = st.text(st.characters(codec=None, categories=["L", "N", "P", "S", "Cs"]), max_size=8)
_SCHEMES = st.sampled_from(["http", "https", "ftp", "HTTP"])
CALLBACKS = st.builds("{}://{}/{}".format, _SCHEMES, _HOSTS, _PATHS)
# Invalid requests carry no lone surrogate: schemathesis checks each one it makes against the
# schema (jsonschema_rs), which cannot encode one, and the run failed inside the fuzzer itself.
_NO_SURROGATES = st.characters(codec="utf-8", categories=["L", "N", "P", "S"])
_TEXT_HOSTS = _HOSTS.filter(lambda host: not any("\ud800" <= c <= "\udfff" for c in host))
TEXT_CALLBACKS = st.builds(
    "{}://{}/{}".format, _SCHEMES, _TEXT_HOSTS, st.text(_NO_SURROGATES, max_size=8)
)
schemathesis.openapi.format("uri", CALLBACKS)


def _nested(depth: int) -> Any:
    value: Any = "bottom"
    for level in range(depth):
        value = [value] if level % 2 else {"k": value}
    return value


# Messages from flat to far past the codec's depth limit.
MESSAGES = st.one_of(
    st.integers(0, 3 * MAX_DEPTH).map(_nested), st.recursive(st.none(), st.lists, max_leaves=5)
)


@schemathesis.serializer("application/msgpack")
def to_msgpack(ctx: schemathesis.SerializationContext, value: Any) -> bytes:
    # lone surrogates (which JSON strategies make) as the invalid UTF-8 a hostile client sends
    try:
        packed: bytes = msgpack.packb(value, unicode_errors="surrogatepass")
    except OverflowError:  # an int past 64 bits has no msgpack form: send a truncated body,
        packed = b"\xdc\x00\x05\x01"  # the garbage a hostile client would (an array cut short)
    return packed


def make_listeners() -> Listeners:
    listeners = Listeners()

    @listeners.listener
    async def echo(msg: Any, ctx: Context) -> Any:
        await ctx.update_progress(50, "half way")
        return msg

    @listeners.listener(retry_on=(ConnectionError,))
    async def boom(msg: Any, ctx: Context) -> None:
        raise ValueError("no")

    return listeners


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A server of this module's own. GET /queues reads every queue of its server: on the
    session's, after the rest of the suite, each call took seconds, and the workflow run went
    past its time limit in a full run only. It has a replica: a post the fuzzer makes with
    `durable: true` is then acknowledged, as on a deployment that asks for durable writes."""
    pair = Replicated(tmp_path_factory.mktemp("fuzz-redis")).start()
    yield pair.master
    pair.stop()


@pytest.fixture(scope="module")
def service(redis_server: RedisServer) -> Iterator[str]:
    """The service and a worker of its default queue, on a loop in a thread; the queues the
    fuzzer made are purged afterwards."""
    queue = "fuzz-" + uuid.uuid4().hex[:8]
    config = HttpConfig(
        port=0,
        redis_url=redis_server.url,
        queue=queue,
        read_tokens=(READ,),
        write_tokens=(WRITE,),
        keepalive=0.2,
        stream_limit=0.5,  # a stream of a job that never ends returns in time
        shutdown_timeout=1.0,
    )
    with anyio.from_thread.start_blocking_portal() as portal:
        before = set(portal.call(_queue_names, redis_server.url))
        worker = running_worker(make_listeners(), queue=queue, redis_url=redis_server.url)
        with portal.wrap_async_context_manager(worker):
            future, port = portal.start_task(serve_http, config)
            try:
                yield f"http://127.0.0.1:{port}"
            finally:
                future.cancel()
        portal.call(_purge, redis_server.url, before)


async def _queue_names(url: str) -> list[str]:
    async with Client(redis_url=url) as client:
        return await client.store.queue_names()


async def _purge(url: str, keep: set[str]) -> None:
    for name in set(await _queue_names(url)) - keep:
        async with Client(name, redis_url=url) as client:
            await client.purge()


@pytest.fixture
def api_schema(service: str) -> schemathesis.BaseSchema:
    schema = schemathesis.openapi.from_url(f"{service}/openapi.json", headers=AUTH, timeout=10)
    # Unknown query parameters are ignored, as browsers' cache-busters need: not a negative case.
    schema.config.generation.update(allow_extra_parameters=False)
    return schema


def _operations() -> list[Any]:
    """Each operation, with invalid requests too where it has something to get wrong."""
    found = []
    for path, item in openapi_spec()["paths"].items():
        for method, operation in item.items():
            takes = operation.get("parameters") or operation.get("requestBody")
            takes = takes or operation.get("security") != []  # a token to get wrong
            modes = tuple(GenerationMode) if takes else (GenerationMode.POSITIVE,)
            found.append(pytest.param(path, method.upper(), modes, id=f"{method} {path}"))
    return found


@pytest.mark.parametrize(("path", "method", "modes"), _operations())
def test_every_operation_answers_as_described(
    api_schema: schemathesis.BaseSchema, path: str, method: str, modes: tuple[GenerationMode, ...]
) -> None:
    """Valid requests, then invalid ones (bodies, parameters, headers), to each operation."""
    operation = api_schema[path][method]
    try:
        for mode in modes:
            callbacks = CALLBACKS if mode is GenerationMode.POSITIVE else TEXT_CALLBACKS
            schemathesis.openapi.format("uri", callbacks)

            @SETTINGS
            @hypothesis.given(case=operation.as_strategy(mode))
            def check(case: schemathesis.Case[Any]) -> None:
                case.call_and_validate(headers=AUTH, checks=CHECKS, timeout=10)

            check()
    finally:
        schemathesis.openapi.format("uri", CALLBACKS)


def test_workflows_over_real_jobs_answer_as_described(api_schema: schemathesis.BaseSchema) -> None:
    """Post, then read, stream, cancel and requeue the jobs it made (the links of POST /jobs)."""

    class Workflow(api_schema.as_state_machine()):  # type: ignore[misc]
        def get_call_kwargs(self, case: schemathesis.Case[Any]) -> dict[str, Any]:
            return {"headers": AUTH, "timeout": 10}

        def validate_response(
            self, response: schemathesis.Response, case: schemathesis.Case[Any], **kwargs: Any
        ) -> None:
            case.validate_response(response, checks=CHECKS, headers=AUTH)

    # no shrinking: a workflow's steps follow links to the ids the service answered, which
    # differ between runs, so hypothesis cannot replay one to shrink it (FlakyStrategyDefinition
    # hid the failure it had found); the failing steps are reported as they ran
    phases = [hypothesis.Phase.explicit, hypothesis.Phase.reuse, hypothesis.Phase.generate]
    Workflow.run(
        settings=hypothesis.settings(
            SETTINGS, max_examples=40, stateful_step_count=8, phases=phases
        )
    )


@SETTINGS
@hypothesis.given(
    msg=MESSAGES,
    callback=st.none() | CALLBACKS,
    key=st.none() | st.text(st.characters(codec=None, categories=["L", "Cs"]), max_size=4),
)
def test_hostile_posts_are_refused_with_a_4xx_and_every_accepted_job_reads_back(
    service: str, msg: Any, callback: str | None, key: str | None
) -> None:
    """Deep messages, bad callback URLs and keys with lone surrogates (which JSON carries as
    escapes): refused with a 4xx naming the problem, or accepted and then readable."""
    body = json.dumps({"msg": msg, "callback": callback, "key": key}, ensure_ascii=True)
    headers = {**AUTH, "Content-Type": "application/json"}
    posted = requests.post(f"{service}/jobs", data=body, headers=headers, timeout=10)
    assert posted.status_code in (201, 422), (posted.status_code, posted.text[:300])
    if posted.status_code == 422:
        assert posted.json()["detail"]
        return
    url = f"{service}{posted.json()['url']}"
    for tail in ("", "/progress", "/result", "/short_result"):
        answer = requests.get(f"{url}{tail}", headers=AUTH, timeout=10)
        assert answer.status_code < 500, (tail, answer.status_code, answer.text[:300])
