"""Cluster descriptions: nodes with a GPU type, GPU count, CPU and memory.

Sources for ``--cluster``: a YAML file, a built-in name (``philly-64``, optionally
written ``builtin:philly-64``), or ``alibaba-openb:NODES.csv`` (the 1,213-node list).
"""

from __future__ import annotations

import csv
import math
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path

import yaml

from .errors import ClusterError
from .workload import Workload

BUILTIN_DIR = Path(__file__).parent / "clusters"


@dataclass(frozen=True, slots=True)
class Node:
    name: str
    gpu_type: str
    gpus: int
    cpu_milli: int = 0  # 0 = not tracked
    memory_mib: int = 0  # 0 = not tracked


@dataclass
class ClusterSpec:
    name: str
    nodes: list[Node] = field(default_factory=list)

    @property
    def total_gpus(self) -> int:
        return sum(n.gpus for n in self.nodes)

    @property
    def gpu_types(self) -> list[str]:
        return sorted({n.gpu_type for n in self.nodes})

    def describe(self) -> dict:
        mix = Counter((n.gpu_type, n.gpus) for n in self.nodes)
        return {"name": self.name, "nodes": len(self.nodes), "gpus": self.total_gpus,
                "mix": {f"{t}x{g}": c for (t, g), c in sorted(mix.items())}}


def builtin_names() -> list[str]:
    return sorted(p.stem for p in BUILTIN_DIR.glob("*.yaml"))


def from_dict(d: dict, origin: str) -> ClusterSpec:
    if not isinstance(d, dict) or not isinstance(d.get("nodes"), list) or not d["nodes"]:
        raise ClusterError(f"{origin}: expected a mapping with a non-empty 'nodes' list")
    nodes: list[Node] = []
    for i, entry in enumerate(d["nodes"]):
        if not isinstance(entry, dict):
            raise ClusterError(f"{origin}: nodes[{i}] must be a mapping")
        for key in ("gpu_type", "gpus"):
            if key not in entry:
                raise ClusterError(f"{origin}: nodes[{i}] lacks '{key}'")
        try:
            count = int(entry.get("count", 1))
            gpus = int(entry["gpus"])
            cpu = int(entry.get("cpu_milli", 0))
            mem = int(entry.get("memory_mib", 0))
        except (TypeError, ValueError) as e:
            raise ClusterError(f"{origin}: nodes[{i}]: {e}") from None
        if count < 1 or gpus < 0 or cpu < 0 or mem < 0:
            raise ClusterError(f"{origin}: nodes[{i}]: count must be >= 1 and sizes >= 0")
        base = entry.get("name", f"{entry['gpu_type']}-{i}")
        for k in range(count):
            nodes.append(Node(f"{base}-{k}" if count > 1 else str(base), str(entry["gpu_type"]),
                              gpus, cpu, mem))
    return ClusterSpec(str(d.get("name", origin)), nodes)


def load_yaml(path: str | Path) -> ClusterSpec:
    p = Path(path)
    if not p.exists():
        raise ClusterError(f"{path}: file not found")
    try:
        d = yaml.safe_load(p.read_text())
    except yaml.YAMLError as e:
        raise ClusterError(f"{path}: not valid YAML: {e}") from None
    return from_dict(d, str(path))


def load_openb_nodes(path: str | Path) -> ClusterSpec:
    """Alibaba openb node list: ``sn,cpu_milli,memory_mib,gpu,model``."""
    p = Path(path)
    if not p.exists():
        raise ClusterError(f"{path}: file not found")
    nodes = []
    with open(p, newline="") as f:
        reader = csv.DictReader(f)
        need = {"sn", "cpu_milli", "memory_mib", "gpu", "model"}
        if not need <= set(reader.fieldnames or []):
            raise ClusterError(f"{path}:1: expected columns {', '.join(sorted(need))}")
        for row in reader:
            try:
                nodes.append(Node(row["sn"], row["model"] or "unknown", int(row["gpu"]),
                                  int(row["cpu_milli"]), int(row["memory_mib"])))
            except (TypeError, ValueError) as e:
                raise ClusterError(f"{path}:{reader.line_num}: {e}") from None
    if not nodes:
        raise ClusterError(f"{path}: no nodes")
    return ClusterSpec(f"alibaba-openb:{p.name}", nodes)


def load_cluster(source: str) -> ClusterSpec:
    if source.startswith("alibaba-openb:"):
        return load_openb_nodes(source.split(":", 1)[1])
    name = source.removeprefix("builtin:")
    if (BUILTIN_DIR / f"{name}.yaml").exists() and not Path(source).exists():
        return load_yaml(BUILTIN_DIR / f"{name}.yaml")
    source = source.removeprefix("yaml:")
    if Path(source).suffix in (".yaml", ".yml") or Path(source).exists():
        return load_yaml(source)
    raise ClusterError(f"unknown cluster {source!r}: give a YAML file, alibaba-openb:NODES.csv "
                       f"or a built-in name ({', '.join(builtin_names())})")


def scale_to_load(spec: ClusterSpec, workload: Workload, rho: float) -> ClusterSpec:
    """Resizes the cluster, keeping its node mix, so offered GPU-time is ``rho`` of capacity.

    Node groups (same type, GPUs, CPU, memory) keep their proportions (largest-remainder
    rounding). Then, for every job shape that could run on the full cluster but not on
    the resized one (a GPU type, a wide gang, a large CPU or memory request), the most
    common node group able to host it gets one more node, so that no job is left out.
    The achieved load can therefore be below ``rho`` for tiny targets: bench reports it.
    """
    from .feasibility import fits_now
    from .state import ClusterState

    if rho <= 0:
        raise ClusterError(f"--load must be > 0, got {rho}")
    offered = workload.offered_gpu_seconds()
    if offered <= 0:
        raise ClusterError("cannot size the cluster by load: the workload offers no GPU-time")
    if not any(n.gpus for n in spec.nodes):
        raise ClusterError(f"cluster {spec.name} has no GPUs to scale")
    target_gpus = offered / (rho * workload.span)
    groups: dict[tuple, list[Node]] = {}
    for n in spec.nodes:
        groups.setdefault((n.gpu_type, n.gpus, n.cpu_milli, n.memory_mib), []).append(n)
    factor = target_gpus / spec.total_gpus
    shares = {k: len(v) * factor for k, v in groups.items()}
    counts = {k: math.floor(s) for k, s in shares.items()}
    gpus = sum(counts[k] * k[1] for k in counts)
    for k in sorted(groups, key=lambda k: -(shares[k] - counts[k])):
        if gpus + k[1] / 2 > target_gpus:  # nearest, not always above
            continue
        if k[1] > 0:
            counts[k] += 1
            gpus += k[1]

    def build() -> ClusterSpec:
        nodes: list[Node] = []
        for k, members in groups.items():
            for i in range(counts[k]):
                src = members[i % len(members)]
                nodes.append(replace(src, name=src.name if i < len(members)
                                     else f"{src.name}-x{i}"))
        return ClusterSpec(f"{spec.name}@load{rho:g}", nodes)

    full = ClusterState(spec)
    shapes = {}
    for j in workload:
        shapes.setdefault((j.num_gpus, j.gpu_milli, tuple(sorted(j.gpu_types)), j.cpu_milli,
                           j.memory_mib), j)
    by_size = sorted(groups, key=lambda k: -len(groups[k]))

    def fits_with(extra: dict) -> ClusterState | None:
        for k, n in extra.items():
            counts[k] += n
        st = ClusterState(build())
        for k, n in extra.items():
            counts[k] -= n
        return st

    cur = ClusterState(build())
    for job in shapes.values():
        if fits_now(cur, cur.compile(job)) or not fits_now(full, full.compile(job)):
            continue  # fits already, or not even on the full cluster (the simulator says so)
        for k in by_size:  # the most common node group that makes it fit gets the nodes
            need = max(1, -(-job.num_gpus // k[1])) if k[1] else 1
            trial = fits_with({k: need})
            if fits_now(trial, trial.compile(job)):
                counts[k] += need
                cur = trial
                break
    # the added nodes may overshoot: drop proportional nodes while every job still fits
    runnable = [j for j in shapes.values() if fits_now(cur, cur.compile(j))]
    for k in sorted(groups, key=lambda k: -counts[k]):
        while counts[k] > 0 and sum(counts[g] * g[1] for g in counts) - k[1] / 2 >= target_gpus:
            trial = fits_with({k: -1})
            if not trial.spec.nodes or not all(fits_now(trial, trial.compile(j)) for j in runnable):
                break
            counts[k] -= 1
    return build()
