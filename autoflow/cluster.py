"""Cluster descriptions: nodes with a GPU type, GPU count, CPU and memory.

Sources for ``--cluster``: a YAML file, a built-in name (``philly-64``, optionally
written ``builtin:philly-64``), or ``alibaba-openb:NODES.csv`` (the 1,213-node list).
"""

from __future__ import annotations

import csv
from collections import Counter
from dataclasses import dataclass, field
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
    """Resizes the cluster, keeping its node mix, so offered GPU-time over the spread of
    submit times (``Workload.span``) is about ``rho`` of capacity; every job shape that runs
    on the full cluster still runs.

    Resizing only, and the load as it was defined before ``autoflow.load`` (kept for
    callers written against it): whole nodes and the jobs' own needs (a wide gang, a rare
    GPU type) can leave the load well off ``rho``. ``autoflow.load.fit_load`` reaches
    ``rho``; ``bench``, the environment's episodes and training validation use it.
    """
    from .load import resize

    return resize(spec, workload, rho, mix_tolerance=None, span=workload.span)
