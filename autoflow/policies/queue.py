"""A waiting queue kept sorted by the policy's key (static while a job waits)."""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Callable, Iterator

from ..sim.jobstate import JobState


class SortedQueue:
    def __init__(self, key: Callable[[JobState], tuple]):
        self._key = key
        self._items: list[tuple] = []  # (key..., idx) for bisect
        self._jobs: dict[int, JobState] = {}
        self._keys: dict[int, tuple] = {}

    def add(self, js: JobState) -> None:
        k = (*self._key(js), js.idx)
        self._keys[js.idx] = k
        self._jobs[js.idx] = js
        insort(self._items, k)

    def remove(self, js: JobState) -> None:
        k = self._keys.pop(js.idx)
        del self._jobs[js.idx]
        i = bisect_left(self._items, k)
        del self._items[i]

    def __contains__(self, js: JobState) -> bool:
        return js.idx in self._jobs

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[JobState]:
        """In key order; iterates over a snapshot so jobs may start while iterating."""
        jobs = self._jobs
        return (jobs[k[-1]] for k in list(self._items))

    def key_of(self, js: JobState) -> tuple:
        return self._keys[js.idx]

    def head(self) -> JobState | None:
        return self._jobs[self._items[0][-1]] if self._items else None
