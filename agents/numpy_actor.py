"""The agent's action scores computed with numpy, for scheduling one decision at a time.

At a decision the ``rl`` policy scores one observation: a dozen small matrix products.
Through torch each layer call costs tens of microseconds of dispatch, more than the
arithmetic; this module copies the trained weights of a :class:`~agents.network.SlotPolicy`
into numpy arrays once and evaluates the same network (``SlotSetExtractor`` then
``SlotScorer``) in a handful of numpy calls. The scores agree with torch's to float32
rounding (``tests/test_agents.py``). Training still uses torch.
"""

from __future__ import annotations

import numpy as np
from torch import nn

from .network import SlotPolicy, SlotScorer, SlotSetExtractor


def _relu(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, 0.0, out=x)


def _layers(seq: nn.Sequential) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(W1ᵀ, b1, W2ᵀ, b2) of an ``agents.network.mlp`` (Linear, ReLU, Linear, ReLU)."""
    kinds = [type(m) for m in seq]
    if kinds != [nn.Linear, nn.ReLU, nn.Linear, nn.ReLU]:
        raise TypeError(f"not a two-layer ReLU MLP: {kinds}")
    a, b = seq[0], seq[2]
    return (_np(a.weight).T.copy(), _np(a.bias), _np(b.weight).T.copy(), _np(b.bias))


def _np(t) -> np.ndarray:
    return t.detach().cpu().numpy().astype(np.float32)


def _mlp(x: np.ndarray, p) -> np.ndarray:
    w1, b1, w2, b2 = p
    return _relu(_relu(x @ w1 + b1) @ w2 + b2)


class NumpyActor:
    """The masked-argmax-ready action scores of a ``SlotPolicy``, in numpy."""

    def __init__(self, policy: SlotPolicy):
        fe, head = policy.pi_features_extractor, policy.action_net
        if not isinstance(fe, SlotSetExtractor) or not isinstance(head, SlotScorer):
            raise TypeError("not a SlotPolicy network")
        if len(policy.mlp_extractor.policy_net) != 0:
            raise TypeError("the policy has hidden layers after the features extractor")
        self.q, self.r, d = fe.q, fe.r, fe.dim
        self.job_enc, self.run_enc = _layers(fe.job_enc), _layers(fe.run_enc)
        self.cluster_enc, self.context = _layers(fe.cluster_enc), _layers(fe.context)
        # [h, c] @ W = h @ W[:d] + c @ W[d:]: the context part is computed once, not per slot
        self.job_out = self._split(_layers(fe.job_out), d)
        self.run_out = self._split(_layers(fe.run_out), d)
        self.start = (_np(head.start.weight)[0], float(_np(head.start.bias)[0]))
        self.preempt = (_np(head.preempt.weight)[0], float(_np(head.preempt.bias)[0]))
        self.wait = (_np(head.wait.weight)[0], float(_np(head.wait.bias)[0]))

    @staticmethod
    def _split(p, d: int):
        w1, b1, w2, b2 = p
        return w1[:d], w1[d:], b1, w2, b2

    @staticmethod
    def _pool(h: np.ndarray, present: np.ndarray) -> np.ndarray:
        return (h * present).sum(0) / max(float(present.sum()), 1.0)

    @staticmethod
    def _out(h: np.ndarray, c: np.ndarray, p) -> np.ndarray:
        w_h, w_c, b1, w2, b2 = p
        return _relu(_relu(h @ w_h + (c @ w_c + b1)) @ w2 + b2)

    def scores(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        """One score per action (start slot i, preempt slot j, wait), before masking."""
        jobs, running = obs["jobs"], obs["running"]
        pj, pr = jobs[:, :1], running[:, :1]
        hj = _mlp(jobs, self.job_enc) * pj
        hr = _mlp(running, self.run_enc) * pr
        c = _mlp(np.concatenate([_mlp(obs["cluster"], self.cluster_enc),
                                 self._pool(hj, pj), self._pool(hr, pr)]), self.context)
        zj = self._out(hj, c, self.job_out)
        zr = self._out(hr, c, self.run_out)
        out = np.empty(self.q + self.r + 1, dtype=np.float32)
        out[: self.q] = zj @ self.start[0] + self.start[1]
        out[self.q: self.q + self.r] = zr @ self.preempt[0] + self.preempt[1]
        out[-1] = c @ self.wait[0] + self.wait[1]
        return out
