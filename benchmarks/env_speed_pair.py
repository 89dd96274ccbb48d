"""Environment speed of this checkout against another one, taking turns on one core.

    python benchmarks/env_speed_pair.py --base PATH [--rounds 40] [--steps 2500]
        [--workloads builtin:philly-mix,builtin:shared-gpu] [--core 0]

This machine's speed drifts by ±30% from one minute to the next, so two 20 s runs of
``env_speed.py`` taken a minute apart say little about two versions. Here one worker
process per checkout (``--base``: another checkout of autoflow, for example a ``git
worktree`` of an older commit) runs the same random masked steps as ``env_speed.py``,
``--steps`` at a time, the two taking turns (the order alternates each round) pinned to
one core. Each round gives a ratio of chunk times measured within a second of each
other; the median over the rounds is the figure. Both workers also hash the masks they
saw and the actions they took: if the two checkouts do not make the same steps, the
comparison is of different work and the script says so.

Writes runs/env_speed_pair.json (with each round) and prints a markdown row.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import statistics
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAPPED = ("envs", "agents", "generators")  # autoflow.<name> lives in <checkout>/<name>


def worker(tree: str, workloads: str, seed: int) -> None:
    """Imports autoflow from ``tree`` and runs chunks of steps read from stdin."""
    import importlib.util

    sys.path.insert(0, tree)
    import autoflow

    for name in MAPPED:  # what the editable install maps, done by hand for any checkout
        init = Path(tree, name, "__init__.py")
        spec = importlib.util.spec_from_file_location(
            f"autoflow.{name}", init, submodule_search_locations=[str(init.parent)])
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
    import numpy as np
    from autoflow.envs import cluster_env

    for module in (autoflow, cluster_env):  # the code under test comes from ``tree``
        if not Path(module.__file__).resolve().is_relative_to(Path(tree).resolve()):
            print(f"{module.__name__} was imported from {module.__file__}, not {tree}",
                  flush=True)
            return
    env = cluster_env.ClusterSchedulingEnv(workloads=workloads)
    rng = np.random.default_rng(seed)
    env.reset(seed=seed)
    digest = hashlib.sha256()

    def run(n: int) -> None:
        for _ in range(n):
            mask = env.action_masks()
            allowed = np.flatnonzero(mask)
            action = int(allowed[rng.integers(len(allowed))])
            digest.update(mask.tobytes())
            digest.update(action.to_bytes(2, "little"))
            _, _, term, trunc, _ = env.step(action)
            if term or trunc:
                env.reset()

    run(500)  # warm up
    print("ready", flush=True)
    for line in sys.stdin:
        t0 = time.perf_counter()
        run(int(line))
        print(json.dumps({"s": time.perf_counter() - t0, "hash": digest.hexdigest()}),
              flush=True)


def start(tree: Path, args) -> subprocess.Popen:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", str(tree),
           "--workloads", args.workloads, "--seed", str(args.seed)]
    if args.core is not None and shutil.which("taskset"):  # else wherever the OS puts it
        cmd = ["taskset", "-c", str(args.core), *cmd]
    p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                         cwd=tree)
    line = p.stdout.readline().strip()
    if line != "ready":
        p.kill()
        raise SystemExit(f"the worker for {tree} did not start (said {line!r}); "
                         "is it a checkout of autoflow?")
    return p


def chunk(p: subprocess.Popen, steps: int) -> dict:
    p.stdin.write(f"{steps}\n")
    p.stdin.flush()
    return json.loads(p.stdout.readline())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--base", help="the other checkout of autoflow")
    ap.add_argument("--rounds", type=int, default=40)
    ap.add_argument("--steps", type=int, default=2500, help="steps per chunk")
    ap.add_argument("--workloads", default="builtin:philly-mix,builtin:shared-gpu")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--core", type=int, default=0, help="the core both workers run on")
    ap.add_argument("--out", default=str(ROOT / "runs" / "env_speed_pair.json"))
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args.worker, args.workloads, args.seed)
        return
    if not args.base:
        ap.error("--base PATH (another checkout of autoflow) is required")
    base = Path(args.base).resolve()
    if not (base / "autoflow" / "__init__.py").is_file():
        raise SystemExit(f"--base {base}: no autoflow/__init__.py there")
    if args.rounds < 1 or args.steps < 1:
        ap.error("--rounds and --steps must be at least 1")
    from rich.progress import Progress

    from autoflow.manifest import machine

    workers = {"base": start(base, args), "this": start(ROOT, args)}
    rounds = []
    try:
        with Progress() as progress:
            task = progress.add_task("rounds", total=args.rounds)
            for i in range(args.rounds):
                order = ("base", "this") if i % 2 == 0 else ("this", "base")
                got = {name: chunk(workers[name], args.steps) for name in order}
                rounds.append({name: got[name]["s"] for name in order}
                              | {"same_steps": got["base"]["hash"] == got["this"]["hash"]})
                progress.advance(task)
    finally:
        for p in workers.values():
            p.stdin.close()
            p.wait()
    ratios = [r["base"] / r["this"] for r in rounds]
    speed = {name: [args.steps / r[name] for r in rounds] for name in ("base", "this")}
    q1, _, q3 = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else (ratios * 3)
    same = all(r["same_steps"] for r in rounds)
    result = {
        "date": date.today().isoformat(), "machine": machine(), "base": str(base),
        "this": str(ROOT), "workloads": args.workloads, "seed": args.seed,
        "steps_per_chunk": args.steps, "rounds": rounds, "same_steps": same,
        "ratio_median": statistics.median(ratios), "ratio_q1": q1, "ratio_q3": q3,
        "this_steps_per_s_median": statistics.median(speed["this"]),
        "base_steps_per_s_median": statistics.median(speed["base"]),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print("| rounds × steps | base steps/s (median, range) | this steps/s (median, range) "
          "| this / base (median, quartiles) | same steps |")
    print("|---|---|---|---|---|")
    print(f"| {args.rounds} × {args.steps:,} | {result['base_steps_per_s_median']:,.0f} "
          f"({min(speed['base']):,.0f}–{max(speed['base']):,.0f}) "
          f"| {result['this_steps_per_s_median']:,.0f} "
          f"({min(speed['this']):,.0f}–{max(speed['this']):,.0f}) "
          f"| {result['ratio_median']:.2f}× ({q1:.2f}–{q3:.2f}) | {'yes' if same else 'NO'} |")
    if not same:
        print("The two checkouts did not make the same steps: the ratio compares different "
              "work.", file=sys.stderr)


if __name__ == "__main__":
    main()
