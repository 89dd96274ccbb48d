"""2026-11-23: do the heuristics rank the same on synthetic workloads as on the real trace?

For each trace: fit a generator (default ``copula``) on the whole trace, sample as many
jobs as the trace has (seed 0), fit the cluster (and, where resizing falls short, the
arrival times) to each workload's own target load (``--loads``, as ``autoflow bench
--load`` does: ``autoflow.evaluate.evaluate_at_load``), replay both under fifo, sjf and
las, and compare the orders. The achieved load of each replay is reported. A third
workload tells the two causes of a difference apart: the real jobs, shuffled over the
real arrival times (``permuted``), keeps the exact job set and arrival process and
loses only *which* job comes when — what the generator, drawing jobs independently,
does not model. Writes ``DIR/ranking.json`` and ``manifest.json`` and prints a markdown
table.

    python benchmarks/experiments/synthetic_ranking.py --out runs/gen-ranking
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace as dc_replace
from pathlib import Path

import numpy as np
from autoflow.generators import fit_generator
from rich.progress import Progress

from autoflow import manifest
from autoflow.cluster import load_cluster
from autoflow.evaluate import evaluate_at_load
from autoflow.traces.registry import load_workload
from autoflow.workload import Workload

ITP = "../shared/traces/itp"
OPENB = "../shared/traces/alibaba-openb"
TRACES = {  # name: (source, cluster)
    "cluster01": (f"itp:{ITP}/cluster01.csv", "itp-8gpu"),
    "cluster02": (f"itp:{ITP}/cluster02.csv", "itp-8gpu"),
    "cluster03": (f"itp:{ITP}/cluster03.csv", "itp-8gpu"),
    "cluster08": (f"itp:{ITP}/cluster08.csv", "itp-8gpu"),
    "openb": (f"alibaba-openb:{OPENB}/openb_pod_list_default.csv",
              f"alibaba-openb:{OPENB}/openb_node_list_gpu_node.csv"),
}


def replay(workload, cluster: str, load: float, policies: list[str], seed: int) -> dict:
    """Each policy's average JCT on ``workload`` with ``cluster`` fitted to ``load``, the
    GPUs and the load reached."""
    r = evaluate_at_load(policies, workload, load_cluster(cluster), load, seed=seed)
    return {"gpus": r.fit.spec.total_gpus, "offered_load": r.fit.achieved,
            "time_scale": r.fit.time_scale, "load_method": r.fit.method} | r.avg_jct()


def permuted(workload: Workload, seed: int) -> Workload:
    """The same jobs at the same submit times, assigned to the times in random order."""
    jobs = workload.jobs
    perm = np.random.default_rng(seed).permutation(len(jobs))
    return Workload([dc_replace(jobs[p], submit_time=j.submit_time) for p, j in zip(perm, jobs)],
                    workload.source + " (permuted)", workload.summary)


def order(res: dict, policies: list[str]) -> list[str]:
    return sorted(policies, key=lambda p: res[p])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="runs/gen-ranking")
    ap.add_argument("--traces", default=",".join(TRACES))
    ap.add_argument("--model", default="copula")
    ap.add_argument("--loads", default="0.9,1.1")
    ap.add_argument("--policies", default="fifo,sjf,las")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    policies = args.policies.split(",")
    loads = [float(x) for x in args.loads.split(",")]
    names = args.traces.split(",")
    rows = []
    with Progress() as bar:
        task = bar.add_task("fit, sample, replay", total=len(names) * len(loads))
        for name in names:
            source, cluster = TRACES[name]
            real = load_workload(source).shifted()
            gen = fit_generator(real, args.model, seed=args.seed, source=name)
            syn = gen.sample(len(real), seed=args.seed).shifted()
            shuffled = permuted(real, args.seed)
            for load in loads:
                r = replay(real, cluster, load, policies, args.seed)
                s = replay(syn, cluster, load, policies, args.seed)
                p = replay(shuffled, cluster, load, policies, args.seed)
                rows.append({"trace": name, "load": load, "model": args.model,
                             "jobs": len(real), "real": r, "synthetic": s, "permuted": p,
                             "span_days": {"real": real.span / 86400,
                                           "synthetic": syn.span / 86400},
                             "order_real": order(r, policies),
                             "order_synthetic": order(s, policies),
                             "agree": order(r, policies) == order(s, policies)})
                bar.advance(task)
    (out / "ranking.json").write_text(json.dumps(rows, indent=2) + "\n")
    manifest.write(out / "manifest.json", manifest.build(
        "python benchmarks/experiments/synthetic_ranking.py", vars(args), args.seed))
    head = " | ".join(f"{p} × fifo real / syn / permuted" for p in policies if p != "fifo")
    print(f"| trace | load | GPUs real / syn | load reached real / syn / permuted | {head} "
          "| order real | order synthetic | agree |")
    print("|---|---|---|---|" + "---|" * (len(policies) - 1) + "---|---|---|")
    for r in rows:
        re, sy, pe = r["real"], r["synthetic"], r["permuted"]
        cells = " | ".join(f"{re[p] / re['fifo']:.2f} / {sy[p] / sy['fifo']:.2f} / "
                           f"{pe[p] / pe['fifo']:.2f}" for p in policies if p != "fifo")
        reached = " / ".join(f"{x['offered_load']:.2f}" for x in (re, sy, pe))
        print(f"| {r['trace']} | {r['load']} | {re['gpus']} / {sy['gpus']} | {reached} | {cells} | "
              f"{' < '.join(r['order_real'])} | {' < '.join(r['order_synthetic'])} | "
              f"{'yes' if r['agree'] else 'no'} |")
    agree = sum(r["agree"] for r in rows)
    print(f"\norders agree in {agree} of {len(rows)} cases")


if __name__ == "__main__":
    main()
