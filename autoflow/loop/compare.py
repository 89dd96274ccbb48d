"""Champion against challenger: paired replays and a paired bootstrap.

Both models play the same cases with the same seeds: the recent real window, as it was
and perturbed (``autoflow.perturb``: submit times jittered, restart overhead drawn), on
the live cluster; and synthetic variants of it (episodes of the window's generator and of
the window reshaped by knobs, ``loop.challenger.window_sources``), each fitted to a drawn
load. The heuristics play them too, for the report. Per case the paired difference is
``log(avg JCT challenger / avg JCT champion)``; its mean's confidence interval comes from
a seeded bootstrap over cases. The challenger is promoted only if the whole interval is
below zero (better, with the confidence asked); otherwise the champion stays, and the
evidence says why.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..cluster import ClusterSpec
from ..errors import ConfigError
from ..evaluate import evaluate
from ..perturb import perturbed
from ..placers import make_placer
from ..workload import Workload


@dataclass(frozen=True)
class CompareConfig:
    replays: int = 3  # replays of the real window (0: as it was, then perturbed)
    variants: int = 4  # synthetic episodes of the window's variants
    load: tuple[float, float] = (0.8, 1.2)  # offered load of the synthetic episodes
    bootstrap: int = 2000  # resamples of the cases
    confidence: float = 0.95  # two-sided level of the interval
    seed: int = 0

    def __post_init__(self) -> None:
        if self.replays < 1 or self.variants < 0 or self.replays + self.variants < 2:
            raise ConfigError(f"compare: need replays >= 1, variants >= 0 and at least 2 "
                              f"cases, got {self.replays} and {self.variants}")
        if not 0.5 < self.confidence < 1 or self.bootstrap < 100:
            raise ConfigError(f"compare: confidence must be in (0.5, 1) and bootstrap >= "
                              f"100, got {self.confidence} and {self.bootstrap}")


def cases(window: Workload, spec: ClusterSpec, sources: list[str], cfg: CompareConfig
          ) -> list[tuple[str, Workload, ClusterSpec, object]]:
    """(label, workload, cluster, SimConfig) of every paired case."""
    from ..envs.samplers import EpisodeSpec, make_sampler
    from ..sim.simulator import SimConfig

    out = []
    w = window.shifted()
    for r in range(cfg.replays):
        pw, sc = perturbed(w, r)
        out.append((f"window~{r}" if r else "window", pw, spec, sc))
    synthetic = [s for s in sources if not s.startswith("csv:")]
    if cfg.variants and synthetic:
        n = len(w)
        sampler = make_sampler(",".join(synthetic),
                               EpisodeSpec((max(1, n // 2), max(1, n)), cfg.load))
        rng = np.random.default_rng([cfg.seed, 20])
        for i in range(cfg.variants):
            s = sampler.samplers[i % len(sampler.samplers)]
            vw, vs = s.sample(rng)
            out.append((f"variant{i}:{s.source.split(':')[0]}", vw, vs, SimConfig(seed=cfg.seed)))
    return out


def paired_bootstrap(d: np.ndarray, cfg: CompareConfig) -> tuple[float, float, float]:
    """(mean, low, high) of the mean of ``d`` with a percentile bootstrap, seeded."""
    rng = np.random.default_rng([cfg.seed, 21])
    idx = rng.integers(0, len(d), size=(cfg.bootstrap, len(d)))
    means = d[idx].mean(axis=1)
    a = (1.0 - cfg.confidence) / 2.0
    return float(d.mean()), float(np.quantile(means, a)), float(np.quantile(means, 1 - a))


def policy_of(card: Path, label: str):
    from ..agents.adaptive import from_card

    return from_card(card, make_placer("best-fit"), label_base=label)


def compare(champion: Path, challenger: Path, case_list: list, heuristics: tuple[str, ...],
            cfg: CompareConfig, progress=None) -> dict:
    """Plays every case under both models and the heuristics; the evidence and the
    decision (``promote``)."""
    rows = []
    for k, (label, w, spec, sc) in enumerate(case_list):
        row = {"case": label, "jobs": len(w), "gpus": spec.total_gpus}
        row["champion"] = evaluate(policy_of(champion, "champion"), w, spec, sc).metrics["avg_jct"]
        row["challenger"] = evaluate(policy_of(challenger, "challenger"), w, spec,
                                     sc).metrics["avg_jct"]
        row["heuristics"] = {h: evaluate(h, w, spec, sc).metrics["avg_jct"] for h in heuristics}
        rows.append(row)
        if progress is not None:
            progress(k + 1, len(case_list))
    d = np.array([math.log(r["challenger"] / r["champion"]) for r in rows])
    mean, lo, hi = paired_bootstrap(d, cfg)
    promote = hi < 0.0
    if promote:
        why = (f"challenger better: avg JCT x{math.exp(mean):.3f} of the champion's, "
               f"{cfg.confidence:.0%} interval x{math.exp(lo):.3f}-x{math.exp(hi):.3f} "
               f"over {len(rows)} paired cases")
    else:
        verdict = "includes no change" if lo < 0.0 else "is not below the champion's"
        why = (f"not promoted: avg JCT x{math.exp(mean):.3f} of the champion's, its "
               f"{cfg.confidence:.0%} interval x{math.exp(lo):.3f}-x{math.exp(hi):.3f} "
               f"{verdict} ({len(rows)} paired cases)")
    return {"promote": promote, "reason": why, "mean_log_ratio": mean, "ci": [lo, hi],
            "ratio": math.exp(mean), "confidence": cfg.confidence,
            "bootstrap": cfg.bootstrap, "seed": cfg.seed, "cases": rows}
