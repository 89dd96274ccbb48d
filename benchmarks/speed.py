"""Simulator speed on real traces (the figures in benchmarks/RESULTS.md).

    python benchmarks/speed.py [--traces ../shared/traces] [--repeat 3]
        [--only all|simulator|heuristics] [--case NAME=TRACE,CLUSTER,LOAD ...]
        [--placers best-fit,fgd]

Two parts, each timing simulations only (trace loading excluded), on one core:

* ``simulator``: the full Alibaba openb trace on its own 1,213 nodes under
  fifo+best-fit, and ITP cluster08 at load 0.9 under fifo and las (jobs simulated per
  second), with the peak Python memory of each run (tracemalloc, in a separate pass so
  that it does not slow the timed one).
* ``heuristics``: every heuristic (fifo, sjf, las, easy-backfill, sjf-oracle,
  srtf-oracle) side by side on the same trace, with each placer given, as CPU time
  (process time: less sensitive than wall time to other work on a shared machine) and
  as a ratio to fifo with the same placer. The runs are interleaved, one round of every
  policy after another, and each policy's best round is kept, so that a slow spell of
  the machine does not fall on one policy. Ratios above ``--limit`` (3x) are flagged.
  Default cases: ITP cluster08 and the Alibaba openb trace, each at load 1.1.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
import tracemalloc
from datetime import date
from pathlib import Path

from autoflow.bench import prepare
from autoflow.manifest import machine
from autoflow.policies import make_policy
from autoflow.sim.simulator import SimConfig, Simulator

ROOT = Path(__file__).resolve().parents[1]
HEURISTICS = ("fifo", "sjf", "las", "las-fcfs", "gittins", "easy-backfill", "sjf-oracle",
              "srtf-oracle")
LIMIT = 3.0  # a heuristic should take at most this many times fifo's time


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


def simulator_rows(t: Path, repeat: int) -> list[dict]:
    rows = []
    w, c = prepare(f"alibaba-openb:{t}/alibaba-openb/openb_pod_list_default.csv",
                   f"alibaba-openb:{t}/alibaba-openb/openb_node_list_gpu_node.csv", None, 0)
    rows.append({"case": "openb full trace, own 1,213 nodes"} | measure(w, c, "fifo+best-fit",
                                                                        repeat))
    w, c = prepare(f"itp:{t}/itp/cluster08.csv", "itp-8gpu", 0.9, 0)
    for p in ("fifo", "las"):
        rows.append({"case": "ITP cluster08 --load 0.9"} | measure(w, c, p, repeat))
    rows[2]["las_over_fifo_time"] = rows[2]["wall_s_best"] / rows[1]["wall_s_best"]
    return rows


def cpu_seconds(workload, cluster, policy: str) -> float:
    sim = Simulator(workload, cluster, make_policy(policy), SimConfig())
    t0 = time.process_time()
    sim.run()
    return time.process_time() - t0


def compare_heuristics(workload, cluster, placers: list[str], repeat: int,
                       policies: tuple[str, ...] = HEURISTICS,
                       limit: float = LIMIT) -> list[dict]:
    """Every policy with every placer on one workload, interleaved over ``repeat``
    rounds; per (policy, placer): the CPU seconds of each round, the best, the ratio of
    the best to fifo's best with the same placer, and whether it exceeds ``limit``."""
    names = [f"{p}+{pl}" for pl in placers for p in policies]
    if not all(f"fifo+{pl}" in names for pl in placers):
        raise ValueError("the policies compared must include fifo, the baseline")
    times: dict[str, list[float]] = {n: [] for n in names}
    for _ in range(repeat):
        for n in names:
            times[n].append(cpu_seconds(workload, cluster, n))
    rows = []
    for pl in placers:
        base = min(times[f"fifo+{pl}"])
        for p in policies:
            n = f"{p}+{pl}"
            best = min(times[n])
            rows.append({"policy": p, "placer": pl, "cpu_s_best": best, "cpu_s_all": times[n],
                         "vs_fifo": best / base, "over_limit": best / base > limit})
    return rows


def default_cases(t: Path) -> dict[str, tuple[str, str, float]]:
    return {
        "ITP cluster08 --load 1.1": (f"itp:{t}/itp/cluster08.csv", "itp-8gpu", 1.1),
        "Alibaba openb --load 1.1": (
            f"alibaba-openb:{t}/alibaba-openb/openb_pod_list_default.csv",
            f"alibaba-openb:{t}/alibaba-openb/openb_node_list_gpu_node.csv", 1.1),
    }


def parse_case(text: str) -> tuple[str, tuple[str, str, float]]:
    """``NAME=TRACE,CLUSTER,LOAD``."""
    name, sep, spec = text.partition("=")
    parts = spec.split(",")
    if not sep or len(parts) != 3:
        raise argparse.ArgumentTypeError(f"--case {text!r}: expected NAME=TRACE,CLUSTER,LOAD")
    try:
        load = float(parts[2])
    except ValueError:
        raise argparse.ArgumentTypeError(f"--case {text!r}: the load must be a number") \
            from None
    return name, (parts[0], parts[1], load)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--traces", default=str(ROOT.parent / "shared" / "traces"))
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--only", choices=("all", "simulator", "heuristics"), default="all")
    ap.add_argument("--case", type=parse_case, action="append", default=None,
                    help="NAME=TRACE,CLUSTER,LOAD for the heuristics (repeatable); "
                         "default: ITP cluster08 and Alibaba openb at load 1.1")
    ap.add_argument("--placers", default="best-fit",
                    help="comma-separated placers for the heuristics (e.g. best-fit,fgd)")
    ap.add_argument("--limit", type=float, default=LIMIT,
                    help="flag a heuristic above this many times fifo's time")
    ap.add_argument("--out", default=str(ROOT / "runs" / "speed.json"))
    args = ap.parse_args(argv)
    t = Path(args.traces)
    cases = dict(args.case) if args.case else None
    needs_traces = args.only != "heuristics" or cases is None
    if needs_traces and not t.exists():
        raise SystemExit(f"no traces at {t}: get them with `autoflow traces download`")
    placers = [p.strip() for p in args.placers.split(",") if p.strip()]
    result: dict = {"date": date.today().isoformat(), "machine": machine(),
                    "python": platform.python_version()}

    if args.only in ("all", "simulator"):
        rows = result["rows"] = simulator_rows(t, args.repeat)
        print(f"| case | policy | jobs | GPUs | sim wall (best of {args.repeat}) | jobs/s "
              "| peak MiB |")
        print("|---|---|---|---|---|---|---|")
        for r in rows:
            print(f"| {r['case']} | {r['policy']} | {r['jobs']:,} | {r['gpus']:,} | "
                  f"{r['wall_s_best']:.3f} s | {r['jobs_per_s']:,.0f} | {r['peak_mib']:.1f} |")
        print(f"\nlas / fifo time on cluster08: {rows[2]['las_over_fifo_time']:.2f}x\n")

    if args.only in ("all", "heuristics"):
        result["heuristics"] = []
        for name, (trace, cluster, load) in (cases or default_cases(t)).items():
            w, c = prepare(trace, cluster, load, 0)
            rows = compare_heuristics(w, c, placers, args.repeat, limit=args.limit)
            result["heuristics"].append({"case": name, "trace": trace, "cluster": cluster,
                                         "load": load, "jobs": len(w), "gpus": c.total_gpus,
                                         "rows": rows})
            print(f"{name}: {len(w):,} jobs, {c.total_gpus:,} GPUs; CPU seconds, best of "
                  f"{args.repeat} interleaved rounds")
            print("| policy | placer | CPU s | × fifo |")
            print("|---|---|---|---|")
            for r in rows:
                flag = f" **over {args.limit:g}×**" if r["over_limit"] else ""
                print(f"| {r['policy']} | {r['placer']} | {r['cpu_s_best']:.2f} | "
                      f"{r['vs_fifo']:.2f}{flag} |")
            print()
        over = [f"{h['case']}: {r['policy']}+{r['placer']} {r['vs_fifo']:.2f}x"
                for h in result["heuristics"] for r in h["rows"] if r["over_limit"]]
        print(f"over {args.limit:g}x fifo: " + ("; ".join(over) if over else "none"))

    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
