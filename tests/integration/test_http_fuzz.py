"""A property-based fuzz of the running HTTP service against its own /openapi.json: whatever
schemathesis sends, no answer is a 5xx and every answer matches the description.

The service, a worker and Redis are real; the service runs on a loop of its own in a thread,
since schemathesis calls it synchronously.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import anyio.from_thread
import hypothesis
import msgpack
import pytest
import schemathesis
from hypothesis import HealthCheck
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
from aqueue._http import HttpConfig, serve_http
from aqueue._openapi import openapi_spec
from aqueue.testing import RedisServer, running_worker

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


@schemathesis.serializer("application/msgpack")
def to_msgpack(ctx: schemathesis.SerializationContext, value: Any) -> bytes:
    packed: bytes = msgpack.packb(value)
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
    for mode in modes:

        @SETTINGS
        @hypothesis.given(case=operation.as_strategy(mode))
        def check(case: schemathesis.Case[Any]) -> None:
            case.call_and_validate(headers=AUTH, checks=CHECKS, timeout=10)

        check()


def test_workflows_over_real_jobs_answer_as_described(api_schema: schemathesis.BaseSchema) -> None:
    """Post, then read, stream, cancel and requeue the jobs it made (the links of POST /jobs)."""

    class Workflow(api_schema.as_state_machine()):  # type: ignore[misc]
        def get_call_kwargs(self, case: schemathesis.Case[Any]) -> dict[str, Any]:
            return {"headers": AUTH, "timeout": 10}

        def validate_response(
            self, response: schemathesis.Response, case: schemathesis.Case[Any], **kwargs: Any
        ) -> None:
            case.validate_response(response, checks=CHECKS, headers=AUTH)

    Workflow.run(settings=hypothesis.settings(SETTINGS, max_examples=40, stateful_step_count=8))
