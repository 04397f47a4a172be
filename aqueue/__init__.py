"""aqueue: an asyncio-native job queue and worker daemon on Redis, for machine-learning work."""

from aqueue._options import PostKwargs
from aqueue._worker.worker import Worker
from aqueue.client import Client
from aqueue.config import ClientConfig, WorkerConfig
from aqueue.errors import (
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
    NotDurable,
    RedisUnavailable,
    ResultTimeout,
    Retry,
    TooManyLanes,
    UnreadableData,
)
from aqueue.job import Job, JobEvent, JobStatus, Output, Progress
from aqueue.listeners import Context, Listeners, SyncContext
from aqueue.retry import RetryPolicy
from aqueue.sync import SyncClient

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
    "NotDurable",
    "Output",
    "PostKwargs",
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
