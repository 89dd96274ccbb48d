"""``autoflow train`` (the adaptive scheduler): a teacher, then PPO on the choice of rule.

1. **Episodes** come from the training sources (windows of traces, built-in and
   generated workloads, ``wide:`` sources whose shape is varied per episode) at random
   loads; validation episodes from held-out data (the last ``HOLDOUT`` of each training
   trace, or ``--validation`` sources), fixed for the run.
2. **Teacher.** Each teacher episode is played once with every candidate in charge from
   start to end (``RuleChoiceEnv`` with a constant action); the candidate with the
   lowest total JCT is the episode's teacher. Every state those plays reach is labelled
   with every candidate's regret on the episode, ``log(JCT_k / JCT_best)``; the policy's
   scores learn ``-regret / T`` (centred), so that its argmax is the candidate of least
   *expected* regret given what the state shows (the same episode can look alike and
   end differently: a classifier of the single best would pick the one most often best,
   not the one that loses least), and the value head learns each play's return to go.
   This is the warm start (cloning, ``clone``).
3. **PPO** (stable-baselines3) then improves on it in ``RuleChoiceEnv``: the agent may
   switch rules in the middle of an episode, which no teacher did. Every ``eval_every``
   steps the policy plays the validation episodes beside every candidate; the best so
   far (lowest geometric mean of its JCT over the best candidate's, per episode) is
   exported as ``best_model`` (``.npz`` + ``.json``, ``agents.adaptive``).
4. ``DIR`` receives ``model.json``/``.npz`` (last), ``best_model.json``/``.npz``,
   ``train_summary.json`` (the teacher's labels, the cloning, every evaluation),
   ``eval_curve.png``, TensorBoard logs under ``tb/`` and ``manifest.json``.
"""

from __future__ import annotations

import copy
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from autoflow.envs.baseline import mean_unit_time
from autoflow.envs.samplers import HOLDOUT, EpisodeSpec, make_sampler
from rich.console import Console
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.logger import configure
from stable_baselines3.common.vec_env import DummyVecEnv

from autoflow import jsonsafe
from autoflow import manifest as manifest_mod
from autoflow.errors import ConfigError, Interrupted
from autoflow.evaluate import evaluate
from autoflow.limits import check_output_dir
from autoflow.load import fit_load

from .adaptive import CANDIDATES, Adaptive, Selector, export
from .adaptive_env import RuleChoiceEnv
from .imitation import step


@dataclass
class AdaptiveConfig:
    workloads: str  # training sources, comma-separated
    out: str
    timesteps: int = 20_000  # PPO steps (choices) after the warm start
    seed: int = 0
    validation: str | None = None  # validation sources; default: held-out training data
    jobs: tuple[int, int] = (1000, 4000)  # jobs per training episode: long enough that a
    # window behaves as a whole trace does (on windows of 300-1000 jobs gittins is often
    # best; on whole traces it is the worst of the LAS family)
    load: tuple[float, float] = (0.6, 1.4)  # offered GPU load of training episodes
    candidates: tuple[str, ...] = CANDIDATES
    reference: str = "las"  # the reward is relative to this policy on the same episode
    objective: str = "jct"  # jct: job completion time; wct: units (a workflow counts as one)
    workflow_features: bool = False  # the observation also has WORKFLOW_FEATURES
    teacher_episodes: int = 64  # episodes played by every candidate for the warm start
    temperature: float = 0.05  # policy scores = -regret / temperature
    clone_epochs: int = 60
    clone_lr: float = 3e-3
    learning_rate: float = 3e-4
    n_envs: int = 2
    n_steps: int = 128  # choices per env per rollout
    batch_size: int = 64
    n_epochs: int = 4
    gamma: float = 1.0  # rewards sum to the episode's relative JCT: no discount
    gae_lambda: float = 0.95
    clip_range: float = 0.2
    ent_coef: float = 0.01
    width: int = 64
    weight_decay: float = 1e-3  # of the cloning: a few hundred episodes, many alike states
    workers: int = 2  # processes playing the teacher's episodes
    eval_every: int = 2_000
    eval_episodes: int = 12
    eval_jobs: int = 2000
    eval_loads: tuple[float, ...] = (0.8, 1.0, 1.2)


def _validation_episodes(cfg: AdaptiveConfig) -> list:
    sources = cfg.validation or cfg.workloads
    part = (0.0, 1.0) if cfg.validation else (1.0 - HOLDOUT, 1.0)
    # as long as eval_jobs where a held-out part is that long (draw_jobs caps it)
    sampler = make_sampler(sources, EpisodeSpec((min(200, cfg.eval_jobs), cfg.eval_jobs),
                                                part=part))
    rng = np.random.default_rng(cfg.seed + 7919)
    out = []
    for i in range(cfg.eval_episodes):
        s = sampler.samplers[i % len(sampler.samplers)]
        fit = fit_load(s.cluster, s.draw_jobs(rng), cfg.eval_loads[i % len(cfg.eval_loads)])
        out.append((fit.workload, fit.spec, f"{s.source}@{cfg.eval_loads[i % len(cfg.eval_loads)]}"))
    return out


def _geomean(r) -> float:
    return float(np.exp(np.mean(np.log(r))))


class Validator:
    """The validation episodes under every candidate (once) and under a selector."""

    def __init__(self, episodes: list, candidates: tuple[str, ...], seed: int,
                 objective: str = "jct", workflow_features: bool = False):
        self.episodes, self.candidates, self.seed = episodes, candidates, seed
        self.objective = objective
        self.workflow_features = workflow_features
        self.jct = {c: np.array([self._avg(c, w, cl) for w, cl, _ in episodes])
                    for c in candidates}
        self.best = np.min(np.stack(list(self.jct.values())), axis=0)

    def _avg(self, policy, w, cl) -> float:
        """Average JCT, or with the ``wct`` objective the average unit completion time
        (``envs.baseline.mean_unit_time``)."""
        ev = evaluate(policy, w, cl, seed=self.seed)
        if self.objective == "wct":
            return mean_unit_time(ev.result.jobs)
        return ev.metrics["avg_jct"]

    def evaluate(self, selector: Selector) -> dict:
        jct = np.array([self._avg(Adaptive("best-fit", selector, self.candidates,
                                           workflow_features=self.workflow_features), w, cl)
                        for w, cl, _ in self.episodes])
        gm = _geomean
        out = {"avg_jct": float(jct.mean()), "vs_best": gm(jct / self.best),
               "worst_vs_best": float((jct / self.best).max())}
        for c in self.candidates:
            out[f"vs_{c}"] = gm(jct / self.jct[c])
        return out

    def baselines(self) -> dict:
        gm = _geomean
        return {c: {"vs_best": gm(self.jct[c] / self.best),
                    "best_on": int((self.jct[c] == self.best).sum())}
                for c in self.candidates}


def _teacher_chunk(args: tuple) -> dict:
    """``collect_teacher``'s work on some episodes (a worker process builds its own
    sampler and environment from the sources)."""
    workloads, spec, candidates, reference, seeds, objective, wf = args
    env = RuleChoiceEnv(make_sampler(workloads, spec), candidates, reference,
                        objective=objective, workflow_features=wf)
    obs, regret, ret, best_of, episode = [], [], [], [], []
    for s in seeds:
        plays = []
        for k in range(len(candidates)):
            o, _ = env.reset(seed=s)
            states, rewards, done = [o], [], False
            while not done:
                o, r, done, _, _ = env.step(k)
                rewards.append(r)
                if not done:
                    states.append(o)
            plays.append((states, rewards, env.ratio()))
        ratios = np.array([p[2] for p in plays])
        reg = np.log(ratios / ratios.min())
        best_of.append(candidates[int(np.argmin(ratios))])
        for states, rewards, _ in plays:
            togo = np.cumsum(rewards[::-1])[::-1]
            obs.extend(states)
            regret.extend([reg] * len(states))
            ret.extend(togo[: len(states)])
            episode.extend([s] * len(states))
    return {"episode": np.asarray(episode, np.int64),
            "obs": np.asarray(obs, np.float32).reshape(len(obs), -1),
            "regret": np.asarray(regret, np.float32).reshape(len(obs), len(candidates)),
            "return": np.asarray(ret, np.float32), "best": best_of}


def collect_teacher(cfg: AdaptiveConfig, spec: EpisodeSpec, seed: int, console: Console,
                    workers: int = 2) -> dict:
    """Every candidate plays each of ``cfg.teacher_episodes`` episodes whole; every state
    reached is labelled with every candidate's regret on its episode
    (``log(JCT_k / JCT_best)``) and its play's return to go. Episodes are split over
    ``workers`` processes, in chunks, with progress."""
    from concurrent.futures import ProcessPoolExecutor

    seeds = [seed + i for i in range(cfg.teacher_episodes)]
    chunk = 8
    parts = [(cfg.workloads, spec, cfg.candidates, cfg.reference, seeds[i:i + chunk],
              cfg.objective, cfg.workflow_features)
             for i in range(0, len(seeds), chunk)]
    got, done, t0 = [], 0, time.perf_counter()
    with ProcessPoolExecutor(max(1, workers)) as pool:
        for part in pool.map(_teacher_chunk, parts):
            got.append(part)
            done += len(part["best"])
            best = Counter(b for g in got for b in g["best"])
            console.print(f"  teacher: {done}/{len(seeds)} episodes, "
                          f"{sum(len(g['obs']) for g in got):,} states, "
                          f"{time.perf_counter() - t0:.0f} s; best {dict(best)}")
    return {"obs": np.concatenate([g["obs"] for g in got]),
            "regret": np.concatenate([g["regret"] for g in got]),
            "return": np.concatenate([g["return"] for g in got]),
            "best": [b for g in got for b in g["best"]],
            "episode": np.concatenate([g["episode"] for g in got])}


def clone(policy, data: dict, epochs: int, lr: float, seed: int, temperature: float,
          weight_decay: float = 0.0, batch_size: int = 256, holdout: float = 0.15) -> dict:
    """Fits the policy's scores to ``-regret / temperature`` (centred: a softmax ignores a
    common shift) and the value head to the returns to go. A share ``holdout`` of the
    episodes is kept out and the epoch whose policy loses least on them is kept (the
    states of one episode are many and alike: the network would learn the episodes by
    heart). Returns the loss, how often the argmax is the least-regret candidate, and
    the mean regret of the argmax on the fitted and on the held-out states."""
    gen = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    episodes = np.unique(data["episode"])
    held = set(rng.choice(episodes, max(1, round(holdout * len(episodes))), replace=False)
               .tolist()) if len(episodes) > 3 else set()
    is_held = np.isin(data["episode"], list(held))
    obs_all = torch.as_tensor(data["obs"])
    regret_all = torch.as_tensor(data["regret"])
    fit, val = torch.as_tensor(~is_held), torch.as_tensor(is_held)
    obs, regret, ret = obs_all[fit], regret_all[fit], torch.as_tensor(data["return"])[fit]
    target = -regret / temperature
    target = target - target.mean(1, keepdim=True)
    opt = torch.optim.AdamW(policy.parameters(), lr=lr, weight_decay=weight_decay)
    n, loss_v = len(obs), 0.0

    def regret_of(o, r) -> float:
        with torch.no_grad():
            pick = policy.get_distribution(o).distribution.probs.argmax(1)
        return float(r.gather(1, pick[:, None]).mean())

    best = (float("inf"), None, -1)
    for epoch in range(epochs):
        policy.set_training_mode(True)
        order = torch.randperm(n, generator=gen)
        for i in range(0, n, batch_size):
            b = order[i:i + batch_size]
            logp = policy.get_distribution(obs[b]).distribution.logits
            scores = logp - logp.mean(1, keepdim=True)
            v = policy.predict_values(obs[b]).flatten()
            loss = (torch.nn.functional.mse_loss(scores, target[b])
                    + 0.5 * torch.nn.functional.mse_loss(v, ret[b]))
            loss_v = step(opt, policy, loss)
        policy.set_training_mode(False)
        if held:
            r = regret_of(obs_all[val], regret_all[val])
            if r < best[0]:
                best = (r, copy.deepcopy(policy.state_dict()), epoch)
    if best[1] is not None:
        policy.load_state_dict(best[1])
    with torch.no_grad():
        pick = policy.get_distribution(obs).distribution.probs.argmax(1)
        agree = float((pick == regret.argmin(1)).float().mean())
    return {"loss": loss_v, "agreement": agree, "mean_regret": regret_of(obs, regret),
            "heldout_regret": best[0] if held else None, "epoch_kept": best[2],
            "heldout_episodes": len(held), "samples": n}


class EvalCallback(BaseCallback):
    def __init__(self, cfg: AdaptiveConfig, validator: Validator, out: Path, t0: float,
                 console: Console, card_extra: dict):
        super().__init__()
        self.cfg, self.validator, self.out, self.t0 = cfg, validator, out, t0
        self.console, self.card_extra = console, card_extra
        self.history: list[dict] = []
        self.best = float("inf")
        self._next = cfg.eval_every

    def evaluate_now(self, phase: str = "ppo") -> dict:
        sel = Selector.from_sb3(self.model.policy)
        ev = self.validator.evaluate(sel)
        ev |= {"timesteps": int(self.model.num_timesteps) if phase == "ppo" else 0,
               "phase": phase, "wall_s": time.perf_counter() - self.t0}
        self.history.append(ev)
        for k in ("vs_best", "vs_las", "vs_fifo"):
            if k in ev:
                self.logger.record(f"validation/{k}", ev[k])
        if ev["vs_best"] < self.best:
            self.best = ev["vs_best"]
            export(sel, self.cfg.candidates, self.out / "best_model",
                   self.card_extra | {"validation": ev},
                   workflow_features=self.cfg.workflow_features)
        self.console.print(
            f"  {phase} step {ev['timesteps']:>7,}: "
            f"{'avg JCT' if self.cfg.objective == 'jct' else 'avg unit time'} x best "
            f"heuristic of the episode "
            f"{ev['vs_best']:.3f} (worst {ev['worst_vs_best']:.2f}), x las "
            f"{ev.get('vs_las', float('nan')):.3f}, x fifo {ev.get('vs_fifo', float('nan')):.3f}")
        return ev

    def _on_step(self) -> bool:
        if self.num_timesteps >= self._next:
            self._next = self.num_timesteps + self.cfg.eval_every
            self.evaluate_now()
        return True


def train(cfg: AdaptiveConfig, console: Console | None = None, command: str = "") -> dict:
    console = console or Console(stderr=True)
    if cfg.timesteps < 0 or cfg.eval_episodes < 1 or cfg.teacher_episodes < 0:
        raise ConfigError("--timesteps and --imitation-episodes must be >= 0, "
                          "--eval-episodes >= 1")
    if not 1 <= cfg.jobs[0] <= cfg.jobs[1]:
        raise ConfigError(f"--jobs-min must be >= 1 and <= --jobs-max, got {cfg.jobs}")
    out = check_output_dir(cfg.out)
    torch.manual_seed(cfg.seed)
    spec = EpisodeSpec(cfg.jobs, cfg.load, part=(0.0, 1.0 - HOLDOUT))
    sampler = make_sampler(cfg.workloads, spec)
    val_episodes = _validation_episodes(cfg)  # every source read (and checked) before output
    console.print(f"[bold]validation[/]: {cfg.eval_episodes} held-out episodes under "
                  f"{', '.join(cfg.candidates)}")
    validator = Validator(val_episodes, cfg.candidates, cfg.seed, cfg.objective,
                          cfg.workflow_features)
    base = validator.baselines()
    console.print("  each heuristic x the best of the episode: " + ", ".join(
        f"{c} {v['vs_best']:.3f} (best on {v['best_on']})" for c, v in base.items()))

    def make_env():
        return RuleChoiceEnv(sampler, cfg.candidates, cfg.reference, objective=cfg.objective,
                             workflow_features=cfg.workflow_features)

    venv = DummyVecEnv([make_env for _ in range(cfg.n_envs)])
    venv.seed(cfg.seed)
    model = PPO("MlpPolicy", venv, learning_rate=cfg.learning_rate, n_steps=cfg.n_steps,
                batch_size=cfg.batch_size, n_epochs=cfg.n_epochs, gamma=cfg.gamma,
                gae_lambda=cfg.gae_lambda, clip_range=cfg.clip_range, ent_coef=cfg.ent_coef,
                seed=cfg.seed, device="cpu", verbose=0,
                policy_kwargs={"net_arch": {"pi": [cfg.width, cfg.width],
                                            "vf": [cfg.width, cfg.width]},
                               "activation_fn": torch.nn.Tanh})
    model.set_logger(configure(str(out / "tb"), ["tensorboard", "csv"]))
    t0 = time.perf_counter()
    card_extra = {"trained_with": command or "autoflow train", "seed": cfg.seed,
                  "workloads": cfg.workloads, "reference": cfg.reference,
                  "objective": cfg.objective,
                  "git_commit": manifest_mod.git_commit(),
                  "validation_baselines": base}
    summary: dict = {"config": asdict(cfg), "validation_baselines": base,
                     "validation_episodes": [e[2] for e in validator.episodes]}
    evals = EvalCallback(cfg, validator, out, t0, console, card_extra)
    evals.init_callback(model)
    interrupted, phase = None, "warm start"
    try:
        if cfg.teacher_episodes:
            console.print(f"[bold]warm start[/]: {cfg.teacher_episodes} episodes played by "
                          f"each of {', '.join(cfg.candidates)}")
            evals.evaluate_now("random")
            teacher = collect_teacher(cfg, spec, cfg.seed + 104729, console, cfg.workers)
            np.savez_compressed(out / "teacher.npz", obs=teacher["obs"],
                                regret=teacher["regret"], ret=teacher["return"],
                                best=np.asarray(teacher["best"]))
            bc = clone(model.policy, teacher, cfg.clone_epochs, cfg.clone_lr, cfg.seed,
                       cfg.temperature, cfg.weight_decay)
            summary["teacher"] = {"best": dict(Counter(teacher["best"])),
                                  "episodes": len(teacher["best"]), **bc}
            console.print(f"  cloned on {bc['samples']:,} states: picks the episode's best "
                          f"{bc['agreement']:.1%} of the time, mean regret "
                          f"{bc['mean_regret']:.3f} (on {bc['heldout_episodes']} held-out "
                          f"episodes: {bc['heldout_regret'] or 0:.3f}, epoch "
                          f"{bc['epoch_kept']})")
            evals.evaluate_now("cloned")
        phase = "learning"
        if cfg.timesteps:
            console.print(f"[bold]PPO[/]: {cfg.timesteps:,} choices")
            model.learn(total_timesteps=cfg.timesteps, callback=evals)
            evals.evaluate_now()
    except KeyboardInterrupt:
        interrupted = phase
    export(Selector.from_sb3(model.policy), cfg.candidates, out / "model", card_extra,
           workflow_features=cfg.workflow_features)
    summary |= {"total_wall_s": time.perf_counter() - t0, "evaluations": evals.history,
                "best_vs_best": evals.best}
    if interrupted:
        summary |= {"interrupted": True, "interrupted_during": interrupted,
                    "timesteps_done": int(model.num_timesteps)}
    jsonsafe.write(out / "train_summary.json", summary)
    if evals.history:
        plot_curve(evals.history, base, out / "eval_curve.png")
    man = manifest_mod.build(command or "autoflow train", asdict(cfg), seed=cfg.seed,
                             status=manifest_mod.INTERRUPTED if interrupted
                             else manifest_mod.COMPLETE)
    manifest_mod.write(out / "manifest.json", man)
    if interrupted:
        raise Interrupted(f"during the {interrupted}, at step {model.num_timesteps:,}; wrote "
                          f"{out / 'model.json'}, {out / 'train_summary.json'} and "
                          f"{out / 'manifest.json'}")
    console.print(f"wrote {out / 'best_model.json'}, {out / 'model.json'}, "
                  f"{out / 'train_summary.json'}, {out / 'eval_curve.png'}")
    return summary


def plot_curve(history: list[dict], baselines: dict, path: Path) -> None:
    """Validation avg JCT over the best heuristic of each episode, through training, with
    each heuristic's own ratio as a line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from autoflow import atomic

    fig, ax = plt.subplots(figsize=(7, 4.2))
    pre = [h for h in history if h["phase"] != "ppo"]
    ppo = [h for h in history if h["phase"] == "ppo"]
    xs = [h["timesteps"] for h in ppo]
    if ppo:
        ax.plot(xs, [h["vs_best"] for h in ppo], marker="o", color="C0",
                label="rl (PPO), x best heuristic per episode")
    for h, m in zip(pre, ("x", "s")):
        ax.scatter([0], [h["vs_best"]], marker=m, s=60, zorder=3,
                   label=f"rl {h['phase']} ({h['vs_best']:.3f})")
    for i, (c, v) in enumerate(baselines.items()):
        ax.axhline(v["vs_best"], lw=0.9, ls="--", color=f"C{i + 2}",
                   label=f"{c} alone ({v['vs_best']:.3f})")
    ax.axhline(1.0, color="grey", lw=0.8)
    shown = [h["vs_best"] for h in history] + [v["vs_best"] for v in baselines.values()]
    top = min(max(shown) + 0.03, 1.5)  # a far-off heuristic (fifo) is in the legend only
    ax.set_ylim(min(0.95, min(shown) - 0.02), top)
    ax.set_xlabel("PPO steps (choices of rule) after the warm start")
    ax.set_ylabel("avg JCT / best heuristic (geo. mean)")
    ax.set_title("validation episodes (held out)")
    ax.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    atomic.save_figure(fig, path, dpi=120)
    plt.close(fig)
