"""The agent's network: every queue slot (and every running slot) is scored by the same
small network, so a job's score does not depend on the slot it sits in.

    job rows ──► shared MLP ─► h_i ─┐             ┌─► [h_i, c] ─► shared MLP ─► start score_i
    running rows ─► shared MLP ─► g_j ┼─ pooled ─► c ┼─► [g_j, c] ─► shared MLP ─► preempt score_j
    cluster ──► MLP ──────────────────┘             └─► wait score, value

``SlotSetExtractor`` produces the per-slot embeddings and the context ``c`` (flattened,
as stable-baselines3 expects); ``SlotPolicy`` replaces the usual linear action head by
per-slot scorers and reads the value from ``c`` alone. Mean pooling over present slots
(the first feature of every row is 1 for a present slot, 0 for padding).
"""

from __future__ import annotations

import torch
from sb3_contrib.common.maskable.policies import MaskableActorCriticPolicy
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from torch import nn


def mlp(n_in: int, n_out: int, hidden: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(n_in, hidden), nn.ReLU(), nn.Linear(hidden, n_out), nn.ReLU())


class SlotSetExtractor(BaseFeaturesExtractor):
    def __init__(self, observation_space, dim: int = 64):
        q, f_job = observation_space["jobs"].shape
        r, f_run = observation_space["running"].shape
        f_cl = observation_space["cluster"].shape[0]
        super().__init__(observation_space, features_dim=(q + r + 1) * dim)
        self.q, self.r, self.dim = q, r, dim
        self.job_enc = mlp(f_job, dim, dim)
        self.run_enc = mlp(f_run, dim, dim)
        self.cluster_enc = mlp(f_cl, dim, dim)
        self.context = mlp(3 * dim, dim, dim)
        self.job_out = mlp(2 * dim, dim, dim)
        self.run_out = mlp(2 * dim, dim, dim)

    @staticmethod
    def _pool(h: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        return (h * present).sum(1) / present.sum(1).clamp(min=1.0)

    def forward(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        jobs, running = obs["jobs"], obs["running"]
        pj, pr = jobs[..., :1], running[..., :1]
        hj = self.job_enc(jobs) * pj
        hr = self.run_enc(running) * pr
        c = self.context(torch.cat([self.cluster_enc(obs["cluster"]), self._pool(hj, pj),
                                    self._pool(hr, pr)], dim=1))
        zj = self.job_out(torch.cat([hj, c[:, None].expand(-1, self.q, -1)], dim=2))
        zr = self.run_out(torch.cat([hr, c[:, None].expand(-1, self.r, -1)], dim=2))
        return torch.cat([zj.flatten(1), zr.flatten(1), c], dim=1)


class SlotScorer(nn.Module):
    """Logits: one start score per queue slot, one preempt score per running slot, wait."""

    def __init__(self, q: int, r: int, dim: int):
        super().__init__()
        self.q, self.r, self.dim = q, r, dim
        self.start = nn.Linear(dim, 1)
        self.preempt = nn.Linear(dim, 1)
        self.wait = nn.Linear(dim, 1)

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        q, r, d = self.q, self.r, self.dim
        zj = latent[:, : q * d].view(-1, q, d)
        zr = latent[:, q * d:(q + r) * d].view(-1, r, d)
        c = latent[:, (q + r) * d:]
        return torch.cat([self.start(zj).squeeze(-1), self.preempt(zr).squeeze(-1),
                          self.wait(c)], dim=1)


class ContextValue(nn.Module):
    def __init__(self, q: int, r: int, dim: int):
        super().__init__()
        self.offset = (q + r) * dim
        self.head = nn.Sequential(nn.Linear(dim, dim), nn.Tanh(), nn.Linear(dim, 1))

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        return self.head(latent[:, self.offset:])


class SlotPolicy(MaskableActorCriticPolicy):
    """MaskablePPO policy with slot-wise scoring (see the module docstring)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("features_extractor_class", SlotSetExtractor)
        kwargs.setdefault("net_arch", {"pi": [], "vf": []})  # heads act on the slots directly
        super().__init__(*args, **kwargs)

    def _build(self, lr_schedule) -> None:
        super()._build(lr_schedule)
        fe = self.features_extractor
        self.action_net = SlotScorer(fe.q, fe.r, fe.dim)
        self.value_net = ContextValue(fe.q, fe.r, fe.dim)
        self.optimizer = self.optimizer_class(self.parameters(), lr=lr_schedule(1),
                                              **self.optimizer_kwargs)
