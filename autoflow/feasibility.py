"""The one feasibility function: where could job J go *now*?

It feeds the placers' candidate sets, the policies (through the placers) and, later,
the Gymnasium environment's action mask and the Kubernetes extender's filter.
"""

from __future__ import annotations

import numpy as np

from .job import WHOLE_GPU
from .state import ClusterState, Req


def node_mask(state: ClusterState, req: Req) -> np.ndarray:
    """Nodes on which the job fits entirely (single-node placement)."""
    m = state.up & state.type_masks[req.types_key]
    if req.cpu:
        m &= state.cpu_free >= req.cpu
    if req.mem:
        m &= state.mem_free >= req.mem
    if req.num_gpus == 0:
        return m
    if req.fractional:
        return m & (state.gpu_free >= req.milli).any(axis=1)
    return m & (state.whole_free >= req.num_gpus)


def gpu_mask(state: ClusterState, req: Req) -> np.ndarray:
    """For a fractional job: (node, GPU) pairs with enough free share, as a 2-D mask."""
    return node_mask(state, req)[:, None] & (state.gpu_free >= req.milli)


def needs_multi_node(state: ClusterState, req: Req) -> bool:
    """A gang wider than any allowed node runs across whole nodes."""
    return req.num_gpus > state.widest(req.types_key)


def idle_nodes(state: ClusterState, req: Req) -> np.ndarray:
    """Whole idle nodes a multi-node gang may use."""
    m = state.up & state.type_masks[req.types_key] & (state.node_gpus > 0)
    return m & (state.whole_free == state.node_gpus)


SCAN_NODES = 48  # up to this many nodes, fits_now scans Python lists instead


def fits_now(state: ClusterState, req: Req) -> bool:
    if needs_multi_node(state, req):
        nodes = idle_nodes(state, req)
        return int(state.node_gpus[nodes].sum()) >= req.num_gpus
    return fit_node(state, req) >= 0


def _scan_args(state: ClusterState, req: Req) -> tuple:
    """For the list scans: per node the capacity tested first (idle GPUs, the largest
    free GPU share, or free CPU for a job without GPUs) and the need for it; the type,
    up, CPU and memory lists; the CPU and memory needs left to test."""
    up, whole, cpu_free, mem_free, _free = state.node_lists()
    allowed = state.type_list(req.types_key)
    cpu, mem = req.cpu, req.mem
    if req.num_gpus == 0:
        need, have, cpu = cpu, cpu_free, 0  # the CPU test goes first
    elif req.fractional:
        need, have = req.milli, state.best_gpu_list()
    else:
        need, have = req.num_gpus, whole
    return have, need, allowed, up, cpu_free, mem_free, cpu, mem


def fit_node(state: ClusterState, req: Req) -> int:
    """The first node on which the job fits entirely now (single-node placement), or -1.
    Up to ``SCAN_NODES`` nodes, scans Python lists instead of arrays."""
    if state.num_nodes > SCAN_NODES:
        m = node_mask(state, req)
        i = int(m.argmax())
        return i if m[i] else -1
    have, need, allowed, up, cpu_free, mem_free, cpu, mem = _scan_args(state, req)
    for i, h in enumerate(have):  # the GPU (or CPU) test first: it rules out most nodes
        if h >= need and allowed[i] and up[i] and cpu_free[i] >= cpu and mem_free[i] >= mem:
            return i
    return -1


def fits_on(state: ClusterState, req: Req, nodes) -> bool:
    """Whether the job fits entirely on one of ``nodes`` now (``node_mask`` there)."""
    up, whole, cpu_free, mem_free, _free = state.node_lists()
    allowed, best = state.type_list(req.types_key), state.best_gpu_list()
    num, milli, cpu, mem = req.num_gpus, req.milli, req.cpu, req.mem
    fractional = req.fractional
    for n in nodes:
        if (allowed[n] and up[n] and cpu_free[n] >= cpu and mem_free[n] >= mem
                and (not num or (best[n] >= milli if fractional else whole[n] >= num))):
            return True
    return False


def fit_nodes(state: ClusterState, req: Req) -> np.ndarray:
    """``np.flatnonzero(node_mask(state, req))``: every node on which the job fits
    entirely now, in index order; from the lists up to ``SCAN_NODES`` nodes."""
    if state.num_nodes > SCAN_NODES:
        return np.flatnonzero(node_mask(state, req))
    have, need, allowed, up, cpu_free, mem_free, cpu, mem = _scan_args(state, req)
    return np.array([i for i, h in enumerate(have) if h >= need and allowed[i] and up[i]
                     and cpu_free[i] >= cpu and mem_free[i] >= mem], dtype=np.intp)


Shape = tuple[int, int, int, int, int]


def shape_of(state: ClusterState, req: Req) -> Shape:
    """A coarse signature that lets a pass skip many jobs at once: the GPU shape exactly
    (types, GPUs, share per GPU), CPU and memory rounded down to three significant bits (0 for a
    gang across nodes, whose per-node need is smaller)."""
    if req.num_gpus and needs_multi_node(state, req):
        return (req.types_key, req.num_gpus, req.milli, 0, 0)
    return (req.types_key, req.num_gpus, req.milli, _floor2(req.cpu), _floor2(req.mem))


def _floor2(x: int) -> int:
    """``x`` rounded down to its three leading bits (at most 12.5% below ``x``)."""
    drop = max(x.bit_length() - 3, 0)
    return (x >> drop) << drop


def headroom(state: ClusterState, types_key: int) -> tuple[int, int, int, int]:
    """On the live nodes a type constraint allows: total free GPU share, and the largest
    free GPU share, CPU and memory on any one of them."""
    if types_key == 0 and not state.down:  # the common case: no masking needed
        if state.num_nodes <= SCAN_NODES:
            _up, _whole, cpu, mem, _free = state.node_lists()
            best_gpu = (WHOLE_GPU if state.whole_total
                        else max(state.best_gpu_list(), default=-1))
            best_cpu, best_mem = max(cpu, default=0), max(mem, default=0)
        else:
            best_gpu = WHOLE_GPU if state.whole_total else int(state.gpu_free.max(initial=-1))
            best_cpu, best_mem = int(state.cpu_free.max(initial=0)), int(state.mem_free.max(initial=0))
        return state.total_milli - state.used_milli, best_gpu, best_cpu, best_mem
    if state.num_nodes <= SCAN_NODES:
        up, _whole, cpu, mem, free = state.node_lists()
        gpu = state.best_gpu_list()
        live = [i for i, (a, u) in enumerate(zip(state.type_list(types_key), up)) if a and u]
        return (sum(free[i] for i in live), max((gpu[i] for i in live), default=-1),
                max((cpu[i] for i in live), default=0), max((mem[i] for i in live), default=0))
    m = state.up & state.type_masks[types_key]
    return (int(state.free_milli[m].sum()), int(state.gpu_free[m].max(initial=-1)),
            int(state.cpu_free[m].max(initial=0)), int(state.mem_free[m].max(initial=0)))


def shape_may_fit(shape: Shape, room: tuple[int, int, int, int]) -> bool:
    """False when no job of ``shape`` can fit in a state with this ``headroom``."""
    _types, num, milli, cpu, mem = shape
    free, best_gpu, best_cpu, best_mem = room
    if num and (num * milli > free or milli > best_gpu):
        return False
    return cpu <= best_cpu and mem <= best_mem


def shape_fits(state: ClusterState, shape: Shape) -> bool:
    """Whether the least a job of ``shape`` could need fits now (if not, none fits)."""
    types_key, num, milli, cpu, mem = shape
    return fits_now(state, Req(num, milli, types_key, cpu, mem))


class ShapeGate:
    """Could any job of a shape fit in ``state`` now? First the cheap per-type headroom,
    then (with ``exact``) the least the shape's jobs need. Answers are kept while the
    state stays at the version they were found at."""

    def __init__(self, state: ClusterState):
        self.state = state
        self._room: dict[int, tuple[int, int, int, int]] = {}
        self._ok: dict[Shape, bool] = {}
        self._version = state.version

    def _current(self) -> None:
        if self._version != self.state.version:
            self._room.clear()
            self._ok.clear()
            self._version = self.state.version

    def headroom(self, types_key: int) -> tuple[int, int, int, int]:
        if self._version != self.state.version:
            self._current()
        room = self._room.get(types_key)
        if room is None:
            room = self._room[types_key] = headroom(self.state, types_key)
        return room

    def open(self, shape: Shape, exact: bool = True) -> bool:
        if not shape_may_fit(shape, self.headroom(shape[0])):
            return False
        if not exact:
            return True
        ok = self._ok.get(shape)
        if ok is None:
            ok = self._ok[shape] = shape_fits(self.state, shape)
        return ok


def check_all_fit(empty: ClusterState, jobs, cluster) -> None:
    """Raises ClusterError naming the first job that cannot run even on the empty
    cluster ``empty`` (it would wait forever), with how many there are."""
    from .errors import ClusterError

    unfit = [js for js in jobs if not fits_now(empty, js.req)]
    if unfit:
        j = unfit[0].job
        raise ClusterError(
            f"{len(unfit)} job(s) can never run on cluster {cluster.name} "
            f"({cluster.total_gpus} GPUs, types {', '.join(empty.types)}); e.g. "
            f"{j.job_id}: {j.num_gpus} GPU(s) x {j.gpu_milli}/1000, types "
            f"{'|'.join(j.gpu_types) or 'any'}, cpu {j.cpu_milli}m, mem {j.memory_mib} MiB")
