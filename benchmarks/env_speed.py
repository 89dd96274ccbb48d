"""Environment speed: steps per second with random masked actions, on one core.

    python benchmarks/env_speed.py [--seconds 20] [--workloads builtin:philly-mix]

Episode resets (drawing a workload, sizing the cluster) are included in the time, as
they are in training. Also reports how much of a step goes to building the observation
(``Observer.observe``, timed around each call). Writes runs/env_speed.json and prints a
markdown row.
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import date
from pathlib import Path

import numpy as np
from autoflow.envs.cluster_env import ClusterSchedulingEnv
from autoflow.envs.observation import Observer

from autoflow.manifest import machine

ROOT = Path(__file__).resolve().parents[1]


def measure(workloads: str, seconds: float, seed: int) -> dict:
    observe = Observer.observe
    spent = [0.0, 0]

    def timed(self, ctx):
        t = time.perf_counter()
        try:
            return observe(self, ctx)
        finally:
            spent[0] += time.perf_counter() - t
            spent[1] += 1

    Observer.observe = timed
    try:
        env = ClusterSchedulingEnv(workloads=workloads)
        rng = np.random.default_rng(seed)
        env.reset(seed=seed)
        steps = episodes = 0
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            allowed = np.flatnonzero(env.action_masks())
            _, _, term, trunc, _ = env.step(int(allowed[rng.integers(len(allowed))]))
            steps += 1
            if term or trunc:
                episodes += 1
                env.reset()
        wall = time.perf_counter() - t0
    finally:
        Observer.observe = observe
    return {"workloads": workloads, "steps": steps, "episodes": episodes, "wall_s": wall,
            "steps_per_s": steps / wall, "us_per_step": 1e6 * wall / steps,
            "observe_us_per_step": 1e6 * spent[0] / steps,
            "observe_calls_per_step": spent[1] / steps, "observe_share": spent[0] / wall}


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
    print("| workloads | steps | episodes | steps/s | µs/step | of which observation |")
    print("|---|---|---|---|---|---|")
    print(f"| {r['workloads']} | {r['steps']:,} | {r['episodes']} | {r['steps_per_s']:,.0f} "
          f"| {r['us_per_step']:.0f} | {r['observe_us_per_step']:.0f} "
          f"({r['observe_share']:.0%}) |")


if __name__ == "__main__":
    main()
