"""A waiting queue kept sorted by the policy's key (static while a job waits).

Jobs are also indexed by their shape (``feasibility.shape_of``), so that a pass over a
long queue can skip every job of a shape that cannot fit right now without visiting them
one by one (``iter_open``).
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right, insort
from collections.abc import Callable, Hashable, Iterator
from heapq import heapify, heappop, heapreplace

from .jobstate import JobState


class SortedQueue:
    def __init__(self, key: Callable[[JobState], tuple],
                 shape: Callable[[JobState], Hashable] = lambda js: 0):
        self._key = key
        self._shape = shape
        self._items: list[tuple] = []  # (key..., idx) for bisect
        self._jobs: dict[int, JobState] = {}
        self._keys: dict[int, tuple] = {}
        self._shapes: dict[Hashable, list[tuple]] = {}  # the same items, per GPU shape

    def add(self, js: JobState) -> None:
        k = (*self._key(js), js.idx)
        self._keys[js.idx] = k
        self._jobs[js.idx] = js
        insort(self._items, k)
        insort(self._shapes.setdefault(self._shape(js), []), k)

    def remove(self, js: JobState) -> None:
        k = self._keys.pop(js.idx)
        del self._jobs[js.idx]
        del self._items[bisect_left(self._items, k)]
        shape = self._shape(js)
        items = self._shapes[shape]
        del items[bisect_left(items, k)]
        if not items:
            del self._shapes[shape]

    def __contains__(self, js: JobState) -> bool:
        return js.idx in self._jobs

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[JobState]:
        """In key order; iterates over a snapshot so jobs may start while iterating."""
        jobs = self._jobs
        return (jobs[k[-1]] for k in list(self._items))

    def iter_open(self, is_open: Callable[[Hashable], bool],
                  after: tuple | None = None) -> Iterator[JobState]:
        """In key order (past the queue key ``after``, if given), the jobs whose shape is
        open.

        ``is_open`` is asked before each job; once a shape is closed, none of its jobs
        is visited again in this iteration, so the caller must only close shapes that
        stay closed (true in a pass where capacity only shrinks). Jobs that left the
        queue meanwhile are skipped; jobs added meanwhile are not seen."""
        heap = []
        for shape, items in self._shapes.items():
            i = bisect_right(items, after) if after is not None else 0
            if i < len(items) and is_open(shape):
                snap = items[i:]  # a copy: jobs may start (and leave) while iterating
                heap.append((snap[0], shape, 0, snap))
        heapify(heap)
        keys, jobs = self._keys, self._jobs
        while heap:
            item, shape, i, items = heap[0]
            if not is_open(shape):
                heappop(heap)
                continue
            nxt = i + 1
            if nxt < len(items):
                heapreplace(heap, (items[nxt], shape, nxt, items))
            else:
                heappop(heap)
            idx = item[-1]
            if keys.get(idx) == item:
                yield jobs[idx]

    def first(self, n: int) -> list[JobState]:
        """The first ``n`` jobs in key order."""
        jobs = self._jobs
        return [jobs[k[-1]] for k in self._items[:n]]

    def rekey(self) -> None:
        """Sorts every waiting job again by the key function (whose answers changed: a
        policy learned something, or another policy now orders the queue)."""
        jobs = list(self)
        for js in jobs:
            self.remove(js)
        for js in jobs:
            self.add(js)

    def key_of(self, js: JobState) -> tuple:
        return self._keys[js.idx]

    def head(self) -> JobState | None:
        return self._jobs[self._items[0][-1]] if self._items else None
