"""2026-12-01: how many labels does a duration predictor need? (issue 19, first slice)

Fits on decision-time examples of ITP cluster01, 02, 03 and 05 (``autoflow.predict``:
attained 0 plus 3 seeded levels per job, features from the past only) with 1%, 5%, 10%
and 100% of the examples labelled (drawn with the seed), and scores on the held-out ITP
cluster06 and cluster08:

* ``history``: the history estimator over completed jobs of the held-out trace (it
  needs no training labels, so one row per trace);
* ``gbm``: gradient-boosted trees on the same features (sklearn's
  ``HistGradientBoostingRegressor(loss="quantile")``, LightGBM's histogram algorithm);
* ``mlp``: the quantile network from scratch (``--encoder none``).

Scores: ``spearman`` of the predicted median against the true remaining time and
``mae_log`` (natural log), mean and range over ``--seeds``. Writes ``DIR/results.json``,
``DIR/manifest.json`` and ``DIR/label_efficiency.png``, and prints a markdown table.

    python benchmarks/experiments/label_efficiency.py --out runs/label-efficiency
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from autoflow import atomic, jsonsafe, manifest
from autoflow.predict import features as F
from autoflow.predict import metrics, models
from autoflow.predict.cli import fit_predictor
from autoflow.traces.registry import load_workload

ITP = "../shared/traces/itp"
FIT = [f"itp:{ITP}/cluster{c}.csv" for c in ("01", "02", "03", "05")]
HELD_OUT = {c: f"itp:{ITP}/cluster{c}.csv" for c in ("06", "08")}
FRACTIONS = (0.01, 0.05, 0.10, 1.0)
MLP_PARAMS = {"epochs": 6, "min_steps": 300}  # a few minutes on 2 cores, all runs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, required=True, help="folder for the results")
    ap.add_argument("--seeds", default="0,1,2", help="comma-separated seeds")
    ap.add_argument("--max-examples", type=int, default=40_000,
                    help="cap on training examples before labelling")
    args = ap.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    args.out.mkdir(parents=True, exist_ok=True)

    held = {}
    for name, src in HELD_OUT.items():
        w = load_workload(src)
        held[name] = (w, F.examples(w, seed=0))
    rows = []
    for name, (w, ex) in held.items():
        r = metrics.evaluate(models.history_predict(w, ex), ex.y)
        rows.append({"trace": name, "model": "history", "fraction": None, "seed": None, **r})
    for frac in FRACTIONS:
        for seed in seeds:
            for kind in ("gbm", "mlp"):
                p = fit_predictor(FIT, kind=kind, label_fraction=frac, seed=seed,
                                  max_examples=args.max_examples,
                                  params=MLP_PARAMS if kind == "mlp" else None)
                for name, (_, ex) in held.items():
                    r = metrics.evaluate(p.predict(ex.x), ex.y)
                    rows.append({"trace": name, "model": kind, "fraction": frac, "seed": seed,
                                 "labelled": p.meta["labelled"], **r})
                print(f"fraction {frac:g} seed {seed} {kind}: " + ", ".join(
                    f"{x['trace']} {x['spearman']:.3f}" for x in rows[-len(held):]), flush=True)

    table = summarize(rows)
    print(markdown(table))
    config = {"fit": FIT, "held_out": HELD_OUT, "fractions": FRACTIONS, "seeds": seeds,
              "max_examples": args.max_examples, "mlp": MLP_PARAMS, "gbm": models.GBM_DEFAULTS}
    man = manifest.build("python benchmarks/experiments/label_efficiency.py "
                         f"--out {args.out} --seeds {args.seeds}", config, seeds[0])
    jsonsafe.write(args.out / "results.json", {"rows": rows, "summary": table, "manifest": man})
    manifest.write(args.out / "manifest.json", man)
    plot(table, args.out / "label_efficiency.png")


def summarize(rows: list[dict]) -> list[dict]:
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["trace"], r["model"], r["fraction"]), []).append(r)
    out = []
    for (trace, model, frac), rs in groups.items():
        s = np.array([r["spearman"] for r in rs])
        m = np.array([r["mae_log"] for r in rs])
        out.append({"trace": trace, "model": model, "fraction": frac, "runs": len(rs),
                    "labelled": rs[0].get("labelled"), "n": rs[0]["n"],
                    "spearman": float(s.mean()), "spearman_min": float(s.min()),
                    "spearman_max": float(s.max()), "mae_log": float(m.mean()),
                    "mae_log_min": float(m.min()), "mae_log_max": float(m.max())})
    return out


def markdown(table: list[dict]) -> str:
    lines = ["| held out | model | labels | spearman (min-max) | mae_log (min-max) |",
             "|---|---|---|---|---|"]
    for r in table:
        lab = "—" if r["fraction"] is None else f"{r['fraction']:.0%} ({r['labelled']:,})"
        lines.append(f"| cluster{r['trace']} (n={r['n']:,}) | {r['model']} | {lab} | "
                     f"{r['spearman']:.3f} ({r['spearman_min']:.3f}-{r['spearman_max']:.3f})"
                     f" | {r['mae_log']:.3f} ({r['mae_log_min']:.3f}-{r['mae_log_max']:.3f}) |")
    return "\n".join(lines)


def plot(table: list[dict], path: Path) -> None:
    import matplotlib.pyplot as plt

    import autoflow.plots  # noqa: F401 - the Agg backend, as every autoflow plot

    traces = sorted({r["trace"] for r in table})
    fig, axes = plt.subplots(1, len(traces), figsize=(5.2 * len(traces), 4), dpi=120,
                             squeeze=False)
    for ax, trace in zip(axes[0], traces):
        for model in ("gbm", "mlp"):
            rs = sorted((r for r in table if r["trace"] == trace and r["model"] == model),
                        key=lambda r: r["fraction"])
            x = [r["fraction"] for r in rs]
            ax.plot(x, [r["spearman"] for r in rs], marker="o", label=model)
            ax.fill_between(x, [r["spearman_min"] for r in rs],
                            [r["spearman_max"] for r in rs], alpha=0.2)
        for r in table:
            if r["trace"] == trace and r["model"] == "history":
                ax.axhline(r["spearman"], color="grey", linestyle="--", label="history")
        ax.set_xscale("log")
        ax.set_xlabel("fraction of training examples labelled")
        ax.set_ylabel("spearman (median vs true remaining)")
        ax.set_title(f"held out: ITP cluster{trace}", fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    atomic.save_figure(fig, path)
    plt.close(fig)


if __name__ == "__main__":
    main()
