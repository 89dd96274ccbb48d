"""Simulator speed on real traces (the figures in benchmarks/RESULTS.md).

    python benchmarks/speed.py [--traces ../shared/traces] [--repeat 3]

Measures, on one core, the simulation wall time (trace loading excluded) of:
  * the full Alibaba openb trace on its own 1,213 nodes under fifo+best-fit;
  * ITP cluster08 at --load 0.9 under fifo and las (jobs simulated per second);
and the peak Python memory of each run (tracemalloc, in a separate pass so that it
does not slow the timed one). Ratios between policies come from the same run.
"""

from __future__ import annotations

import argparse
import json
import platform
import tracemalloc
from datetime import date
from pathlib import Path

from autoflow.bench import prepare
from autoflow.manifest import machine
from autoflow.policies import make_policy
from autoflow.sim.simulator import SimConfig, Simulator

ROOT = Path(__file__).resolve().parents[1]


def measure(workload, cluster, policy: str, repeat: int) -> dict:
    walls = [Simulator(workload, cluster, make_policy(policy), SimConfig()).run().wall_s
             for _ in range(repeat)]
    tracemalloc.start()
    Simulator(workload, cluster, make_policy(policy), SimConfig()).run()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    best = min(walls)
    return {"policy": policy, "jobs": len(workload), "nodes": len(cluster.nodes),
            "gpus": cluster.total_gpus, "wall_s_best": best, "wall_s_all": walls,
            "jobs_per_s": len(workload) / best, "peak_mib": peak / 2**20}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--traces", default=str(ROOT.parent / "shared" / "traces"))
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--out", default=str(ROOT / "runs" / "speed.json"))
    args = ap.parse_args()
    t = Path(args.traces)
    if not t.exists():
        raise SystemExit(f"no traces at {t}: get them with `autoflow traces download`")
    rows = []
    w, c = prepare(f"alibaba-openb:{t}/alibaba-openb/openb_pod_list_default.csv",
                   f"alibaba-openb:{t}/alibaba-openb/openb_node_list_gpu_node.csv", None, 0)
    rows.append({"case": "openb full trace, own 1,213 nodes"} |
                measure(w, c, "fifo+best-fit", args.repeat))
    w, c = prepare(f"itp:{t}/itp/cluster08.csv", "itp-8gpu", 0.9, 0)
    for p in ("fifo", "las"):
        rows.append({"case": "ITP cluster08 --load 0.9"} | measure(w, c, p, args.repeat))
    rows[2]["las_over_fifo_time"] = rows[2]["wall_s_best"] / rows[1]["wall_s_best"]
    result = {"date": date.today().isoformat(), "machine": machine(),
              "python": platform.python_version(), "rows": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"| case | policy | jobs | GPUs | sim wall (best of {args.repeat}) | jobs/s "
          "| peak MiB |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['case']} | {r['policy']} | {r['jobs']:,} | {r['gpus']:,} | "
              f"{r['wall_s_best']:.3f} s | {r['jobs_per_s']:,.0f} | {r['peak_mib']:.1f} |")
    print(f"\nlas / fifo time on cluster08: {rows[2]['las_over_fifo_time']:.2f}x")


if __name__ == "__main__":
    main()
