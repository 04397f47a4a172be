"""The OpenAPI 3.0 description of the HTTP service (`_http*.py`), served at GET /openapi.json.

Written as data; tests/integration/test_http_fuzz.py fuzzes the running service against it.
"""

from __future__ import annotations

import copy
from typing import Any

from aqueue._checks import DEAD_LETTER_OFFSETS, DEAD_LETTER_PAGE, QUEUE_NAME
from aqueue._options import OPTIONS, Option
from aqueue.job import JobStatus

_STATUSES = [s.value for s in JobStatus]
_PENDING = [JobStatus.QUEUED.value, JobStatus.SCHEDULED.value, JobStatus.ACTIVE.value]
_ENDED = [JobStatus.FAILED.value, JobStatus.DEAD.value, JobStatus.CANCELLED.value]


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {**schema, "nullable": True}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _error(description: str, schema: str = "Error") -> dict[str, Any]:
    return _json(_ref(schema), description)


_STRING = {"type": "string"}
_NULLABLE_STRING = _nullable(_STRING)
_INT = {"type": "integer"}
_SECONDS = {"type": "number", "minimum": 0}
_ANY: dict[str, Any] = {
    "description": 'any value; bytes appear as {"base64": ...}; NaN and ±Infinity as strings'
}


def _page(bounds: tuple[int, int]) -> dict[str, Any]:
    return {"type": "integer", "minimum": bounds[0], "maximum": bounds[1]}


_RETRY = next(option for option in OPTIONS if option.name == "retry")


def _bounded(kind: str, option: Option) -> dict[str, Any]:
    """A number schema with the option's range (OpenAPI 3.0: exclusiveMinimum is a flag)."""
    schema = {"type": kind, "minimum": option.least, "maximum": option.most}
    return {**schema, "exclusiveMinimum": True} if option.above else schema


def _option(option: Option) -> dict[str, Any]:
    """A post option's schema, made from its definition (aqueue/_options.py)."""
    schema: dict[str, Any]
    match option.kind:
        case "listeners":
            schema = {"type": "array", "items": {"type": "string", "pattern": option.pattern}}
        case "url":
            schema = {**_STRING, "format": "uri"}
        case "method":
            schema = {**_STRING, "enum": ["GET", "POST"]}
        case "whole":
            schema = _bounded("integer", option)
        case "seconds":
            schema = _bounded("number", option)
        case "time":
            schema = {"oneOf": [_bounded("number", option), {**_STRING, "format": "date-time"}]}
        case "retry":
            schema = {"oneOf": [_bounded("integer", option), _ref("RetryPolicy")]}
        case "text":
            schema = {**_STRING, "minLength": option.least, "maxLength": option.most}
        case "switch":
            schema = {"type": "boolean", "default": option.default}
    schema["description"] = option.help
    return schema if option.default is not None else _nullable(schema)


_SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["error", "detail"],
        "properties": {
            "error": {**_STRING, "description": "a short code, e.g. job_not_found, invalid"},
            "detail": {**_STRING, "description": "what went wrong, in a sentence"},
        },
        "additionalProperties": True,
    },
    "NotDurableError": {
        "allOf": [
            _ref("Error"),
            {
                "type": "object",
                "description": "with error `not_durable`, what was met",
                "properties": {
                    "id": {**_STRING, "description": "the job: posted all the same"},
                    "queue": _STRING,
                    "replicas": {**_INT, "description": "the replicas asked for"},
                    "acknowledged": {**_INT, "description": "the replicas that acknowledged"},
                    "local": {"type": "boolean", "description": "the local fsync asked for"},
                    "synced": {"type": "boolean", "description": "the local fsync confirmed"},
                },
            },
        ]
    },
    "JobFailedError": {
        "allOf": [
            _ref("Error"),
            {
                "type": "object",
                "required": ["id", "status"],
                "properties": {
                    "id": _STRING,
                    "status": {"type": "string", "enum": _ENDED},
                    "error_type": _NULLABLE_STRING,
                    "error_message": _NULLABLE_STRING,
                    "traceback": _NULLABLE_STRING,
                },
            },
        ]
    },
    "Progress": {
        "type": "object",
        "required": ["value", "message"],
        "properties": {"value": _ANY, "message": _NULLABLE_STRING},
    },
    "RetryPolicy": {
        "type": "object",
        "additionalProperties": False,
        "description": "exponential backoff with full jitter, in seconds",
        "properties": {
            "retries": _bounded("integer", _RETRY),
            "delay": _SECONDS,
            "backoff": {"type": "number", "minimum": 1},
            "max_delay": _SECONDS,
            "jitter": {"type": "boolean"},
        },
    },
    "PostJob": {
        "type": "object",
        "required": ["msg"],
        "additionalProperties": False,
        "properties": {
            "msg": {**_ANY, "description": "the message: any JSON value (msgpack: any value)"},
            "queue": {**_STRING, "pattern": QUEUE_NAME, "description": "default: the service's"},
            **{option.name: _option(option) for option in OPTIONS if option.http},
        },
    },
    "JobCreated": {
        "type": "object",
        "required": ["id", "queue", "url"],
        "properties": {"id": _STRING, "queue": _STRING, "url": _STRING},
    },
    "Pending": {
        "type": "object",
        "required": ["id", "queue", "status"],
        "properties": {
            "id": _STRING,
            "queue": _STRING,
            "status": {"type": "string", "enum": _PENDING},
        },
    },
    "Changed": {
        "type": "object",
        "required": ["id", "queue", "status", "was"],
        "properties": {
            "id": _STRING,
            "queue": _STRING,
            "status": {"type": "string", "enum": _STATUSES},
            "was": {"type": "string", "enum": _STATUSES, "description": "the status before"},
        },
    },
    "Trace": {
        "type": "object",
        "required": ["root", "queue", "stages", "jobs", "truncated", "stopped_at"],
        "properties": {
            "root": _STRING,
            "queue": _STRING,
            "jobs": {**_INT, "description": "jobs followed (at most 10,000)"},
            "truncated": {"type": "boolean"},
            "stopped_at": {"type": "array", "items": _STRING, "description": "stages to look at"},
            "stages": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["queue", "counts", "routed", "stopped", "live_workers"],
                    "properties": {
                        "queue": _STRING,
                        "counts": {"type": "object", "additionalProperties": _INT},
                        "routed": {**_INT, "description": "errors routed here (on_error)"},
                        "stopped": {"type": "array", "items": {"type": "object"}},
                        "live_workers": _INT,
                        "attention": _nullable(_STRING),
                    },
                },
            },
        },
    },
    "ProgressAnswer": {
        "type": "object",
        "required": ["id", "queue", "progress"],
        "properties": {
            "id": _STRING,
            "queue": _STRING,
            "progress": _nullable({"allOf": [_ref("Progress")]}),
        },
    },
    "Job": {
        "type": "object",
        "required": ["id", "queue", "status", "functions", "attempt", "posted_at"],
        "properties": {
            "id": _STRING,
            "queue": _STRING,
            "status": {"type": "string", "enum": _STATUSES},
            "msg": _ANY,
            "functions": {"type": "array", "items": _STRING},
            "priority": _INT,
            "attempt": _INT,
            "max_attempts": _INT,
            "timeout": _nullable({"type": "number"}),
            "callback": _NULLABLE_STRING,
            "key": _NULLABLE_STRING,
            "posted_at": {"type": "number", "description": "epoch seconds (Redis's clock)"},
            "started_at": _nullable({"type": "number"}),
            "finished_at": _nullable({"type": "number"}),
            "due_at": _nullable({"type": "number"}),
            "worker": _NULLABLE_STRING,
            "progress": _nullable({"allOf": [_ref("Progress")]}),
            "short_result": _NULLABLE_STRING,
            "result": {
                **_ANY,
                "description": "null for a result over 4 MiB: GET /jobs/{id}/result for it",
            },
            "result_bytes": _nullable({**_INT, "description": "the stored result's size"}),
            "error_type": _NULLABLE_STRING,
            "error_message": _NULLABLE_STRING,
            "traceback": _NULLABLE_STRING,
            "reason": _nullable({**_STRING, "description": "why it waits, or why it ended"}),
            "waiting_for": {"type": "array", "items": _STRING},
            "unreadable": {
                "type": "object",
                "additionalProperties": _STRING,
                "description": "stored fields this build could not read, and why (each reads "
                "as its default; msg, result and progress values as their raw bytes)",
            },
        },
    },
    "QueueStatus": {
        "type": "object",
        "description": "the numbers of `aqueue status`",
        "required": ["queue", "queued", "scheduled", "active", "dead", "stalled", "attention"],
        "properties": {
            "queue": _STRING,
            "queued": _INT,
            "scheduled": _INT,
            "active": _INT,
            "dead": _INT,
            "stalled": {**_INT, "description": "lapsed leases not yet reaped"},
            "node": {**_STRING, "description": "host:port of the Redis node holding the queue"},
            "outputs": {
                "type": "array",
                "items": _STRING,
                "description": "queues its live workers' listeners post to (the pipeline)",
            },
            "oldest_queued_age": _nullable({"type": "number"}),
            "jobs_per_second": {"type": "number", "description": "finished, last minute"},
            "failed_last_minute": _INT,
            "dead_last_minute": _INT,
            "totals": {"type": "object", "additionalProperties": _INT},
            "workers": {"type": "array", "items": {"type": "object"}},
            "attention": {
                "type": "array",
                "items": _STRING,
                "description": "why someone should look, if anyone should",
            },
        },
    },
    "QueueList": {
        "type": "object",
        "required": ["queues", "healthy"],
        "properties": {
            "queues": {"type": "array", "items": _ref("QueueStatus")},
            "healthy": {"type": "boolean"},
        },
    },
    "DeadLetters": {
        "type": "object",
        "required": ["queue", "offset", "jobs"],
        "properties": {
            "queue": _STRING,
            "offset": _INT,
            "jobs": {"type": "array", "items": _ref("Job")},
        },
    },
    "Event": {
        "type": "object",
        "description": "one server-sent event; `data` is JSON",
        "properties": {
            "id": {**_STRING, "pattern": "^[0-9]+:[a-z]+$"},
            "event": {"type": "string", "enum": ["status", "progress", "outcome", "error"]},
            "data": _STRING,
            "retry": _INT,
        },
    },
    "Health": {"type": "object", "required": ["status"], "properties": {"status": _STRING}},
}

_RESPONSES = {
    "BadRequest": _error("the body is not valid JSON or msgpack"),
    "Unauthorized": {
        **_error("no token, or not a valid one"),
        "headers": {"WWW-Authenticate": {"schema": _STRING}},
    },
    "Forbidden": _error("a read-only token cannot change anything"),
    "NotFound": _error("no such job in that queue (never posted, or expired)"),
    "Invalid": _error("a wrong value: a field, a parameter, a queue name, an unknown listener"),
    "TooLarge": _error("the body is over the service's limit"),
    "Unavailable": {
        **_error("Redis cannot be reached"),
        "headers": {"Retry-After": {"schema": _STRING}},
    },
    "JobFailed": _error(
        "the job failed, was dead-lettered or cancelled: its error", "JobFailedError"
    ),
    "Pending": _json(_ref("Pending"), "the job has not finished: its status"),
}

_QUEUE_PARAMETER = {
    "name": "queue",
    "in": "query",
    "required": False,
    "description": "the job's queue; default: the service's",
    "schema": {**_STRING, "pattern": QUEUE_NAME},
}
_ID = {"name": "id", "in": "path", "required": True, "schema": _STRING}
_NAME_PARAMETER = {
    "name": "name",
    "in": "path",
    "required": True,
    "schema": {**_STRING, "pattern": QUEUE_NAME},
}


# a bytes value as it is, any other as JSON (GET /jobs/{id}/result, GET /data/{key})
_BYTES_OR_JSON = {
    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
    "application/json": {"schema": _ANY},
}


def _answers(*codes: str, **more: Any) -> dict[str, Any]:
    common = {
        "400": "BadRequest", "401": "Unauthorized", "403": "Forbidden", "404": "NotFound",
        "413": "TooLarge", "422": "Invalid", "503": "Unavailable", "409": "JobFailed",
        "202": "Pending",
    }  # fmt: skip
    out: dict[str, Any] = {c: {"$ref": f"#/components/responses/{common[c]}"} for c in codes}
    out.update(more)
    return out


def _job_get(summary: str, ok: dict[str, Any], *codes: str, **more: Any) -> dict[str, Any]:
    return {
        "summary": summary,
        "parameters": [_ID, _QUEUE_PARAMETER],
        "responses": _answers("401", "404", "422", "503", *codes, **{"200": ok, **more}),
    }


_PATHS: dict[str, Any] = {
    "/jobs": {
        "post": {
            "summary": "Post a job",
            "description": "JSON, or msgpack for binary messages. A listener named in "
            "`functions` must be known (to a live worker of the queue, or to the service's "
            "configuration) once any is.",
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {"schema": _ref("PostJob")},
                    "application/msgpack": {"schema": _ref("PostJob")},
                },
            },
            "responses": _answers(
                "400",
                "401",
                "403",
                "413",
                "422",
                "503",
                **{
                    "201": {
                        **_json(_ref("JobCreated"), "posted"),
                        "headers": {"Location": {"schema": _STRING}},
                    },
                    "415": _error("a body neither JSON nor msgpack"),
                    "503": {
                        "description": "Redis cannot be reached (error `redis_unavailable`, "
                        "with Retry-After), or a durable post was made but fewer replicas (or "
                        "no local fsync) acknowledged it in time than asked (error "
                        "`not_durable`: the job stands, not rolled back; `id` names it)",
                        "headers": {"Retry-After": {"schema": _STRING}},
                        "content": {"application/json": {"schema": _ref("NotDurableError")}},
                    },
                },
            ),
        }
    },
    "/jobs/{id}": {
        "get": _job_get("The job's whole record", _json(_ref("Job"), "the record")),
        "delete": {
            "summary": "Cancel a job: a queued one never runs, a running one is cancelled",
            "description": "The record stays, with status `cancelled`, until it expires.",
            "parameters": [_ID, _QUEUE_PARAMETER],
            "responses": _answers(
                "401",
                "403",
                "404",
                "422",
                "503",
                **{
                    "200": _json(_ref("Changed"), "cancelled"),
                    "409": _error("the job had already finished"),
                },
            ),
        },
    },
    "/jobs/{id}/progress": {
        "get": _job_get("The latest progress", _json(_ref("ProgressAnswer"), "null if none yet"))
    },
    "/jobs/{id}/trace": {
        "get": _job_get(
            "Where did it stop? The pipeline's jobs from this root, stage by stage",
            _json(_ref("Trace"), "per stage, its jobs by status and what stopped"),
        )
    },
    "/jobs/{id}/short_result": {
        "get": _job_get(
            "The short (text) result",
            {
                "description": "the short result",
                "content": {"text/plain": {"schema": _STRING}},
            },
            "202",
            "409",
            **{"204": {"description": "the job completed without a short result"}},
        )
    },
    "/jobs/{id}/result": {
        "get": _job_get(
            "The result",
            {
                "description": "the exact bytes of a binary result, JSON for any other value",
                "content": _BYTES_OR_JSON,
            },
            "202",
            "409",
        )
    },
    "/jobs/{id}/result.{ext}": {
        "get": {
            "summary": "The result with the extension's content type (.png, .wav, .json, …)",
            "description": "A binary result's exact bytes (a text result's UTF-8) with the "
            "content type of the extension (.npy and unknown ones: application/octet-stream). "
            ".json serves any value as JSON.",
            "parameters": [
                _ID,
                {
                    "name": "ext",
                    "in": "path",
                    "required": True,
                    "schema": {**_STRING, "pattern": "^[A-Za-z0-9]{1,16}$"},
                },
                _QUEUE_PARAMETER,
            ],
            "responses": _answers(
                "202",
                "401",
                "404",
                "409",
                "422",
                "503",
                **{
                    "200": {
                        "description": "the result",
                        "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}},
                    },
                    "406": _error("the result is neither bytes nor text; use /result"),
                },
            ),
        }
    },
    "/jobs/{id}/events": {
        "get": {
            "summary": "Server-Sent Events: progress and status as they happen, then the outcome",
            "description": "Events `progress` {id, value, message}, `status` {id, status}, and "
            "last `outcome` {id, status, short_result | error_type, error_message}; each with "
            "an id `<n>:<status>`, and a `: keep-alive` comment while idle. Progress is a "
            "level, not a log: with Last-Event-ID the stream resumes from the current state; "
            "after the outcome it answers 204, which stops an EventSource reconnecting. A "
            "browser's EventSource cannot send headers: it may pass `access_token`.",
            "parameters": [
                _ID,
                _QUEUE_PARAMETER,
                {"name": "Last-Event-ID", "in": "header", "required": False, "schema": _STRING},
                {"name": "access_token", "in": "query", "required": False, "schema": _STRING},
            ],
            "responses": _answers(
                "401",
                "404",
                "422",
                "503",
                **{
                    "200": {
                        "description": "the event stream",
                        "content": {"text/event-stream": {"schema": _ref("Event")}},
                    },
                    "204": {"description": "the outcome was already sent"},
                },
            ),
        }
    },
    "/data/{key}": {
        "get": {
            "summary": "Data stored with store_data (a listener's ctx, or a client)",
            "description": "Bytes are served as they are (application/octet-stream), streamed; "
            "any other value as JSON.",
            "parameters": [
                {"name": "key", "in": "path", "required": True, "schema": _STRING},
                {**_QUEUE_PARAMETER, "description": "the data's queue; default: the service's"},
            ],
            "responses": _answers(
                "401",
                "404",
                "422",
                "503",
                **{"200": {"description": "the data", "content": _BYTES_OR_JSON}},
            ),
        }
    },
    "/queues": {
        "get": {
            "summary": "Every queue's numbers, as `aqueue status --json`",
            "responses": _answers("401", "503", **{"200": _json(_ref("QueueList"), "queues")}),
        }
    },
    "/queues/{name}": {
        "get": {
            "summary": "A queue's numbers, as `aqueue status NAME`",
            "parameters": [_NAME_PARAMETER],
            "responses": _answers(
                "401", "422", "503", **{"200": _json(_ref("QueueStatus"), "the queue")}
            ),
        }
    },
    "/queues/{name}/dead": {
        "get": {
            "summary": "The dead-letter queue, oldest first",
            "parameters": [
                _NAME_PARAMETER,
                {
                    "name": "offset",
                    "in": "query",
                    "required": False,
                    "schema": {**_page(DEAD_LETTER_OFFSETS), "default": 0},
                },
                {
                    "name": "count",
                    "in": "query",
                    "required": False,
                    "schema": {**_page(DEAD_LETTER_PAGE), "default": 100},
                },
            ],
            "responses": _answers(
                "401", "422", "503", **{"200": _json(_ref("DeadLetters"), "dead letters")}
            ),
        }
    },
    "/queues/{name}/dead/{id}/requeue": {
        "post": {
            "summary": "Requeue a dead, failed or cancelled job with a fresh retry budget",
            "parameters": [_NAME_PARAMETER, _ID],
            "responses": _answers(
                "401",
                "403",
                "404",
                "422",
                "503",
                **{
                    "200": _json(_ref("Changed"), "requeued"),
                    "409": _error("the job is not dead, failed or cancelled"),
                    "415": _error("no JSON or msgpack Content-Type, to a service without tokens"),
                },
            ),
        }
    },
    "/healthz": {
        "get": {
            "summary": "The process is up",
            "security": [],
            "responses": {"200": _json(_ref("Health"), "up")},
        }
    },
    "/readyz": {
        "get": {
            "summary": "Redis answers PING",
            "security": [],
            "responses": {
                "200": _json(_ref("Health"), "ready"),
                "503": {"$ref": "#/components/responses/Unavailable"},
            },
        }
    },
    "/openapi.json": {
        "get": {
            "summary": "This description",
            "responses": _answers("401", **{"200": _json({"type": "object"}, "OpenAPI 3.0")}),
        }
    },
}


_OPERATION_IDS = {
    ("/jobs", "post"): "postJob",
    ("/jobs/{id}", "get"): "getJob",
    ("/jobs/{id}", "delete"): "cancelJob",
    ("/jobs/{id}/progress", "get"): "getProgress",
    ("/jobs/{id}/trace", "get"): "getTrace",
    ("/jobs/{id}/short_result", "get"): "getShortResult",
    ("/jobs/{id}/result", "get"): "getResult",
    ("/jobs/{id}/result.{ext}", "get"): "getResultAs",
    ("/jobs/{id}/events", "get"): "streamEvents",
    ("/data/{key}", "get"): "getData",
    ("/queues", "get"): "listQueues",
    ("/queues/{name}", "get"): "getQueue",
    ("/queues/{name}/dead", "get"): "listDeadLetters",
    ("/queues/{name}/dead/{id}/requeue", "post"): "requeueJob",
    ("/healthz", "get"): "healthz",
    ("/readyz", "get"): "readyz",
    ("/openapi.json", "get"): "openapi",
}
_JOB = {"id": "$response.body#/id", "queue": "$response.body#/queue"}
_POSTED_LINKS = {
    **{
        name: {"operationId": name, "parameters": _JOB}
        for name in ("getJob", "cancelJob", "getProgress", "getShortResult", "getResult")
    },
    **{name: {"operationId": name, "parameters": _JOB} for name in ("getResultAs", "streamEvents")},
    "getQueue": {"operationId": "getQueue", "parameters": {"name": "$response.body#/queue"}},
    "requeueJob": {
        "operationId": "requeueJob",
        "parameters": {"name": "$response.body#/queue", "id": "$response.body#/id"},
    },
}


def openapi_spec() -> dict[str, Any]:
    """The whole description, a fresh copy."""
    paths = copy.deepcopy(_PATHS)
    for (path, method), operation_id in _OPERATION_IDS.items():
        paths[path][method]["operationId"] = operation_id
    paths["/jobs"]["post"]["responses"]["201"]["links"] = copy.deepcopy(_POSTED_LINKS)
    return copy.deepcopy(
        {
            "openapi": "3.0.3",
            "info": {
                "title": "aqueue",
                "version": "1",
                "description": "Post jobs, read them, stream their progress, manage queues. "
                "Every error is JSON {error, detail}. Bearer tokens: read-only ones may GET, "
                "read-write ones may also POST and DELETE; a service on loopback without "
                "tokens is open, to requests whose Host is its own (127.0.0.1, localhost or "
                "[::1], with its port; else 421) and POSTs with a JSON or msgpack Content-Type, "
                "even without a body (else 415), which a page of another site cannot send.",
            },
            "paths": paths,
            "components": {
                "schemas": _SCHEMAS,
                "responses": _RESPONSES,
                "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            },
            "security": [{"bearer": []}],
        }
    )
