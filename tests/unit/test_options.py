"""Every face of a post takes exactly the options of aqueue/_options.py, in their ranges: the
typed Python keywords, the POST /jobs body and its OpenAPI schema, and `aqueue post`'s flags.
A face that gains or loses an option, or a bound, fails here."""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import re
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, get_type_hints

import pytest

from aqueue import Client, MessageError, RetryPolicy, SyncClient
from aqueue._checks import MOST_JOB_ID_CHARS, check_job_id, check_key
from aqueue._http.jobs import _POST_FIELDS, _post_options
from aqueue._http.openapi import openapi_spec
from aqueue._ops import cli
from aqueue._options import OPTIONS, Option, PostKwargs, PostOptions, post_options
from aqueue._redis import records
from aqueue.listeners import Context, SyncContext

SHARED = [o for o in OPTIONS if o.shared]
[KEY] = [o for o in OPTIONS if not o.shared]


def test_the_typed_keywords_are_the_shared_options_with_their_types() -> None:
    written = {name: hint.__forward_arg__ for name, hint in PostKwargs.__annotations__.items()}
    assert written == {o.name: o.type for o in SHARED}
    assert get_type_hints(PostKwargs)  # and each of them names a real type
    assert not PostKwargs.__total__  # each may be left out: then its default


def test_a_checked_post_holds_each_shared_option_with_its_default() -> None:
    given = [f for f in dataclasses.fields(PostOptions) if f.init]
    assert [(f.name, f.type, f.default) for f in given] == [
        (o.name, o.type, o.default) for o in SHARED
    ]


FACES: list[Callable[..., Any]] = [
    Client.post, SyncClient.post, Context.post, SyncContext.post,
    Client.post_many, SyncClient.post_many,
]  # fmt: skip


@pytest.mark.parametrize("method", FACES, ids=lambda m: m.__qualname__)
def test_every_python_post_takes_the_typed_keywords_and_each_job_s_key(
    method: Callable[..., Any],
) -> None:
    *_, key, options = inspect.signature(method).parameters.values()
    assert (options.kind, options.annotation) == (options.VAR_KEYWORD, "Unpack[PostKwargs]")
    many = method.__name__ == "post_many"
    assert key.name == ("keys" if many else KEY.name)
    assert key.annotation == ("Sequence[str] | None" if many else KEY.type)
    assert (key.kind, key.default) == (key.KEYWORD_ONLY, None)


def test_the_http_body_takes_the_http_options_and_its_schema_says_so() -> None:
    http = [o.name for o in OPTIONS if o.http]
    assert list(_POST_FIELDS) == ["msg", "queue", *http]
    schema = openapi_spec()["components"]["schemas"]["PostJob"]
    assert list(schema["properties"]) == list(_POST_FIELDS)


def _bounds(schema: dict[str, Any]) -> tuple[Any, ...]:
    """What a schema says of an option's range: (least, most, least refused, pattern)."""
    if "oneOf" in schema:  # a number or an ISO time / a retry policy: the number says it
        schema = schema["oneOf"][0]
    if schema["type"] == "array":
        return None, None, False, schema["items"]["pattern"]
    if schema["type"] == "string":
        return schema.get("minLength"), schema.get("maxLength"), False, None
    if schema["type"] == "boolean":  # a switch: no range
        return None, None, False, None
    return schema["minimum"], schema["maximum"], schema.get("exclusiveMinimum", False), None


@pytest.mark.parametrize("option", [o for o in OPTIONS if o.http], ids=lambda o: o.name)
def test_the_schema_states_each_option_s_range_and_nullability(option: Option) -> None:
    schema = openapi_spec()["components"]["schemas"]["PostJob"]["properties"][option.name]
    assert _bounds(schema) == (option.least, option.most, option.above, option.pattern)
    assert schema.get("nullable", False) == (option.default is None)
    assert schema["description"] == option.help


def test_the_listener_pattern_is_the_one_the_records_check() -> None:
    [functions] = [o for o in OPTIONS if o.name == "functions"]
    assert functions.pattern == records._LISTENER_NAME.pattern


def _post_parser() -> argparse.ArgumentParser:
    [commands] = [a for a in cli._parser()._actions if isinstance(a, argparse._SubParsersAction)]
    post: argparse.ArgumentParser = commands.choices["post"]
    return post


def test_the_command_line_flags_are_the_options_that_have_one() -> None:
    flags = {
        a.option_strings[0]: (a.dest, a.default, a.help)
        for a in _post_parser()._actions
        if a.dest in {o.name for o in OPTIONS}
    }
    assert flags == {f"--{o.flag}": (o.name, o.default, o.help) for o in OPTIONS if o.flag}


# -- each face, asked whether it takes one value of one option -------------------------------


def _python(option: Option, value: Any) -> None:
    if option.shared:
        post_options({option.name: value})
    else:
        check_key(value)


def _http(option: Option, value: Any) -> None:
    _, _, key, options = _post_options({"msg": 1, option.name: value})
    post_options(options)  # what the client then checks
    if key is not None:
        check_key(key)


def _command_line(option: Option, value: Any) -> None:
    """A number out of range is a usage error, before anything connects (test_cli.py says
    which); a text is checked where it is used."""
    try:
        args = _post_parser().parse_args(["{}", f"--{option.flag}", str(value)])
    except SystemExit:
        raise MessageError("a usage error") from None
    if option.kind == "text":
        _python(option, getattr(args, option.name))


def _takes(face: Callable[[Option, Any], None], option: Option, value: Any) -> bool:
    try:
        face(option, value)
    except ValueError:  # MessageError, ConfigError
        return False
    return True


def _faces(option: Option) -> list[Callable[[Option, Any], None]]:
    return [_python] + [_http] * option.http + [_command_line] * (option.flag is not None)


RANGED = [o for o in OPTIONS if o.most is not None]


def test_the_ranged_options_are_found() -> None:
    assert {o.name for o in RANGED} == {"priority", "delay", "at", "timeout", "retry", "key", "ttl"}


@pytest.mark.parametrize("option", RANGED, ids=lambda o: o.name)
def test_every_face_takes_an_option_up_to_its_bounds_and_no_further(option: Option) -> None:
    assert option.least is not None and option.most is not None
    least, most = option.least, option.most
    inside: list[Any]
    outside: list[Any]
    if option.kind == "text":  # a length
        inside = ["k" * int(least), "k" * int(most)]
        outside = ["k" * int(least - 1), "k" * int(most + 1)]
    else:
        step = 1 if option.kind in ("whole", "retry") else 0.5
        inside, outside = [most], [most + step, least - step]
        (outside if option.above else inside).append(least)
    for face in _faces(option):
        for value in inside:
            assert _takes(face, option, value), (face.__name__, value)
        for value in outside:
            assert not _takes(face, option, value), (face.__name__, value)


@pytest.mark.parametrize("face", [_python, _http])
def test_listener_names_are_taken_only_as_the_pattern_says(
    face: Callable[[Option, Any], None],
) -> None:
    [functions] = [o for o in OPTIONS if o.name == "functions"]
    assert _takes(face, functions, ["train", "a" * 200])
    assert not _takes(face, functions, ["a" * 201])
    assert not _takes(face, functions, ["no spaces"])


# -- PostOptions -----------------------------------------------------------------------------


def test_a_checked_post_is_a_frozen_value_remembered_by_its_options() -> None:
    options = post_options({"functions": ["a", "b"], "retry": 2, "delay": 1.5})
    assert options.functions == ("a", "b")
    assert options.policy == RetryPolicy(retries=2)
    assert (options.delay_ms, options.at_ms) == (1500, 0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.priority = 5  # type: ignore[misc]
    assert post_options({"functions": ["a", "b"], "retry": 2, "delay": 1.5}) is options
    assert post_options({"priority": 1}).priority == 1
    with pytest.raises(MessageError, match="priority"):  # True is no priority, remembered or not
        post_options({"priority": True})


def test_a_checked_post_reads_its_time_and_policy() -> None:
    policy = RetryPolicy(retries=0)
    at = datetime(2030, 1, 1, tzinfo=UTC)
    options = PostOptions(at=at, retry=policy, callback="https://example.test/done")
    assert (options.delay_ms, options.at_ms) == (0, int(at.timestamp() * 1000))
    assert options.policy is policy
    assert PostOptions().policy.retries == 3 and PostOptions(at=5).at_ms == 5000


@pytest.mark.parametrize(
    ("options", "complaint"),
    [
        ({"delay": 1, "at": 2}, "not both"),
        ({"at": datetime(2030, 1, 1)}, "timezone-aware"),
        ({"at": "tomorrow"}, "epoch seconds"),
        ({"functions": {"a": 1}}, "list of listener names"),  # unhashable: checked, not kept
        ({"callback_method": "PUT"}, "callback_method"),
        ({"ttl": True}, "ttl must be from 1"),
    ],
)
def test_a_bad_option_is_refused_naming_it(options: dict[str, Any], complaint: str) -> None:
    with pytest.raises(MessageError, match=complaint):
        post_options(options)


def test_an_unknown_option_is_a_type_error_as_for_any_call() -> None:
    with pytest.raises(TypeError, match="tries"):
        post_options({"tries": 2})


@pytest.mark.parametrize(
    ("check", "text", "complaint"),
    [
        (check_job_id, "j" * (MOST_JOB_ID_CHARS + 1), "at most 200 characters"),
        (check_job_id, 7, "job id must be a non-empty string"),
        (check_key, "", "key must be a non-empty string"),
        (check_key, "\udc80", "lone surrogate"),
    ],
)
def test_ids_and_keys_are_texts_of_bounded_length(
    check: Callable[[Any], str], text: Any, complaint: str
) -> None:
    with pytest.raises(MessageError, match=complaint):
        check(text)
    assert check("j" * MOST_JOB_ID_CHARS) == "j" * MOST_JOB_ID_CHARS


def test_the_readme_s_client_table_names_every_option() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    [row] = re.findall(r"^\| `post\(msg, \*, ([^)]*)\)` \|", readme, re.MULTILINE)
    assert row.split(", ") == [KEY.name, *(o.name for o in SHARED)]


def test_the_post_docstring_says_what_each_option_does() -> None:
    unsaid = [o.name for o in OPTIONS if f"`{o.name}`" not in (Client.post.__doc__ or "")]
    assert unsaid == []
