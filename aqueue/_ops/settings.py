"""Daemon settings from a TOML file, `AQUEUE_*` environment variables and command-line flags
(flags over environment over file over defaults), validated into the frozen config objects.

Every error names the setting, where it came from, the bad value and what is allowed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from aqueue._checks import is_number, is_whole, whole_range
from aqueue._redis import cluster, sentinel
from aqueue._redis.connection import shown
from aqueue._redis.keys import check_queue_name
from aqueue._services.callback_guard import parse_networks
from aqueue._services.callbacks import CallbackConfig
from aqueue.config import MOST_RESULT_BYTES, ClientConfig, WorkerConfig
from aqueue.errors import TEN_YEARS, ConfigError

if TYPE_CHECKING:
    from aqueue._http.base import HttpConfig


def whole_setting(name: str) -> Callable[[Any], int]:
    """A parser of the whole-number setting `name`, within its range (_checks.WHOLE)."""

    def parse(value: Any) -> int:
        if isinstance(value, str):  # from AQUEUE_* or a flag
            try:
                value = int(value.strip())
            except ValueError:
                raise ValueError(whole_range(name)) from None
        if not is_whole(name, value):
            raise ValueError(whole_range(name))
        return int(value)

    return parse


def _seconds(value: Any) -> float:
    try:
        seconds = float(value) if isinstance(value, str) else value
    except ValueError:
        raise ValueError("a number of seconds") from None
    # NaN passes `<= 0`; infinity and 1e300 pass it and overflow as milliseconds
    if not is_number(seconds) or not 0 < seconds <= TEN_YEARS:
        raise ValueError(f"a positive number of seconds, at most {TEN_YEARS} (ten years)")
    return float(seconds)


_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9}
_UNITS |= {"kib": 2**10, "mib": 2**20, "gib": 2**30}


def result_bytes(value: Any) -> int:
    """A result size limit: a whole number of bytes, or one with a unit (500MB, 64MiB)."""
    allowed = f"a size from 1 byte to {MOST_RESULT_BYTES} (2GiB), e.g. 67108864, 64MiB or 500MB"
    size: Any = value
    if isinstance(value, str):
        text = value.strip().lower()
        digits = text.rstrip("kmgib ")
        unit = _UNITS.get(text[len(digits) :].strip())
        if not digits.isdigit() or unit is None:
            raise ValueError(allowed)
        size = int(digits) * unit
    if isinstance(size, bool) or not isinstance(size, int) or not 0 < size <= MOST_RESULT_BYTES:
        raise ValueError(allowed)
    return size


def _text(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError("a non-empty string")
    return value


def _names(value: Any) -> tuple[str, ...]:
    names = value.split(",") if isinstance(value, str) else value
    if not isinstance(names, list | tuple) or not names:
        raise ValueError("a list of names (or a comma-separated string)")
    return tuple(_text(n).strip() for n in names)


def _queues(value: Any) -> tuple[str, ...]:
    names = _names(value)
    for name in names:
        try:
            check_queue_name(name)
        except ConfigError as exc:
            raise ValueError(f"a list of valid queue names ({exc})") from None
    return names


def _networks(value: Any) -> tuple[str, ...]:
    entries = _names(value)
    try:
        parse_networks(entries)
    except ValueError as exc:
        raise ValueError(f"a list of networks ({exc})") from None
    return entries


def redis_url(value: Any) -> str:
    # redis-py refuses other schemes only when it connects, with a bare ValueError
    try:
        scheme = urlsplit(_text(value)).scheme
    except ValueError:  # e.g. an unclosed [ in an IPv6 host
        scheme = ""
    if scheme not in ("redis", "rediss", "unix", *sentinel.SCHEMES, *cluster.SCHEMES):
        raise ValueError(
            "a redis://, rediss://, unix://, redis+sentinel:// or redis+cluster:// URL"
        )
    try:
        sentinel.parse_url(str(value))
    except ValueError as exc:
        raise ValueError(
            f"a redis+sentinel://HOST:PORT[,HOST:PORT...]/<master> URL ({exc})"
        ) from None
    try:
        cluster.parse_url(str(value))
    except ValueError as exc:
        raise ValueError(f"a redis+cluster://HOST:PORT[,HOST:PORT...] URL ({exc})") from None
    return str(value)


def _bind(value: Any) -> str:
    host, _, port = _text(value).rpartition(":")
    if not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError("HOST:PORT, e.g. 127.0.0.1:8080 or [::1]:8080")
    return str(value)


def _choice(*allowed: str) -> Callable[[Any], str]:
    def parse(value: Any) -> str:
        if value not in allowed:
            raise ValueError(f"one of {', '.join(allowed)}")
        return str(value)

    return parse


def _flag(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in (
        "1",
        "true",
        "yes",
        "on",
        "0",
        "false",
        "no",
        "off",
    ):
        return value.lower() in ("1", "true", "yes", "on")
    raise ValueError("true or false")


# name -> parser. The same names in TOML, as AQUEUE_<NAME> variables and as --<name> flags.
SETTINGS: dict[str, Callable[[Any], Any]] = {
    "redis_url": redis_url,
    "queues": _queues,
    "listeners": _text,
    "concurrency": whole_setting("concurrency"),
    "prefetch": whole_setting("prefetch"),
    "lease": _seconds,
    "heartbeat": _seconds,
    "grace": _seconds,
    "reaper_interval": _seconds,
    "idle_wait": _seconds,
    "max_result_bytes": result_bytes,
    "reaper": _flag,
    # every write durable (see config.Durability): posts of the daemon's clients, finishes
    "replicas": whole_setting("replicas"),
    "durable_timeout": _seconds,
    "durable_local": _flag,
    "http_bind": _bind,
    "http_read_tokens": _names,  # a list, or a comma-separated string
    "http_write_tokens": _names,
    "callback_timeout": _seconds,
    "callback_attempts": whole_setting("callback_attempts"),
    "callback_backoff": _seconds,
    "callback_lease": _seconds,
    "callback_secret": _text,
    "callback_hosts": _names,  # a list of host names, or a comma-separated string
    "callback_allow_networks": _networks,  # non-public networks callbacks may reach (CIDRs)
    "callbacks": _flag,
    "log_format": _choice("auto", "text", "json", "journal"),
    "log_level": _choice("DEBUG", "INFO", "WARNING", "ERROR"),
}


@dataclass(frozen=True)
class Settings:
    """Everything a daemon process needs, validated."""

    queues: tuple[str, ...] = ("default",)
    redis_url: str | None = None
    listeners: str | None = None
    http_bind: str | None = None
    log_format: str = "auto"
    log_level: str = "INFO"
    worker: dict[str, Any] = field(default_factory=dict)  # WorkerConfig fields, minus queue
    callbacks: CallbackConfig | None = field(default_factory=CallbackConfig)  # None: no delivery
    http_tokens: tuple[tuple[str, ...], tuple[str, ...]] = ((), ())  # read-only, read-write
    sources: dict[str, str] = field(default_factory=dict)  # setting -> where it came from

    def http_config(self, known_listeners: tuple[str, ...] | None = None) -> HttpConfig:
        # lazily: it brings aiohttp (~10 MB), which a daemon without HTTP never needs
        from aqueue._http.base import HttpConfig

        host, _, port = (self.http_bind or "127.0.0.1:8080").rpartition(":")
        return HttpConfig(
            host=host.strip("[]"),
            port=int(port),
            redis_url=self.redis_url,
            queue=self.queues[0],
            read_tokens=tuple(self.http_tokens[0]),
            write_tokens=tuple(self.http_tokens[1]),
            known_listeners=known_listeners,
            durable=self.client_config(self.queues[0]).durability(),
        )

    def worker_config(self, queue: str) -> WorkerConfig:
        return WorkerConfig(queue=queue, **self.worker)

    def client_config(self, queue: str) -> ClientConfig:
        durable = {k: self.worker[k] for k in DURABLE_SETTINGS if k in self.worker}
        return ClientConfig(queue=queue, redis_url=self.redis_url, **durable)


DURABLE_SETTINGS = ("replicas", "durable_timeout", "durable_local")  # the worker's and clients'


HTTP_SETTINGS = ("http_bind", "http_read_tokens", "http_write_tokens")


def _check_http(settings: Settings, sources: Mapping[str, str]) -> None:
    """The HTTP settings as the service takes them, each error naming the setting at fault
    and where it came from: the token lists alone first, then all of them together."""
    from aqueue._http.base import HttpConfig  # lazily: see Settings.http_config

    read, write = settings.http_tokens
    for name, (reads, writes) in (
        ("http_read_tokens", (read, ())),
        ("http_write_tokens", ((), write)),
    ):
        if name in sources:
            try:
                HttpConfig(read_tokens=reads, write_tokens=writes)
            except ConfigError as exc:
                raise ConfigError(f"{exc} ({name} from {sources[name]})") from None
    try:
        settings.http_config()
    except ConfigError as exc:
        where = ", ".join(
            f"{name} from {sources[name]}" for name in HTTP_SETTINGS if name in sources
        )
        raise ConfigError(f"{exc} ({where})") from None


def read_file(path: Path) -> dict[str, Any]:
    import tomllib  # lazily, as difflib below: only a --config or a mistake needs them (idle RSS)

    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:  # TOML is UTF-8
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    except OSError as exc:  # a directory, a file it may not read, /proc/self/mem
        raise ConfigError(f"config file {path} cannot be read: {exc}") from None


def from_environment(environ: Mapping[str, str]) -> dict[str, str]:
    return {
        name: environ[f"AQUEUE_{name.upper()}"]
        for name in SETTINGS
        if f"AQUEUE_{name.upper()}" in environ
    }


def resolve(
    file: Mapping[str, Any] | None = None,
    file_name: str = "the config file",
    environ: Mapping[str, str] | None = None,
    flags: Mapping[str, Any] | None = None,
) -> Settings:
    """Merge the layers (flags > environment > file) and validate every value."""
    layers = [
        (file or {}, file_name),
        (from_environment(environ or {}), "the environment (AQUEUE_*)"),
        ({k: v for k, v in (flags or {}).items() if v is not None}, "the command line"),
    ]
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for layer, where in layers:
        for name, raw in layer.items():
            if name not in SETTINGS:
                import difflib

                hint = difflib.get_close_matches(name, SETTINGS, n=1)
                maybe = f" (did you mean {hint[0]!r}?)" if hint else ""
                allowed = ", ".join(SETTINGS)
                raise ConfigError(f"unknown setting {name!r} in {where}{maybe}; known: {allowed}")
            try:
                values[name] = SETTINGS[name](raw)
            except ValueError as exc:
                said = shown(raw) if name == "redis_url" and isinstance(raw, str) else raw
                raise ConfigError(
                    f"{name} = {said!r} in {where} is invalid: must be {exc}"
                ) from None
            sources[name] = where
    worker: dict[str, Any] = {
        k: values[k]
        for k in (
            "concurrency",
            "prefetch",
            "lease",
            "heartbeat",
            "grace",
            "reaper_interval",
            "idle_wait",
            "reaper",
            "max_result_bytes",
            *DURABLE_SETTINGS,
        )
        if k in values
    }
    callbacks: CallbackConfig | None = None
    if values.get("callbacks", True):
        fields = {k[len("callback_") :]: v for k, v in values.items() if k.startswith("callback_")}
        if "hosts" in fields:
            fields["allowed_hosts"] = fields.pop("hosts")
        try:
            callbacks = CallbackConfig(**fields)
        except ConfigError as exc:
            raise ConfigError(f"{exc} (callback_* settings)") from None
    settings = Settings(
        queues=values.get("queues", ("default",)),
        redis_url=values.get("redis_url"),
        listeners=values.get("listeners"),
        http_bind=values.get("http_bind"),
        log_format=values.get("log_format", "auto"),
        log_level=values.get("log_level", "INFO"),
        worker=worker,
        callbacks=callbacks,
        http_tokens=(values.get("http_read_tokens", ()), values.get("http_write_tokens", ())),
        sources=sources,
    )
    if any(name in sources for name in HTTP_SETTINGS):
        _check_http(settings, sources)
    for queue in settings.queues:  # cross-checks (heartbeat vs lease, queue names) name sources
        try:
            settings.worker_config(queue)
            settings.client_config(queue)
        except ConfigError as exc:
            where = ", ".join(
                sorted({sources.get(k, "the defaults") for k in ("lease", "heartbeat")})
            )
            raise ConfigError(f"{exc} (from {where})") from None
    return settings
