"""2026-11-30: autoflow's LAS beside the simulator published with Tiresias (NSDI '19).

    python benchmarks/experiments/las_reference.py [--traces ../shared/traces]

The setting in which the published simulator was run (issue 14, section 6): the first
2,000 jobs of ITP cluster08 in submission order, shifted to t=0, on one flat node of 64
or 96 GPUs, thresholds 3,250 / 7,200 GPU-seconds, no restart cost. Prints the average
JCT and preemptions of ``las``, ``las-fcfs`` (autoflow's earlier rules) and ``fifo``
beside the published simulator's average JCT. That simulator counts whole seconds and
rounds crossings up to them; ``tests/test_las_tiresias.py`` compares schedules job by
job with an exact-arithmetic statement of its algorithm.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from autoflow.cluster import ClusterSpec, Node
from autoflow.evaluate import evaluate
from autoflow.job import Job
from autoflow.sim.simulator import SimConfig
from autoflow.traces.registry import load_workload
from autoflow.workload import Workload

PUBLISHED = {64: 46_333.0, 96: 28_963.0}  # the reference simulator's avg JCT (issue 14)
POLICIES = ("las:3250/7200", "las-fcfs:3250/7200", "fifo")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--traces", default=str(Path(__file__).resolve().parents[3] / "shared"
                                            / "traces"))
    args = ap.parse_args()
    jobs = sorted(load_workload(f"itp:{Path(args.traces) / 'itp' / 'cluster08.csv'}").jobs,
                  key=lambda j: j.submit_time)[:2000]
    t0 = jobs[0].submit_time
    work = Workload([Job(j.job_id, j.submit_time - t0, j.duration, num_gpus=j.num_gpus)
                     for j in jobs])
    print("| GPUs | policy | avg JCT (s) | × published las | preemptions |")
    print("|---|---|---|---|---|")
    for gpus in (64, 96):
        cluster = ClusterSpec(f"flat-{gpus}", [Node("n", "V100", gpus)])
        for policy in POLICIES:
            ev = evaluate(f"{policy}+first-fit", work, cluster,
                          SimConfig(restart_overhead_s=0.0))
            jct = float(np.mean(ev.jcts))
            pre = sum(js.preemptions for js in ev.result.jobs)
            print(f"| {gpus} | {policy} | {jct:,.0f} | {jct / PUBLISHED[gpus]:.3f} | {pre:,} |")
        print(f"| {gpus} | published simulator's las | {PUBLISHED[gpus]:,.0f} | 1.000 | |")


if __name__ == "__main__":
    main()
