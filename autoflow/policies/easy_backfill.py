"""easy-backfill: FIFO with EASY backfilling on predicted durations.

When the head of the queue does not fit, it gets a reservation: a placement at the
earliest time it will fit by the predicted remaining times of running jobs (the
*shadow time*). The releases of the running jobs are played, in order of predicted
end, on a copy of the cluster state until the head's placer finds a placement for it
there; that placement (nodes, GPUs, their CPU and memory) is the reservation, and the
copy with the head placed in it is the state predicted at the shadow time. Later jobs
in the queue may then start now, in queue order, if they fit and

* either are predicted to end by the shadow time: anywhere (they will have left when
  the head needs their GPUs);
* or are predicted to run past it: only on capacity that is free now *and* free at the
  shadow time once the head has its reservation. Such a job is placed by the placer on
  the live state with what the reservation needs held back (per GPU share, CPU and
  memory of the reserved nodes: what is free now but will not be left over at the
  shadow time), and is added to the predicted state too, so the head keeps its
  placement and a later backfill cannot take what this one took.

So the head is never delayed by a backfilled job as far as the predictions go: its
reservation is a place, not a count of GPUs anywhere (a long job cannot take the last
GPU of the node the head will need, while it may use a GPU elsewhere; a gang head
keeps its whole nodes idle; a type-constrained head holds GPUs of its types only).
Predictions come from the history estimator (``SchedContext.predicted_remaining``,
``JobState.predicted``), never the true durations; with ``easy-backfill:ssl`` (or
``:ssl=PATH``) ``JobState.predicted`` is the duration predictor's (``policies.ssl``: work
done + median remaining, set when the job joins the queue). Where a whole-GPU head may take any
of a node's idle GPUs, the reservation takes those busy now first, leaving the GPUs
free now to backfill. A head that will not fit even when every running job has ended
gets no reservation: everything that fits may start. (Lifka, "The ANL/IBM SP
scheduling system", 1995.)

A backfill pass visits only the jobs that may backfill: whole shapes of jobs that
cannot fit now are skipped (``SchedContext.shape_open``), and so are the jobs of a
shape wider than the spare GPU share (what is free now outside the held-back
capacity, an upper bound on what a long job can get) that are predicted to run past
the shadow time (``easy_lanes.Lanes`` keeps each shape's waiting jobs sorted by prediction too).
A visited job that does not fit the live state is passed over on the context's kept
answer (``SchedContext.fits``); one that found no place beside the reservation, and
any needing at least as much, are not tried again in the pass. The search for the
reservation follows lists of the released nodes, not a whole copy of the state
(``_reservation``).
"""

from __future__ import annotations

from heapq import heapify, heappop, heapreplace
from typing import TYPE_CHECKING

from ..feasibility import Shape, needs_multi_node, shape_of
from ..job import WHOLE_GPU
from .base import Policy, greedy_pass
from .easy_lanes import Lanes
from .ssl import label, make_ssl

if TYPE_CHECKING:
    from ..core.context import SchedContext
    from ..core.jobstate import JobState
    from ..state import ClusterState, Placement, Req


INF = float("inf")


class EasyBackfill(Policy):
    name = "easy-backfill"

    def __init__(self, placer, predictor: str | None = None):
        super().__init__(placer)
        self._lanes = Lanes()
        self._gpus: tuple | None = None
        self._shapes: dict[Req, Shape] = {}  # queue shapes, for the run
        # ``easy-backfill:ssl``: predictions from the duration predictor (``policies.ssl``)
        self.ssl = make_ssl(predictor, self.name)

    @property
    def label(self) -> str:
        return f"{label(self.name, self.ssl)}+{self.placer.name}"

    def queue_key(self, js) -> tuple:
        if self.ssl is not None:
            self.ssl.joined(js)
        return (js.submit,)

    def on_finish(self, ctx, js) -> None:
        if self.ssl is not None:
            self.ssl.completed(js)

    def prepare(self, ctx) -> None:
        self._lanes = Lanes()
        self._shapes = {}
        if self.ssl is not None:
            self.ssl.reset()

    def on_start(self, ctx, js) -> None:
        self._lanes.discard(js)

    def on_stop(self, ctx, js) -> None:
        self._lanes.stopped(js)

    def schedule(self, ctx) -> None:
        if self.ssl is not None:  # before the lanes read the new jobs' predictions
            self.ssl.refresh(ctx, rekey=False)
        head = greedy_pass(ctx, blocking=True)
        if head is None or ctx.nothing_fits():
            return
        resv = self._reservation(ctx, head)
        self._lanes.sync(ctx)
        after = ctx.waiting.key_of(head)
        while after is not None:
            after = self._backfill(ctx, after, resv)

    def _backfill(self, ctx: SchedContext, after: tuple, resv: _Reservation) -> tuple | None:
        """Tries, in queue order past the key ``after``, each job that may backfill: one
        predicted to end by the shadow time, or one that may fit beside the reservation
        (needing at most the spare GPU share). Each shape of job is a stream of queue
        keys, the streams merged in queue order; a shape that cannot fit now is dropped
        whole (it cannot fit again in this pass: capacity only shrinks), and of a shape
        wider than the spare share only the jobs predicted to end in time are visited
        (or, where most are, the others are passed over).

        Returns the key of a job that started and runs past the shadow time (it took
        spare capacity, so which shapes may use it changed: resume after it); None when
        the pass is over."""
        now, lanes, shadow = ctx.now, self._lanes, resv.shadow
        extra = resv.spare()
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
                if not (ends_in_time or js.job.gpu_demand <= extra):
                    continue  # wider than the spare share: cannot fit beside the head
                if resv.start(ctx, js, ends_in_time) and not ends_in_time:
                    return key  # it runs past the shadow on spare capacity
            return None
        finally:
            lanes.release()

    def _reservation(self, ctx: SchedContext, head: JobState) -> _Reservation:
        """Plays the predicted ends of the running jobs, in order, until the head's
        placer places the head (see the module's docstring).

        The search follows only what decides whether the head fits: each released
        node's free GPU shares, CPU and memory, in lists, checked where they changed
        (the head fits nowhere now). At the first time it fits, the state predicted then
        is built on a copy of the live state, exactly on the nodes the head fits on (for
        a gang: the idle nodes), from the releases touching them; the other nodes, with
        fewer releases or none, cannot take the head either, so the placer chooses as it
        would on the full prediction."""
        state, req, now = ctx.state, head.req, ctx.now
        allowed = state.type_list(req.types_key)
        every = req.types_key == 0
        remaining = ctx.predicted_remaining
        ends = [(now + remaining(js), js.idx, js.placement) for js in ctx.running.values()
                if every or any(allowed[p[0]] for p in js.placement)]
        ends.sort()
        _up, _whole, cpu_now, mem_now, _free = state.node_lists()
        node_gpus = self._node_gpus(state)
        num, milli, need_cpu, need_mem = req.num_gpus, req.milli, req.cpu, req.mem
        fractional = req.fractional
        multi = bool(num) and needs_multi_node(state, req)
        rows: dict[int, list[int]] = {}  # released nodes: free share per GPU
        cpu: dict[int, int] = {}
        mem: dict[int, int] = {}
        idle_nodes: set[int] = set()  # for a gang: idle nodes of the allowed types
        if multi:
            whole_now = state.node_lists()[1]
            idle_nodes = {n for n, g in enumerate(node_gpus)
                          if g and allowed[n] and _up[n] and whole_now[n] == g}
        idle = sum(node_gpus[n] for n in idle_nodes)
        touched: list[int] = []
        for i, (t, _idx, placement) in enumerate(ends):
            for n, gpus, share, c, m in placement:
                if not allowed[n]:
                    continue
                row = rows.get(n)
                if row is None:
                    row = rows[n] = state.gpu_free[n].tolist()
                    cpu[n], mem[n] = cpu_now[n], mem_now[n]
                for g in gpus:
                    row[g] += share
                cpu[n] += c
                mem[n] += m
                touched.append(n)
            if i + 1 < len(ends) and ends[i + 1][0] == t:
                continue  # ends at the same instant: released together
            if multi:  # enough GPUs on whole idle nodes, and one of them changed
                ok = False
                for n in touched:
                    if n in idle_nodes:
                        ok = True
                    elif node_gpus[n] and rows[n].count(WHOLE_GPU) == node_gpus[n]:
                        idle_nodes.add(n)
                        idle += node_gpus[n]
                        ok = True
                ok = ok and idle >= num
                where = idle_nodes
            else:
                where = {n for n in touched
                         if cpu[n] >= need_cpu and mem[n] >= need_mem
                         and (not num or (max(rows[n]) >= milli if fractional
                                          else rows[n].count(WHOLE_GPU) >= num))}
                ok = bool(where)
            touched.clear()
            if not ok:
                continue
            at = state.copy()
            for _t, _i, p in ends[: i + 1]:
                if any(x[0] in where for x in p):
                    at.release(p)
            reserved = self.placer.place(at, req)
            if reserved is not None:
                return _Reservation(self._shapes, t, state, at,
                                    _busy_first(state, at, req, reserved))
        return _Reservation(self._shapes, INF, state)

    def _node_gpus(self, state: ClusterState) -> list[int]:
        """GPUs per node, as a list (fixed for a cluster)."""
        got = self._gpus
        if got is None or got[0] is not state:
            got = self._gpus = (state, state.node_gpus.tolist())
        return got[1]


def _busy_first(state: ClusterState, at: ClusterState, req: Req,
                placement: Placement) -> Placement:
    """The reservation of a whole-GPU head with, on each of its nodes, the GPUs busy now
    taken first (any idle GPUs of the node serve the head alike at the shadow time);
    the GPUs free now are left to backfill."""
    if not req.num_gpus or req.fractional:
        return placement
    out = []
    for node, gpus, milli, cpu, mem in placement:
        now_free = state.gpu_free[node].tolist()
        idle = [g for g, f in enumerate(at.gpu_free[node].tolist()) if f == WHOLE_GPU]
        idle.sort(key=now_free.__getitem__)  # stable: lower index first among equals
        out.append((node, tuple(sorted(idle[: len(gpus)])), milli, cpu, mem))
    return out


class _Reservation:
    """The head's reservation in one pass, and the rule for what may start beside it.

    ``at`` is the cluster state predicted at the shadow time with the head placed
    (``reserved``); ``within()`` the live state with what the reservation needs held
    back: per GPU, CPU and memory of the reserved nodes, the part free now that ``at``
    does not leave free. A job predicted to run past the shadow time is placed there.
    Both states only lose capacity during a pass, so a requirement that found no
    placement within stays placeless for the rest of it."""

    __slots__ = ("_failed", "_seen", "_shapes", "_within", "at", "nodes", "reserved",
                 "shadow", "spare_milli", "state")

    def __init__(self, shapes: dict, shadow: float, state: ClusterState,
                 at: ClusterState | None = None, reserved: Placement | None = None):
        self._shapes = shapes  # queue shapes by requirement, kept for the run
        self.shadow = shadow
        self.state = state
        self.at = at
        self.reserved = reserved or []
        self.nodes = {p[0] for p in self.reserved}
        if at is not None:
            at.allocate(self.reserved)
        self._within: ClusterState | None = None
        self._seen = -1  # the live state's version ``_within`` follows
        self._failed: dict[tuple, list[Req]] = {}
        # an upper bound on the GPU share a job running past the shadow may get
        if state.down:
            free = int(state.free_milli[state.up].sum())
        else:
            free = state.total_milli - state.used_milli
        self.spare_milli = free - sum(b for _n, _g, b in self._held_gpus())

    def spare(self) -> float:
        """The spare GPU share in GPUs (as ``Job.gpu_demand`` counts them)."""
        return self.spare_milli / WHOLE_GPU

    def _held_gpus(self):
        """(node, GPU, share) held back: free now, taken by the head at the shadow."""
        live, at = self.state, self.at
        for node, gpus, _m, _c, _mem in self.reserved:
            for g in gpus:
                b = live.gpu_free.item(node, g) - at.gpu_free.item(node, g)
                if b > 0:
                    yield node, g, b

    def within(self) -> ClusterState:
        """The live state with the reservation's needs held back (kept in step with the
        starts of this pass, rebuilt when a start touched a reserved node)."""
        live = self.state
        if self._within is None or self._seen != live.version:
            held: list = [(node, (g,), b, 0, 0) for node, g, b in self._held_gpus()]
            for node in self.nodes:
                cpu = live.cpu_free.item(node) - self.at.cpu_free.item(node)
                mem = live.mem_free.item(node) - self.at.mem_free.item(node)
                if cpu > 0 or mem > 0:
                    held.append((node, (), 0, max(cpu, 0), max(mem, 0)))
            self._within = live.copy()
            self._within.allocate(held)
            self._seen = live.version
        return self._within

    def start(self, ctx: SchedContext, js: JobState, ends_in_time: bool) -> bool:
        """Starts the waiting job if the rule lets it (``ends_in_time``: it is predicted
        to end by the shadow time); whether it started."""
        live = self.state
        if not ctx.fits(js):  # not even on the live state (an answer kept across passes
            # while no capacity comes back): as a failed start, its shape is suspect
            shape = self._shapes.get(js.req)
            if shape is None:
                shape = self._shapes[js.req] = shape_of(live, js.req)
            ctx.cycle.suspect.add(shape)
            return False
        if ends_in_time:  # anywhere
            follows = self._within is not None and self._seen == live.version
            if not ctx.try_start(js):
                return False
            if follows and self.nodes.isdisjoint([p[0] for p in js.placement]):
                self._within.allocate(js.placement)  # the same change as the live state's
                self._seen = live.version
            return True
        req = js.req
        kind = (req.types_key, req.fractional, req.num_gpus > 0
                and needs_multi_node(live, req))
        for f in self._failed.get(kind, ()):
            if f == req or (not kind[2] and req.num_gpus >= f.num_gpus
                            and req.milli >= f.milli and req.cpu >= f.cpu
                            and req.mem >= f.mem):
                return False
        within = self.within()
        if not ctx.try_start(js, within=within):
            self._failed.setdefault(kind, []).append(req)
            return False
        within.allocate(js.placement)  # it holds this share now and at the shadow
        self._seen = live.version
        self.at.allocate(js.placement)
        self.spare_milli -= req.demand_milli
        return True
