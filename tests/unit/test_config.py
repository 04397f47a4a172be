"""The frozen configs (aqueue/config.py) refuse what cannot work, naming the setting."""

from __future__ import annotations

import pytest

from aqueue import ClientConfig, ConfigError, WorkerConfig


def test_worker_config_refuses_a_heartbeat_longer_than_a_third_of_the_lease() -> None:
    with pytest.raises(ConfigError, match=r"heartbeat=20 s, lease=30 s"):
        WorkerConfig(lease=30, heartbeat=20)
    with pytest.raises(ConfigError, match=r"concurrency must be a whole number from 1 .*, got 0"):
        WorkerConfig(concurrency=0)
    with pytest.raises(ConfigError, match="max_message_bytes"):
        ClientConfig(max_message_bytes=-1)


@pytest.mark.parametrize("value", [0, -1.0, float("nan"), float("inf"), True, "30"])
@pytest.mark.parametrize(
    ("config", "name"),
    [(WorkerConfig, "lease"), (WorkerConfig, "grace"), (ClientConfig, "result_ttl")],
)
def test_a_duration_must_be_a_positive_finite_number_of_seconds(
    config: type[WorkerConfig | ClientConfig], name: str, value: object
) -> None:
    with pytest.raises(ConfigError, match=f"{name} must be a positive number of seconds"):
        config(**{name: value})  # type: ignore[arg-type]
