"""2026-12-01: how closely do real Ray tasks follow the simulated schedule (issue 18's
first slice)?

    python benchmarks/experiments/ray_fidelity.py [--jobs 40] [--runs fifo@0.02,las:200/2000@0.02,fifo@0.05]
        [--seed 0] [--out runs/ray_fidelity]

A synthetic workload (``--jobs`` jobs over 10 minutes, log-normal durations with a median
of 90 s, 1, 2 or 4 GPUs) on two logical 4-GPU nodes of a local Ray cluster; each run is
``POLICY@TIME_SCALE``, replayed as Ray tasks (``autoflow.execution.replay_on_ray``) and
simulated by the core with the same 5 s restart overhead. Prints, per run, the per-job
JCT correlation (real vs simulated), the ratio of average JCTs (real / simulated), the
launch delay (decision to process start) and the preemptions of both; writes
``results.json`` and ``manifest.json`` to ``--out``.
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

from autoflow import manifest as manifest_mod
from autoflow.cluster import ClusterSpec, Node
from autoflow.execution.fidelity import compare
from autoflow.execution.local_ray import LocalRayCluster
from autoflow.execution.replay import replay_on_ray
from autoflow.job import Job
from autoflow.policies import make_policy
from autoflow.sim.simulator import SimConfig, Simulator
from autoflow.workload import Workload

ROOT = Path(__file__).resolve().parents[2]
OVERHEAD_S = 5.0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--jobs", type=int, default=40)
    ap.add_argument("--runs", default="fifo@0.02,las:200/2000@0.02,fifo@0.05")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(ROOT / "runs" / "ray_fidelity"))
    args = ap.parse_args(argv)
    runs = []
    for item in args.runs.split(","):
        pol, _, scale = item.rpartition("@")
        try:
            runs.append((pol, float(scale)))
        except ValueError:
            raise SystemExit(f"--runs: {item!r} is not POLICY@TIME_SCALE (e.g. fifo@0.02)")
    spec = ClusterSpec("two-by-four", [Node(f"n{i}", "V100", 4) for i in range(2)])
    rng = random.Random(args.seed)
    jobs = sorted((Job(f"j{i}", rng.uniform(0, 600), rng.lognormvariate(4.5, 0.8),
                       rng.choice((1, 1, 2, 4))) for i in range(args.jobs)),
                  key=lambda j: j.submit_time)
    w = Workload(jobs).shifted()
    out = []
    with LocalRayCluster(spec) as rc:
        for pol, scale in runs:
            sim = Simulator(w, spec, make_policy(pol),
                            SimConfig(restart_overhead_s=OVERHEAD_S)).run()
            run = replay_on_ray(w, spec, make_policy(pol), time_scale=scale,
                                restart_overhead_s=OVERHEAD_S, cluster=rc)
            f = compare(run, sim, scale)
            r = {"policy": pol, "time_scale": scale, "wall_s": run.wall_s,
                 "jct_correlation": f["jct_correlation"], "avg_jct_ratio": f["avg_jct_ratio"],
                 "launch_delay_median_s": f["launch_delay_wall_ms"]["p50"] / 1000.0,
                 "launch_delay_max_s": f["launch_delay_wall_ms"]["max"] / 1000.0,
                 "preemptions": f["preemptions_real"],
                 "preemptions_simulated": f["preemptions_simulated"],
                 "overhead_per_decision_ms": f["overhead_per_decision_ms"]}
            out.append(r)
            print(f"{pol} @ {scale:g}: {r['wall_s']:.0f} s, JCT correlation "
                  f"{r['jct_correlation']:.3f}, avg JCT real/simulated {r['avg_jct_ratio']:.3f}, "
                  f"launch delay median {r['launch_delay_median_s'] * 1000:.0f} ms, max "
                  f"{r['launch_delay_max_s'] * 1000:.0f} ms, preemptions {r['preemptions']} "
                  f"(simulated {r['preemptions_simulated']})", flush=True)
    manifest_mod.save_run(
        args.out, {"runs": out},
        "python benchmarks/experiments/ray_fidelity.py " + " ".join(argv or sys.argv[1:]),
        vars(args), seed=args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
