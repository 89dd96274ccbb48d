"""easy-backfill: FIFO with EASY backfilling on predicted durations.

When the head of the queue does not fit, it gets a reservation: the earliest time at
which, by the predicted remaining times of running jobs, enough GPUs of its allowed
types will be free (the *shadow time*). Later jobs may start now if they fit and
either are predicted to end before the shadow time or use only GPUs the head will not
need then. Predictions come from the history estimator, never the true durations.
(Lifka, "The ANL/IBM SP scheduling system", 1995.)

A backfill pass visits only the jobs that may backfill: whole shapes of jobs that
cannot fit now are skipped (``SchedContext.shape_open``), and so are the jobs of a
shape too wide for the spare GPUs that are predicted to run past the shadow time
(``_Lanes`` keeps each shape's waiting jobs sorted by prediction too).
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right, insort
from heapq import heapify, heappop, heapreplace
from typing import TYPE_CHECKING

from ..core.jobstate import WAITING
from ..feasibility import Shape, shape_of
from .base import Policy, greedy_pass

if TYPE_CHECKING:
    from ..core.context import SchedContext
    from ..core.jobstate import JobState


# A shape too wide for the spare GPUs with more than DENSE_MIN jobs predicted to end in
# time, at least 1 in DENSE of its jobs, has its jobs visited in queue order and those
# predicted to end later passed over (the shape may close at its first failure, before
# they are reached); otherwise the jobs that end in time are gathered and sorted.
DENSE_MIN, DENSE = 64, 4


class EasyBackfill(Policy):
    name = "easy-backfill"

    def __init__(self, placer):
        super().__init__(placer)
        self._lanes = _Lanes()

    def prepare(self, ctx) -> None:
        self._lanes = _Lanes()

    def on_start(self, ctx, js) -> None:
        self._lanes.discard(js)

    def on_stop(self, ctx, js) -> None:
        self._lanes.stopped(js)

    def schedule(self, ctx) -> None:
        head = greedy_pass(ctx, blocking=True)
        if head is None or ctx.nothing_fits():
            return
        shadow, extra = self._reservation(ctx, head)
        self._lanes.sync(ctx)
        after = ctx.waiting.key_of(head)
        while after is not None:
            after, extra = self._backfill(ctx, after, shadow, extra)

    def _backfill(self, ctx: SchedContext, after: tuple, shadow: float,
                  extra: float) -> tuple[tuple | None, float]:
        """Tries, in queue order past the key ``after``, each job that may backfill: one
        predicted to end by ``shadow``, or one needing at most ``extra`` GPUs (those the
        head leaves spare). Each shape of job is a stream of queue keys, the streams
        merged in queue order; a shape that cannot fit now is dropped whole (it cannot
        fit again in this pass: capacity only shrinks), and of a shape wider than
        ``extra`` only the jobs predicted to end in time are visited (or, where most
        are, the others are passed over).

        Returns the key of a job that started and runs past the shadow time (it took
        spare GPUs, so which shapes may use them changed: resume after it) and the
        spare GPUs left; (None, ...) when the pass is over."""
        now, lanes = ctx.now, self._lanes
        by_shape, heap = lanes.by_shape, []
        # the shapes that may use the spare GPUs, then those with a job predicted to end
        # in time (now + predicted grows with predicted: a prefix of ``lanes.soonest``)
        for demand, shape in lanes.narrowest:
            if demand > extra:
                break
            if ctx.shape_open(shape):
                heap.append(by_shape[shape].stream(after, now, shadow, True, shape))
        for soonest, shape in lanes.soonest:
            if now + soonest > shadow:
                break
            lane = by_shape[shape]
            if lane.demand > extra and ctx.shape_open(shape):
                heap.append(lane.stream(after, now, shadow, False, shape))
        heap = [x for x in heap if x is not None]
        heapify(heap)
        where = lanes.where
        lanes.hold = True  # jobs leave the lanes after the pass: the streams read them
        try:
            while heap:
                key, shape, keys = heap[0]
                if not ctx.shape_open(shape):
                    heappop(heap)
                    continue
                nxt = next(keys, None)
                if nxt is None:
                    heappop(heap)
                else:
                    heapreplace(heap, (nxt, shape, keys))
                if ctx.nothing_fits():
                    break
                js = where[key[-1]][0]
                ends_in_time = now + js.predicted <= shadow
                demand = js.job.gpu_demand
                if not (ends_in_time or demand <= extra):
                    continue
                if ctx.try_start(js) and not ends_in_time:
                    return key, extra - demand  # it runs past the shadow on spare GPUs
            return None, extra
        finally:
            lanes.release()

    @staticmethod
    def _reservation(ctx, head) -> tuple[float, float]:
        state = ctx.state
        allowed = state.type_masks[head.req.types_key] & state.up
        free = float(state.free_milli[allowed].sum()) / 1000.0
        need = head.job.gpu_demand
        if free >= need:  # enough GPUs in total, just fragmented: reserve "now"
            return ctx.now, free - need
        ends = []
        for js in ctx.running.values():
            gpus = sum(len(g) * m for n, g, m, _c, _m in js.placement if allowed[n]) / 1000.0
            if gpus:
                ends.append((ctx.now + ctx.predicted_remaining(js), gpus))
        ends.sort()
        for t, gpus in ends:
            free += gpus
            if free >= need:
                return t, free - need
        return float("inf"), 0.0


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


class _Lanes:
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
