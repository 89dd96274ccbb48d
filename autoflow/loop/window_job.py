"""One window judged in a process of its own (``python -m autoflow.loop.window_job DIR``).

The service's loop (``loop.online``) writes a window's outcomes into ``DIR`` and runs this
module in a child process, so that replays and training never hold the service's
interpreter: ``DIR/window.json`` (the window's index and span, the registry's files
folder, the loop's settings), ``known.csv``, ``censored.csv``, ``backlog.csv`` and
``reference.csv`` (normalized CSVs; an empty one is left out), ``dependencies.json``
(the window's jobs' dependencies on one another) and ``cluster.yaml`` (the service's
nodes). The store's URL comes in the environment (``AUTOFLOW_LOOP_DB``), never
in a file: it may hold a password. It runs ``loop.step.judge_window`` and writes
``DIR/result.json``: the window's report fields, the retraining events, the promoted
model; or ``{"error": ...}`` with exit status 1.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from pathlib import Path

from .. import jsonsafe
from ..errors import ConfigError

FILES = ("known", "censored", "backlog", "reference")
DB_ENV = "AUTOFLOW_LOOP_DB"  # the registry's store URL, given by environment (not in a file)


def write_cluster(spec, path: Path) -> None:
    """The service's nodes as a cluster YAML that ``load_cluster`` reads back."""
    import yaml

    nodes = [{"name": n.name, "gpu_type": n.gpu_type, "gpus": n.gpus,
              "cpu_milli": n.cpu_milli, "memory_mib": n.memory_mib} for n in spec.nodes]
    path.write_text(yaml.safe_dump({"name": spec.name, "nodes": nodes}, sort_keys=False))


def write_inputs(folder: Path, meta: dict, jobs: dict[str, list], spec) -> None:
    """``window.json``, the four CSVs and ``cluster.yaml`` into ``folder``."""
    from dataclasses import replace

    from ..traces import normalized
    from ..workload import Workload

    folder.mkdir(parents=True, exist_ok=True)
    # dependencies go beside the CSVs (one file each would refuse a parent in another):
    # among the window's own jobs only, those on jobs that ended before it left out
    ids = {j.job_id for name in FILES if name != "reference" for j in jobs[name]}
    deps = {j.job_id: [p for p in j.depends_on if p in ids]
            for name in FILES if name != "reference" for j in jobs[name] if j.depends_on}
    jsonsafe.write(folder / "dependencies.json", {k: v for k, v in deps.items() if v})
    for name in FILES:  # an empty list writes no file
        if jobs[name]:
            normalized.write(Workload([replace(j, depends_on=()) for j in jobs[name]],
                                      source=name), folder / f"{name}.csv")
    write_cluster(spec, folder / "cluster.yaml")
    jsonsafe.write(folder / "window.json", meta)


def read_jobs(path: Path) -> list:
    from ..traces import normalized
    from ..traces.base import ImportOptions

    return list(normalized.load(str(path), ImportOptions()).jobs) if path.is_file() else []


def read_inputs(folder: Path) -> dict[str, list]:
    """The four job lists ``write_inputs`` wrote, with their dependencies."""
    from dataclasses import replace

    jobs = {name: read_jobs(folder / f"{name}.csv") for name in FILES}
    jobs["censored"] = [replace(j, censored=True) for j in jobs["censored"]]
    deps_file = folder / "dependencies.json"
    deps = json.loads(deps_file.read_text()) if deps_file.is_file() else {}
    for name in ("known", "censored", "backlog"):
        jobs[name] = [replace(j, depends_on=tuple(deps.get(j.job_id, ()))) for j in jobs[name]]
    return jobs


def run(folder: Path, trainer=None) -> dict:
    """Judges the window in ``folder`` (see the module docstring); returns the result."""

    from ..cluster import load_cluster
    from .challenger import ChallengerConfig
    from .compare import CompareConfig
    from .drift import DriftConfig
    from .offline import LoopConfig
    from .registry import Registry
    from .step import Window, judge_window

    meta = json.loads((folder / "window.json").read_text())
    jobs = read_inputs(folder)
    s = meta["settings"]
    cfg = LoopConfig(sources=[], out=str(folder), seed=int(s["seed"]),
                     heuristics=tuple(s["heuristics"]),
                     drift=DriftConfig(**s["drift"]),
                     challenger=ChallengerConfig(**{k: tuple(v) if isinstance(v, list) else v
                                                    for k, v in s["challenger"].items()}),
                     compare=CompareConfig(**{k: tuple(v) if isinstance(v, list) else v
                                              for k, v in s["compare"].items()}))
    cluster = str(folder / "cluster.yaml")
    spec = load_cluster(cluster)
    url = os.environ.get(DB_ENV)
    if not url:
        raise ConfigError(f"{DB_ENV} is not set: the registry's store URL")
    registry = Registry(url, Path(meta["files_dir"]))
    try:
        win = Window(int(meta["index"]), tuple(meta["span"]), jobs["known"], jobs["censored"],
                     jobs["backlog"])
        row, events, promoted = judge_window(
            registry, win, jobs["reference"], tuple(meta["reference_span"]), spec, cluster,
            cfg, folder / "retrain", meta.get("command", "autoflow serve --self-optimize"),
            trainer)
    finally:
        registry.close()
    result = {"index": win.index, "row": row, "events": events, "promoted": promoted}
    jsonsafe.write(folder / "result.json", result)
    return result


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m autoflow.loop.window_job DIR", file=sys.stderr)
        return 2
    folder = Path(argv[0])
    try:
        run(folder)
    except Exception as e:  # noqa: BLE001 - the service reads the failure from the file
        jsonsafe.write(folder / "result.json", {"error": f"{type(e).__name__}: {e}",
                                                "traceback": traceback.format_exc()})
        print(f"window {folder}: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
