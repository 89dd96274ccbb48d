"""2026-11-23: does LAS tuned on the training traces stay better on traces it never saw?

    python benchmarks/experiments/las_thresholds.py [--traces ../shared/traces] [--jobs 2]
        [--grid 900/9000,1800/18000,...] [--out runs/las_thresholds]

The simplest thing a learner could take from the training traces is LAS's two queue
thresholds. For every threshold set of the grid, ``las:T1/T2`` replays the training
traces of the shipped model (ITP clusters 01, 02, 03, 05) and the bar's unseen ones
(ITP 06, 08, Alibaba openb), each at ``--load`` 0.9 and 1.1, as ``autoflow bench`` does
(``autoflow.evaluate.evaluate_at_load``; the load reached is recorded per case).
The set with the lowest geometric mean of average JCT relative to ``las`` over the
training cases is what tuning would choose; the question is how it does on the unseen
cases. Writes ``results.json``, ``manifest.json`` and ``ratios.png`` (a heatmap) to
``--out`` and prints the table. Skips when the traces are absent.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from rich.progress import Progress

from autoflow import manifest as manifest_mod
from autoflow.cluster import load_cluster
from autoflow.evaluate import evaluate_at_load
from autoflow.policies import parse_policy
from autoflow.traces.registry import load_workload

ROOT = Path(__file__).resolve().parents[2]
GRID = ("3600/36000", "900/9000", "1800/18000", "1800/36000", "3600/18000", "3600/72000",
        "7200/36000", "7200/72000", "900/3600/36000")  # the first is Tiresias' (las)
TRAIN = ("cluster01", "cluster02", "cluster03", "cluster05")
UNSEEN = ("cluster06", "cluster08", "openb")
LOADS = (0.9, 1.1)


def _source(traces: Path, name: str) -> tuple[str, str]:
    if name == "openb":
        d = traces / "alibaba-openb"
        return (f"alibaba-openb:{d / 'openb_pod_list_default.csv'}",
                f"alibaba-openb:{d / 'openb_node_list_gpu_node.csv'}")
    return f"itp:{traces / 'itp' / (name + '.csv')}", "itp-8gpu"


def _case(args: tuple) -> tuple[str, float, dict[str, float], dict]:
    """Average JCT of ``las`` with every threshold set of the grid on one trace and load,
    and the cluster it ran on."""
    traces, name, load, grid, seed = args
    trace, cluster = _source(Path(traces), name)
    workload = load_workload(trace).shifted()
    r = evaluate_at_load([f"las:{t}" for t in grid], workload, load_cluster(cluster), load,
                         seed=seed)
    setup = {"jobs": len(workload), "gpus": r.fit.spec.total_gpus,
             "offered_load": round(r.fit.achieved, 3), "time_scale": round(r.fit.time_scale, 4)}
    return name, load, {t: r.runs[f"las:{t}"].metrics["avg_jct"] for t in grid}, setup


def _gmean(xs: list[float]) -> float:
    return math.exp(sum(math.log(x) for x in xs) / len(xs))


def measure(traces: Path, grid: list[str], jobs: int, seed: int) -> dict:
    cases = [(str(traces), n, load, grid, seed) for n in TRAIN + UNSEEN for load in LOADS]
    avg: dict[str, dict[str, float]] = {}
    setups: dict[str, dict] = {}
    with Progress() as progress, ProcessPoolExecutor(max_workers=jobs) as pool:
        task = progress.add_task("las with each threshold set", total=len(cases))
        for name, load, out, setup in pool.map(_case, cases):
            avg[f"{name}@{load}"], setups[f"{name}@{load}"] = out, setup
            progress.advance(task)
    base = grid[0]
    ratio = {case: {t: v / row[base] for t, v in row.items()} for case, row in avg.items()}
    train = [f"{n}@{load}" for n in TRAIN for load in LOADS]
    unseen = [f"{n}@{load}" for n in UNSEEN for load in LOADS]
    train_gmean = {t: _gmean([ratio[c][t] for c in train]) for t in grid}
    unseen_gmean = {t: _gmean([ratio[c][t] for c in unseen]) for t in grid}
    chosen = min(grid, key=lambda t: train_gmean[t])
    return {"grid": grid, "baseline": base, "seed": seed, "setups": setups, "avg_jct": avg,
            "ratio": ratio,
            "train_cases": train, "unseen_cases": unseen, "train_gmean": train_gmean,
            "unseen_gmean": unseen_gmean, "chosen_on_train": chosen,
            "best_in_hindsight": {c: min(grid, key=lambda t: ratio[c][t]) for c in unseen}}


def heatmap(r: dict, path: Path) -> None:
    cases = r["train_cases"] + r["unseen_cases"]
    grid = r["grid"]
    m = np.array([[r["ratio"][c][t] for t in grid] for c in cases])
    fig, ax = plt.subplots(figsize=(1.0 * len(grid) + 2.5, 0.42 * len(cases) + 1.8), dpi=120)
    span = max(abs(np.log2(m)).max(), 0.05)
    im = ax.imshow(np.log2(m), cmap="RdBu_r", vmin=-span, vmax=span, aspect="auto")
    for i in range(len(cases)):
        for j in range(len(grid)):
            ax.text(j, i, f"{m[i, j]:.2f}", ha="center", va="center", fontsize=7)
    ax.set_xticks(range(len(grid)), [t + (" (las)" if t == r["baseline"] else "")
                                     + (" *" if t == r["chosen_on_train"] else "")
                                     for t in grid], rotation=40, ha="right", fontsize=8)
    ax.set_yticks(range(len(cases)), cases, fontsize=8)
    ax.axhline(len(r["train_cases"]) - 0.5, color="black", linewidth=1.5)
    ax.set_title("avg JCT / las's, by LAS thresholds (GPU-s); above the line: training "
                 "traces,\nbelow: unseen; * = chosen on the training traces", fontsize=9)
    fig.colorbar(im, ax=ax, label="log2 of the ratio (blue: better than las)")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--traces", default=str(ROOT.parent / "shared" / "traces"))
    ap.add_argument("--grid", default=",".join(GRID),
                    help="threshold sets T1/T2/..., comma-separated; the first is the baseline")
    ap.add_argument("--jobs", type=int, default=2, help="cases simulated at once")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(ROOT / "runs" / "las_thresholds"))
    args = ap.parse_args()
    traces = Path(args.traces)
    if not (traces / "itp").is_dir() or not (traces / "alibaba-openb").is_dir():
        print(f"skipped: the ITP and Alibaba openb traces are not under {traces}")
        return
    grid = [t.strip() for t in args.grid.split(",") if t.strip()]
    for t in grid:
        parse_policy(f"las:{t}")  # a bad set fails before anything runs
    r = measure(traces, grid, args.jobs, args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(r, indent=2) + "\n")
    config = dict(vars(args)) | {"grid": grid}
    manifest_mod.write(out / "manifest.json",
                       manifest_mod.build(" ".join(["python", *sys.argv]), config, args.seed))
    heatmap(r, out / "ratios.png")
    print("| case | GPUs (offered load) | " + " | ".join(grid) + " |")
    print("|---|---|" + "---|" * len(grid))
    for c in r["train_cases"] + r["unseen_cases"]:
        s = r["setups"][c]
        print(f"| {c} | {s['gpus']} ({s['offered_load']:.2f}) | "
              + " | ".join(f"{r['ratio'][c][t]:.3f}" for t in grid) + " |")
    for label, g in (("training, geometric mean", r["train_gmean"]),
                     ("unseen, geometric mean", r["unseen_gmean"])):
        print(f"| **{label}** | | " + " | ".join(f"{g[t]:.3f}" for t in grid) + " |")
    print(f"\nchosen on the training traces: {r['chosen_on_train']}; "
          f"best in hindsight on each unseen case: {r['best_in_hindsight']}")
    print(f"wrote {out}/results.json, {out}/manifest.json, {out}/ratios.png")


if __name__ == "__main__":
    main()
