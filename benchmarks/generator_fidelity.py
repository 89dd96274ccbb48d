"""Fidelity and speed of every generator model on real traces.

For each trace and model: fit on the trace (seconds), sample 100,000 jobs (seconds), then
the report's figures (duration p50/p90/p99 ratios, largest GPU-count gap in percentage
points, hourly correlation, SDV quality score). Then the speed figure on a fixed size:
each model fitted on the first ``--speed-rows`` jobs (8,000) of ``--speed-trace``.
Writes ``DIR/fidelity.json`` and markdown tables on stdout.

    python benchmarks/generator_fidelity.py --out runs/gen-fidelity \\
        --models copula,empirical,ctgan,tvae --epochs 100
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from autoflow.generators import fit_generator
from autoflow.generators.report import fidelity
from rich.progress import Progress

from autoflow import manifest
from autoflow.traces.registry import load_workload

TRACES = {
    "openb": "alibaba-openb:../shared/traces/alibaba-openb/openb_pod_list_default.csv",
    "cluster08": "itp:../shared/traces/itp/cluster08.csv",
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="runs/gen-fidelity")
    ap.add_argument("--models", default="copula,empirical,ctgan,tvae")
    ap.add_argument("--traces", default=",".join(TRACES))
    ap.add_argument("--epochs", type=int, default=100, help="ctgan/tvae epochs")
    ap.add_argument("-n", type=int, default=100_000, help="jobs sampled")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--speed-rows", type=int, default=8000, help="rows for the fit-time figure (0: skip it)")
    ap.add_argument("--speed-trace", default="cluster08", choices=sorted(TRACES))
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    pairs = [(t, m) for t in args.traces.split(",") for m in args.models.split(",")]
    models = args.models.split(",")
    speed: list[dict] = []

    def save() -> None:  # after every model, so a long run keeps what it measured
        (out / "fidelity.json").write_text(json.dumps({"fidelity": rows, "fit_speed": speed},
                                                      indent=2) + "\n")
    with Progress() as bar:
        speed_models = models if args.speed_rows > 0 else []
        task = bar.add_task("fit + sample + report", total=len(pairs) + len(speed_models))
        for trace, model in pairs:
            real = load_workload(TRACES[trace])
            gen = fit_generator(real, model, seed=args.seed, epochs=args.epochs, source=trace)
            t0 = time.perf_counter()
            syn = gen.sample(args.n, seed=args.seed)
            sample_s = time.perf_counter() - t0
            rep = fidelity(real, syn)
            rows.append({"trace": trace, "model": model, "rows": gen.table["used"],
                         "fit_s": gen.fit_seconds, "sample_s": sample_s,
                         "duration_ratio": rep["durations"]["ratio"],
                         "gap_ratio": rep["gaps"]["ratio"],
                         "gpu_max_diff_pp": rep["gpu_counts"]["max_abs_diff_pp"],
                         "hourly_corr": rep["hourly"]["correlation"],
                         "sdv_quality": rep["sdv_quality_score"], "bar": rep["bar"]})
            save()
            bar.advance(task)
        head = load_workload(TRACES[args.speed_trace]).head(max(args.speed_rows, 1))
        for model in speed_models:
            gen = fit_generator(head, model, seed=args.seed, epochs=args.epochs,
                                source=args.speed_trace)
            speed.append({"trace": args.speed_trace, "model": model,
                          "rows": gen.table["used"], "fit_s": gen.fit_seconds})
            save()
            bar.advance(task)
    manifest.write(out / "manifest.json", manifest.build(
        "python benchmarks/generator_fidelity.py", vars(args), args.seed))
    print("| trace | model | fit (s) | sample 100k (s) | duration p50 / p90 / p99 × real | "
          "GPU-count max gap (pp) | hourly corr | SDV quality | bar |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        d = r["duration_ratio"]
        q = "–" if r["sdv_quality"] is None else f"{r['sdv_quality']:.2f}"
        print(f"| {r['trace']} | {r['model']} | {r['fit_s']:.1f} | {r['sample_s']:.2f} | "
              f"{d['p50']:.2f} / {d['p90']:.2f} / {d['p99']:.2f} | {r['gpu_max_diff_pp']:.2f} | "
              f"{r['hourly_corr']:.3f} | {q} | {'met' if r['bar']['all'] else 'not met'} |")
    print(f"\n| model | fit on {args.speed_rows:,} rows of {args.speed_trace} (s) |\n|---|---|")
    for r in speed:
        print(f"| {r['model']} ({r['rows']:,} rows) | {r['fit_s']:.1f} |")


if __name__ == "__main__":
    main()
