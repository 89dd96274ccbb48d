"""Cluster descriptions: nodes with a GPU type, GPU count, CPU and memory.

Sources for ``--cluster``: a YAML file, a built-in name (``philly-64``, optionally
written ``builtin:philly-64``), or ``alibaba-openb:NODES.csv`` (the 1,213-node list).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .errors import ClusterError
from .limits import MAX_CPU_MILLI, MAX_GPUS_PER_NODE, MAX_MEMORY_MIB, MAX_NODES
from .workload import Workload

BUILTIN_DIR = Path(__file__).parent / "clusters"
MAX_CLUSTER_FILE_BYTES = 10 * 2**20  # a YAML cluster file (10 MiB)


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


def _size(entry: dict, key: str, where: str, lo: int, hi: int, default: int | None = None
          ) -> int:
    """An integral size in ``lo..hi`` (YAML ints, or floats with no fraction)."""
    v = entry.get(key, default)
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    if isinstance(v, str) and v.strip().lstrip("+").isdigit():
        v = int(v.strip())
    if isinstance(v, bool) or not isinstance(v, int):
        raise ClusterError(f"{where} field '{key}': must be a whole number, got {v!r}")
    if not lo <= v <= hi:
        raise ClusterError(f"{where} field '{key}': must be {lo:,}..{hi:,}, got {v:,}")
    return v


def from_dict(d: dict, origin: str) -> ClusterSpec:
    """Nodes from a parsed YAML mapping. Sizes are whole numbers within the documented
    bounds (``autoflow.limits``: at most MAX_NODES nodes, MAX_GPUS_PER_NODE GPUs each);
    anything else is refused naming the file, the node entry and the field."""
    if not isinstance(d, dict) or not isinstance(d.get("nodes"), list) or not d["nodes"]:
        raise ClusterError(f"{origin}: expected a mapping with a non-empty 'nodes' list")
    nodes: list[Node] = []
    total = 0
    for i, entry in enumerate(d["nodes"]):
        where = f"{origin}: nodes[{i}]"
        if not isinstance(entry, dict):
            raise ClusterError(f"{where} must be a mapping")
        for key in ("gpu_type", "gpus"):
            if key not in entry:
                raise ClusterError(f"{where} lacks '{key}'")
        count = _size(entry, "count", where, 1, MAX_NODES, default=1)
        gpus = _size(entry, "gpus", where, 0, MAX_GPUS_PER_NODE)
        cpu = _size(entry, "cpu_milli", where, 0, MAX_CPU_MILLI, default=0)
        mem = _size(entry, "memory_mib", where, 0, MAX_MEMORY_MIB, default=0)
        total += count
        if total > MAX_NODES:
            raise ClusterError(f"{where} field 'count': the cluster would have {total:,} nodes, "
                               f"more than the maximum {MAX_NODES:,}")
        base = entry.get("name", f"{entry['gpu_type']}-{i}")
        for k in range(count):
            nodes.append(Node(f"{base}-{k}" if count > 1 else str(base), str(entry["gpu_type"]),
                              gpus, cpu, mem))
    return ClusterSpec(str(d.get("name", origin)), nodes)


def _read_cluster_file(path: str | Path) -> str:
    p = Path(path)
    if not p.exists():
        raise ClusterError(f"{path}: file not found")
    if p.is_dir():
        raise ClusterError(f"{path}: is a folder, expected a cluster YAML file")
    try:
        data = p.read_bytes()
    except OSError as e:
        raise ClusterError(f"{path}: cannot read: {e.strerror or e}") from None
    if len(data) > MAX_CLUSTER_FILE_BYTES:
        raise ClusterError(f"{path}: {len(data):,} bytes; a cluster file is at most "
                           f"{MAX_CLUSTER_FILE_BYTES:,}")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise ClusterError(f"{path}: not UTF-8 text (byte {e.start}): a cluster is a YAML "
                           "file") from None


def load_yaml(path: str | Path) -> ClusterSpec:
    text = _read_cluster_file(path)
    try:
        d = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ClusterError(f"{path}: not valid YAML: {' '.join(str(e).split())}") from None
    return from_dict(d, str(path))


def load_openb_nodes(path: str | Path) -> ClusterSpec:
    """Alibaba openb node list: ``sn,cpu_milli,memory_mib,gpu,model`` (gzip-compressed or
    not). Sizes must be whole numbers within the bounds of ``autoflow.limits``."""
    from .errors import TraceError
    from .traces.base import BAD_ROW, BadRow, as_int, check_file, read_csv_rows, req

    bounds = {"gpu": MAX_GPUS_PER_NODE, "cpu_milli": MAX_CPU_MILLI,
              "memory_mib": MAX_MEMORY_MIB}
    try:
        p = check_file(path)
        nodes = []
        for line, row in read_csv_rows(p, ["sn", "cpu_milli", "memory_mib", "gpu", "model"]):
            try:
                if BAD_ROW in row:
                    raise BadRow(*row[BAD_ROW])
                if None in row:
                    raise BadRow(None, "more fields than the header")
                sizes = {}
                for col, hi in bounds.items():
                    sizes[col] = as_int(row, col, min_value=0)
                    if sizes[col] > hi:
                        raise BadRow(col, f"{sizes[col]:,} is above the maximum {hi:,}")
                nodes.append(Node(req(row, "sn"), (row["model"] or "").strip() or "unknown",
                                  sizes["gpu"], sizes["cpu_milli"], sizes["memory_mib"]))
            except BadRow as e:
                raise TraceError(str(path), e.reason, line=line, column=e.column) from None
            if len(nodes) > MAX_NODES:
                raise TraceError(str(path), f"more than {MAX_NODES:,} nodes", line=line)
    except TraceError as e:
        raise ClusterError(str(e)) from None
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
