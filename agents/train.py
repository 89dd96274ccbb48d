"""``autoflow train``: MaskablePPO on the scheduling environment, top to bottom.

1. Episodes come from the training sources (windows of traces, built-in workloads) at
   random loads; validation episodes from held-out data: the last ``HOLDOUT`` of each
   training trace (training windows come from the rest) or fresh built-in seeds.
2. Warm start: behaviour cloning of the LAS expert (``agents.imitation``).
3. MaskablePPO improves on it; every ``eval_every`` steps the policy is replayed on the
   validation episodes beside fifo, sjf and las, and the best one so far (lowest average
   JCT as a ratio to fifo's) is saved as ``best_model.zip``.
4. ``DIR`` receives ``model.zip`` (last), ``best_model.zip``, ``train_summary.json``
   (throughput, evaluations, the first step that beat fifo), ``eval_curve.png``,
   TensorBoard logs under ``tb/`` and ``manifest.json``. Beside each zip (SB3's format,
   a pickle, to continue training) its safe export: ``model.npz`` + ``model.json``,
   ``best_model.npz`` + ``best_model.json`` (weights as arrays, card as JSON with their
   sha256 and the feature schema), which ``rl:PATH`` loads without unpickling.
"""

from __future__ import annotations

import io
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from autoflow.envs.cluster_env import ClusterSchedulingEnv
from autoflow.envs.features import schema_hash
from autoflow.envs.samplers import HOLDOUT, EpisodeSpec, make_sampler
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from sb3_contrib import MaskablePPO
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.logger import configure
from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

from autoflow import atomic, jsonsafe, trust
from autoflow import manifest as manifest_mod
from autoflow.errors import ConfigError, Interrupted
from autoflow.evaluate import evaluate
from autoflow.limits import check_output_dir
from autoflow.load import fit_load
from autoflow.placers import make_placer
from autoflow.policies import parse_policy

from . import imitation, safe_model
from .network import SlotPolicy
from .numpy_actor import NumpyActor
from .rl_policy import RlPolicy, obs_config_of

BASELINES = ("fifo", "sjf", "las")


@dataclass
class TrainConfig:
    workloads: str  # training sources, comma-separated (FORMAT:PATH, builtin:NAME)
    out: str  # output folder
    timesteps: int = 50_000  # PPO environment steps after the warm start
    seed: int = 0  # seeds episodes, network initialisation and PPO's sampling
    validation: str | None = None  # validation sources; default: held-out training data
    jobs: tuple[int, int] = (150, 400)  # jobs per training episode
    load: tuple[float, float] = (0.7, 1.3)  # offered GPU load of training episodes
    imitation_episodes: int = 16  # LAS demonstrations for the warm start (0: start random)
    imitation_epochs: int = 8  # passes over the demonstrations
    imitation_lr: float = 1e-3  # behaviour-cloning step size
    dagger_rounds: int = 2  # rounds in which the cloned policy plays and the expert labels
    imitation_smoothing: float = 0.0  # probability the cloned policy keeps for the other
    # allowed actions (0: certain of the expert's, and PPO cannot depart from it)
    reward_baseline: str | None = None  # reward relative to this policy on the same episode
    # ("las"): removes the episode's own variance from the returns (envs.baseline)
    n_envs: int = 4  # episodes played side by side per rollout (one process)
    n_steps: int = 512  # steps per episode per rollout: rollouts of n_envs x n_steps
    batch_size: int = 512  # PPO minibatch
    n_epochs: int = 4  # passes over each rollout
    learning_rate: float = 1e-4  # small: PPO fine-tunes a cloned policy
    gamma: float = 0.999  # long horizon: a decision's cost arrives over hours of sim time
    gae_lambda: float = 0.95  # advantage estimation: bias/variance trade-off
    clip_range: float = 0.1  # conservative updates keep what was cloned
    ent_coef: float = 0.001  # small exploration bonus: masks already prune the choices
    vf_coef: float = 0.5  # weight of the value loss
    max_grad_norm: float = 0.5  # gradient clipping
    dim: int = 64  # width of the slot embeddings
    share_features: bool = False  # separate policy and value networks: value-loss gradients
    # must not disturb the cloned policy
    normalize_reward: bool = True  # running reward scaling: episodes differ in size and load
    eval_every: int = 10_000  # PPO steps between validation runs
    eval_episodes: int = 4  # validation episodes
    eval_jobs: int = 300  # jobs per validation episode
    eval_loads: tuple[float, ...] = (0.9, 1.1)  # validation loads, used in turn
    estimator: str = "history"  # the predicted durations the agent sees: history or ssl
    # (the duration predictor shipped with autoflow; envs.estimator)
    extra: dict = field(default_factory=dict)


class RichProgress(BaseCallback):
    def __init__(self, total: int, console: Console):
        super().__init__()
        self.total, self.console = total, console

    def _on_training_start(self) -> None:
        self.bar = Progress(TextColumn("[bold]PPO"), BarColumn(), TextColumn("{task.completed:,}"
                            "/{task.total:,} steps"), TimeElapsedColumn(), console=self.console)
        self.bar.start()
        self.task = self.bar.add_task("ppo", total=self.total)

    def _on_step(self) -> bool:
        self.bar.update(self.task, completed=min(self.num_timesteps, self.total))
        return True

    def _on_training_end(self) -> None:
        self.bar.stop()


class Validator:
    """Replays fixed validation episodes under the model and the baselines."""

    def __init__(self, episodes: list, seed: int):
        self.episodes = episodes
        self.seed = seed
        self.baselines = {name: [self._avg_jct(name, w, c) for w, c in episodes]
                          for name in BASELINES}

    def _avg_jct(self, policy, workload, cluster) -> float:
        return evaluate(policy, workload, cluster, seed=self.seed).metrics["avg_jct"]

    def evaluate(self, model) -> dict:
        rl = [self._avg_jct(RlPolicy(make_placer("best-fit"), model=model), w, c)
              for w, c in self.episodes]
        out = {"avg_jct": float(np.mean(rl))}
        for name, base in self.baselines.items():
            out[f"vs_{name}"] = float(np.mean(np.asarray(rl) / np.asarray(base)))
        return out


class EvalCallback(BaseCallback):
    def __init__(self, cfg: TrainConfig, validator: Validator, out: Path, t0: float,
                 console: Console):
        super().__init__()
        self.cfg, self.validator, self.out, self.t0 = cfg, validator, out, t0
        self.console = console
        self.history: list[dict] = []
        self.best = float("inf")
        self.first_beat_fifo: dict | None = None
        self._next = cfg.eval_every

    def evaluate_now(self) -> None:
        ev = self.validator.evaluate(self.model)
        ev |= {"timesteps": int(self.num_timesteps), "wall_s": time.perf_counter() - self.t0}
        self.history.append(ev)
        for k in ("avg_jct", "vs_fifo", "vs_sjf", "vs_las"):
            self.logger.record(f"validation/{k}", ev[k])
        if ev["vs_fifo"] < 1.0 and self.first_beat_fifo is None:
            self.first_beat_fifo = {"timesteps": ev["timesteps"], "wall_s": ev["wall_s"]}
        if ev["vs_fifo"] < self.best:
            self.best = ev["vs_fifo"]
            save(self.model, self.out / "best_model.zip", self.cfg)
        self.console.print(f"  step {ev['timesteps']:>8,}: avg JCT x fifo {ev['vs_fifo']:.3f}, "
                           f"x sjf {ev['vs_sjf']:.3f}, x las {ev['vs_las']:.3f}")

    def _on_step(self) -> bool:
        if self.num_timesteps >= self._next:
            self._next = self.num_timesteps + self.cfg.eval_every
            self.evaluate_now()
        return True


def save(model, path: Path, cfg: TrainConfig, extra: dict | None = None) -> None:
    """``NAME.zip`` (SB3, to continue training: a pickle, its sha256 recorded in the
    user's trust registry) and its safe export ``NAME.npz`` + ``NAME.json``, which
    ``rl:PATH`` loads without unpickling (``agents.safe_model``). Each file is written
    whole or not at all."""
    model.autoflow_obs = obs_extra(cfg)
    buf = io.BytesIO()
    model.save(buf, include=["autoflow_obs"])
    data = buf.getvalue()
    atomic.write_bytes(path, data)
    sha = trust.sha256_bytes(data)
    trust.record(path, sha, "sb3-model")
    safe_model.export(NumpyActor(model.policy), obs_config_of(model), path,
                      sb3_zip=(path.name, sha), extra=extra)


def obs_extra(cfg: TrainConfig) -> dict:
    """What a saved model records of its observation beyond its spaces."""
    return {"head_slots": 4, "preemption": True, "dim": cfg.dim, "estimator": cfg.estimator,
            "schema": schema_hash()}  # rl:PATH refuses another schema


def _validation_sampler(cfg: TrainConfig):
    sources = cfg.validation or cfg.workloads
    part = (0.0, 1.0) if cfg.validation else (1.0 - HOLDOUT, 1.0)
    return make_sampler(sources, EpisodeSpec((cfg.eval_jobs, cfg.eval_jobs), part=part))


def _validation_episodes(cfg: TrainConfig, sampler) -> list:
    rng = np.random.default_rng(cfg.seed + 7919)
    episodes = []
    for i in range(cfg.eval_episodes):
        s = sampler.samplers[i % len(sampler.samplers)]
        fit = fit_load(s.cluster, s.draw_jobs(rng), cfg.eval_loads[i % len(cfg.eval_loads)])
        episodes.append((fit.workload, fit.spec))
    return episodes


def train(cfg: TrainConfig, console: Console | None = None, command: str = "") -> dict:
    console = console or Console(stderr=True)
    if cfg.timesteps < 0 or cfg.n_envs < 1 or cfg.eval_episodes < 1:
        raise ConfigError("--timesteps must be >= 0, --n-envs and --eval-episodes >= 1")
    if not (cfg.learning_rate > 0 and 0 < cfg.clip_range < 1):
        raise ConfigError(f"--learning-rate must be > 0 and --clip-range in (0, 1), got "
                          f"{cfg.learning_rate} and {cfg.clip_range}")
    if not 0.0 <= cfg.imitation_smoothing < 0.5:
        raise ConfigError(f"--imitation-smoothing must be in [0, 0.5), got "
                          f"{cfg.imitation_smoothing}")
    if cfg.reward_baseline:
        parse_policy(cfg.reward_baseline)  # --reward-baseline: an unknown name fails here
    if not 1 <= cfg.jobs[0] <= cfg.jobs[1]:
        raise ConfigError(f"--jobs-min must be >= 1 and <= --jobs-max, got {cfg.jobs}")
    if cfg.eval_every < 1:
        raise ConfigError(f"--eval-every must be >= 1, got {cfg.eval_every}")
    if cfg.estimator not in ("history", "ssl"):
        raise ConfigError(f"--estimator must be history or ssl (the duration predictor "
                          f"shipped with autoflow), got {cfg.estimator!r}")
    out = check_output_dir(cfg.out)
    torch.manual_seed(cfg.seed)
    spec = EpisodeSpec(cfg.jobs, cfg.load, part=(0.0, 1.0 - HOLDOUT))
    sampler = make_sampler(cfg.workloads, spec)
    val_sampler = _validation_sampler(cfg)  # every source read (and checked) before output

    def make_env(i: int):
        def f():
            return ClusterSchedulingEnv(workloads=sampler, reward_baseline=cfg.reward_baseline,
                                        estimator=cfg.estimator)
        return f

    venv = DummyVecEnv([make_env(i) for i in range(cfg.n_envs)])
    venv.seed(cfg.seed)
    if cfg.normalize_reward:
        venv = VecNormalize(venv, norm_obs=False, norm_reward=True, gamma=cfg.gamma)
    model = MaskablePPO(
        SlotPolicy, venv, learning_rate=cfg.learning_rate, n_steps=cfg.n_steps,
        batch_size=cfg.batch_size, n_epochs=cfg.n_epochs, gamma=cfg.gamma,
        gae_lambda=cfg.gae_lambda, clip_range=cfg.clip_range, ent_coef=cfg.ent_coef,
        vf_coef=cfg.vf_coef, max_grad_norm=cfg.max_grad_norm, seed=cfg.seed,
        policy_kwargs={"features_extractor_kwargs": {"dim": cfg.dim},
                       "share_features_extractor": cfg.share_features},
        device="cpu", verbose=0)
    model.autoflow_obs = obs_extra(cfg)  # validation plays it with its estimator
    model.set_logger(configure(str(out / "tb"), ["tensorboard", "csv"]))
    t0 = time.perf_counter()
    summary: dict = {"config": asdict(cfg)}

    interrupted = None  # the phase Ctrl-C stopped, if it did
    phase = "warm start"
    evals = None
    tl = time.perf_counter()
    try:
        if cfg.imitation_episodes:
            console.print(f"[bold]warm start[/]: {cfg.imitation_episodes} LAS episodes, "
                          f"{cfg.dagger_rounds} DAgger rounds")
            demo_env = ClusterSchedulingEnv(workloads=sampler, reward_baseline=cfg.reward_baseline,
                                            estimator=cfg.estimator)
            tb = time.perf_counter()
            demos = imitation.collect(demo_env, cfg.imitation_episodes, cfg.seed + 104729,
                                      cfg.gamma)
            rounds = []
            for rnd in range(cfg.dagger_rounds + 1):
                if rnd:
                    more = imitation.collect(demo_env, max(1, cfg.imitation_episodes // 2),
                                             cfg.seed + 104729 + 1000 * rnd, cfg.gamma,
                                             actor=imitation.greedy_actor(model.policy))
                    demos = imitation.merge(demos, more)
                data = dict(demos)
                if cfg.normalize_reward:  # the value head learns returns on PPO's scaled reward
                    data["return"] = demos["return"] / (float(demos["return"].std()) + 1e-8)
                bc = imitation.clone(model.policy, data, cfg.imitation_epochs, cfg.batch_size,
                                     cfg.imitation_lr, cfg.seed + rnd, cfg.imitation_smoothing)
                rounds.append(bc)
                console.print(f"  round {rnd}: {bc['samples']:,} labelled decisions, agreement "
                              f"with the expert {bc['agreement']:.1%}, its mean probability "
                              f"where there was a choice {bc['expert_prob'] or 0:.3f}")
            summary["imitation"] = rounds[-1] | {"rounds": rounds,
                                                 "wall_s": time.perf_counter() - tb}

        phase = "validation"
        console.print(f"[bold]validation[/]: {cfg.eval_episodes} held-out episodes "
                      f"vs {', '.join(BASELINES)}")
        validator = Validator(_validation_episodes(cfg, val_sampler), cfg.seed)
        evals = EvalCallback(cfg, validator, out, t0, console)
        evals.init_callback(model)
        evals.evaluate_now()
        evals._next = cfg.eval_every
        model.logger.dump(0)
        phase = "learning"
        tl = time.perf_counter()
        if cfg.timesteps:
            model.learn(total_timesteps=cfg.timesteps,
                        callback=[RichProgress(cfg.timesteps, console), evals])
            evals.evaluate_now()
    except KeyboardInterrupt:  # Ctrl-C: keep what was learned and say where it stopped
        interrupted = phase
    model.logger.dump(model.num_timesteps)
    learn_s = time.perf_counter() - tl
    save(model, out / "model.zip", cfg)
    summary |= {
        "learn_wall_s": learn_s,
        "train_steps_per_s": (model.num_timesteps / learn_s
                              if model.num_timesteps and learn_s else None),
        "total_wall_s": time.perf_counter() - t0,
        "evaluations": evals.history if evals else [],
        "best_vs_fifo": evals.best if evals else None,
        "first_beat_fifo": evals.first_beat_fifo if evals else None,
    }
    if interrupted:
        summary |= {"interrupted": True, "interrupted_during": interrupted,
                    "timesteps_done": int(model.num_timesteps)}
    jsonsafe.write(out / "train_summary.json", summary)
    if evals and evals.history:
        _plot(evals.history, out / "eval_curve.png")
    man = manifest_mod.build(command or "autoflow train", asdict(cfg), seed=cfg.seed,
                             status=manifest_mod.INTERRUPTED if interrupted
                             else manifest_mod.COMPLETE)
    manifest_mod.write(out / "manifest.json", man)
    if interrupted:
        best = out / "best_model.zip"
        kept = [str(p) for p in (best,) if p.exists()] + [f"{out / 'model.zip'} (the last)"]
        raise Interrupted(f"during the {interrupted}, at step {model.num_timesteps:,} of "
                          f"{cfg.timesteps:,}; wrote {', '.join(kept)}, "
                          f"{out / 'train_summary.json'} and {out / 'manifest.json'}")
    console.print(f"wrote {out / 'best_model.zip'}, {out / 'model.zip'}, "
                  f"{out / 'train_summary.json'}, {out / 'eval_curve.png'}")
    return summary


def _plot(history: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    steps = [h["timesteps"] for h in history]
    for k in ("vs_fifo", "vs_sjf", "vs_las"):
        ax.plot(steps, [h[k] for h in history], marker="o", label=f"rl avg JCT {k.replace('_', ' ')}")
    ax.axhline(1.0, color="grey", lw=0.8)
    ax.set_xlabel("PPO timesteps (after the warm start)")
    ax.set_ylabel("ratio (validation, lower is better)")
    ax.legend()
    fig.tight_layout()
    from autoflow import atomic

    atomic.save_figure(fig, path, dpi=120)
    plt.close(fig)
