"""Every whole-number setting has an upper bound, the same wherever it is given, named in its
error: `--concurrency 1000000000` or `prefetch = 10**18` took all the memory before the worker
served a job (and then it ignored SIGTERM)."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from aqueue import ClientConfig, ConfigError, RetryPolicy, WorkerConfig
from aqueue._checks import WHOLE, whole_range
from aqueue._http.base import HttpConfig
from aqueue._ops.settings import SETTINGS, resolve
from aqueue._services.callbacks import CallbackConfig

# each configuration object, and the prefix its fields carry in WHOLE (and in the settings)
OBJECTS: list[tuple[type[Any], str]] = [
    (WorkerConfig, ""),
    (ClientConfig, ""),
    (CallbackConfig, "callback_"),
    (RetryPolicy, ""),
    (HttpConfig, "http_"),
]


def _whole_fields() -> list[tuple[type[Any], str, str]]:
    """(object, field, its name in WHOLE) for every int field of the configuration objects."""
    found = []
    for kind, prefix in OBJECTS:
        for f in dataclasses.fields(kind):
            if type(f.default) is int and f.name != "port":  # 0..65535, its own check
                found.append((kind, f.name, prefix + f.name))
    return found


def _whole_settings() -> list[str]:
    """The settings (TOML, AQUEUE_*, flags) that take a whole number (not a size such as
    max_result_bytes's 64MiB: tests/integration/test_large_results.py checks its bounds)."""
    names = []
    for name, parse in SETTINGS.items():
        try:
            value = parse("5")
        except ValueError:
            continue
        try:
            parse("5MiB")
            continue
        except ValueError:
            pass
        if type(value) is int:
            names.append(name)
    return names


def test_the_whole_number_settings_are_found() -> None:  # the lists below are not empty
    assert {"concurrency", "prefetch", "callback_attempts"} <= set(_whole_settings())
    assert ("concurrency", "claim_batch", "prefetch", "max_result_bytes", "replicas") == tuple(
        f for kind, f, _ in _whole_fields() if kind is WorkerConfig
    )


@pytest.mark.parametrize(("kind", "field", "name"), _whole_fields())
def test_every_whole_number_field_refuses_a_value_past_its_bound(
    kind: type[Any], field: str, name: str
) -> None:
    least, most = WHOLE[name]  # a KeyError here: a new field with no bound
    assert kind(**{field: most})  # the bound itself is allowed
    for bad in (most + 1, 10**18, least - 1):
        with pytest.raises(ConfigError, match=f"{whole_range(name)}, got {bad}"):
            kind(**{field: bad})


@pytest.mark.parametrize("name", _whole_settings())
def test_every_whole_number_setting_refuses_a_value_past_its_bound_naming_it_and_its_source(
    name: str,
) -> None:
    least, most = WHOLE[name]
    assert resolve(flags={name: str(most)})  # the bound itself is allowed
    for bad in (most + 1, 10**18, least - 1):
        with pytest.raises(ConfigError) as refused:
            resolve({name: bad}, "gpu0.toml")
        assert str(refused.value) == (
            f"{name} = {bad!r} in gpu0.toml is invalid: must be {whole_range(name)}"
        )
        environ = {f"AQUEUE_{name.upper()}": str(bad)}
        with pytest.raises(ConfigError, match=r"in the environment \(AQUEUE_\*\) is invalid"):
            resolve(environ=environ)
