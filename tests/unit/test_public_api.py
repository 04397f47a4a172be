"""The public surface is exactly `aqueue.__all__`, and the sync face mirrors the async client."""

from __future__ import annotations

import inspect

import aqueue
from aqueue import Client, SyncClient


def test_all_names_exist_and_every_public_name_is_listed() -> None:
    for name in aqueue.__all__:
        assert hasattr(aqueue, name), name
    public = {
        n for n, v in vars(aqueue).items() if not n.startswith("_") and not inspect.ismodule(v)
    }
    assert public == set(aqueue.__all__)


def _methods(cls: type) -> dict[str, inspect.Signature]:
    return {
        name: inspect.signature(member)
        for name, member in vars(cls).items()
        if not name.startswith("_") and inspect.isfunction(member)
    }


def test_the_sync_client_offers_every_client_method_with_the_same_parameters() -> None:
    async_methods = _methods(Client)
    async_methods.pop("watch")  # an async stream of events has no blocking face
    sync_methods = _methods(SyncClient)
    for name in ("open", "close"):
        sync_methods.pop(name)
    assert set(sync_methods) == set(async_methods)
    for name, signature in async_methods.items():
        assert list(sync_methods[name].parameters) == list(signature.parameters), name


def test_errors_form_one_tree_tied_to_stdlib_meanings() -> None:
    for name in aqueue.__all__:
        obj = getattr(aqueue, name)
        if isinstance(obj, type) and issubclass(obj, Exception) and obj is not aqueue.Retry:
            assert issubclass(obj, aqueue.AqueueError), name
    assert not issubclass(aqueue.Retry, aqueue.AqueueError)  # control flow, not an error
    assert issubclass(aqueue.JobNotFound, LookupError)
    assert issubclass(aqueue.ResultTimeout, TimeoutError)
    assert issubclass(aqueue.RedisUnavailable, ConnectionError)
