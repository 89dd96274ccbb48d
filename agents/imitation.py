"""Warm start: behaviour cloning of the LAS expert before reinforcement learning.

PPO from a random policy spends most of a small budget rediscovering that short jobs
should go first and that long jobs may be preempted for them. Instead, episodes are
played by the LAS expert (``agents.decider.LasExpert``) in the training environment;
the policy learns to pick the expert's action (masked cross-entropy) and the value head
learns the discounted return of those episodes. Then DAgger rounds: the cloned policy
plays, the expert labels the states it reaches, and the policy is fitted again on all
labels, so that it also knows what to do after its own mistakes. PPO then improves on
the result.
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


def clone(policy, demos: dict, epochs: int, batch_size: int, lr: float, seed: int) -> dict:
    """Fits ``policy`` (a MaskableActorCriticPolicy) to the demonstrations; returns the
    final loss and the share of the expert's actions the policy now picks."""
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
            _, logp, _ = policy.evaluate_actions(ob, act[b], action_masks=mask[b])
            values = policy.predict_values(ob).flatten()
            loss = -logp.mean() + 0.5 * torch.nn.functional.mse_loss(values, ret[b])
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(policy.parameters(), 0.5)
            opt.step()
            loss_v = float(loss.detach())
    policy.set_training_mode(False)
    with torch.no_grad():
        agree = 0
        for i in range(0, n, 4096):
            ob = {k: v[i:i + 4096] for k, v in obs.items()}
            dist = policy.get_distribution(ob, action_masks=mask[i:i + 4096].numpy())
            agree += int((dist.distribution.probs.argmax(1) == act[i:i + 4096]).sum())
    return {"loss": loss_v, "agreement": agree / max(1, n), "samples": n}


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
