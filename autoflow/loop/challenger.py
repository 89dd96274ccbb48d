"""A challenger trained from the champion on the recent window and its synthetic variants.

The champion is an adaptive scheduler (``agents.adaptive``: a network that puts one of
its candidate heuristics in charge as the run goes). Its challenger starts from the
champion's weights and is fitted again, as ``autoflow train``'s warm start fits a new
one (``agents.train_adaptive.collect_teacher`` and ``clone``), on episodes of the recent
window only:

* ``csv:WINDOW``: windows of the recent window's own jobs (real outcomes);
* ``wide:csv:WINDOW``: the same reshaped by knobs drawn per episode (``envs.samplers``:
  CV of durations, burstiness, sweeps, GPU mix);
* ``gen:GENERATOR``: a generator refitted on the window (``generators``: the
  ``empirical`` model, saved as a safe ``.npz``, no pickle) sampled per episode.

Every candidate plays each teacher episode whole; the network learns each state's regret
per candidate (``log(JCT_k / JCT_best)``). No PPO steps: a few teacher episodes make the
choice of the heuristic that suits the new window, which is what a challenger needs to
offer; the paired replays (``loop.compare``) decide whether it is better.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ..traces import normalized
from ..workload import Workload


@dataclass(frozen=True)
class ChallengerConfig:
    teacher_episodes: int = 12  # episodes of the window and its variants, every candidate
    jobs: tuple[int, int] = (300, 1500)  # jobs per teacher episode (capped by the window)
    load: tuple[float, float] = (0.7, 1.3)  # offered load of teacher episodes
    clone_epochs: int = 30  # passes of the fit over the teacher's states
    clone_lr: float = 1e-3  # smaller than a fresh model's 3e-3: it starts from the champion
    temperature: float = 0.05  # scores = -regret / temperature (as autoflow train)
    weight_decay: float = 1e-3
    workers: int = 1  # processes playing teacher episodes
    generator: str = "empirical"  # the model refitted on the window (safe .npz)


def window_sources(window: Workload, folder: Path, cluster: str, seed: int,
                   generator: str = "empirical") -> tuple[list[str], dict]:
    """Writes the window's jobs (``window.csv``) and a generator fitted on them
    (``generator.npz``) into ``folder``; returns the episode sources and what was
    written (for the registry's lineage)."""
    from ..generators.generator import fit_generator

    folder.mkdir(parents=True, exist_ok=True)
    csv = folder / "window.csv"
    normalized.write(window.shifted(), csv)
    gen = fit_generator(window.shifted(), model=generator, seed=seed, source=str(csv))
    gen_path = folder / "generator.npz"
    gen.save(gen_path)
    sources = [f"csv:{csv}@{cluster}", f"wide:csv:{csv}@{cluster}", f"gen:{gen_path}@{cluster}"]
    return sources, {"window_csv": str(csv), "generator": str(gen_path),
                     "generator_model": generator, "jobs": len(window)}


def train_challenger(champion: Path, window: Workload, cluster: str, folder: Path, *,
                     seed: int = 0, cfg: ChallengerConfig = ChallengerConfig(),
                     console=None) -> tuple[Path, dict]:
    """Fits a challenger from the champion card ``champion`` on ``window`` (and its
    variants); writes ``folder/challenger.json`` + ``.npz``; returns the card path and a
    summary (teacher labels, fit)."""
    import torch
    from rich.console import Console
    from stable_baselines3 import PPO
    from stable_baselines3.common.vec_env import DummyVecEnv

    from ..agents import adaptive
    from ..agents.adaptive_env import RuleChoiceEnv
    from ..agents.train_adaptive import AdaptiveConfig, clone, collect_teacher
    from ..envs.samplers import EpisodeSpec, make_sampler

    console = console or Console(stderr=True, quiet=True)
    selector, candidates, card = adaptive.load(champion)
    sources, written = window_sources(window, folder, cluster, seed, cfg.generator)
    n = len(window)
    jobs = (max(1, min(cfg.jobs[0], n // 2)), max(1, min(cfg.jobs[1], n)))
    spec = EpisodeSpec(jobs, cfg.load)
    workloads = ",".join(sources)
    acfg = AdaptiveConfig(workloads=workloads, out=str(folder), seed=seed, jobs=jobs,
                          load=cfg.load, candidates=candidates,
                          teacher_episodes=cfg.teacher_episodes, workers=cfg.workers)
    torch.manual_seed(seed)
    wf = adaptive.uses_workflow_features(card)
    acfg = replace(acfg, workflow_features=wf)
    venv = DummyVecEnv([lambda: RuleChoiceEnv(make_sampler(workloads, spec), candidates,
                                              acfg.reference, workflow_features=wf)])
    widths = selector.widths
    model = PPO("MlpPolicy", venv, seed=seed, device="cpu", verbose=0,
                policy_kwargs={"net_arch": {"pi": widths, "vf": widths},
                               "activation_fn": torch.nn.Tanh})
    load_selector(model.policy, selector)
    teacher = collect_teacher(acfg, spec, seed + 104729, console, cfg.workers)
    fit = clone(model.policy, teacher, cfg.clone_epochs, cfg.clone_lr, seed, cfg.temperature,
                cfg.weight_decay)
    new = adaptive.Selector.from_sb3(model.policy)
    stem = folder / "challenger"
    adaptive.export(new, candidates, stem, {
        "trained_with": "autoflow loop (challenger from the champion)",
        "parent_sha256": card.get("sha256"), "seed": seed, "workloads": workloads},
        workflow_features=wf)
    best = {c: int(sum(b == c for b in teacher["best"])) for c in candidates}
    return stem.with_suffix(".json"), {"sources": sources, **written, "teacher_best": best,
                                       "teacher_episodes": len(teacher["best"]), "fit": fit}


def load_selector(policy, selector) -> None:
    """Copies a ``Selector``'s layers into an SB3 actor of the same widths (the inverse
    of ``Selector.from_sb3``)."""
    import torch
    from torch import nn

    lins = [m for m in policy.mlp_extractor.policy_net if isinstance(m, nn.Linear)]
    targets = [*lins, policy.action_net]
    if len(targets) != len(selector.layers):
        raise ValueError(f"the SB3 actor has {len(targets)} layers, the selector "
                         f"{len(selector.layers)}")
    with torch.no_grad():
        for lin, (w, b) in zip(targets, selector.layers):
            lin.weight.copy_(torch.as_tensor(np.ascontiguousarray(w.T)))
            lin.bias.copy_(torch.as_tensor(b))
