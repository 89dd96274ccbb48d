"""2026-11-23: how much can one departure from LAS gain? The headroom a learned policy
has to find.

    python benchmarks/experiments/las_headroom.py [--workloads itp:../shared/traces/itp/cluster02.csv]
        [--episodes 6] [--decisions 20] [--alternatives 4] [--jobs 300] [--load 1.1]

For each episode (a window of the trace at the given load, drawn with the seed), the
environment is played by LAS's own actions (``envs.las_choice``), which reproduces las's
schedule. Then, at sampled decisions, one other allowed action is taken instead and LAS
plays on to the end: the change in total JCT is exactly what that one departure is
worth (the simulator is deterministic under the episode's seed). The table groups the
departures by what LAS did and what was done instead. Writes runs/las_headroom.json.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from datetime import date
from pathlib import Path

import numpy as np
from autoflow.envs.cluster_env import ClusterSchedulingEnv
from autoflow.envs.las_choice import las_action
from rich.progress import Progress

from autoflow.manifest import machine

ROOT = Path(__file__).resolve().parents[2]


def _kind(env: ClusterSchedulingEnv, a: int) -> str:
    q, r = env.obs_config.queue_slots, env.obs_config.running_slots
    return "start" if a < q else ("preempt" if a < q + r else "wait")


def _play(env: ClusterSchedulingEnv, seed: int, at: int | None = None,
          alt: int | None = None, record: set[int] | None = None):
    """Total JCT of the episode played by LAS (taking ``alt`` at decision ``at``), the
    number of decisions, and LAS's action with the other allowed ones at ``record``."""
    env.reset(seed=seed)
    seen: dict[int, tuple[int, list[int]]] = {}
    i, done = 0, False
    while not done:
        d = env.decision
        a = las_action(d, env.obs_config)
        if record is not None and i in record:
            seen[i] = (a, [int(b) for b in np.flatnonzero(d.mask) if b != a])
        _, _, term, trunc, _ = env.step(alt if i == at else a)
        done, i = term or trunc, i + 1
    return sum(js.finish - js.submit for js in env.sim.jobs), i, seen


def measure(workloads: str, episodes: int, decisions: int, alternatives: int, jobs: int,
            load: float, seed: int) -> dict:
    env = ClusterSchedulingEnv(workloads=workloads, jobs=(jobs, jobs), load=(load, load))
    rng = np.random.default_rng(seed)
    gains: dict[str, list[float]] = defaultdict(list)
    with Progress() as progress:
        task = progress.add_task("departures from LAS", total=episodes)
        for ep in range(episodes):
            base, n, _ = _play(env, seed + ep)
            picks = set(rng.choice(n, size=min(decisions, n), replace=False).tolist())
            _, _, seen = _play(env, seed + ep, record=picks)
            for k, (a, others) in sorted(seen.items()):
                for b in others[:alternatives]:
                    total, _, _ = _play(env, seed + ep, at=k, alt=b)
                    gains[f"{_kind(env, a)} -> {_kind(env, b)}"].append((base - total) / base)
            progress.advance(task)
    rows = {}
    for key, g in sorted(gains.items()):
        g = np.asarray(g)
        rows[key] = {"departures": len(g), "better": float(np.mean(g > 1e-6)),
                     "worse": float(np.mean(g < -1e-6)), "mean_gain": float(g.mean()),
                     "best_gain": float(g.max()), "worst_gain": float(g.min())}
    every = np.concatenate([np.asarray(v) for v in gains.values()]) if gains else np.zeros(0)
    return {"workloads": workloads, "episodes": episodes, "jobs": jobs, "load": load,
            "seed": seed, "by_kind": rows, "departures": int(every.size),
            "better": float(np.mean(every > 1e-6)) if every.size else None,
            "best_gain": float(every.max()) if every.size else None}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workloads", default="itp:../shared/traces/itp/cluster02.csv")
    ap.add_argument("--episodes", type=int, default=6)
    ap.add_argument("--decisions", type=int, default=20, help="sampled per episode")
    ap.add_argument("--alternatives", type=int, default=4, help="tried per decision")
    ap.add_argument("--jobs", type=int, default=300)
    ap.add_argument("--load", type=float, default=1.1)
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--out", default=str(ROOT / "runs" / "las_headroom.json"))
    args = ap.parse_args()
    r = measure(args.workloads, args.episodes, args.decisions, args.alternatives, args.jobs,
                args.load, args.seed)
    r |= {"date": date.today().isoformat(), "machine": machine()}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(r, indent=2) + "\n")
    print("| LAS did -> instead | departures | better | worse | mean gain | best | worst |")
    print("|---|---|---|---|---|---|---|")
    for key, x in r["by_kind"].items():
        print(f"| {key} | {x['departures']} | {x['better']:.0%} | {x['worse']:.0%} "
              f"| {x['mean_gain']:+.3%} | {x['best_gain']:+.2%} | {x['worst_gain']:+.2%} |")


if __name__ == "__main__":
    main()
