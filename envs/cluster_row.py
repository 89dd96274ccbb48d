"""The ``cluster`` part of the observation: capacity, fragmentation and summaries.

:class:`ClusterRow` writes the row of ``CLUSTER_FEATURES``: free capacity (in all and by
GPU type, for the up to ``TYPE_SLOTS`` largest types), fragmentation, idle nodes, free
CPU, and summaries of the queue window and the running set. Every node up, it reads the
cluster state's running totals; some node down, it sums the arrays of the live nodes
(``capacity``). The entry ``las_waits`` is left 0 here (``Observer.observe`` marks it).
"""

from __future__ import annotations

import math

import numpy as np

from autoflow.job import INFERENCE

from .features import CLIP, TYPE_SLOTS


def _log(x: float, unit: float) -> float:
    return math.log1p(max(x, 0.0) / unit)


class ClusterRow:
    """Builds the cluster row; keeps the GPU type order of the cluster it last saw."""

    def __init__(self, queue_slots: int):
        self.queue_slots = queue_slots
        self._types_of = None  # the cluster state ``_types`` was computed for

    def row(self, ctx, queue, hidden: int, n_fit: int, now: float, total_gpus: float,
            n_pre: int, level_sum: int) -> list[float]:
        st = ctx.state
        free_share, idle_gpus, frag, idle_nodes, types, cpu_share = (
            capacity(st, *self.type_order(st)) if st.down
            else self._capacity_all_up(st, total_gpus))
        running = ctx.running
        head = ctx.waiting.head()
        wait_demand = sum(js.job.gpu_demand for js in queue)  # shown jobs only: O(window)
        n_inf = sum(1 for js in queue if js.job.kind == INFERENCE)
        level = level_sum / n_pre / 2 if n_pre else 0.0  # of the preemptible jobs
        q = self.queue_slots
        return [
            free_share, idle_gpus, frag, idle_nodes, *types, _log(len(running), 1) / 5,
            _log(len(ctx.waiting), 1) / 5, _log(hidden, 1) / 5,
            min(wait_demand / total_gpus, CLIP), min(st.used_milli / 1000.0 / total_gpus, CLIP),
            min(cpu_share, 1.0), _log(n_inf, 1) / 5, n_pre / max(1, len(running)),
            level, n_fit / q,
            _log(now - head.submit, 60) / 5 if head else 0.0, 0.0,  # las_waits: set later
        ]

    def _capacity_all_up(self, st, total_gpus: float) -> tuple:
        """``capacity`` from the cluster state's running totals (every node up)."""
        cap_gpus = max(1.0, st.total_milli / 1000.0)
        free = st.total_milli - st.used_milli
        types = [0.0] * (2 * TYPE_SLOTS)
        if len(st.types) == 1:
            types[0], types[TYPE_SLOTS] = free / (1000.0 * total_gpus), 1.0
        else:
            order, caps = self.type_order(st)
            for i, (t, cap) in enumerate(zip(order, caps)):
                types[i] = st.type_free[t] / max(1.0, cap * 1000.0)
                types[TYPE_SLOTS + i] = cap / total_gpus
        cpu_share = (st.tracked_cpu_free / st.tracked_cpu if st.tracked_cpu else 1.0)
        return (free / (1000.0 * cap_gpus), st.whole_total / cap_gpus,
                float(st.partial_free) / free if free else 0.0,
                st.idle_nodes / max(1, st.num_nodes), types, cpu_share)

    def type_order(self, st) -> tuple[list[int], list[float]]:
        """The (up to) ``TYPE_SLOTS`` GPU types with the most GPUs, largest first, and
        their GPU counts (fixed for a cluster: computed once)."""
        if self._types_of is not st:
            caps = sorted(((int(st.node_gpus[st.node_type == t].sum()), t)
                           for t in range(len(st.types))), reverse=True)[:TYPE_SLOTS]
            self._types = ([t for _, t in caps], [float(c) for c, _ in caps])
            self._types_of = st
        return self._types


def capacity(st, order: list[int], caps: list[float]) -> tuple:
    """Free share, idle GPUs, fragmentation, idle nodes, free share and capacity by GPU
    type (``order``, ``caps``: ``ClusterRow.type_order``), free CPU share: of the live
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
