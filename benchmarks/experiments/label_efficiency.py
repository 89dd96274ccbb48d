"""2026-12-01: how many labels does a duration predictor need? (issue 19, first slice)

Fits on decision-time examples of ITP cluster01, 02, 03 and 05 (``autoflow.predict``:
attained 0 plus 3 seeded levels per job, features from the past only) with 1%, 5%, 10%
and 100% of the examples labelled (drawn with the seed), and scores on the held-out ITP
cluster06 and cluster08:

* ``history``: the history estimator over completed jobs of the held-out trace (it
  needs no training labels, so one row per trace);
* ``gbm``: gradient-boosted trees on the same features (sklearn's
  ``HistGradientBoostingRegressor(loss="quantile")``, LightGBM's histogram algorithm);
* ``mlp``: the quantile network from scratch (``--encoder none``);
* ``mlp+NAME`` (with ``--encoder NAME=DIR``, or ``--pretrain OBJECTIVE``): the same
  network fine-tuned from a pretrained encoder (``autoflow pretrain``). ``--pretrain``
  pretrains one here on the training traces and openb with their labels hidden (never
  on the held-out cluster06/08). ``--trunk-lr`` scales the trunk's learning rate (0:
  frozen trunk) and ``--patience`` early-stops on 20% of the LABELLED training examples
  (checked every pass; best state kept); both are recorded in the model's name.

Scores: ``spearman`` of the predicted median against the true remaining time and
``mae_log`` (natural log), mean and range over ``--seeds``. Writes ``DIR/results.json``,
``DIR/manifest.json`` and ``DIR/label_efficiency.png``, and prints a markdown table.

    python benchmarks/experiments/label_efficiency.py --out runs/label-efficiency
    python benchmarks/experiments/label_efficiency.py --out runs/label-efficiency-pretrain \
        --models gbm,mlp,mlp+encoder --fractions 0.05 --encoder encoder=autoflow/models/encoder-v2
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from autoflow import atomic, jsonsafe, manifest
from autoflow.predict import features as F
from autoflow.predict import metrics, models
from autoflow.predict import pretrain as PT
from autoflow.predict.cli import fit_predictor, label_subset, training_examples
from autoflow.traces.registry import load_workload

ITP = "../shared/traces/itp"
FIT = [f"itp:{ITP}/cluster{c}.csv" for c in ("01", "02", "03", "05")]
HELD_OUT = {c: f"itp:{ITP}/cluster{c}.csv" for c in ("06", "08")}
FRACTIONS = (0.01, 0.05, 0.10, 1.0)
MLP_PARAMS = {"epochs": 6, "min_steps": 300}  # a few minutes on 2 cores, all runs
OPENB = "alibaba-openb:../shared/traces/alibaba-openb/openb_pod_list_default.csv"
PRETRAIN = [*FIT, OPENB]  # --pretrain: labels hidden; censored openb pods included


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, required=True, help="folder for the results")
    ap.add_argument("--seeds", default="0,1,2", help="comma-separated seeds")
    ap.add_argument("--max-examples", type=int, default=40_000,
                    help="cap on training examples before labelling")
    ap.add_argument("--models", default="gbm,mlp",
                    help="comma-separated: gbm, mlp, and mlp+NAME for each --encoder NAME")
    ap.add_argument("--fractions", default=",".join(f"{f:g}" for f in FRACTIONS),
                    help="comma-separated label fractions")
    ap.add_argument("--encoder", action="append", default=[], metavar="[NAME=]DIR",
                    help="pretrained encoder folder for model mlp+NAME (default NAME "
                    "encoder); repeatable")
    ap.add_argument("--pretrain", action="append", default=[], metavar="OBJECTIVE",
                    help="pretrain an encoder here (scarf or vime) on the training traces "
                    "and openb, labels hidden: model mlp+OBJECTIVE; repeatable")
    ap.add_argument("--pretrain-epochs", type=int, default=10)
    ap.add_argument("--bins", type=int, default=16,
                    help="mlp from scratch and --pretrain encoders: piecewise-linear input "
                    "encoding in this many quantile bins (0: standardized inputs, as "
                    "encoder-v1)")
    ap.add_argument("--trunk-lr", type=float, default=1.0,
                    help="encoder models: trunk learning rate / head learning rate (0: frozen)")
    ap.add_argument("--patience", type=int, default=0,
                    help="encoder models: early-stop after this many passes without a "
                    "better pinball on 20%% of the labelled examples (0: no early stopping)")
    args = ap.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    fractions = [float(f) for f in args.fractions.split(",")]
    args.out.mkdir(parents=True, exist_ok=True)
    encoders = {}
    for spec in args.encoder:
        name, _, folder = spec.rpartition("=")
        encoders[name or "encoder"] = folder
    for obj in args.pretrain:
        folder = args.out / f"encoder-{obj}"
        rec = PT.pretrain_sources(PRETRAIN, folder, objective=obj, epochs=args.pretrain_epochs,
                                  params={"bins": args.bins},
                                  seed=0, command="label_efficiency.py --pretrain " + obj)
        print(f"pretrained {obj} on {rec['rows']:,} rows: loss {rec['loss'][0]:.3f} -> "
              f"{rec['loss'][-1]:.3f}", flush=True)
        encoders[obj] = str(folder)
    kinds = args.models.split(",")
    for k in kinds:
        if k not in ("gbm", "mlp") and k.removeprefix("mlp+") not in encoders:
            ap.error(f"model {k}: no --encoder {k.removeprefix('mlp+')}=DIR nor --pretrain")
    suffix = "" if args.trunk_lr == 1.0 and not args.patience else \
        f"(trunk-lr {args.trunk_lr:g}" + (f", patience {args.patience}" if args.patience else "") + ")"

    held = {}
    for name, src in HELD_OUT.items():
        w = load_workload(src)
        held[name] = (w, F.examples(w, seed=0))
    rows = []
    for name, (w, ex) in held.items():
        r = metrics.evaluate(models.history_predict(w, ex), ex.y)
        rows.append({"trace": name, "model": "history", "fraction": None, "seed": None, **r})
    for frac in fractions:
        for seed in seeds:
            for kind in kinds:
                if kind in ("gbm", "mlp"):
                    p = fit_predictor(FIT, kind=kind, label_fraction=frac, seed=seed,
                                      max_examples=args.max_examples,
                                      params={**MLP_PARAMS, "bins": args.bins} if kind == "mlp"
                                      else None)
                    label = kind
                else:
                    ex = training_examples(FIT, seed=seed, max_examples=args.max_examples)
                    lab = label_subset(ex, frac, seed)
                    info = {"label_fraction": frac, "examples": len(ex), "labelled": len(lab)}
                    p = fine_tune(lab, seed, encoders[kind.removeprefix("mlp+")],
                                  args.trunk_lr, args.patience, info)
                    label = kind + suffix
                for name, (_, ex) in held.items():
                    r = metrics.evaluate(p.predict(ex.x), ex.y)
                    rows.append({"trace": name, "model": label, "fraction": frac, "seed": seed,
                                 "labelled": p.meta["labelled"], **r})
                print(f"fraction {frac:g} seed {seed} {label}: " + ", ".join(
                    f"{x['trace']} {x['spearman']:.3f}" for x in rows[-len(held):]), flush=True)

    table = summarize(rows)
    print(markdown(table))
    config = {"fit": FIT, "held_out": HELD_OUT, "fractions": fractions, "seeds": seeds,
              "max_examples": args.max_examples, "mlp": MLP_PARAMS, "gbm": models.GBM_DEFAULTS,
              "models": kinds, "encoders": encoders, "pretrain": args.pretrain,
              "pretrain_sources": PRETRAIN if args.pretrain else None,
              "trunk_lr": args.trunk_lr, "patience": args.patience, "bins": args.bins}
    man = manifest.build("python benchmarks/experiments/label_efficiency.py "
                         f"--out {args.out} --seeds {args.seeds}", config, seeds[0])
    jsonsafe.write(args.out / "results.json", {"rows": rows, "summary": table, "manifest": man})
    manifest.write(args.out / "manifest.json", man)
    plot(table, args.out / "label_efficiency.png")


def fine_tune(lab: F.Examples, seed: int, encoder: str, trunk_lr: float, patience: int,
              info: dict) -> models.Predictor:
    """``models.fit_mlp`` on ``encoder`` with the script's hyper-parameters, a trunk
    learning-rate scale (0: frozen) and early stopping (``patience`` passes)."""
    return models.fit_mlp(lab, seed=seed, encoder=encoder, info=info,
                          params={**MLP_PARAMS, "trunk_lr": trunk_lr, "patience": patience})


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
        for model in sorted({r["model"] for r in table if r["fraction"] is not None}):
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
