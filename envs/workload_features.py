"""What the adaptive scheduler knows about the workload it is in, as a fixed-size vector.

The adaptive learned scheduler (``agents.adaptive``) chooses, as a run goes, which
heuristic schedules it. Which one is best depends on the workload: LAS where job sizes
are heavy-tailed (a job that has run long is likely to run much longer), FIFO or SJF
where they are not, and on the load. So the observation describes the workload, from
what is known at decision time only:

* the durations and GPU-time sizes of **completed** jobs (``WorkloadStats.record``, called
  at each completion; a job still running or waiting contributes nothing of its
  duration): quantiles, spread, coefficient of variation, the share past LAS's thresholds
  and the hazard between them, the mean residual size past the median (above 1: heavy
  tail), how well the history estimator predicted them, and how alike neighbours in
  the submission stream are (runs of similar jobs);
* arrivals and load: jobs submitted so far, recent and overall arrival rate, the offered
  load estimated from them and the completed sizes, the queue and the running set;
* which candidate is in charge now (one-hot), and how many choices were made;
* with ``workflow=True`` (a model trained on pipelines of dependent jobs,
  ``autoflow train --workflow-features``), what the waiting stages unlock
  (``WORKFLOW_FEATURES``): how many jobs are held for their parents and the GPUs they
  will ask for, the share of waiting jobs that other jobs wait on, and how much work
  hangs behind them (the predicted critical path of their dependants over their own
  predicted duration). Predictions are the history estimator's, never the truth.

Every feature is scaled to lie in about [-3, 3] and clipped to ``CLIP``.
``WORKLOAD_FEATURES`` names them in order; a model records ``schema_hash()``.
"""

from __future__ import annotations

import hashlib
import json
import math

import numpy as np

from autoflow.policies.las import THRESHOLDS

SCHEMA_VERSION = 1
CLIP = 10.0
WORKLOAD_FEATURES = (
    "has_completions", "completed_log", "submitted_log",
    "dur_q10", "dur_q25", "dur_q50", "dur_q75", "dur_q90", "dur_spread", "dur_cv",
    "size_q50", "size_cv", "size_past_t1", "size_past_t2", "hazard_t1_t2",
    "residual_at_median", "residual_at_q75", "predict_error", "predict_corr",
    "neighbour_alike", "gpus_mean_log", "multi_gpu_share",
    "arrival_rate_log", "recent_rate_ratio", "offered_load", "recent_load",
    "waiting_log", "waiting_demand", "running_log", "used_share", "choices_log",
)


WORKFLOW_FEATURES = ("held_log", "held_demand", "waiting_heads_share", "unlock_ratio")


def feature_names(workflow: bool = False) -> tuple[str, ...]:
    return WORKLOAD_FEATURES + (WORKFLOW_FEATURES if workflow else ())


def schema(candidates: list[str], workflow: bool = False) -> dict:
    return {"version": SCHEMA_VERSION, "features": list(feature_names(workflow)),
            "candidates": list(candidates), "clip": CLIP}


def schema_hash(candidates: list[str], workflow: bool = False) -> str:
    return hashlib.sha256(json.dumps(schema(candidates, workflow), sort_keys=True).encode()
                          ).hexdigest()[:16]


def obs_size(n_candidates: int, workflow: bool = False) -> int:
    return len(feature_names(workflow)) + n_candidates


def _cv(x: np.ndarray) -> float:
    m = float(x.mean())
    return float(x.std()) / m if m > 0 else 0.0


def _residual(sizes: np.ndarray, a: float) -> float:
    """E[S - a | S > a] / E[S]: above 1, a job that has run is expected to run longer
    than a fresh one (a heavy tail); below 1, it is nearly done (a light one)."""
    rest = sizes[sizes > a] - a
    mean = float(sizes.mean())
    return float(rest.mean()) / mean if len(rest) and mean > 0 else 0.0


class WorkloadStats:
    """What the completed jobs and the arrivals of one run have shown so far."""

    def __init__(self, origin: float = 0.0):
        self.origin = origin  # rates are per second since this time (a run's start, or
        # where the self-optimizing loop started looking afresh)
        self.durations: list[float] = []  # seconds, of completed jobs, in completion order
        self.sizes: list[float] = []  # GPU-seconds
        self.predicted: list[float] = []  # the history estimator's prediction for them
        self.submits: list[float] = []
        self.gpus: list[int] = []
        self.marks: list[tuple[float, int]] = []  # (time, jobs submitted) at each choice

    def record(self, js) -> None:
        """A job completed: its duration is known now (never before)."""
        d = float(js.duration)
        self.durations.append(d)
        self.sizes.append(d * js.job.gpu_demand)
        self.predicted.append(float(js.predicted))
        self.submits.append(float(js.submit))
        self.gpus.append(int(js.job.num_gpus))

    def features(self, ctx, active: int, n_candidates: int, choices: int,
                 workflow: bool = False) -> np.ndarray:
        now = float(ctx.now)
        total_gpus = max(1.0, ctx.state.total_milli / 1000.0)
        n_done = len(self.durations)
        waiting, running = ctx.waiting, ctx.running
        submitted = n_done + len(waiting) + len(running)
        f = dict.fromkeys(WORKLOAD_FEATURES, 0.0)
        f["completed_log"] = math.log1p(n_done) / 8
        f["submitted_log"] = math.log1p(submitted) / 8
        mean_size = 0.0
        if n_done:
            d = np.maximum(np.asarray(self.durations), 1.0)
            s = np.maximum(np.asarray(self.sizes), 0.0)
            ld = np.log10(d)
            q = np.quantile(ld, (0.1, 0.25, 0.5, 0.75, 0.9))
            f["has_completions"] = min(n_done, 20) / 20
            for name, v in zip(("dur_q10", "dur_q25", "dur_q50", "dur_q75", "dur_q90"), q):
                f[name] = v / 3 - 1  # 10 s -> -0.67, 1 h -> 0.18, 10 d -> 0.98
            f["dur_spread"] = (q[4] - q[0]) / 2
            f["dur_cv"] = min(_cv(d), 9.0) / 3
            f["size_q50"] = math.log10(max(float(np.median(s)), 1.0)) / 3 - 1
            f["size_cv"] = min(_cv(s), 9.0) / 3 if s.any() else 0.0
            t1, t2 = THRESHOLDS[0], THRESHOLDS[-1]
            past1, past2 = float((s > t1).mean()), float((s > t2).mean())
            f["size_past_t1"], f["size_past_t2"] = past1, past2
            f["hazard_t1_t2"] = 1.0 - past2 / past1 if past1 > 0 else 0.0
            if s.any():
                f["residual_at_median"] = min(_residual(s, float(np.median(s))), 9.0) / 3
                f["residual_at_q75"] = min(_residual(s, float(np.quantile(s, 0.75))), 9.0) / 3
            p = np.log10(np.maximum(np.asarray(self.predicted), 1.0))
            f["predict_error"] = min(float(np.abs(p - ld).mean()), 6.0) / 2
            if n_done >= 3 and p.std() > 0 and ld.std() > 0:
                f["predict_corr"] = float(np.corrcoef(p, ld)[0, 1])
            if n_done >= 3:  # neighbours in submission order: how alike their durations
                by_submit = ld[np.argsort(np.asarray(self.submits), kind="stable")]
                gap = float(np.abs(np.diff(by_submit)).mean())
                f["neighbour_alike"] = max(0.0, 1.0 - gap / max(float(ld.std()) * 1.13, 1e-6))
            g = np.asarray(self.gpus, dtype=float)
            f["gpus_mean_log"] = float(np.log2(1 + g).mean()) / 4
            f["multi_gpu_share"] = float((g > 1).mean())
            mean_size = float(s.mean())
        # arrivals: overall and since the last choice
        if now > self.origin:
            rate = submitted / (now - self.origin)  # jobs per second since the start
            f["arrival_rate_log"] = math.log1p(rate * 3600) / 5
            f["offered_load"] = min(rate * mean_size / total_gpus, 9.0) / 3
            if self.marks:
                t0, n0 = self.marks[-1]
                if now > t0:
                    recent = (submitted - n0) / (now - t0)
                    f["recent_rate_ratio"] = min(recent / rate, 9.0) / 3 if rate > 0 else 0.0
                    f["recent_load"] = min(recent * mean_size / total_gpus, 9.0) / 3
        self.marks.append((now, submitted))
        f["waiting_log"] = math.log1p(len(waiting)) / 5
        f["waiting_demand"] = min(sum(js.job.gpu_demand for js in waiting) / total_gpus,
                                  9.0) / 3
        f["running_log"] = math.log1p(len(running)) / 5
        f["used_share"] = ctx.state.used_milli / 1000.0 / total_gpus
        f["choices_log"] = math.log1p(choices) / 4
        names = feature_names(workflow)
        if workflow:
            f.update(workflow_features(ctx, total_gpus))
        out = np.zeros(obs_size(n_candidates, workflow), dtype=np.float32)
        out[: len(names)] = [f[k] for k in names]
        out[len(names) + active] = 1.0
        np.clip(out, -CLIP, CLIP, out=out)
        return out


def workflow_features(ctx, total_gpus: float) -> dict[str, float]:
    """``WORKFLOW_FEATURES`` at a choice: the held jobs (waiting for their parents) and
    their GPU demand, the share of waiting jobs that others depend on, and the mean
    ``log10(1 + tail / own)`` over those, where ``tail`` is the predicted critical path
    of the jobs that depend on one and ``own`` its own predicted duration."""
    from autoflow.policies.critical_path import critical_path

    held = ctx.held
    f = {"held_log": math.log1p(len(held)) / 5,
         "held_demand": min(sum(js.job.gpu_demand for js in held) / total_gpus, 9.0) / 3}
    waiting = list(ctx.waiting)
    heads, ratios, memo = 0, [], {}
    for js in waiting:
        kids = ctx.dependants(js)
        if not kids:
            continue
        heads += 1
        own = max(js.predicted if js.predicted > 0 else ctx.predict(js.job), 1.0)
        tail = max(critical_path(ctx, k, memo) for k in kids)
        ratios.append(math.log10(1.0 + tail / own))
    f["waiting_heads_share"] = heads / len(waiting) if waiting else 0.0
    f["unlock_ratio"] = min(float(np.mean(ratios)), 6.0) / 2 if ratios else 0.0
    return f
