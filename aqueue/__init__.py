"""aqueue: an asyncio-native job queue and worker daemon on Redis, for machine-learning work."""

from .client import Client
from .config import ClientConfig, WorkerConfig
from .errors import (
    AqueueError,
    ConfigError,
    DataNotFound,
    InvalidTransition,
    JobFailed,
    JobNotFound,
    JobTimeout,
    LeaseLost,
    ListenerError,
    MessageError,
    MessageTooLarge,
    RedisUnavailable,
    ResultTimeout,
    Retry,
    TooManyLanes,
    UnreadableData,
)
from .job import Job, JobEvent, JobStatus, Output, Progress
from .listeners import Context, Listeners, SyncContext
from .retry import RetryPolicy
from .sync import SyncClient
from .worker import Worker

__all__ = [
    "AqueueError",
    "Client",
    "ClientConfig",
    "ConfigError",
    "Context",
    "DataNotFound",
    "InvalidTransition",
    "Job",
    "JobEvent",
    "JobFailed",
    "JobNotFound",
    "JobStatus",
    "JobTimeout",
    "LeaseLost",
    "ListenerError",
    "Listeners",
    "MessageError",
    "MessageTooLarge",
    "Output",
    "Progress",
    "RedisUnavailable",
    "ResultTimeout",
    "Retry",
    "RetryPolicy",
    "SyncClient",
    "SyncContext",
    "TooManyLanes",
    "UnreadableData",
    "Worker",
    "WorkerConfig",
]
