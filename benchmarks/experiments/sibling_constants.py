"""2026-12-01: which window, tail and number of siblings should gittins-siblings use?

    python benchmarks/experiments/sibling_constants.py [--traces ../shared/traces]
        [--variants 1800/2/0,1800/1.25/8,...] [--jobs 2] [--out runs/sibling_constants]

Each variant is ``WINDOW/TAIL/NEAREST`` (``autoflow/policies/gittins_siblings.py``). The
cases are the *middle* 20% (positions 40-60%) of the four training traces (ITP 01, 02,
03, 05) on ``itp-8gpu`` at loads 0.9 and 1.1, 2 replays each (the second with jittered
submits and restart overhead, ``autoflow.perturb``, as the bar perturbs): never the last
20%, which the bar holds out. Prints each variant's average JCT over the best of las,
gittins and sjf on the same replay (geometric mean, worst) and writes ``results.json``
and ``manifest.json`` to ``--out``. Skips when the traces are absent.
"""

from __future__ import annotations

import argparse
import math
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from autoflow import manifest as manifest_mod
from autoflow.cluster import load_cluster
from autoflow.evaluate import evaluate
from autoflow.load import fit_load
from autoflow.perturb import perturbed
from autoflow.policies import make_policy
from autoflow.traces.registry import load_workload
from autoflow.workload import Workload

ROOT = Path(__file__).resolve().parents[2]

VARIANTS = "1800/2/0,1800/2/8,1800/2/4,3600/2/8,900/2/8,1800/1.5/8,1800/3/8,1800/1.25/8,1800/1.1/8"
BASELINES = ("las", "gittins", "sjf")
TRACES = ("cluster01", "cluster02", "cluster03", "cluster05")


def parse_variant(text: str) -> tuple[float, float, int]:
    try:
        window, tail, nearest = text.split("/")
        v = (float(window), float(tail), int(nearest))
    except ValueError:
        raise SystemExit(f"--variants: {text!r} is not WINDOW/TAIL/NEAREST (e.g. 1800/1.25/8)")
    if not (v[0] > 0 and v[1] >= 1 and v[2] >= 0):
        raise SystemExit(f"--variants: {text!r}: need WINDOW > 0, TAIL >= 1, NEAREST >= 0")
    return v


def run_case(args) -> dict:
    import autoflow.policies.gittins_siblings as gs

    path, load, variants = args
    jobs = [j for j in load_workload(f"itp:{path}") if j.duration is not None]
    n = len(jobs)
    w = Workload(jobs[int(0.4 * n):int(0.6 * n)], source=f"{path}[40-60%]").shifted()
    fit = fit_load(load_cluster("itp-8gpu"), w, load)
    out = {"trace": str(path), "load": load, "replays": []}
    for r in range(2):
        wr, cfg = perturbed(fit.workload, r)
        avg = {p: evaluate(make_policy(p), wr, fit.spec, cfg).metrics["avg_jct"]
               for p in BASELINES}
        for v in variants:
            gs.WINDOW, gs.TAIL, gs.NEAREST = v
            avg["/".join(map(str, v))] = evaluate(make_policy("gittins-siblings"), wr,
                                                  fit.spec, cfg).metrics["avg_jct"]
        out["replays"].append(avg)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--traces", default=str(ROOT.parent / "shared" / "traces"))
    ap.add_argument("--variants", default=VARIANTS)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--out", default=str(ROOT / "runs" / "sibling_constants"))
    args = ap.parse_args(argv)
    variants = [parse_variant(v) for v in args.variants.split(",")]
    paths = [Path(args.traces) / "itp" / f"{t}.csv" for t in TRACES]
    paths = [p for p in paths if p.exists()]
    if not paths:
        print(f"no ITP traces under {args.traces}", file=sys.stderr)
        return 0
    work = [(p, load, variants) for p in paths for load in (0.9, 1.1)]
    with ProcessPoolExecutor(args.jobs) as pool:
        results = []
        for i, r in enumerate(pool.map(run_case, work)):
            results.append(r)
            print(f"[{i + 1}/{len(work)}] {Path(r['trace']).stem}@{r['load']:g}",
                  file=sys.stderr, flush=True)
    names = list(BASELINES) + ["/".join(map(str, v)) for v in variants]
    table = {}
    for name in names:
        x = [rep[name] / min(rep[b] for b in BASELINES) for r in results for rep in r["replays"]]
        table[name] = {"gm": math.exp(float(np.mean(np.log(x)))), "worst": max(x)}
        print(f"{name:22s} x best of {', '.join(BASELINES)}: geometric mean "
              f"{table[name]['gm']:.4f}, worst {table[name]['worst']:.3f}")
    manifest_mod.save_run(
        args.out, {"cases": results, "table": table},
        "python benchmarks/experiments/sibling_constants.py " + " ".join(argv or sys.argv[1:]),
        vars(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
