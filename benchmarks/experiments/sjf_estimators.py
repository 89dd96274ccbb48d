"""2026-12-01: where is the signal that sjf needs? (issue 19)

``sjf:ssl`` with the shipped predictor did not beat ``sjf`` on the held-out ITP traces
(``ssl_policies.py``): at submission its ranking of the held-out jobs was worse than the
history estimator's. This replays ``sjf`` with simple estimators that read only
completed jobs, to see which signal closes the sjf -> sjf-oracle gap:

* ``history``: the history estimator (mean by GPU count of completed jobs; ITP has no
  users);
* ``recent``: the median of the ``--k`` most recently completed jobs with the same GPU
  count (the job's likely siblings: runs of similar jobs);
* ``blend``: the geometric mean of the two.

On ITP cluster06 and cluster08 at loads 0.9 and 1.1 (``autoflow.evaluate.fit_to``, as
``bench --load``), one replay each; prints average JCTs and the share of the gap closed.

    python benchmarks/experiments/sjf_estimators.py [--k 8] [--out runs/sjf-estimators]
"""

from __future__ import annotations

import argparse
import math
import sys
from collections import defaultdict, deque
from pathlib import Path

from autoflow import manifest as manifest_mod
from autoflow.cluster import load_cluster
from autoflow.core.estimator import DurationEstimator
from autoflow.evaluate import fit_to
from autoflow.metrics import summarize
from autoflow.policies import make_policy
from autoflow.sim.simulator import SimConfig, Simulator
from autoflow.traces.registry import load_workload

ROOT = Path(__file__).resolve().parents[2]
TRACES = ROOT.parent / "shared" / "traces" / "itp"


class Recent(DurationEstimator):
    """The median of the k most recently completed jobs with the same GPU count; the
    history estimator's answer before any has completed. ``blend``: the geometric mean
    of the two."""

    def __init__(self, k: int, blend: bool = False):
        super().__init__()
        self.k, self.blend = k, blend
        self._recent: dict[int, deque] = defaultdict(lambda: deque(maxlen=k))

    def observe(self, job) -> None:
        super().observe(job)
        if job.duration is not None:
            self._recent[job.num_gpus].append(float(job.duration))

    def predict(self, job) -> float:
        hist = super().predict(job)
        r = sorted(self._recent.get(job.num_gpus, ()))
        if not r:
            return hist
        mid = len(r) // 2
        med = r[mid] if len(r) % 2 else (r[mid - 1] + r[mid]) / 2.0
        return math.sqrt(med * hist) if self.blend else med


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--k", type=int, default=8)
    ap.add_argument("--out", default=str(ROOT / "runs" / "sjf-estimators"))
    args = ap.parse_args(argv)
    cfg = SimConfig()
    rows = []
    for c in ("cluster06", "cluster08"):
        w = load_workload(f"itp:{TRACES / (c + '.csv')}").shifted()
        for load in (0.9, 1.1):
            fit = fit_to(load_cluster("itp-8gpu"), w, load)
            out = {}
            for name, est in (("history", None), ("recent", Recent(args.k)),
                              ("blend", Recent(args.k, blend=True)), ("oracle", None)):
                pol = make_policy("sjf-oracle" if name == "oracle" else "sjf")
                res = Simulator(fit.workload, fit.spec, pol, cfg, estimator=est).run()
                out[name] = summarize(res)["avg_jct"] / 3600.0
            gap = out["history"] - out["oracle"]
            row = {"trace": c, "load": load, **{k: round(v, 2) for k, v in out.items()},
                   **{f"closed_{k}": round((out["history"] - out[k]) / gap, 3)
                      for k in ("recent", "blend")}}
            rows.append(row)
            print(row, flush=True)
    manifest_mod.save_run(
        args.out, {"rows": rows},
        "python benchmarks/experiments/sjf_estimators.py " + " ".join(argv or sys.argv[1:]),
        vars(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
