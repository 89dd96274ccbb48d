"""2026-11-30: the scheduler-core refactor changes no schedule and no observation.

    python benchmarks/experiments/core_equivalence.py inputs --tree OLD --out DIR
    python benchmarks/experiments/core_equivalence.py schedules --tree T --inputs DIR --out F
    python benchmarks/experiments/core_equivalence.py env --tree T --steps 20000 --out F
    python benchmarks/experiments/core_equivalence.py time --tree T --inputs DIR --out F

``inputs`` builds the cases (ITP cluster08 at load 1.1, cluster06 at 0.9, openb at 1.1)
with checkout OLD and pickles workload and cluster, so that later changes to importers
or to cluster sizing do not enter the comparison. ``schedules`` replays every policy x
placer on them with checkout T and records every job's starts (time, placement) and
stops; ``env`` runs seeded random masked steps of the Gymnasium environment and hashes
observations, masks, rewards and infos. Two checkouts are equivalent when their files
are identical.

The input pickles are unpickled only when their sha256 is one that ``inputs`` recorded
in the user's trust registry (``$AUTOFLOW_HOME/trusted.json``, as ``autoflow.trust``
keeps it; done here by hand, since the checkouts compared may predate that module).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import pickle
import sys
import time
from pathlib import Path

MAPPED = ("envs", "agents", "generators")
POLICIES = ("fifo", "sjf", "sjf-oracle", "srtf-oracle", "las", "las-fcfs", "easy-backfill", "rl")
PLACERS = ("first-fit", "best-fit", "spread", "fgd")
TRACES = "/work/shared/traces"


def _registry() -> Path:
    if os.environ.get("AUTOFLOW_HOME"):
        return Path(os.environ["AUTOFLOW_HOME"]).expanduser() / "trusted.json"
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "autoflow" / "trusted.json"


def _write_recorded(path: Path, data: bytes) -> None:
    path.write_bytes(data)
    reg = _registry()
    reg.parent.mkdir(parents=True, exist_ok=True)
    try:
        files = json.loads(reg.read_text())["files"]
    except (OSError, ValueError, KeyError, TypeError):
        files = {}
    files[hashlib.sha256(data).hexdigest()] = {"kind": "core-equivalence-input",
                                               "path": str(path.resolve())}
    tmp = reg.with_name(reg.name + ".tmp")
    tmp.write_text(json.dumps({"format": "autoflow-trusted/1", "files": files}, indent=1))
    os.replace(tmp, reg)


def _load_recorded(path: Path):
    data = path.read_bytes()
    try:
        files = json.loads(_registry().read_text())["files"]
    except (OSError, ValueError, KeyError, TypeError):
        files = {}
    if hashlib.sha256(data).hexdigest() not in files:
        raise SystemExit(f"{path}: not an input this script wrote (its sha256 is not in "
                         f"{_registry()}); refusing to unpickle it")
    return pickle.loads(data)


def use_tree(tree: str) -> None:
    """Imports autoflow from ``tree`` (what the editable install maps, done by hand)."""
    sys.path.insert(0, tree)
    import autoflow

    assert Path(autoflow.__file__).resolve().is_relative_to(Path(tree).resolve())
    for name in MAPPED:
        init = Path(tree, name, "__init__.py")
        spec = importlib.util.spec_from_file_location(
            f"autoflow.{name}", init, submodule_search_locations=[str(init.parent)])
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)


def inputs(out: Path, traces: str) -> None:
    from autoflow.bench import prepare

    out.mkdir(parents=True, exist_ok=True)
    cases = {
        "cluster08@1.1": (f"itp:{traces}/itp/cluster08.csv", "itp-8gpu", 1.1),
        "cluster06@0.9": (f"itp:{traces}/itp/cluster06.csv", "itp-8gpu", 0.9),
        "openb@1.1": (f"alibaba-openb:{traces}/alibaba-openb/openb_pod_list_default.csv",
                      f"alibaba-openb:{traces}/alibaba-openb/openb_node_list_gpu_node.csv", 1.1),
    }
    for name, (trace, cluster, load) in cases.items():
        w, c = prepare(trace, cluster, load, 0)
        _write_recorded(out / f"{name}.pkl", pickle.dumps((w, c)))
        print(name, len(w), "jobs", c.total_gpus, "GPUs", flush=True)


class Recorder:
    """Wraps a policy's start/stop hooks to log every transition."""

    def __init__(self, policy):
        self.log: list = []
        on_start, on_stop = policy.on_start, policy.on_stop

        def start(ctx, js):
            p = tuple((int(n), tuple(int(g) for g in gpus), int(m))
                      for n, gpus, m, _c, _m in js.placement)
            self.log.append(("s", js.job.job_id, round(ctx.now, 6), p))
            on_start(ctx, js)

        def stop(ctx, js):
            self.log.append(("x", js.job.job_id, round(ctx.now, 6)))
            on_stop(ctx, js)

        policy.on_start, policy.on_stop = start, stop


def schedules(inp: Path, out: Path, policies, placers) -> None:
    from autoflow.policies import make_policy
    from autoflow.sim.simulator import SimConfig, Simulator

    result = {}
    for f in sorted(inp.glob("*.pkl")):
        for pol in policies:
            for pl in placers:
                w, c = _load_recorded(f)
                policy = make_policy(f"{pol}+{pl}")
                rec = Recorder(policy)
                t0 = time.perf_counter()
                res = Simulator(w, c, policy, SimConfig(seed=0)).run()
                ends = [(js.job.job_id, js.first_start, js.finish, js.preemptions)
                        for js in res.jobs]
                h = hashlib.sha256(json.dumps([rec.log, ends]).encode()).hexdigest()
                key = f"{f.stem} {pol}+{pl}"
                # (the wall time is printed, not written: two equivalent trees give
                # byte-identical files)
                result[key] = {"hash": h, "transitions": len(rec.log)}
                print(key, h[:16], len(rec.log), round(time.perf_counter() - t0, 2), flush=True)
    out.write_text(json.dumps(result, indent=1) + "\n")


def env_steps(out: Path, steps: int) -> None:
    import numpy as np
    from autoflow.envs.cluster_env import ClusterSchedulingEnv

    settings = {
        "philly": {"workloads": "builtin:philly-mix,builtin:shared-gpu"},
        "no-preemption": {"workloads": "builtin:philly-mix", "preemption": False},
        "baseline": {"workloads": "builtin:shared-gpu", "reward_baseline": "las"},
    }
    result = {}
    for name, kw in settings.items():
        env = ClusterSchedulingEnv(**kw)
        rng = np.random.default_rng(0)
        obs, info = env.reset(seed=0)
        digest = hashlib.sha256()
        for _ in range(steps // len(settings)):
            mask = env.action_masks()
            allowed = np.flatnonzero(mask)
            action = int(allowed[rng.integers(len(allowed))])
            for k in sorted(obs):
                digest.update(obs[k].tobytes())
            digest.update(mask.tobytes())
            obs, reward, term, trunc, info = env.step(action)
            digest.update(np.float64(reward).tobytes())
            digest.update(json.dumps(info, sort_keys=True).encode())
            if term or trunc:
                obs, info = env.reset()
        result[name] = digest.hexdigest()
        print(name, result[name][:16], flush=True)
    out.write_text(json.dumps(result, indent=1) + "\n")


def timing(inp: Path, out: Path, policies, placers) -> None:
    """Simulation wall time of each policy x placer on each input (one run each); run
    it for two trees in turns and compare the ratios."""
    from autoflow.policies import make_policy
    from autoflow.sim.simulator import SimConfig, Simulator

    result = {}
    for f in sorted(inp.glob("*.pkl")):
        for pol in policies:
            for pl in placers:
                w, c = _load_recorded(f)
                res = Simulator(w, c, make_policy(f"{pol}+{pl}"), SimConfig(seed=0)).run()
                result[f"{f.stem} {pol}+{pl}"] = res.wall_s
    out.write_text(json.dumps(result, indent=1) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=("inputs", "schedules", "env", "time"))
    ap.add_argument("--tree", required=True)
    ap.add_argument("--inputs", default="runs/equivalence-inputs")
    ap.add_argument("--out", required=True)
    ap.add_argument("--traces", default=TRACES)
    ap.add_argument("--policies", default=",".join(POLICIES))
    ap.add_argument("--placers", default=",".join(PLACERS))
    ap.add_argument("--steps", type=int, default=21000)
    args = ap.parse_args()
    use_tree(args.tree)
    if args.mode == "inputs":
        inputs(Path(args.out), args.traces)
    elif args.mode == "schedules":
        schedules(Path(args.inputs), Path(args.out), args.policies.split(","),
                  args.placers.split(","))
    elif args.mode == "time":
        timing(Path(args.inputs), Path(args.out), args.policies.split(","),
               args.placers.split(","))
    else:
        env_steps(Path(args.out), args.steps)


if __name__ == "__main__":
    main()
