"""2026-12-01: the policies on pipelines of dependent jobs (issue 21's baselines).

Cases: ``builtin:ml-pipelines`` (five nightly pipeline templates: prepare on CPUs →
train on a GPU gang → evaluate → serving replicas, beside ad-hoc training and inference
services) with seeds ``--seeds``, on ``philly-64`` fitted to each ``--loads`` value (as
``autoflow bench --load``). Every policy plays every case. Figures per case: average,
p50 and p99 workflow completion time (WCT: a pipeline run's last finish minus its
submission), average stage wait (from eligibility to start), serving stages that missed
their SLO, and the average JCT of every job; the table gives each policy's average WCT
over the best of fifo, las and the workflow heuristics (cp-first, srw, stages-first) in
the same case (issue 21's bar compares ``rl`` with that best at 0.9; ``--baselines`` sets
the set), and the average JCT of the jobs outside any workflow, which is what a
workflow-first rule costs the rest of the cluster.

With ``--generator FILE`` (``autoflow generate fit`` on a workload with pipelines) the
cases are the generator's samples instead, ``--gen-jobs`` jobs each, one per seed.

Writes ``DIR/results.json``, ``DIR/manifest.json`` and ``DIR/wct.png`` (each policy's
geo-mean ratio as a bar); prints markdown tables.

    python benchmarks/experiments/workflow_heuristics.py --out runs/workflow-heuristics
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
from pathlib import Path

from autoflow.generators.generator import load_generator

from autoflow import manifest as manifest_mod
from autoflow import plots
from autoflow.bench import prepare_fit
from autoflow.cluster import load_cluster
from autoflow.evaluate import evaluate, fit_to
from autoflow.workflow import topological

POLICIES = "fifo,sjf,las,las-fcfs,gittins,easy-backfill,cp-first,srw,stages-first,rl"
BASELINES = "fifo,las,cp-first,srw,stages-first"  # the bar's "best of"


def no_wait_wct(jobs) -> float:
    """The average WCT if no stage ever waited for room: each stage starts when it is
    submitted and its parents have finished, and runs for its true duration. No
    scheduler can beat it (on an empty cluster it is what every policy gets)."""
    flows: dict[str, list] = {}
    for j in topological(jobs):
        if j.workflow_id:
            flows.setdefault(j.workflow_id, []).append(j)
    out = []
    for stages in flows.values():
        fin: dict[str, float] = {}
        for j in stages:  # parents come first
            fin[j.job_id] = max([j.submit_time] + [fin[p] for p in j.depends_on]) + (j.duration or 0.0)
        out.append(max(fin.values()) - min(j.submit_time for j in stages))
    return statistics.fmean(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--trace", default="builtin:ml-pipelines:1200")
    ap.add_argument("--cluster", default="philly-64")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--loads", default="0.9,1.1")
    ap.add_argument("--policies", default=POLICIES)
    ap.add_argument("--generator", default=None,
                    help="judge on this generator's samples (one per seed) instead")
    ap.add_argument("--gen-jobs", type=int, default=1200)
    ap.add_argument("--baselines", default=BASELINES,
                    help="the policies whose best average WCT each policy is compared with")
    args = ap.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    loads = [float(x) for x in args.loads.split(",")]
    policies = args.policies.split(",")
    baselines = args.baselines.split(",")
    if not set(baselines) <= set(policies):
        ap.error(f"--baselines {','.join(sorted(set(baselines) - set(policies)))}: not among "
                 f"--policies (every baseline must be played)")
    generator = load_generator(args.generator) if args.generator else None
    rows = []
    for load in loads:
        for seed in seeds:
            if args.generator:
                sample = generator.sample(args.gen_jobs, seed=seed).shifted()
                fit = fit_to(load_cluster(args.cluster), sample, load)
                trace = f"gen:{args.generator}"
            else:
                fit = prepare_fit(args.trace, args.cluster, load, seed)
                trace = args.trace
            case = {"trace": trace, "seed": seed, "load": load,
                    "gpus": fit.spec.total_gpus, "jobs": len(fit.workload),
                    "no_wait_wct": no_wait_wct(list(fit.workload)), "runs": {}}
            for p in policies:
                ev = evaluate(p, fit.workload, fit.spec, seed=seed)
                m = ev.metrics
                case["runs"][p] = {k: m.get(k) for k in (
                    "avg_wct", "p50_wct", "p99_wct", "avg_stage_wait", "serving_stages",
                    "serving_slo_violations", "avg_jct", "workflows")}
                alone = [js.finish - js.submit for js in ev.result.jobs
                         if not js.job.workflow_id and js.finish is not None]
                case["runs"][p]["avg_jct_independent"] = (statistics.fmean(alone)
                                                          if alone else None)
                print(f"load {load} seed {seed} {p}: avg WCT {m['avg_wct']:,.0f} s",
                      file=sys.stderr)
            best = min(case["runs"][b]["avg_wct"] for b in baselines if b in case["runs"])
            for r in case["runs"].values():
                r["wct_vs_best_baseline"] = r["avg_wct"] / best
                r["wct_vs_no_wait"] = r["avg_wct"] / case["no_wait_wct"]
            rows.append(case)
    print("| load | seed | GPUs | " + " | ".join(policies) + " |")
    print("|---|---|---|" + "---|" * len(policies))
    for c in rows:
        cells = [f"{c['runs'][p]['wct_vs_best_baseline']:.3f}" for p in policies]
        print(f"| {c['load']} | {c['seed']} | {c['gpus']} | " + " | ".join(cells) + " |")
    print()
    print("| policy | avg WCT × best baseline (geo-mean) | avg WCT × no-wait bound (geo-mean) "
          "| avg WCT (h, mean) | p99 WCT (h, "
          "mean) | avg stage wait (h, mean) | serving SLO misses (sum) | avg JCT (h, mean) | "
          "avg JCT outside workflows (h, mean) |")
    print("|---|---|---|---|---|---|---|---|---|")
    summary = {}
    for p in policies:
        rs = [c["runs"][p] for c in rows]
        geo = math.exp(statistics.fmean(math.log(r["wct_vs_best_baseline"]) for r in rs))
        bound = math.exp(statistics.fmean(math.log(r["wct_vs_no_wait"]) for r in rs))
        summary[p] = {"wct_vs_best_baseline_geomean": geo, "wct_vs_no_wait_geomean": bound}
        print(f"| {p} | {geo:.3f} | {bound:.3f} | {statistics.fmean(r['avg_wct'] for r in rs) / 3600:.1f} | "
              f"{statistics.fmean(r['p99_wct'] for r in rs) / 3600:.1f} | "
              f"{statistics.fmean(r['avg_stage_wait'] for r in rs) / 3600:.2f} | "
              f"{sum(r['serving_slo_violations'] for r in rs)} | "
              f"{statistics.fmean(r['avg_jct'] for r in rs) / 3600:.1f} | "
              f"{statistics.fmean(r['avg_jct_independent'] or 0.0 for r in rs) / 3600:.1f} |")
    command = "python benchmarks/experiments/workflow_heuristics.py " + " ".join(sys.argv[1:])
    what = f"gen:{args.generator}" if args.generator else args.trace
    args.out.mkdir(parents=True, exist_ok=True)
    plots.ratio_bars({p: v["wct_vs_best_baseline_geomean"] for p, v in summary.items()},
                     args.out / "wct.png",
                     f"avg WCT x best of {', '.join(baselines)} (geo-mean, log scale)",
                     f"{what} on {args.cluster}, loads {args.loads}, seeds {args.seeds}",
                     marks={"0.9 (issue 21's bar)": 0.9})
    manifest_mod.save_run(args.out, {"cases": rows, "summary": summary}, command,
                          vars(args) | {"out": str(args.out)}, seeds[0])


if __name__ == "__main__":
    main()
