"""What a durable write waits for (config.Durability, from the settings), and what NotDurable
says when it falls short."""

from __future__ import annotations

from typing import Any

import pytest

from aqueue import ClientConfig, ConfigError, MessageError, NotDurable, WorkerConfig
from aqueue._ops import cli
from aqueue._ops.settings import resolve
from aqueue._options import post_options
from aqueue.config import Durability, durability


def test_no_setting_makes_a_write_durable_only_when_asked_then_one_replica_s() -> None:
    assert ClientConfig().durability() is None
    assert ClientConfig().durability(asked=True) == Durability(replicas=1, timeout=1.0)
    assert WorkerConfig().durability() is None
    assert durability(0, 0.5, False, asked=True) == Durability(1, 0.5)


def test_the_settings_make_every_write_durable_with_their_threshold() -> None:
    config = ClientConfig(replicas=2, durable_timeout=0.25)
    assert config.durability() == config.durability(asked=True) == Durability(2, 0.25)
    assert WorkerConfig(durable_local=True).durability() == Durability(0, 1.0, local=True)
    assert Durability(1, 0.0004).timeout_ms == 1  # never WAIT 0: that waits forever
    assert Durability(1, 0.25).timeout_ms == 250


@pytest.mark.parametrize(
    ("settings", "complaint"),
    [
        ({"replicas": -1}, "replicas must be a whole number from 0 to 1000, got -1"),
        ({"replicas": True}, "replicas must be"),
        ({"durable_timeout": 0}, "durable_timeout must be a positive number"),
        ({"durable_local": "yes"}, "durable_local must be true or false"),
    ],
)
def test_a_bad_durability_setting_is_refused_naming_it(
    settings: dict[str, Any], complaint: str
) -> None:
    for kind in (ClientConfig, WorkerConfig):
        with pytest.raises(ConfigError, match=complaint):
            kind(**settings)


def test_a_threshold_waits_for_something() -> None:
    with pytest.raises(ConfigError, match="neither set"):
        Durability(replicas=0)


def test_a_post_s_durable_option_is_a_bool() -> None:
    assert post_options({"durable": True}).durable is True
    assert post_options({}).durable is False
    with pytest.raises(MessageError, match="durable must be true or false, got 1"):
        post_options({"durable": 1})


def test_not_durable_names_what_was_met_and_that_the_write_stands() -> None:
    short = NotDurable(["a", "b"], replicas=2, acknowledged=1, local=False, synced=False,
                       timeout=0.5)  # fmt: skip
    assert str(short) == (
        "not durable: 1 of 2 replicas acknowledged within 0.5 s; the write stands, it is not "
        "rolled back (job(s) 'a', 'b')"
    )
    local = NotDurable(list("abcd"), replicas=0, acknowledged=0, local=True, synced=False,
                       timeout=1)  # fmt: skip
    assert "the local AOF fsync not confirmed within 1 s" in str(local)
    assert "'a', 'b', 'c', ..." in str(local)
    both = NotDurable(["a"], replicas=1, acknowledged=1, local=True, synced=True, timeout=1)
    assert "1 of 1 replicas acknowledged and the local AOF fsync confirmed" in str(both)


def test_one_post_of_a_call_hears_of_its_own_jobs() -> None:
    short = NotDurable(["a", "b"], replicas=1, acknowledged=0, local=False, synced=False,
                       timeout=0.5)  # fmt: skip
    mine = short.of(["b"])
    assert mine.job_ids == ["b"] and (mine.replicas, mine.acknowledged) == (1, 0)
    assert "(job(s) 'b')" in str(mine)


def test_the_settings_reach_the_worker_and_its_clients_from_every_layer() -> None:
    settings = resolve({"replicas": 2}, "gpu0.toml", {"AQUEUE_DURABLE_LOCAL": "true"},
                       {"durable_timeout": "0.5"})  # fmt: skip
    for config in (settings.worker_config("q"), settings.client_config("q")):
        assert config.durability() == Durability(2, 0.5, local=True)
    assert resolve().client_config("q").durability() is None
    assert settings.http_config().durable == Durability(2, 0.5, local=True)
    assert resolve().http_config().durable is None
    args = cli._parser().parse_args(["worker", "--replicas", "1", "--durable-local", "false"])
    assert (args.replicas, args.durable_local) == (1, "false")
