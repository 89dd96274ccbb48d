"""The waiting queue of ``easy-backfill`` by shape and by predicted duration.

A backfill pass wants, past the head, the jobs that may start: of a shape narrow enough
for the spare GPU share, all of them in queue order; of a wider shape, only those
predicted to end by the shadow time. :class:`Lanes` keeps each shape's waiting jobs in
queue order and sorted by prediction (fixed while a job waits), so a pass finds them
without visiting the others.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right, insort
from typing import TYPE_CHECKING

from ..core.jobstate import WAITING
from ..feasibility import Shape, shape_of

if TYPE_CHECKING:
    from ..core.context import SchedContext
    from ..core.jobstate import JobState

# A shape too wide for the spare GPUs with more than DENSE_MIN jobs predicted to end in
# time, at least 1 in DENSE of its jobs, has its jobs visited in queue order and those
# predicted to end later passed over (the shape may close at its first failure, before
# they are reached); otherwise the jobs that end in time are gathered and sorted.
DENSE_MIN, DENSE = 64, 4


def shape_demand(shape: Shape) -> float:
    """GPUs a job of this shape holds (``Job.gpu_demand``, computed the same way)."""
    _types, num, milli, _cpu, _mem = shape
    return num * milli / 1000 if num else 0.0


class _Lane:
    """The waiting jobs of one shape: their queue keys in queue order (and predicted
    durations beside them), and the same sorted by predicted duration."""

    __slots__ = ("demand", "keys", "kpreds", "pkeys", "preds")

    def __init__(self, demand: float):
        self.demand = demand  # GPUs a job of the shape holds
        self.keys: list[tuple] = []  # queue order
        self.kpreds: list[float] = []  # their predicted durations
        self.preds: list[float] = []  # predicted durations, sorted
        self.pkeys: list[tuple] = []  # their keys

    def add(self, key: tuple, predicted: float) -> None:
        i = bisect_left(self.keys, key)
        self.keys.insert(i, key)
        self.kpreds.insert(i, predicted)
        j = bisect_right(self.preds, predicted)
        self.preds.insert(j, predicted)
        self.pkeys.insert(j, key)

    def remove(self, key: tuple, predicted: float) -> None:
        i = bisect_left(self.keys, key)
        del self.keys[i], self.kpreds[i]
        lo = bisect_left(self.preds, predicted)
        j = self.pkeys.index(key, lo, bisect_right(self.preds, predicted, lo))
        del self.preds[j], self.pkeys[j]

    def stream(self, after: tuple, now: float, shadow: float, every: bool, shape: Shape):
        """The keys past ``after`` in queue order: all of them (``every``), else those of
        jobs predicted to end by ``shadow``; as a heap entry (first key, shape, the rest)
        or None if there are none. Reads the lists as they are: no job may leave the
        lane while the rest is read."""
        keys = self.keys
        start = bisect_right(keys, after)
        if every:
            if start == len(keys):
                return None
            return keys[start], shape, map(keys.__getitem__, range(start + 1, len(keys)))
        preds = self.preds
        k = bisect_right(preds, shadow - now)  # then exactly: now + p <= shadow
        while k and now + preds[k - 1] > shadow:
            k -= 1
        while k < len(preds) and now + preds[k] <= shadow:
            k += 1
        if k > DENSE_MIN and DENSE * k >= len(preds):  # most of them: filter in order
            kpreds = self.kpreds
            rest = (keys[i] for i in range(start, len(keys)) if now + kpreds[i] <= shadow)
        else:
            ending = sorted(self.pkeys[:k])
            rest = iter(ending[bisect_right(ending, after):])
        first = next(rest, None)
        return None if first is None else (first, shape, rest)


class Lanes:
    """The waiting queue by shape (``feasibility.shape_of``), each shape's jobs also
    sorted by predicted duration (fixed while a job waits): a pass finds the jobs
    predicted to end by a time without visiting the others.

    Its owner is the policy, and it follows the queue by one rule: a start removes the
    job (``on_start``; held until ``release`` while a pass reads the lanes), and ``sync``
    at a pass adds what joined the queue since: arrivals (keys past the last one seen)
    and stopped jobs that wait again (evicted by a node failure). Should the count then
    differ from the queue's, it is rebuilt from the queue."""

    def __init__(self):
        self.queue = None  # the SortedQueue followed
        self.state = None
        self.by_shape: dict[Shape, _Lane] = {}
        self.narrowest: list[tuple[float, Shape]] = []  # (GPUs, shape), sorted
        self.soonest: list[tuple[float, Shape]] = []  # (shortest prediction, shape), sorted
        self.where: dict[int, tuple[JobState, tuple]] = {}  # idx -> (job, queue key)
        self.tail: tuple | None = None  # the largest queue key seen
        self.back: list[JobState] = []  # stopped since the last sync
        self.hold = False
        self.held: list[JobState] = []  # started while held
        self._shapes: dict = {}

    def shape(self, js: JobState) -> Shape:
        shape = self._shapes.get(js.req)
        if shape is None:
            shape = self._shapes[js.req] = shape_of(self.state, js.req)
        return shape


    def add(self, js: JobState) -> None:
        if js.idx in self.where:
            return
        key, shape = self.queue.key_of(js), self.shape(js)
        lane = self.by_shape.get(shape)
        if lane is None:
            lane = self.by_shape[shape] = _Lane(shape_demand(shape))
            insort(self.narrowest, (lane.demand, shape))
        soonest = lane.preds[0] if lane.preds else None
        lane.add(key, js.predicted)
        if lane.preds[0] != soonest:
            self._resoon(shape, soonest, lane.preds[0])
        self.where[js.idx] = (js, key)
        if self.tail is None or key > self.tail:
            self.tail = key

    def discard(self, js: JobState) -> None:
        if js.idx not in self.where:
            return
        if self.hold:
            self.held.append(js)
            return
        _js, key = self.where.pop(js.idx)
        shape = self.shape(js)
        lane = self.by_shape[shape]
        soonest = lane.preds[0]
        lane.remove(key, js.predicted)
        if not lane.keys:
            del self.by_shape[shape]
            self.narrowest.remove((lane.demand, shape))
            self._resoon(shape, soonest, None)
        elif lane.preds[0] != soonest:
            self._resoon(shape, soonest, lane.preds[0])

    def _resoon(self, shape: Shape, old: float | None, new: float | None) -> None:
        """The lane's shortest prediction changed from ``old`` to ``new`` (None: none)."""
        if old is not None:
            del self.soonest[bisect_left(self.soonest, (old, shape))]
        if new is not None:
            insort(self.soonest, (new, shape))

    def release(self) -> None:
        self.hold = False
        for js in self.held:
            self.discard(js)
        self.held.clear()

    def stopped(self, js: JobState) -> None:
        self.back.append(js)

    def sync(self, ctx: SchedContext) -> None:
        queue = ctx.waiting
        if queue is not self.queue:  # a new run
            self.__init__()
            self.queue, self.state = queue, ctx.state
        for js in self.back:
            if js.status == WAITING and js in queue:
                self.add(js)
        self.back.clear()
        if len(self.where) != len(queue):  # arrivals: past the tail of the queue
            new = queue if self.tail is None else queue.iter_open(_always, self.tail)
            for js in new:
                self.add(js)
        if len(self.where) != len(queue):
            self.__init__()
            self.queue, self.state = queue, ctx.state
            for js in queue:
                self.add(js)


def _always(shape: Shape) -> bool:
    return True
