"""What a learned scheduler sees at a decision, what it may do, and doing it.

Shared by the Gymnasium environment (training) and the ``rl`` policy (bench, service),
so that the agent sees exactly the same thing in both. Everything is computed from a
:class:`~autoflow.core.context.SchedContext`; the true duration is never read.

The observation has a fixed size whatever the cluster or the queue:

* ``jobs``: ``queue_slots`` rows of job features, a window of the waiting queue. The
  window holds the head of the queue (fit or not, so that a blocked head is visible),
  the first blocked jobs that could start by preempting jobs of a higher LAS level, then
  jobs that fit now: the earliest in queue order and the shortest by predicted duration.
  A queue no longer than the window is shown whole. How many waiting jobs are not shown
  is a cluster feature. Rows are kept per job between decisions (``envs.rows``).
* ``running``: ``running_slots`` rows of features of running jobs, preemptible ones
  first, in LAS's victim order (highest attained-service level, then the latest to
  reach that level).
* ``cluster``: free capacity (in all and by GPU type), fragmentation, queue and
  running-set summaries.

Actions: ``0..Q-1`` start queue slot *i*; ``Q..Q+R-1`` preempt running slot *j*;
``Q+R`` wait for the next event.
"""

from __future__ import annotations

import itertools
import math
import struct
from dataclasses import dataclass

import numpy as np

from autoflow.core.jobstate import JobState
from autoflow.feasibility import ShapeGate, fits_now
from autoflow.job import INFERENCE, TRAINING
from autoflow.policies.las import EPS, THRESHOLDS, crosses_at, level_of

from .features import CLIP, CLUSTER_FEATURES, JOB_FEATURES, RUNNING_FEATURES, TYPE_SLOTS
from .las_choice import las_action
from .rows import N_JOB, N_RUN, JobRows, RunningRows

_LAS_CHOICE, _LAS_VICTIM = JOB_FEATURES.index("las_choice"), RUNNING_FEATURES.index("las_victim")
_LAS_WAITS = CLUSTER_FEATURES.index("las_waits")


@dataclass(frozen=True)
class ObsConfig:
    queue_slots: int = 16  # window of the waiting queue
    head_slots: int = 4  # of which reserved for the head of the queue, fit or not
    running_slots: int = 8  # running jobs shown (preemption candidates)
    preemption: bool = True  # may the agent preempt running training jobs?
    scan_limit: int = 64  # fitting jobs examined to fill the window
    reach_slots: int = 2  # blocked jobs that preempting would let start, first in queue order
    reach_scan_limit: int = 4096  # waiting jobs examined to find them (LAS's pass goes as far)
    las_hint: bool = True  # mark LAS's choice in the observation (``envs.las_choice``)

    @property
    def n_actions(self) -> int:
        return self.queue_slots + self.running_slots + 1

    @property
    def wait_action(self) -> int:
        return self.queue_slots + self.running_slots


las_level = level_of  # the agent sees LAS's queues


def arm_level_wakeup(ctx, js: JobState) -> None:
    """Asks for a decision when a running training job's attained service crosses into the
    next LAS level (then it may become worth preempting), as LAS itself does."""
    demand, level = js.job.gpu_demand, las_level(js.attained)
    if level < len(THRESHOLDS) and demand > 0 and js.job.preemptible:
        ctx.wakeup(max(crosses_at(js, level), ctx.now), _crossed, ctx, js, js.version,
                   level + 1)


def _crossed(ctx, js: JobState, version: int, level: int) -> bool:
    if js.version != version or js.status != "running":
        return False  # it stopped meanwhile
    if level < len(THRESHOLDS):  # and on to the level after
        ctx.wakeup(max(crosses_at(js, level), ctx.now), _crossed, ctx, js, version,
                   level + 1)
    head = ctx.waiting.head()  # as LAS: a pass only if a waiting job now outranks it
    return head is not None and las_level(head.attained) < level


_T0, _T1 = THRESHOLDS


def running_levels(running, now: float) -> tuple[list[tuple], int, int, list[tuple]]:
    """``(not preemptible, -level, -entered, -start order, job)`` for every running job:
    its LAS level, when it entered that level (its start, or the moment its attained
    service crossed the level's threshold while running) and its start order. Sorted
    ascending, this is LAS's victim order (highest level, the latest to reach it).
    Also how many running jobs are preemptible (training), the sum of their levels, and
    ``(level, job)`` of those not started at ``now`` (the victims LAS's pass may take).
    ``attained_at``, ``level_of`` and ``crosses_at`` written out for speed (the same
    arithmetic, so the same floats)."""
    out = []
    append = out.append
    n_pre = level_sum = 0
    victims = []
    for r in running:
        job = r.job
        n = job.num_gpus
        demand = n * job.gpu_milli / 1000 if n else 0.0
        att = r.attained
        start = r.seg_start
        x = att + demand * (now - start) + EPS
        fixed = job.kind != TRAINING
        if x < _T0:
            append((fixed, 0, -start, -r.start_seq, r))
            if not fixed:
                n_pre += 1
                if start < now:
                    victims.append((0, r))
            continue
        level = 1 if x < _T1 else 2
        if not fixed:
            n_pre += 1
            level_sum += level
            if start < now:
                victims.append((level, r))
        bar = _T0 if level == 1 else _T1
        entered = start + (bar - att) / demand if att < bar and demand > 0 else start
        append((fixed, -level, -entered, -r.start_seq, r))
    return out, n_pre, level_sum, victims


def agent_queue_key(js: JobState) -> tuple:
    """The queue order the agent sees: least attained service first, then arrival."""
    return (las_level(js.attained), js.queue_since, js.submit)


@dataclass
class Decision:
    obs: dict[str, np.ndarray]
    mask: np.ndarray  # bool, one per action
    queue: list[JobState | None]
    running: list[JobState | None]
    now: float
    reachable: list[bool]  # per queue slot: fits once every job of a higher LAS level is
    # preempted (False where preemption is off)
    victim_keys: list[tuple]  # per shown running job: (LAS level, entered it, start order)
    can_act: bool = True  # some start or preemption is allowed (else only waiting)


_OBSERVERS = itertools.count()


def _log(x: float, unit: float) -> float:
    return math.log1p(max(x, 0.0) / unit)


class Observer:
    """Builds decisions from a scheduling context and applies actions to it."""

    def __init__(self, config: ObsConfig | None = None):
        self.config = config or ObsConfig()
        c = self.config
        if c.queue_slots < 1 or c.running_slots < 1 or not 0 <= c.head_slots <= c.queue_slots:
            raise ValueError(f"bad observation config {c}")
        # per decision, from the context's cycle state (``ctx.cycle.instant``): the jobs
        # the agent preempted at this instant (not restarted at it) and the reachable
        # states, where preemption is on
        self._preempted_now: set[int] = set()
        self._reach: _ReachStates | None = None
        self.scratch_key = ("agent", next(_OBSERVERS))  # its entry in the cycle state
        self._types_of = None  # the cluster state ``_types`` was computed for
        self._ctx = None  # the run the row tables belong to
        q, r = c.queue_slots * len(JOB_FEATURES), c.running_slots * len(RUNNING_FEATURES)
        self._size = q + r + len(CLUSTER_FEATURES)
        self._zeros = [0.0] * max(q, r)  # padding of absent rows
        self._pack = struct.Struct(f"{self._size}d").pack  # the fastest list -> array
        self._views = lambda buf: (buf[:q].reshape(c.queue_slots, -1),
                                   buf[q: q + r].reshape(c.running_slots, -1), buf[q + r:])

    # -- the window ----------------------------------------------------------------
    def _queue_window(self, ctx) -> tuple[list[JobState], int]:
        c = self.config
        waiting = ctx.waiting
        if len(waiting) <= c.queue_slots:  # every waiting job fits in the window
            return waiting.first(c.queue_slots), 0
        shown = waiting.first(c.head_slots)
        seen = {js.idx for js in shown}
        n_reach = min(c.reach_slots, c.queue_slots - len(shown)) if self._reach else 0
        if len(waiting) <= min(c.scan_limit, c.reach_scan_limit):
            fitting, reach = self._walk(ctx, seen, n_reach)
        else:
            fitting, reach = self._search(ctx, seen, n_reach)
        if self._reach is not None:
            shown = shown + reach
            seen.update(js.idx for js in reach)
            fitting = [js for js in fitting if js.idx not in seen]
        room = c.queue_slots - len(shown)
        early = fitting[: (room + 1) // 2]
        rest = sorted(fitting[len(early):], key=lambda js: (js.predicted, js.idx))
        shown = shown + early + rest[: room - len(early)]
        if len(shown) < c.queue_slots:  # few fit: show more of the queue
            ids = {s.idx for s in shown}
            more = [js for js in waiting.first(c.queue_slots + len(shown)) if js.idx not in ids]
            shown += more[: c.queue_slots - len(shown)]
        shown.sort(key=waiting.key_of)
        return shown, len(waiting) - len(shown)

    def _walk(self, ctx, seen: set[int], n_reach: int) -> tuple[list[JobState],
                                                                 list[JobState]]:
        """A short queue in one pass: the jobs that fit now (not shown already) and the
        first ``n_reach`` blocked ones that preempting jobs of a higher LAS level would
        let start, both in queue order. The same lists as ``_search``, which skips
        whole shapes to stay cheap on a long queue."""
        fitting: list[JobState] = []
        reach: list[JobState] = []
        gone = self._preempted_now
        rs = self._reach
        top = rs.top if rs is not None else 0
        for js in ctx.waiting:
            if js.idx in gone:
                continue
            if ctx.fits(js):
                if js.idx not in seen:
                    fitting.append(js)
            elif (len(reach) < n_reach and js.idx not in seen
                  and (k := las_level(js.attained)) < top and rs.fits_level(k, js.req)):
                reach.append(js)
        return fitting, reach

    def _search(self, ctx, seen: set[int], n_reach: int) -> tuple[list[JobState],
                                                                   list[JobState]]:
        """``_walk`` for a long queue: at most ``scan_limit`` fitting jobs, and the
        blocked ones found within ``reach_scan_limit`` jobs examined."""
        c = self.config
        fitting: list[JobState] = []
        for js in ctx.open_waiting():
            if len(fitting) >= c.scan_limit:
                break
            if js.idx not in seen and js.idx not in self._preempted_now and ctx.fits(js):
                fitting.append(js)
        reach = (self._reach.first_blocked(ctx, seen | self._preempted_now, n_reach,
                                           c.reach_scan_limit) if self._reach else [])
        return fitting, reach

    def _running_window(self, keyed: list[tuple]) -> tuple[list[JobState], list[tuple]]:
        """The shown running jobs, LAS's victims first (highest level, then the latest to
        reach it), and their ``(level, entered, start order)`` keys. ``keyed``:
        ``running_levels`` of the running jobs."""
        top = sorted(keyed)[: self.config.running_slots]  # keys are unique (start order)
        return [k[-1] for k in top], [(-k[1], -k[2], -k[3]) for k in top]

    # -- the decision ---------------------------------------------------------------
    def observe(self, ctx) -> Decision:
        c = self.config
        now = ctx.now
        kept_now = ctx.cycle.instant(self.scratch_key, dict, now)
        self._preempted_now = kept_now.setdefault("preempted", set())
        total_gpus = max(1.0, ctx.state.total_milli / 1000.0)
        if ctx is not self._ctx:  # a new run: fresh tables of rows
            self._ctx = ctx
            self._job_rows, self._run_rows = JobRows(total_gpus), RunningRows(total_gpus)
        keyed, n_pre, level_sum, victims = running_levels(ctx.running.values(), now)
        if c.preemption:  # the reachable states of the last decision, if still true
            last = kept_now.get("reach")
            kept = last.states_if_current(ctx) if last is not None else None
            self._reach = kept_now["reach"] = _ReachStates(ctx, victims, kept)
        queue, hidden = self._queue_window(ctx)
        running, victim_keys = self._running_window(keyed)
        head = ctx.waiting.head()

        q = c.queue_slots
        gone, fits_now_ = self._preempted_now, ctx.fits
        fits = [js.idx not in gone and fits_now_(js) for js in queue]
        blocked = not all(fits)
        reachable = (self._reachable(ctx, queue, fits, now) if c.preemption and blocked
                     else [False] * len(queue))
        flat: list[float] = []  # jobs, running, cluster: one float32 array at the end
        for row in self._job_rows.rows(queue, fits, reachable, head, now):
            flat += row
        flat += self._zeros[: (q - len(queue)) * N_JOB]
        preempt = [False] * c.running_slots
        if running:
            for row in self._run_rows.rows(running, now, [k[0] for k in victim_keys]):
                flat += row
            if c.preemption and blocked:
                preempt[: len(running)] = [r.job.preemptible and r.seg_start < now
                                           for r in running]
        flat += self._zeros[: (c.running_slots - len(running)) * N_RUN]
        n_fit = sum(fits)
        wait = not (not ctx.running and n_fit)
        mask = np.array([*fits, *[False] * (q - len(queue)), *preempt, wait], dtype=bool)
        flat += self._cluster_row(ctx, queue, hidden, n_fit, now, total_gpus, n_pre,
                                  level_sum)
        buf = np.frombuffer(self._pack(*flat), dtype=np.float64).astype(np.float32)
        np.minimum(buf, CLIP, out=buf)
        np.maximum(buf, -CLIP, out=buf)
        jobs, run, cluster = self._views(buf)
        obs = {"jobs": jobs, "running": run, "cluster": cluster}
        pad_q = [*queue, *[None] * (c.queue_slots - len(queue))]
        pad_r = [*running, *[None] * (c.running_slots - len(running))]
        pad_reach = [*reachable, *[False] * (c.queue_slots - len(queue))]
        d = Decision(obs, mask, pad_q, pad_r, now, pad_reach, victim_keys,
                     n_fit > 0 or True in preempt)
        if c.las_hint:
            a = las_action(d, c)
            if a < q:
                jobs[a, _LAS_CHOICE] = 1.0
            elif a < c.wait_action:
                run[a - q, _LAS_VICTIM] = 1.0
            else:
                cluster[_LAS_WAITS] = 1.0
        return d

    def _reachable(self, ctx, queue, fits, now: float) -> list[bool]:
        """Which blocked jobs would fit if every preemptible job of a higher LAS level
        (and not started at this instant) were preempted."""
        reach = self._reach
        return [not ok and js.idx not in self._preempted_now and reach.fits(js)
                for js, ok in zip(queue, fits)]

    def _cluster_row(self, ctx, queue, hidden: int, n_fit: int, now: float,
                     total_gpus: float, n_pre: int, level_sum: int) -> list[float]:
        st = ctx.state
        free_share, idle_gpus, frag, idle_nodes, types, cpu_share = (
            _capacity(st, *self._type_order(st)) if st.down
            else self._capacity_all_up(st, total_gpus))
        running = ctx.running
        head = ctx.waiting.head()
        wait_demand = sum(js.job.gpu_demand for js in queue)  # shown jobs only: O(window)
        n_inf = sum(1 for js in queue if js.job.kind == INFERENCE)
        level = level_sum / n_pre / 2 if n_pre else 0.0  # of the preemptible jobs
        q = self.config.queue_slots
        return [
            free_share, idle_gpus, frag, idle_nodes, *types, _log(len(running), 1) / 5,
            _log(len(ctx.waiting), 1) / 5, _log(hidden, 1) / 5,
            min(wait_demand / total_gpus, CLIP), min(st.used_milli / 1000.0 / total_gpus, CLIP),
            min(cpu_share, 1.0), _log(n_inf, 1) / 5, n_pre / max(1, len(running)),
            level, n_fit / q,
            _log(now - head.submit, 60) / 5 if head else 0.0, 0.0,  # las_waits: set later
        ]

    def _capacity_all_up(self, st, total_gpus: float) -> tuple:
        """``_capacity`` from the cluster state's running totals (every node up)."""
        cap_gpus = max(1.0, st.total_milli / 1000.0)
        free = st.total_milli - st.used_milli
        types = [0.0] * (2 * TYPE_SLOTS)
        if len(st.types) == 1:
            types[0], types[TYPE_SLOTS] = free / (1000.0 * total_gpus), 1.0
        else:
            order, caps = self._type_order(st)
            for i, (t, cap) in enumerate(zip(order, caps)):
                types[i] = st.type_free[t] / max(1.0, cap * 1000.0)
                types[TYPE_SLOTS + i] = cap / total_gpus
        cpu_share = (st.tracked_cpu_free / st.tracked_cpu if st.tracked_cpu else 1.0)
        return (free / (1000.0 * cap_gpus), st.whole_total / cap_gpus,
                float(st.partial_free) / free if free else 0.0,
                st.idle_nodes / max(1, st.num_nodes), types, cpu_share)

    def _type_order(self, st) -> tuple[list[int], list[float]]:
        """The (up to) ``TYPE_SLOTS`` GPU types with the most GPUs, largest first, and
        their GPU counts (fixed for a cluster: computed once)."""
        if self._types_of is not st:
            caps = sorted(((int(st.node_gpus[st.node_type == t].sum()), t)
                           for t in range(len(st.types))), reverse=True)[:TYPE_SLOTS]
            self._types = ([t for _, t in caps], [float(c) for c, _ in caps])
            self._types_of = st
        return self._types

    # -- acting -----------------------------------------------------------------------
    def apply(self, ctx, decision: Decision, action: int) -> bool:
        """Does ``action``; False if it is not allowed now (nothing is changed then)."""
        c = self.config
        if not 0 <= action < c.n_actions or not decision.mask[action]:
            return False
        if action == c.wait_action:
            return True
        version = ctx.state.version
        if action < c.queue_slots:
            js = decision.queue[action]
            if js is None or not ctx.try_start(js):
                return False
            if self._reach is not None:
                self._reach.after_start(js.placement, version)
            return True
        r = decision.running[action - c.queue_slots]
        if r is None or r.status != "running":
            return False
        placement = r.placement
        ctx.preempt(r)
        self._preempted_now.add(r.idx)
        if self._reach is not None:
            self._reach.after_preempt(r, placement, version)
        return True


def _capacity(st, order: list[int], caps: list[float]) -> tuple:
    """Free share, idle GPUs, fragmentation, idle nodes, free share and capacity by GPU
    type (``order``, ``caps``: ``Observer._type_order``), free CPU share: of the live
    nodes, from the arrays (some node is down)."""
    live = st.up
    free_milli, whole, gpus = st.free_milli[live], st.whole_free[live], st.node_gpus[live]
    free = float(free_milli.sum())
    cap_gpus = max(1.0, float(gpus.sum()))
    total_gpus = max(1.0, st.total_milli / 1000.0)
    types = [0.0] * (2 * TYPE_SLOTS)
    if len(st.types) == 1:
        types[0], types[TYPE_SLOTS] = free / (1000.0 * total_gpus), 1.0
    else:
        by_type = np.bincount(st.node_type[live], free_milli, minlength=len(st.types))
        for i, (t, cap) in enumerate(zip(order, caps)):
            types[i] = float(by_type[t]) / max(1.0, cap * 1000.0)
            types[TYPE_SLOTS + i] = cap / total_gpus
    cpu_cap = st.cpu_capacity[live]
    tracked = cpu_cap > 0
    cpu_share = (float(st.cpu_free[live][tracked].sum()) / float(cpu_cap[tracked].sum())
                 if tracked.any() else 1.0)
    return (free / (1000.0 * cap_gpus), float(whole.sum()) / cap_gpus, st.fragmentation(),
            float(np.count_nonzero(whole == gpus)) / max(1, len(gpus)), types, cpu_share)


class _ReachStates:
    """For each LAS level ``k`` of waiting jobs, the cluster as it would be once every
    preemptible running job of a higher level (and not started at this instant) were
    preempted: what LAS's pass could give a job of that level. Built lazily, once per
    decision."""

    def __init__(self, ctx, victims: list[tuple[int, JobState]], kept: dict | None = None):
        self.ctx = ctx
        self.victims = victims  # (LAS level, job): ``running_levels``' victims
        self._top: int | None = None
        self._states: dict[int, tuple] = kept if kept is not None else {}
        # the live state these were built for: the same instant and version
        self._now, self._version = ctx.now, ctx.state.version

    # The states stay true across the decisions of one instant when only the agent's
    # own actions changed the cluster: a start takes the same GPUs in every state (the
    # job started now, so it is nobody's victim), a preemption frees the job's GPUs in
    # the states that had not freed them already. Any other change (an event, time
    # passing) changes the version or the instant, and they are built afresh.
    def states_if_current(self, ctx) -> dict | None:
        """The states, if the cluster is still the one they were kept for."""
        if ctx is self.ctx and ctx.now == self._now and ctx.state.version == self._version:
            return self._states
        return None

    def after_start(self, placement, version: int) -> None:
        """The agent started a job with ``placement`` on the live state at ``version``."""
        if version != self._version:
            self._version = None  # not ours to follow
            return
        for st, gate, known in self._states.values():
            st.allocate(placement)
            known.clear()
        self._version = self.ctx.state.version

    def after_preempt(self, job: JobState, placement, version: int) -> None:
        """The agent preempted ``job`` (which held ``placement``) at ``version``."""
        if version != self._version:
            self._version = None
            return
        level = next((lvl for lvl, r in self.victims if r is job), None)
        for k, (st, gate, known) in self._states.items():
            if level is None or level <= k:  # this state still held the job
                st.release(placement)
                known.clear()
        self._version = self.ctx.state.version

    @property
    def top(self) -> int:
        """The highest LAS level of a victim: no job of that level or above can gain."""
        if self._top is None:
            self._top = max((lvl for lvl, _ in self.victims), default=0)
        return self._top

    def _state(self, k: int) -> tuple:
        got = self._states.get(k)
        if got is None:
            st = self.ctx.state.copy()
            for lvl, r in self.victims:
                if lvl > k:
                    st.release(r.placement)
            got = self._states[k] = (st, ShapeGate(st), {})
        return got

    def fits_level(self, k: int, req) -> bool:
        """Whether ``req`` fits in the reachable state of LAS level ``k``."""
        st, _gate, known = self._state(k)
        ok = known.get(req)
        if ok is None:
            ok = known[req] = fits_now(st, req)
        return ok

    def fits(self, js: JobState) -> bool:
        k = las_level(js.attained)
        return k < self.top and self.fits_level(k, js.req)

    def first_blocked(self, ctx, skip: set[int], limit: int, budget: int) -> list[JobState]:
        """The first ``limit`` waiting jobs in queue order (not in ``skip``) that do not
        fit now but would fit in their level's reachable state; ``budget`` jobs examined
        at most."""
        out: list[JobState] = []
        waiting = ctx.waiting
        for k in range(self.top):
            if len(out) >= limit:
                break
            _st, gate, _known = self._state(k)
            for js in waiting.iter_open(gate.open, (k,) if k else None):
                budget -= 1
                if waiting.key_of(js)[0] > k or budget < 0:
                    break
                if js.idx in skip or ctx.fits(js) or not self.fits_level(k, js.req):
                    continue
                out.append(js)
                if len(out) >= limit:
                    break
        return out
