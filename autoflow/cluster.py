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
    name = source[len("builtin:"):] if source.startswith("builtin:") else source
    if (BUILTIN_DIR / f"{name}.yaml").exists() and not Path(source).exists():
        return load_yaml(BUILTIN_DIR / f"{name}.yaml")
    if source.startswith("yaml:"):
        source = source[5:]
    if Path(source).suffix in (".yaml", ".yml") or Path(source).exists():
        return load_yaml(source)
    raise ClusterError(f"unknown cluster {source!r}: give a YAML file, alibaba-openb:NODES.csv "
                       f"or a built-in name ({', '.join(builtin_names())})")


def scale_to_load(spec: ClusterSpec, workload: Workload, rho: float) -> ClusterSpec:
    """Resizes the cluster, keeping its node mix, so offered GPU-time is ``rho`` of capacity.

    Node groups (same type, GPUs, CPU, memory) keep their proportions (largest-remainder
    rounding); every GPU type keeps at least one node, and enough of the largest nodes
    remain for the widest job to run.
    """
    if rho <= 0:
        raise ClusterError(f"--load must be > 0, got {rho}")
    offered = workload.offered_gpu_seconds()
    if offered <= 0:
        raise ClusterError("cannot size the cluster by load: the workload offers no GPU-time")
    target_gpus = offered / (rho * workload.span)
    groups: dict[tuple, list[Node]] = {}
    for n in spec.nodes:
        groups.setdefault((n.gpu_type, n.gpus, n.cpu_milli, n.memory_mib), []).append(n)
    gpu_nodes = [n for n in spec.nodes if n.gpus > 0]
    if not gpu_nodes:
        raise ClusterError(f"cluster {spec.name} has no GPUs to scale")
    factor = target_gpus / spec.total_gpus
    shares = {k: len(v) * factor for k, v in groups.items()}
    counts = {k: int(math.floor(s)) for k, s in shares.items()}
    # largest remainder until the GPU target is reached
    order = sorted(groups, key=lambda k: -(shares[k] - counts[k]))
    gpus = sum(counts[k] * k[1] for k in counts)
    for k in order:
        if gpus >= target_gpus:
            break
        counts[k] += 1
        gpus += k[1]
    for t in {k[0] for k in groups if k[1] > 0}:  # every GPU type stays present
        ks = [k for k in groups if k[0] == t and k[1] > 0]
        if not any(counts[k] for k in ks):
            counts[max(ks, key=lambda k: len(groups[k]))] += 1
    widest = max((j.num_gpus for j in workload), default=0)
    big = max((k for k in groups if k[1] > 0), key=lambda k: (k[1], len(groups[k])))
    while sum(counts[k] * k[1] for k in counts if k[0] == big[0]) < widest:
        counts[big] += 1
    nodes: list[Node] = []
    for k, members in groups.items():
        for i in range(counts[k]):
            src = members[i % len(members)]
            nodes.append(replace(src, name=src.name if i < len(members) else f"{src.name}-x{i}"))
    return ClusterSpec(f"{spec.name}@load{rho:g}", nodes)
