"""SchedContext: what a policy may see and do during one scheduling pass.

It wraps a :class:`~autoflow.core.scheduler.SchedulerCore`, whatever backend carries
the decisions out (simulator, service, Ray)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..feasibility import SCAN_NODES, Shape, fit_node, fits_now, fits_on, needs_multi_node
from ..job import WHOLE_GPU
from ..state import ClusterState, Req
from .cycle import FITTED_PER_KIND, CycleState
from .jobstate import JobState

if TYPE_CHECKING:
    from ..policies.base import Policy
    from .queue import SortedQueue
    from .scheduler import SchedulerCore


class SchedContext:
    """Binds a policy to a scheduler core. What it derives from the cluster state to
    answer quickly (``try_start`` remembers which requirements did not fit, so a long
    queue costs little when the cluster is full; ``fits`` keeps its answers) lives in
    ``cycle`` (:class:`~autoflow.core.cycle.CycleState`), under one invalidation rule."""

    def __init__(self, core: SchedulerCore):
        self._core = core
        self.state: ClusterState = core.state
        self.policy: Policy = core.policy
        self.cycle = CycleState(self.state)
        self.now = 0.0

    # -- what the policy sees -------------------------------------------------
    @property
    def waiting(self) -> SortedQueue:
        return self._core.waiting

    @property
    def running(self) -> dict[int, JobState]:
        return self._core.running

    def clock(self) -> float:
        """The backend's time now (``now`` is the time of the current pass; a policy's
        hooks and timers may run between passes)."""
        return self._core.backend.now()

    @property
    def held(self) -> list[JobState]:
        """The submitted jobs held until the jobs they depend on have succeeded."""
        return list(self._core.held.values())

    def dependants(self, js: JobState) -> list[JobState]:
        """The jobs that depend on ``js`` directly (``autoflow.workflow``), registered so
        far, whatever their state."""
        return self._core._kids.get(js.job.job_id, [])

    def workflow(self, js: JobState) -> list[JobState]:
        """Every registered job of ``js``'s workflow (``Job.workflow_id``); ``[js]`` for a
        job outside any."""
        wf = js.job.workflow_id
        return self._core.workflows.get(wf, [js]) if wf else [js]

    def predict(self, job) -> float:
        """The history estimator's predicted duration of ``job`` (never the truth): for
        the stages of a workflow that have not been submitted yet."""
        return self._core.estimator.predict(job)

    def nothing_fits(self) -> bool:
        """No free GPU share on any live node, and no waiting job needs only CPU."""
        return self.state.used_milli >= self._core.live_milli and not self._core.cpu_only_waiting

    def shape_open(self, shape: Shape) -> bool:
        """False when no job of this shape (``feasibility.shape_of``) can start now: by
        the headroom, by a requirement no larger that found no place, or, for shapes
        with a job that failed in this pass, by the least the shape's jobs need. A shape
        found closed stays so until capacity comes back (``CycleState.shape_shut``)."""
        cycle = self.cycle
        if cycle.shape_shut(shape):
            return False
        if cycle.gate.open(shape, exact=shape in cycle.suspect):
            return True
        cycle.shut(shape)
        return False

    def open_waiting(self, after: tuple | None = None):
        """Waiting jobs in queue order, skipping shapes that cannot fit now. For passes
        in which capacity only shrinks (no preemption while iterating)."""
        return self.waiting.iter_open(self.shape_open, after)

    @property
    def enqueued(self) -> int:
        """How many times a job joined the waiting queue so far (arrivals, preemptions,
        evictions)."""
        return self._core.enqueued

    def joined_since(self, mark: int) -> list[JobState] | None:
        """The jobs that joined the waiting queue after the first ``mark`` (``enqueued``)
        and still wait, in queue order; None if that is no longer known."""
        core = self._core
        joined, waiting = core.joined, core.waiting
        k = core.enqueued - mark
        if k > len(joined):
            return None
        new = {js.idx: js for js in joined[len(joined) - k:] if js in waiting}
        return sorted(new.values(), key=waiting.key_of)

    def shape(self, js: JobState) -> Shape:
        """The job's queue shape (``feasibility.shape_of``)."""
        return self._core.shape(js)

    def grown_since(self, version: int) -> list[int]:
        """The nodes that gained capacity since the state was at ``version``."""
        return [n for n, v in enumerate(self.state.node_grown) if v > version]

    def predicted_remaining(self, js: JobState) -> float:
        """Predicted remaining run time (from the history estimator, never the truth)."""
        done = js.running_progress(self.now)
        return max(js.predicted - done, 0.1 * done, 60.0)

    # -- what the policy does -------------------------------------------------
    def begin_pass(self, now: float) -> None:
        self.now = now
        self.cycle.begin(now)

    def try_start(self, js: JobState, within: ClusterState | None = None) -> bool:
        """Places and starts the job if it fits now; False otherwise.

        With ``within``, the job is placed on that state instead of the live one: a copy
        of the live state with some capacity held back (nowhere freer than the live
        state), e.g. an EASY reservation's. A failure there says nothing about the live
        state and is not remembered."""
        req = js.req
        if req.demand_milli > self._core.live_milli - self.state.used_milli:
            return False  # not enough free share in the whole cluster
        cycle = self.cycle
        free, best_gpu, best_cpu, best_mem = cycle.gate.headroom(req.types_key)
        if req.num_gpus and (req.demand_milli > free or req.milli > best_gpu):
            return False  # not enough on the nodes of the allowed types
        if (req.cpu > best_cpu or req.mem > best_mem) and not needs_multi_node(self.state, req):
            return False
        if cycle.known_to_fail(req):
            cycle.suspect.add(self._core.shape(js))
            return False
        placement = self.policy.placer.place(self.state if within is None else within, req)
        if placement is None:
            if within is None:
                cycle.failed(req, self._core.shape(js))
            return False
        self._core.start(js, placement)
        return True

    def fits(self, js: JobState) -> bool:
        """Whether the job could start now. Cached per requirement: a "yes" holds while
        the node it was found on keeps its capacity (or, for a gang across nodes, until
        any capacity shrinks), a "no" until capacity grows (for a job on one node of a
        small cluster: on a node that can take it)."""
        req, st = js.req, self.state
        got = self.cycle.fits.get(req)
        if got is not None:
            ok, seen, node = got
            if ok:
                if st.unshrunk_since(seen, node):
                    return True
            elif seen >= st.grown:
                return False
            elif (st.num_nodes <= SCAN_NODES and not needs_multi_node(st, req)
                  and not fits_on(st, req, self.grown_since(seen))):
                # the nodes that gained capacity since cannot take it, the others only
                # lost some: still no (on openb a finish frees one node of 11)
                self.cycle.fits[req] = (False, st.version, -2)
                return False
        node = self._fit_node(req)
        ok = node != -2
        self.cycle.fits[req] = (ok, st.version, node)
        return ok

    def _fit_node(self, req: Req) -> int:
        """A node the requirement fits on now; -1 if it fits only across nodes (a gang
        wider than any node), -2 if it does not fit. Answered without scanning where the
        answer is sure: not when the allowed nodes lack the GPU share, CPU or memory in
        total or on any one node; on the same node when a requirement of the same kind
        needing at least as much of everything fitted there and that node has not lost
        capacity since."""
        st, cycle = self.state, self.cycle
        free, best_gpu, best_cpu, best_mem = cycle.gate.headroom(req.types_key)
        if req.num_gpus and (req.demand_milli > free or req.milli > best_gpu):
            return -2
        multi = needs_multi_node(st, req)
        if (req.cpu > best_cpu or req.mem > best_mem) and not multi:
            return -2
        if cycle.known_to_fail(req):
            return -2
        kind = (req.types_key, req.fractional, multi)
        fitted = cycle.fitted.setdefault(kind, [])
        for f, seen, node in fitted:
            if (req.num_gpus <= f.num_gpus and req.milli <= f.milli and req.cpu <= f.cpu
                    and req.mem <= f.mem and st.unshrunk_since(seen, node)):
                return node
        if multi:
            node = -1 if fits_now(st, req) else -2
        else:
            node = fit_node(st, req)
            if node < 0:
                node = -2
        if node != -2:
            if len(fitted) >= FITTED_PER_KIND:
                fitted[:] = [x for x in fitted
                             if st.unshrunk_since(x[1], x[2])][1 - FITTED_PER_KIND:]
            fitted.append((req, st.version, node))
        return node

    def preempt(self, js: JobState) -> None:
        self._core.preempt(js)
        self.cycle.suspect.clear()  # capacity came back

    def start_with_preemption(self, js: JobState, victims: list[JobState]) -> bool:
        """Starts ``js`` by preempting the shortest prefix of ``victims`` (worst-ranked
        first) that makes room for it, if any. If the policy hands victims back
        (``Policy.hand_back_victims``), those of the prefix that still fit beside ``js``
        keep running, the best-ranked first: only the victims needed are preempted.

        Victims are released tentatively on the live state (no copy); if no prefix makes
        room they are put back exactly as they were."""
        state, req = self.state, js.req
        if req.types_key == 0 and not state.down:
            # no type constraint, every node up: a victim frees its demand
            allowed = None
            free = state.total_milli - state.used_milli
            gain = [v.req.demand_milli for v in victims]
        else:
            allowed = state.type_masks[req.types_key] & state.up
            free = int(state.free_milli[allowed].sum())
            gain = [sum(len(g) * m for node, g, m, _c, _m in v.placement if allowed[node])
                    for v in victims]
        if free + sum(gain) < req.demand_milli:
            return False  # even all of them would not free enough GPU share
        released: list[JobState] = []
        placement = None
        first = 0
        if not needs_multi_node(state, req) and fit_node(state, req) < 0:
            # the prefix is found on per-node lists first, and only that one is released
            # and placed: a failed attempt (on openb srtf-oracle, nine in ten) touches
            # nothing, instead of releasing, placing and allocating back victim by victim
            first = self._prefix_to_fit(req, victims)
            if first is None:
                return False
            for v in victims[:first]:
                state.release(v.placement)
                released.append(v)
            placement = self.policy.placer.place(state, req)
            free += sum(gain[:first])
        for v, g in zip(victims[first:], gain[first:]):
            if placement is not None:
                break
            state.release(v.placement)
            released.append(v)
            free += g
            if free >= req.demand_milli:
                placement = self.policy.placer.place(state, req)
                if placement is not None:
                    break
        needed = released
        if placement is not None and len(released) > 1 and self.policy.hand_back_victims:
            needed, placement = self._hand_back(req, released, placement)
        for v in reversed(needed):
            state.allocate(v.placement)
        if placement is None:
            return False
        for v in needed:
            self.preempt(v)
        self._core.start(js, placement)
        return True

    def _prefix_to_fit(self, req: Req, victims: list[JobState]) -> int | None:
        """For a job that fits on one node but on none now: how many victims, taken in
        order, must go before it fits on a node (a node whose capacity they freed: the
        others stay as full as now), or None if even all of them are not enough. The
        placer places it then exactly when it fits on some node (``feasibility.node_mask``
        and ``fit_nodes``), so this is the prefix the release-and-place loop stops at."""
        st = self.state
        up, _whole, cpu_free, mem_free, _free = st.node_lists()
        allowed = st.type_list(req.types_key)
        num, milli, cpu, mem = req.num_gpus, req.milli, req.cpu, req.mem
        fractional = req.fractional
        rows: dict[int, list] = {}  # per node freed so far: [GPU shares..., cpu, mem]
        gpu_free = st.gpu_free
        for k, v in enumerate(victims, 1):
            for node, gpus, share, c, m in v.placement:
                row = rows.get(node)
                if row is None:
                    if not (allowed[node] and up[node]):
                        continue
                    row = rows[node] = gpu_free[node].tolist()
                    row.append(cpu_free[node])
                    row.append(mem_free[node])
                for g in gpus:
                    row[g] += share
                row[-2] += c
                row[-1] += m
                if row[-2] < cpu or row[-1] < mem:
                    continue
                if (not num or (max(row[:-2]) >= milli if fractional
                                else row[:-2].count(WHOLE_GPU) >= num)):
                    return k
        return None

    def _hand_back(self, req: Req, released: list[JobState], placement):
        """Of the victims released (worst first) to make room, gives back, the best-ranked
        first, each one beside which the job still finds a place; returns the victims
        still needed and the job's placement. Victims given back hold their share again
        on the state; the needed ones stay released."""
        state, placer = self.state, self.policy.placer
        kept = set()
        for v in reversed(released[:-1]):  # (the last one released was needed)
            state.allocate(v.placement)
            p = placer.place(state, req)
            if p is None:
                state.release(v.placement)
            else:
                placement = p
                kept.add(v.idx)
        if not kept:
            return released, placement
        return [v for v in released if v.idx not in kept], placement

    def wakeup(self, at: float, fn=None, *args) -> None:
        """Asks for a scheduling pass at time ``at``; with ``fn``, calls ``fn(*args)`` first
        and skips the pass if it returns False."""
        self._core.wakeup(at, fn, *args)
