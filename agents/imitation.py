"""Warm start: behaviour cloning of the LAS expert before reinforcement learning.

PPO from a random policy spends most of a small budget rediscovering that short jobs
should go first and that long jobs may be preempted for them. Instead, episodes are
played by the LAS expert (``agents.decider.LasExpert``) in the training environment;
the policy learns to pick the expert's action (masked cross-entropy) and the value head
learns the discounted return of those episodes. Then DAgger rounds: the cloned policy
plays, the expert labels the states it reaches, and the policy is fitted again on all
labels, so that it also knows what to do after its own mistakes. PPO then improves on
the result.

Cloned with plain cross-entropy, the policy becomes certain: the expert's action gets
probability 1.0 in float32 at every decision (measured on the shipped model), so PPO
never samples anything else and its gradients vanish — it cannot depart from the
expert. ``smoothing`` keeps the other allowed actions alive: the target puts
``1 - smoothing`` on the expert's action and spreads ``smoothing`` over the other
allowed ones, so the argmax is still the expert's and PPO has something to explore.
"""

from __future__ import annotations

import numpy as np
import torch
from autoflow.envs.cluster_env import ClusterSchedulingEnv
from autoflow.envs.las_choice import las_action


def collect(env: ClusterSchedulingEnv, episodes: int, seed: int, gamma: float,
            actor=None) -> dict[str, np.ndarray]:
    """Plays ``episodes`` (by the expert, or by ``actor(obs, mask) -> action``) and
    records the expert's action at every state; returns observations, masks, expert
    actions and the discounted returns of the episodes played."""
    obs_l: dict[str, list] = {k: [] for k in env.observation_space.spaces}
    masks, actions, returns = [], [], []
    for ep in range(episodes):
        obs, _ = env.reset(seed=seed + ep)
        rewards = []
        done = False
        while not done:
            d = env.decision
            a = las_action(d, env.obs_config)
            mask = env.action_masks()
            for k, v in obs.items():
                obs_l[k].append(v)
            masks.append(mask)
            actions.append(a)
            obs, r, term, trunc, _ = env.step(a if actor is None else actor(obs, mask))
            rewards.append(r)
            done = term or trunc
        g, ret = 0.0, []
        for r in reversed(rewards):
            g = r + gamma * g
            ret.append(g)
        returns.extend(reversed(ret))
    return {"obs": {k: np.stack(v) for k, v in obs_l.items()}, "mask": np.stack(masks),
            "action": np.asarray(actions), "return": np.asarray(returns, dtype=np.float32)}


def clone(policy, demos: dict, epochs: int, batch_size: int, lr: float, seed: int,
          smoothing: float = 0.0) -> dict:
    """Fits ``policy`` (a MaskableActorCriticPolicy) to the demonstrations (label
    smoothing ``smoothing`` over the other allowed actions); returns the final loss, the
    share of the expert's actions the policy now picks, and the mean probability it gives
    them where it had a choice."""
    if not 0.0 <= smoothing < 0.5:
        raise ValueError(f"imitation smoothing must be in [0, 0.5), got {smoothing}")
    gen = torch.Generator().manual_seed(seed)
    obs = {k: torch.as_tensor(v) for k, v in demos["obs"].items()}
    mask = torch.as_tensor(demos["mask"])
    act = torch.as_tensor(demos["action"])
    ret = torch.as_tensor(demos["return"])
    n = len(act)
    opt = torch.optim.Adam(policy.parameters(), lr=lr)
    policy.set_training_mode(True)
    loss_v = 0.0
    for _ in range(epochs):
        order = torch.randperm(n, generator=gen)
        for i in range(0, n, batch_size):
            b = order[i:i + batch_size]
            ob = {k: v[b] for k, v in obs.items()}
            logp_all = policy.get_distribution(ob, action_masks=mask[b]).distribution.logits
            values = policy.predict_values(ob).flatten()
            loss = (_smoothed_nll(logp_all, act[b], mask[b], smoothing)
                    + 0.5 * torch.nn.functional.mse_loss(values, ret[b]))
            loss_v = step(opt, policy, loss)
    policy.set_training_mode(False)
    with torch.no_grad():
        agree, p_sum, choices = 0, 0.0, 0
        for i in range(0, n, 4096):
            ob = {k: v[i:i + 4096] for k, v in obs.items()}
            probs = policy.get_distribution(
                ob, action_masks=mask[i:i + 4096].numpy()).distribution.probs
            a = act[i:i + 4096]
            agree += int((probs.argmax(1) == a).sum())
            multi = mask[i:i + 4096].sum(1) > 1
            p_sum += float(probs.gather(1, a[:, None])[:, 0][multi].sum())
            choices += int(multi.sum())
    return {"loss": loss_v, "agreement": agree / max(1, n), "samples": n,
            "expert_prob": p_sum / choices if choices else None}


def step(opt, policy, loss, max_norm: float = 0.5) -> float:
    """One optimiser step on ``loss`` with the gradient clipped; returns the loss."""
    opt.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(policy.parameters(), max_norm)
    opt.step()
    return float(loss.detach())


def _smoothed_nll(logp: torch.Tensor, act: torch.Tensor, mask: torch.Tensor,
                  smoothing: float) -> torch.Tensor:
    """Cross-entropy against ``1 - smoothing`` on ``act`` and ``smoothing`` shared by the
    other allowed actions (all of it on ``act`` where it was the only one allowed)."""
    expert = logp.gather(1, act[:, None])[:, 0]
    if not smoothing:
        return -expert.mean()
    others = mask.clone()
    others[torch.arange(len(act)), act] = False
    k = others.sum(1)
    rest = torch.where(others, logp, torch.zeros_like(logp)).sum(1) / k.clamp(min=1)
    eps = torch.where(k > 0, torch.full_like(expert, smoothing), torch.zeros_like(expert))
    return -((1 - eps) * expert + eps * rest).mean()


def merge(a: dict, b: dict) -> dict:
    return {"obs": {k: np.concatenate([a["obs"][k], b["obs"][k]]) for k in a["obs"]},
            "mask": np.concatenate([a["mask"], b["mask"]]),
            "action": np.concatenate([a["action"], b["action"]]),
            "return": np.concatenate([a["return"], b["return"]])}


def greedy_actor(policy):
    """The policy's masked argmax, as an ``actor`` for ``collect``."""
    def act(obs, mask):
        with torch.no_grad():
            ob = {k: torch.as_tensor(v)[None] for k, v in obs.items()}
            dist = policy.get_distribution(ob, action_masks=mask[None])
            return int(dist.distribution.probs.argmax(1)[0])
    return act
