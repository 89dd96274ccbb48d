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


MLPS = ("job_enc", "run_enc", "cluster_enc", "context", "job_out", "run_out")
HEADS = ("start", "preempt", "wait")


def array_shapes(f_job: int, f_run: int, f_cluster: int, dim: int) -> dict[str, tuple]:
    """The arrays of an actor (``NumpyActor.arrays``) and their shapes, by name."""
    d = dim
    n_in = {"job_enc": f_job, "run_enc": f_run, "cluster_enc": f_cluster, "context": 3 * d,
            "job_out": 2 * d, "run_out": 2 * d}
    out: dict[str, tuple] = {}
    for m in MLPS:
        out |= {f"{m}.w1": (n_in[m], d), f"{m}.b1": (d,), f"{m}.w2": (d, d), f"{m}.b2": (d,)}
    for h in HEADS:
        out |= {f"{h}.w": (d,), f"{h}.b": (1,)}
    return out


class NumpyActor:
    """The masked-argmax-ready action scores of a ``SlotPolicy``, in numpy."""

    def __init__(self, policy: SlotPolicy):
        fe, head = policy.pi_features_extractor, policy.action_net
        if not isinstance(fe, SlotSetExtractor) or not isinstance(head, SlotScorer):
            raise TypeError("not a SlotPolicy network")
        if len(policy.mlp_extractor.policy_net) != 0:
            raise TypeError("the policy has hidden layers after the features extractor")
        arrays = {}
        for m in MLPS:
            arrays |= dict(zip((f"{m}.w1", f"{m}.b1", f"{m}.w2", f"{m}.b2"),
                               _layers(getattr(fe, m)), strict=True))
        for h in HEADS:
            lin = getattr(head, h)
            arrays |= {f"{h}.w": _np(lin.weight)[0], f"{h}.b": _np(lin.bias)}
        self._set(arrays, fe.q, fe.r, fe.dim)

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], q: int, r: int, dim: int) -> NumpyActor:
        """The actor of the arrays ``arrays`` returned (a safe model export's weights:
        ``agents.safe_model``); shapes are checked by the caller."""
        self = cls.__new__(cls)
        self._set({k: np.asarray(v, dtype=np.float32) for k, v in arrays.items()}, q, r, dim)
        return self

    def _set(self, a: dict[str, np.ndarray], q: int, r: int, d: int) -> None:
        self.arrays = a  # the weights as exported, by name (``array_shapes``)
        self.q, self.r, self.dim = q, r, d

        def layers(m):
            return tuple(a[f"{m}.{k}"] for k in ("w1", "b1", "w2", "b2"))

        self.job_enc, self.run_enc = layers("job_enc"), layers("run_enc")
        self.cluster_enc, self.context = layers("cluster_enc"), layers("context")
        # [h, c] @ W = h @ W[:d] + c @ W[d:]: the context part is computed once, not per slot
        self.job_out = self._split(layers("job_out"), d)
        self.run_out = self._split(layers("run_out"), d)
        self.start = (a["start.w"], float(a["start.b"][0]))
        self.preempt = (a["preempt.w"], float(a["preempt.b"][0]))
        self.wait = (a["wait.w"], float(a["wait.b"][0]))

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
