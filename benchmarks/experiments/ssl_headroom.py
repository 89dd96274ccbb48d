"""2026-12-01: how much of sjf's gap to sjf-oracle can any predictor on these features close?
(issue 19's downstream bar)

``sjf:ssl`` with the shipped predictor closed a median -16% of the average-JCT gap between
``sjf`` (history) and ``sjf-oracle`` on the held-out ITP clusters (``ssl_policies.py``).
This asks whether a better-trained predictor on the same features could reach the bar
(50%), by replacing the predictor with ones that know more than any real one may:

* ``offline-insample``: gbm fitted on the held-out trace ITSELF, all labels, on the
  offline decision-time examples (``autoflow predictor fit``'s); an upper bound for a
  model of these features, except that inside a queued run the features differ (a job
  completes later than submit + duration);
* ``online-insample``: gbm fitted on the held-out trace itself, on the feature rows
  ``sjf:ssl`` computes inside replays of it at each load (``policies.ssl``: what the
  policy really sees), labelled with each job's true remaining time; the same upper
  bound without that train/serve difference;
* ``online-transfer``: the same, fitted on replays of the training clusters (ITP
  cluster01, 02, 03, 05) only: a legitimate model trained on what the policy sees;
* ``online-refit``: a legitimate predictor that learns during the run: the shipped one
  until ``REFIT_MIN`` jobs have completed, then gbm refitted on the completed jobs' rows
  (as predicted, with their now-known remaining times) each time their count grows by
  ``REFIT_GROWTH``; labels arrive late, as in a cluster.

Per case (ITP cluster06 and cluster08 at loads 0.9 and 1.1, fitted as ``autoflow bench
--load``): sjf, sjf-oracle and sjf with each predictor, and the gap closed
``(sjf - x) / (sjf - sjf-oracle)``. Writes ``DIR/results.json`` + ``DIR/manifest.json``
and prints a markdown table.

    python benchmarks/experiments/ssl_headroom.py --out runs/ssl-headroom
"""

from __future__ import annotations

import argparse
import math
import tempfile
from pathlib import Path

import numpy as np

from autoflow import manifest
from autoflow.bench import prepare_fit
from autoflow.evaluate import evaluate
from autoflow.placers import make_placer
from autoflow.policies.sjf import Sjf
from autoflow.policies.ssl import SHIPPED, SslPredictions, load_predictor
from autoflow.predict import features as F
from autoflow.predict import models
from autoflow.predict.cli import fit_predictor

ROOT = Path(__file__).resolve().parents[2]
ITP = ROOT.parent / "shared" / "traces" / "itp"
HELD_OUT = ("06", "08")
TRAIN = ("01", "02", "03", "05")
LOADS = (0.9, 1.1)
CLUSTER = "itp-8gpu"
REFIT_MIN = 100  # completed jobs before the first refit
REFIT_GROWTH = 1.25  # refit when the completed count has grown this much
REFIT_TREES = 60  # boosting rounds per refit (GBM_DEFAULTS has 150)
VARIANTS = ("offline-insample", "online-insample", "online-transfer", "online-refit")


def source(c: str) -> str:
    return f"itp:{ITP}/cluster{c}.csv"


class Recording(SslPredictions):
    """The feature row and work done of each job when it was (last) predicted."""

    def reset(self) -> None:
        super().reset()
        self.rows: dict[int, tuple[np.ndarray, float]] = {}

    def features(self, jobs, now):
        x = super().features(jobs, now)
        for js, row in zip(jobs, x):
            self.rows[js.idx] = (row.copy(), js.progress)
        return x


class Refitting(Recording):
    """``online-refit``: a gbm refitted during the run on the completed jobs' rows."""

    def reset(self) -> None:
        super().reset()
        self.x: list[np.ndarray] = []
        self.y: list[float] = []
        self.fitted = 0
        self.fits = 0
        self.local = None

    def completed(self, js) -> None:
        super().completed(js)
        got = self.rows.get(js.idx)
        if got is not None:  # its duration is known now: a label
            self.x.append(got[0])
            self.y.append(math.log(max(js.duration - got[1], F.MIN_REMAINING_S)))

    def refresh(self, ctx, rekey: bool, changed=None) -> None:
        n = len(self.y)
        if n >= REFIT_MIN and n >= self.fitted * REFIT_GROWTH:
            self.local = models.fit_gbm(_examples(np.array(self.x), np.array(self.y)),
                                        seed=0, params={"max_iter": REFIT_TREES})
            self.fitted, self.fits = n, self.fits + 1
        if self.local is not None:
            self.predictor = self.local
        super().refresh(ctx, rekey, changed)


def _examples(x: np.ndarray, y: np.ndarray) -> F.Examples:
    n = len(y)
    return F.Examples(x, y, np.arange(n), np.zeros(n), np.exp(y))


def sjf_with(ssl: SslPredictions) -> Sjf:
    pol = Sjf(make_placer("best-fit"))
    pol.ssl = ssl
    return pol


def online_rows(c: str, base) -> tuple[np.ndarray, np.ndarray]:
    """Rows sjf:ssl (the shipped predictor) computes in replays of cluster ``c`` at each
    load, labelled with the true remaining time."""
    xs, ys = [], []
    for load in LOADS:
        fit = prepare_fit(source(c), CLUSTER, load, seed=0)
        pol = sjf_with(Recording(base, "ssl"))
        done = evaluate(pol, fit.workload, fit.spec).result.jobs
        for js in done:
            row, work = pol.ssl.rows[js.idx]
            xs.append(row)
            ys.append(math.log(max(js.job.duration - work, F.MIN_REMAINING_S)))
    return np.array(xs), np.array(ys)


def predictors(c: str, base) -> dict:
    """Variant -> a fresh ``SslPredictions`` for held-out cluster ``c``."""
    off = fit_predictor([source(c)], kind="gbm", label_fraction=1.0, seed=0)
    x, y = online_rows(c, base)
    ins = models.fit_gbm(_examples(x, y), seed=0)
    parts = [online_rows(t, base) for t in TRAIN]
    tr = models.fit_gbm(_examples(np.concatenate([p[0] for p in parts]),
                                  np.concatenate([p[1] for p in parts])), seed=0)
    return {"offline-insample": lambda: SslPredictions(off, "ssl"),
            "online-insample": lambda: SslPredictions(ins, "ssl"),
            "online-transfer": lambda: SslPredictions(tr, "ssl"),
            "online-refit": lambda: Refitting(base, "ssl")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    base = load_predictor(SHIPPED)
    rows = []
    with tempfile.TemporaryDirectory():
        for c in HELD_OUT:
            made = predictors(c, base)
            for load in LOADS:
                fit = prepare_fit(source(c), CLUSTER, load, seed=0)
                avg = {p: evaluate(p, fit.workload, fit.spec).metrics["avg_jct"]
                       for p in ("sjf", "sjf:ssl", "sjf-oracle")}
                fits = None
                for v in VARIANTS:
                    ssl = made[v]()
                    avg[v] = evaluate(sjf_with(ssl), fit.workload, fit.spec).metrics["avg_jct"]
                    fits = getattr(ssl, "fits", fits)
                s, o = avg["sjf"], avg["sjf-oracle"]
                row = {"case": f"cluster{c}", "load": load, "avg_jct": avg, "refits": fits,
                       "closed": {k: (s - avg[k]) / (s - o) for k in ("sjf:ssl", *VARIANTS)}}
                rows.append(row)
                print(f"cluster{c} {load:g}: " + ", ".join(
                    f"{k} {v:.0%}" for k, v in row["closed"].items()), flush=True)
    cols = ("sjf:ssl", *VARIANTS)
    print("| case | load | sjf (h) | sjf-oracle (h) | " + " | ".join(cols) + " |")
    print("|---|---|---|---|" + "---|" * len(cols))
    for r in rows:
        a = r["avg_jct"]
        print(f"| {r['case']} | {r['load']:g} | {a['sjf'] / 3600:.2f} | "
              f"{a['sjf-oracle'] / 3600:.2f} | "
              + " | ".join(f"{a[k] / 3600:.2f} ({r['closed'][k]:+.0%})" for k in cols) + " |")
    config = {"held_out": HELD_OUT, "train": TRAIN, "loads": LOADS, "cluster": CLUSTER,
              "refit_min": REFIT_MIN, "refit_growth": REFIT_GROWTH, "refit_trees": REFIT_TREES,
              "gbm": models.GBM_DEFAULTS, "shipped": str(SHIPPED)}
    manifest.save_run(args.out, {"rows": rows}, "python benchmarks/experiments/ssl_headroom.py "
                      f"--out {args.out}", config)


if __name__ == "__main__":
    main()
