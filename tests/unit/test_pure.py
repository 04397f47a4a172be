"""The pure core: state table, retry policy, codec, keys, configuration. No Redis, no sleeps."""

from __future__ import annotations

import random
import subprocess
import sys
from datetime import UTC, datetime
from typing import Any

import msgpack
import pytest

from aqueue import ClientConfig, ConfigError, JobStatus, MessageError, RetryPolicy, WorkerConfig
from aqueue._codec import MAX_DEPTH, decode, encode
from aqueue._redis.calls import FINISH_BATCH, MOST_CALL_BYTES, Outcome, finish_calls
from aqueue._redis.keys import Keys
from aqueue._states import TRANSITIONS, Event, allowed, is_allowed
from aqueue.job import TERMINAL


def test_terminal_statuses_only_leave_by_requeue() -> None:
    for (before, event), _ in TRANSITIONS.items():
        if before in TERMINAL:
            assert event is Event.REQUEUE, (before, event)


def test_every_status_is_reachable_and_only_post_creates_jobs() -> None:
    reachable = set().union(*TRANSITIONS.values())
    assert reachable == set(JobStatus)
    assert [event for (before, event) in TRANSITIONS if before is None] == [Event.POST]


def test_forbidden_transitions_are_refused() -> None:
    assert not is_allowed(JobStatus.COMPLETE, Event.CANCEL)
    assert not is_allowed(JobStatus.QUEUED, Event.COMPLETE)
    assert allowed(JobStatus.ACTIVE, Event.LEASE_LAPSED) == {JobStatus.QUEUED, JobStatus.DEAD}


def test_backoff_grows_exponentially_up_to_its_cap() -> None:
    policy = RetryPolicy(retries=10, delay=1.0, backoff=2.0, max_delay=10.0, jitter=False)
    assert [policy.delay_before(n) for n in range(1, 7)] == [1, 2, 4, 8, 10, 10]
    assert policy.max_attempts == 11


def test_a_steep_backoff_many_attempts_in_is_capped_not_an_overflow() -> None:
    policy = RetryPolicy(retries=1000, delay=1.0, backoff=1e300, max_delay=60.0, jitter=False)
    assert policy.delay_before(999) == 60.0


def test_jitter_stays_within_the_ceiling_and_follows_the_rng() -> None:
    policy = RetryPolicy(retries=3, delay=4.0)
    delays = [policy.delay_before(2, random.Random(seed)) for seed in range(50)]
    assert all(0 <= d <= 8.0 for d in delays) and len(set(delays)) > 40
    assert policy.delay_before(2, random.Random(7)) == policy.delay_before(2, random.Random(7))


@pytest.mark.parametrize(
    ("kwargs", "complaint"),
    [
        ({"retries": -1}, "retries"),
        ({"retries": 1.5}, "retries must be a whole number"),
        ({"delay": -2}, "delay"),
        ({"backoff": 0.5}, "backoff"),
        # each of these was accepted, then crashed every worker that scheduled a retry
        ({"max_delay": float("nan")}, "max_delay"),
        ({"delay": float("inf"), "max_delay": float("inf")}, "delay"),
        ({"delay": 1e20, "max_delay": 1e20}, "delay"),
        ({"backoff": float("inf")}, "backoff"),
        ({"delay": True}, "delay"),
    ],
)
def test_bad_retry_policies_name_the_setting(kwargs: dict[str, float], complaint: str) -> None:
    with pytest.raises(ConfigError, match=complaint):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


def test_the_codec_keeps_bytes_bytes_and_refuses_unknown_types_by_name() -> None:
    value = {"b": b"\x00\xff", "s": "text", "n": [1, 2.5, None, True], "nested": {"k": b""}}
    assert decode(encode(value)) == value
    assert decode(encode((1, 2))) == [1, 2]
    with pytest.raises(MessageError, match=r"datetime\.datetime"):
        encode({"when": datetime.now(UTC)})
    with pytest.raises(MessageError, match="message is not encodable"):
        encode(2**70)


def nested(depth: int, inner: Any = 1) -> Any:
    """`inner` within `depth` lists and maps, alternating."""
    for level in range(depth):
        inner = [inner] if level % 2 else {"k": inner}
    return inner


def test_the_codec_refuses_values_nested_deeper_than_its_limit_naming_it() -> None:
    assert decode(encode(nested(MAX_DEPTH))) == nested(MAX_DEPTH)
    for too_deep in (nested(MAX_DEPTH + 1), [nested(MAX_DEPTH)], {(1,): nested(MAX_DEPTH)}):
        with pytest.raises(MessageError, match=f"message is nested more than {MAX_DEPTH} levels"):
            encode(too_deep)
    with pytest.raises(MessageError, match="result is nested"):
        encode(nested(500), "result")
    wide = [{"id": i, "tags": ["a", [i]]} for i in range(1000)]  # wide, not deep: fine
    assert decode(encode(wide)) == wide


def test_a_queue_s_keys_share_one_hash_tag_and_its_pattern_excludes_other_queues() -> None:
    keys = Keys("app")
    assert keys.job("x") == "aq:{app}:job:x"
    assert keys.lane("a,b").startswith("aq:{app}:")
    assert keys.pattern == "aq:{app}:*"
    assert not "aq:{app2}:job:x".startswith(keys.pattern[:-1])
    with pytest.raises(ConfigError, match="queue name 'a b'"):
        Keys("a b")
    with pytest.raises(ConfigError, match="queue name"):
        Keys("x*")


def test_worker_config_refuses_a_heartbeat_longer_than_a_third_of_the_lease() -> None:
    with pytest.raises(ConfigError, match=r"heartbeat=20 s, lease=30 s"):
        WorkerConfig(lease=30, heartbeat=20)
    with pytest.raises(ConfigError, match=r"concurrency must be a whole number from 1 .*, got 0"):
        WorkerConfig(concurrency=0)
    with pytest.raises(ConfigError, match="max_message_bytes"):
        ClientConfig(max_message_bytes=-1)


def test_the_state_diagram_in_the_docs_is_generated_from_the_table() -> None:
    from pathlib import Path

    from aqueue._diagram import document

    checked_in = Path(__file__).parents[2] / "docs" / "states.md"
    assert checked_in.read_text() == document(), "run: python -m aqueue._diagram > docs/states.md"


def test_a_worker_process_starts_without_the_http_stack() -> None:
    # An idle worker's memory: aiohttp and yarl load only for callbacks and the HTTP API.
    code = (
        "import sys, aqueue, aqueue._ops.cli, aqueue._ops.daemon, aqueue._worker.worker; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('aiohttp', 'yarl')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("count", [0, 15, 16, 65_535, 65_536])
def test_values_are_packed_one_after_another_without_an_array_header(count: int) -> None:
    # finish.lua reads the outcomes as a stream of values (cmsgpack.unpack_limit)
    from aqueue._redis.calls import values

    items = [f"v{k}" for k in range(count)]
    unpacker = msgpack.Unpacker(raw=False)
    unpacker.feed(values(items))
    assert list(unpacker) == items


@pytest.mark.parametrize("delay", [float("nan"), float("inf"), 1e16, -1, True, "5"])
def test_a_retry_delay_must_be_a_number_of_seconds_up_to_ten_years(delay: object) -> None:
    from aqueue import Retry

    with pytest.raises(ValueError, match="Retry delay must be from 0 to 315360000 seconds"):
        Retry(delay=delay)  # type: ignore[arg-type]
    assert Retry(delay=0).delay == 0 and Retry(delay=3600.5).delay == 3600.5


def test_outcomes_go_in_calls_cut_by_count_and_by_bytes_never_empty() -> None:
    def outcome(size: int) -> Outcome:
        return Outcome("id", 1, Event.COMPLETE, 0, ["result", b"x" * size], 60, False, 1)

    def sizes(outcomes: list[Outcome]) -> list[int]:
        return [len(call) for call in finish_calls(outcomes)]

    assert sizes([outcome(1)] * 2500) == [FINISH_BATCH, FINISH_BATCH, 500]
    half = MOST_CALL_BYTES // 2 - 100
    assert sizes([outcome(half)] * 5) == [2, 2, 1]
    assert sizes([outcome(3 * MOST_CALL_BYTES), outcome(1)]) == [1, 1]  # a big one goes alone
    assert sizes([]) == []
