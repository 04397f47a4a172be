"""Sets of things by job id, each job's dropped with its last member: the waiters of a result,
the streams of a watch."""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from typing import Generic, TypeVar

T = TypeVar("T", bound=Hashable)


class ByJob(Generic[T]):
    def __init__(self) -> None:
        self._sets: dict[str, set[T]] = {}

    def __bool__(self) -> bool:
        return bool(self._sets)

    def __contains__(self, job_id: str) -> bool:
        return job_id in self._sets

    def ids(self) -> list[str]:
        return list(self._sets)

    def of(self, job_id: str) -> Iterable[T]:
        return self._sets.get(job_id, ())

    def add(self, job_id: str, member: T) -> None:
        self._sets.setdefault(job_id, set()).add(member)

    def discard(self, job_id: str, member: T) -> bool:
        """Drop `member`; True if it was the job's last (the job is then gone too)."""
        members = self._sets.get(job_id)
        if members is None:
            return False
        members.discard(member)
        if members:
            return False
        del self._sets[job_id]
        return True
