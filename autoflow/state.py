"""ClusterState: what is free right now, per node and per GPU (shares in thousandths).

Arrays, not objects, so that feasibility and placement are a few numpy operations over
all nodes at once. ``gpu_free[n, g]`` is the free share of GPU ``g`` on node ``n`` in
thousandths (1000 = idle GPU, -1 = no such GPU).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .cluster import ClusterSpec
from .errors import InvariantError, require
from .job import WHOLE_GPU, Job


class Req(NamedTuple):
    """What one job needs, compiled against a cluster: the key of many caches, so a
    tuple, hashed and compared in C."""

    num_gpus: int
    milli: int  # per GPU share; 1000 = whole GPUs, 0 = no GPU
    types_key: int  # index into ClusterState.type_masks
    cpu: int
    mem: int

    @property
    def fractional(self) -> bool:
        return self.num_gpus == 1 and 0 < self.milli < WHOLE_GPU

    @property
    def demand_milli(self) -> int:
        return self.num_gpus * self.milli


# A placement: (node, gpu indices, share per GPU, cpu, mem) for each node used.
Placement = list[tuple[int, tuple[int, ...], int, int, int]]


class ClusterState:
    def __init__(self, spec: ClusterSpec):
        self.spec = spec
        n = len(spec.nodes)
        self.types = spec.gpu_types
        self.type_index = {t: i for i, t in enumerate(self.types)}
        self.node_type = np.array([self.type_index.get(x.gpu_type, -1) for x in spec.nodes],
                                  dtype=np.int32)
        self.node_gpus = np.array([x.gpus for x in spec.nodes], dtype=np.int32)
        gmax = max(1, int(self.node_gpus.max(initial=1)))
        self.gpu_free = np.full((n, gmax), -1, dtype=np.int32)
        for i, x in enumerate(spec.nodes):
            self.gpu_free[i, : x.gpus] = WHOLE_GPU
        self.whole_free = self.node_gpus.copy()
        self.free_milli = self.node_gpus.astype(np.int64) * WHOLE_GPU
        # CPU / memory: 0 on a node means "not tracked" -> unlimited
        cpu = np.array([x.cpu_milli for x in spec.nodes], dtype=np.int64)
        mem = np.array([x.memory_mib for x in spec.nodes], dtype=np.int64)
        big = np.iinfo(np.int64).max // 4
        self.cpu_capacity = cpu  # 0 = not tracked
        self.cpu_free = np.where(cpu > 0, cpu, big)
        self.mem_free = np.where(mem > 0, mem, big)
        self.up = np.ones(n, dtype=bool)
        self.down = 0  # nodes not up (``set_up``)
        self.total_milli = int(self.free_milli.sum())
        self.used_milli = 0
        # running totals over all nodes, kept by allocate / release (checked by
        # ``check_totals``)
        self.whole_total = int(self.whole_free.sum())  # idle GPUs
        self.idle_nodes = n  # nodes with every GPU idle
        self.partial_free = 0  # free share on partly used GPUs
        self.tracked_cpu = int(cpu.sum())  # CPU of the nodes that track it
        self.tracked_cpu_free = self.tracked_cpu
        self.type_free = [0] * len(self.types)  # free share by GPU type
        self.version = 0  # bumps at every change of what is free or up
        self.shrunk = 0  # the version of the last change that took capacity away
        self.grown = 0  # the version of the last change that gave capacity back
        self.node_shrunk = [0] * n  # per node, the version of its last loss of capacity
        self.node_grown = [0] * n  # per node, the version it last gained capacity at
        # ``node_lists``: kept equal to the arrays by allocate / release / set_up
        self._lists = (self.up.tolist(), self.whole_free.tolist(), self.cpu_free.tolist(),
                       self.mem_free.tolist(), self.free_milli.tolist())
        self._best = self.gpu_free.max(axis=1).tolist()  # ``best_gpu_list``, kept
        for t, free in zip(self.node_type.tolist(), self.free_milli.tolist()):
            if t >= 0:
                self.type_free[t] += free
        self._type_keys: dict[tuple[str, ...], int] = {(): 0}
        self.type_masks: list[np.ndarray] = [np.ones(n, dtype=bool)]
        self._widest: dict[int, int] = {}
        self._type_lists: dict[int, list[bool]] = {}
        # fixed per-node facts as Python lists, for allocate / release: GPUs, GPU type,
        # whether CPU is tracked
        self._static = (self.node_gpus.tolist(), self.node_type.tolist(),
                        (cpu > 0).tolist())

    def widest(self, types_key: int) -> int:
        """GPUs of the widest node among those a requirement's types allow."""
        w = self._widest.get(types_key)
        if w is None:
            w = self._widest[types_key] = int(
                self.node_gpus[self.type_masks[types_key]].max(initial=0))
        return w

    def node_lists(self) -> tuple[list, list, list, list, list]:
        """Per node, as Python lists: up, idle GPUs, free CPU, free memory and free GPU
        share (for scans of small clusters, where numpy's cost per call outweighs the
        work). Kept up to date by every change; read them, never write them."""
        return self._lists

    def unshrunk_since(self, version: int, node: int) -> bool:
        """No capacity was taken away since ``version``: on ``node`` (a node index), or
        anywhere (``node`` < 0). A job that fitted then (on that node) still fits."""
        return version >= self.shrunk or (node >= 0 and self.node_shrunk[node] <= version)

    def best_gpu_list(self) -> list[int]:
        """Per node, the largest free share of one of its GPUs (-1 without GPUs), as a
        Python list kept up to date by allocate / release; read it, never write it."""
        return self._best

    def type_list(self, types_key: int) -> list[bool]:
        """``type_masks[types_key]`` as a Python list."""
        got = self._type_lists.get(types_key)
        if got is None:
            got = self._type_lists[types_key] = self.type_masks[types_key].tolist()
        return got

    @property
    def num_nodes(self) -> int:
        return len(self.node_gpus)

    def compile(self, job: Job) -> Req:
        key = tuple(sorted(job.gpu_types))
        tk = self._type_keys.get(key)
        if tk is None:
            allowed = np.array([self.type_index[t] for t in key if t in self.type_index],
                               dtype=np.int32)
            self.type_masks.append(np.isin(self.node_type, allowed))
            tk = self._type_keys[key] = len(self.type_masks) - 1
        return Req(job.num_gpus, job.gpu_milli if job.num_gpus else 0, tk,
                   job.cpu_milli, job.memory_mib)

    def allocate(self, p: Placement) -> None:
        self.version += 1
        self.shrunk = self.version
        gpu_free, whole_free = self.gpu_free, self.whole_free
        node_gpus, node_type, tracked = self._static
        _up_l, whole_l, cpu_l, mem_l, free_l = self._lists
        for node, gpus, milli, cpu, mem in p:
            self.node_shrunk[node] = self.version
            whole = whole_free.item(node)
            idle_before = whole == node_gpus[node]
            partial = 0
            for g in gpus:
                before = gpu_free.item(node, g)
                if before < milli:
                    raise InvariantError(f"GPU {g} of node {node} over-allocated")
                after = before - milli
                gpu_free[node, g] = after
                if before == WHOLE_GPU:
                    whole -= 1
                else:
                    partial -= before
                if 0 < after < WHOLE_GPU:
                    partial += after
            if gpus:
                self._best[node] = max(gpu_free[node].tolist())
            if whole != whole_free.item(node):
                self.whole_total -= whole_free.item(node) - whole
                whole_free[node] = whole
                whole_l[node] = whole
            self.partial_free += partial
            used = milli * len(gpus)
            if used:
                self.free_milli[node] -= used
                free_l[node] -= used
                self.used_milli += used
                t = node_type[node]
                if t >= 0:
                    self.type_free[t] -= used
            if cpu:
                if tracked[node]:
                    self.tracked_cpu_free -= cpu
                left = self.cpu_free.item(node) - cpu
                self.cpu_free[node] = cpu_l[node] = left
                if left < 0:
                    raise InvariantError(f"node {node} over-committed (CPU)")
            if mem:
                left = self.mem_free.item(node) - mem
                self.mem_free[node] = mem_l[node] = left
                if left < 0:
                    raise InvariantError(f"node {node} over-committed (memory)")
            if idle_before and whole != node_gpus[node]:
                self.idle_nodes -= 1

    def release(self, p: Placement) -> None:
        self.version += 1
        self.grown = self.version
        gpu_free, whole_free = self.gpu_free, self.whole_free
        node_gpus, node_type, tracked = self._static
        _up_l, whole_l, cpu_l, mem_l, free_l = self._lists
        for node, gpus, milli, cpu, mem in p:
            self.node_grown[node] = self.version
            whole = whole_free.item(node)
            idle_before = whole == node_gpus[node]
            partial = 0
            best = self._best[node]
            for g in gpus:
                before = gpu_free.item(node, g)
                after = before + milli
                if after > WHOLE_GPU:
                    raise InvariantError(f"GPU {g} of node {node} released more than it held")
                gpu_free[node, g] = after
                best = max(best, after)  # shares only grow here
                if 0 < before:  # (a GPU's share is never 0 < x < 1000 and whole)
                    partial -= before
                if after == WHOLE_GPU:
                    whole += 1
                elif after > 0:
                    partial += after
            self._best[node] = best
            if whole != whole_free.item(node):
                self.whole_total += whole - whole_free.item(node)
                whole_free[node] = whole
                whole_l[node] = whole
            self.partial_free += partial
            used = milli * len(gpus)
            if used:
                self.free_milli[node] += used
                free_l[node] += used
                self.used_milli -= used
                t = node_type[node]
                if t >= 0:
                    self.type_free[t] += used
            if cpu:
                if tracked[node]:
                    self.tracked_cpu_free += cpu
                self.cpu_free[node] += cpu
                cpu_l[node] += cpu
            if mem:
                self.mem_free[node] += mem
                mem_l[node] += mem
            if not idle_before and whole == node_gpus[node]:
                self.idle_nodes += 1

    def check_totals(self) -> None:
        """The running totals agree with the arrays (the simulator's invariant check)."""
        g = self.gpu_free
        require(self.whole_total == int(self.whole_free.sum()), "idle GPU total drifted")
        require(self.idle_nodes == int(np.count_nonzero(self.whole_free == self.node_gpus)),
                "idle node count drifted")
        require(self.partial_free == int(g[(g > 0) & (g < WHOLE_GPU)].sum()), "partial share")
        tracked = self.cpu_capacity > 0
        require(self.tracked_cpu_free == int(self.cpu_free[tracked].sum()), "CPU total drifted")
        require(self.down == int(np.count_nonzero(~self.up)), "down count drifted")
        for t, free in enumerate(self.type_free):
            require(free == int(self.free_milli[self.node_type == t].sum()), "type share drifted")
        require(list(self._lists) == [self.up.tolist(), self.whole_free.tolist(),
                                      self.cpu_free.tolist(), self.mem_free.tolist(),
                                      self.free_milli.tolist()], "node lists drifted")
        require(self._best == self.gpu_free.max(axis=1).tolist(), "best GPU list drifted")

    def set_up(self, node: int, up: bool) -> None:
        """Marks a node up (repaired) or down (failed)."""
        if bool(self.up[node]) != up:
            self.version += 1
            if up:
                self.grown = self.node_grown[node] = self.version
            else:
                self.shrunk = self.node_shrunk[node] = self.version
            self.up[node] = up
            self._lists[0][node] = up
            self.down += -1 if up else 1

    def copy(self) -> ClusterState:
        c = object.__new__(ClusterState)
        c.__dict__.update(self.__dict__)
        for name in ("gpu_free", "whole_free", "free_milli", "cpu_free", "mem_free", "up"):
            setattr(c, name, getattr(self, name).copy())
        c.type_free = list(self.type_free)
        c.node_shrunk = list(self.node_shrunk)
        c.node_grown = list(self.node_grown)
        c._lists = tuple(list(x) for x in self._lists)
        c._best = list(self._best)
        return c

    def without(self, placements) -> ClusterState:
        """A copy of the cluster as it would be once these placements were released: the
        cluster after preempting the jobs that hold them. (The one place it is built:
        the preemptive pass's reachable state, the agent's reachable states.)"""
        c = self.copy()
        for p in placements:
            c.release(p)
        return c

    def fragmentation(self) -> float:
        """Share of free GPU capacity that sits on partly used GPUs of live nodes."""
        if not self.down:
            free = self.total_milli - self.used_milli
            return float(self.partial_free) / free if free else 0.0
        live = self.gpu_free[self.up]  # some node is down: the live ones, from the arrays
        free = live[live > 0]
        total = int(free.sum())
        if total == 0:
            return 0.0
        return float(free[free < WHOLE_GPU].sum()) / total
