"""Environment speed: steps per second with random masked actions, on one core.

    python benchmarks/env_speed.py [--seconds 20] [--workloads builtin:philly-mix]

Episode resets (drawing a workload, sizing the cluster) are included in the time, as
they are in training. Writes runs/env_speed.json and prints a markdown row.
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import date
from pathlib import Path

import numpy as np
from autoflow.envs.cluster_env import ClusterSchedulingEnv

from autoflow.manifest import machine

ROOT = Path(__file__).resolve().parents[1]


def measure(workloads: str, seconds: float, seed: int) -> dict:
    env = ClusterSchedulingEnv(workloads=workloads)
    rng = np.random.default_rng(seed)
    env.reset(seed=seed)
    steps = episodes = 0
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        _, _, term, trunc, _ = env.step(int(rng.choice(np.flatnonzero(env.action_masks()))))
        steps += 1
        if term or trunc:
            episodes += 1
            env.reset()
    wall = time.perf_counter() - t0
    return {"workloads": workloads, "steps": steps, "episodes": episodes, "wall_s": wall,
            "steps_per_s": steps / wall}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--workloads", default="builtin:philly-mix,builtin:shared-gpu")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(ROOT / "runs" / "env_speed.json"))
    args = ap.parse_args()
    r = measure(args.workloads, args.seconds, args.seed)
    r |= {"date": date.today().isoformat(), "machine": machine()}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(r, indent=2) + "\n")
    print("| workloads | steps | episodes | steps/s |")
    print("|---|---|---|---|")
    print(f"| {r['workloads']} | {r['steps']:,} | {r['episodes']} | {r['steps_per_s']:,.0f} |")


if __name__ == "__main__":
    main()
