"""The adaptive learned scheduler: a network that chooses which heuristic schedules.

No fixed heuristic is best everywhere: LAS wins where job sizes are heavy-tailed and
loses to FIFO by half where they are not; las-fcfs's rules beat LAS's on some clusters
and lose on others. :class:`Adaptive` runs the candidates side by side
(``policies.switching.Switching``: each keeps its bookkeeping, one is in charge) and a
small network looks at what the run has shown about the workload
(``envs.workload_features``: completed jobs' durations, arrivals, load, queue) and puts
the candidate it expects to do best in charge, again and again as the run goes
(O(log n) choices in a run of n jobs). It is trained by ``agents.train_adaptive``:
cloned from a teacher that knows which candidate was best on each training episode,
then improved by PPO on the choice itself (``envs.adaptive_env``).

The model file is the safe kind: weights as float32 arrays in ``NAME.npz`` and a JSON
card ``NAME.json`` (format ``autoflow-adaptive/1``: the candidates, the feature schema
hash, the layer sizes, the weights' sha256, and what it was trained on), loaded with
``allow_pickle=False``: nothing in it runs code.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from autoflow.envs.workload_features import (
    WorkloadStats,
    feature_names,
    obs_size,
    schema_hash,
)

from autoflow import atomic
from autoflow.errors import ConfigError
from autoflow.policies import make_policy
from autoflow.policies.switching import Switching

from .safe_model import read_card, read_weights, write_weights

FORMAT = "autoflow-adaptive/1"
KIND = "rule-selector"
CANDIDATES = ("fifo", "sjf", "las", "las-fcfs", "gittins", "easy-backfill")
DEFAULT_FIRST = "las"  # in charge until the first choice (a model chooses at once)
MAX_WIDTH = 1024


class Selector:
    """The policy network in numpy: tanh layers, then one score per candidate."""

    def __init__(self, layers: list[tuple[np.ndarray, np.ndarray]]):
        self.layers = layers

    def scores(self, x: np.ndarray) -> np.ndarray:
        h = x.astype(np.float32)
        for w, b in self.layers[:-1]:
            h = np.tanh(h @ w + b)
        w, b = self.layers[-1]
        return h @ w + b

    def probabilities(self, x: np.ndarray) -> np.ndarray:
        z = self.scores(x)
        z = np.exp(z - z.max())
        return z / z.sum()

    @classmethod
    def from_sb3(cls, policy) -> Selector:
        """The actor of an SB3 ``ActorCriticPolicy`` with a tanh MLP (``train_adaptive``)."""
        from torch import nn
        seq = policy.mlp_extractor.policy_net
        layers = []
        mods = list(seq)
        for i in range(0, len(mods), 2):
            lin, act = mods[i], mods[i + 1] if i + 1 < len(mods) else None
            if not isinstance(lin, nn.Linear) or not isinstance(act, nn.Tanh):
                raise TypeError(f"not a tanh MLP: {[type(m).__name__ for m in mods]}")
            layers.append(_wb(lin))
        layers.append(_wb(policy.action_net))
        return cls(layers)

    @property
    def arrays(self) -> dict[str, np.ndarray]:
        out = {}
        for i, (w, b) in enumerate(self.layers):
            out[f"w{i}"], out[f"b{i}"] = w, b
        return out

    @property
    def widths(self) -> list[int]:
        return [int(w.shape[1]) for w, _ in self.layers[:-1]]


def _wb(lin) -> tuple[np.ndarray, np.ndarray]:
    w = lin.weight.detach().cpu().numpy().astype(np.float32).T.copy()
    return w, lin.bias.detach().cpu().numpy().astype(np.float32)


class Adaptive(Switching):
    """The candidates of ``CANDIDATES`` (or others), a selector choosing among them."""

    name = "rl"

    def __init__(self, placer_name: str = "best-fit", selector: Selector | None = None,
                 candidates: tuple[str, ...] = CANDIDATES, chooser=None,
                 label_base: str = "rl", pinned: str | None = None,
                 workflow_features: bool = False):
        self.candidate_names = tuple(candidates)
        self.workflow_features = workflow_features  # the observation's WORKFLOW_FEATURES
        self.pinned = pinned  # a candidate always put in charge (a pinned card), or None
        pols = [make_policy(f"{c}+{placer_name}") for c in candidates]
        first = candidates.index(DEFAULT_FIRST) if DEFAULT_FIRST in candidates else 0
        self.selector = selector
        super().__init__(pols, chooser if chooser is not None else
                         (self._choose if selector is not None else None), first)
        self.label_base = label_base
        self.shared_in_copies = (selector,) if selector is not None else ()
        self.last_choice: dict | None = None

    def prepare(self, ctx) -> None:
        super().prepare(ctx)
        self.stats = WorkloadStats()

    def on_finish(self, ctx, js) -> None:
        self.stats.record(js)  # completed: its duration is known now
        super().on_finish(ctx, js)

    def swap(self, selector: Selector, history=(), origin: float = 0.0,
             pinned: str | None = None) -> None:
        """Hot swap (the self-optimizing loop): from the next pass ``selector`` chooses.
        It sees the workload from ``origin`` on, the jobs of ``history`` (completed job
        states, oldest first) as completed (the loop swaps because the workload changed:
        what came before describes the old one), with choices as frequent as in a run
        that has seen that many. The candidates keep their state; decisions already
        made stand. ``pinned``: the new model's pinned candidate, if it has one."""
        self.selector = selector
        self.pinned = pinned
        self.shared_in_copies = (selector,)
        self.stats = WorkloadStats(origin)
        hist = sorted(history, key=lambda js: js.finish)
        for js in hist:
            self.stats.record(js)
        self.restart_choices(len(hist))

    def observe(self, ctx) -> np.ndarray:
        """The observation at a choice (``envs.workload_features``)."""
        return self.stats.features(ctx, self.active_index, len(self.candidates),
                                   len(self.choices), self.workflow_features)

    def _choose(self, _self, ctx) -> int:
        if self.pinned is not None:
            k = self.candidate_names.index(self.pinned)
            self.last_choice = {"time": float(ctx.now), "completed": self.completed,
                                "chosen": self.pinned, "pinned": True}
            return k
        x = self.observe(ctx)
        p = self.selector.probabilities(x)
        k = int(np.argmax(p))
        self.last_choice = {"time": float(ctx.now), "completed": self.completed,
                            "chosen": self.candidate_names[k],
                            "probabilities": {n: round(float(v), 4) for n, v in
                                              zip(self.candidate_names, p)}}
        return k

    def explain(self, ctx, js) -> dict | None:
        """Which heuristic is in charge and why the selector put it there (the service
        attaches this to a start's explanation)."""
        return {"name": self.label_base, "in_charge": self.candidate_names[self.active_index],
                "last_choice": self.last_choice, "choices": len(self.choices)}

    @property
    def label(self) -> str:
        return f"{self.label_base}+{self.placer.name}"


# -- the model file -----------------------------------------------------------------------
def export(selector: Selector, candidates: tuple[str, ...], stem: str | Path,
           extra: dict | None = None, workflow_features: bool = False) -> dict:
    """Writes ``stem.npz`` (weights) and ``stem.json`` (the card), weights first."""
    stem = Path(stem)
    card_path, npz_path = stem.with_suffix(".json"), stem.with_suffix(".npz")
    sha = write_weights(selector.arrays, npz_path)
    card = dict(extra or {})
    card |= {"format": FORMAT, "weights": npz_path.name, "sha256": sha,
             "feature_schema": schema_hash(list(candidates), workflow_features),
             "network": {"kind": KIND, "candidates": list(candidates),
                         "features": len(feature_names(workflow_features)),
                         "widths": selector.widths,
                         **({"workflow_features": True} if workflow_features else {})}}
    atomic.write_text(card_path, json.dumps(card, indent=2) + "\n")
    return card


def uses_workflow_features(card: dict) -> bool:
    """Whether the model's observation has ``WORKFLOW_FEATURES`` (trained with
    ``autoflow train --workflow-features``)."""
    return bool(card.get("network", {}).get("workflow_features", False))


def is_adaptive_card(card: dict) -> bool:
    return card.get("format") == FORMAT


def load(card_path: str | Path) -> tuple[Selector, tuple[str, ...], dict]:
    """(selector, candidates, card) of the card at ``card_path``, every field checked."""
    card_path = Path(card_path)
    what = f"model {card_path}"
    card = read_card(card_path)  # exists, size-capped, a JSON object
    if not is_adaptive_card(card):
        raise ConfigError(f"{what}: not an adaptive model card (format {FORMAT!r})")
    net = card.get("network")
    if not isinstance(net, dict) or net.get("kind") != KIND:
        raise ConfigError(f"{what}: network must be {{\"kind\": \"{KIND}\", ...}}")
    cands = net.get("candidates")
    from autoflow.policies import parse_policy
    if not isinstance(cands, list) or not cands or not all(isinstance(c, str) for c in cands):
        raise ConfigError(f"{what}: network.candidates must be a list of policy names")
    for c in cands:
        if c in ("rl", "las-expert") or c.startswith("rl:"):
            raise ConfigError(f"{what}: candidate {c!r} must be a heuristic")
        parse_policy(c)  # an unknown name fails here
    wf = net.get("workflow_features", False)
    if wf not in (True, False):
        raise ConfigError(f"{what}: network.workflow_features must be true or false")
    if card.get("feature_schema") != schema_hash(cands, wf):
        raise ConfigError(f"{what}: it records feature schema {card.get('feature_schema')}, "
                          f"this autoflow's is {schema_hash(cands, wf)}; retrain it with "
                          f"`autoflow train`")
    widths = net.get("widths")
    if (not isinstance(widths, list) or not widths
            or not all(type(w) is int and 1 <= w <= MAX_WIDTH for w in widths)):
        raise ConfigError(f"{what}: network.widths must be a list of integers in "
                          f"[1, {MAX_WIDTH}]")
    pinned = card.get("pinned")
    if pinned is not None and pinned not in cands:
        raise ConfigError(f"{what}: pinned must be one of network.candidates, got {pinned!r}")
    if net.get("features") != len(feature_names(wf)):
        raise ConfigError(f"{what}: network.features must be {len(feature_names(wf))}")
    sizes = [obs_size(len(cands), wf), *widths, len(cands)]
    shapes = {}
    for i in range(len(sizes) - 1):
        shapes[f"w{i}"], shapes[f"b{i}"] = (sizes[i], sizes[i + 1]), (sizes[i + 1],)
    arrays = read_weights(card, card_path, shapes, what)
    layers = [(arrays[f"w{i}"], arrays[f"b{i}"]) for i in range(len(sizes) - 1)]
    return Selector(layers), tuple(cands), card


def from_card(card_path: str | Path, placer, label_base: str) -> Adaptive:
    selector, cands, card = load(card_path)
    pol = Adaptive(placer.name, selector, cands, label_base=label_base,
                   pinned=card.get("pinned"), workflow_features=uses_workflow_features(card))
    pol.card = card
    return pol


def pin(card_path: str | Path, name: str, stem: str | Path) -> Path:
    """A copy of the model at ``card_path`` that always puts candidate ``name`` in charge
    (``stem.json`` + ``stem.npz``; the card's ``pinned``). The self-optimizing loop offers
    it as a challenger when a heuristic beats the champion on the recent window: it is
    compared and promoted as any other. Its weights are the model's own, so a challenger
    trained from it (``loop.challenger``, which reads the weights, not the pin) starts
    from what the model had learned."""
    selector, cands, card = load(card_path)
    if name not in cands:
        raise ConfigError(f"pin: {name!r} is not a candidate of {card_path} "
                          f"({', '.join(cands)})")
    keep = {k: v for k, v in card.items() if k not in ("format", "weights", "sha256",
                                                       "feature_schema", "network")}
    export(selector, cands, stem, {**keep, "pinned": name},
           workflow_features=uses_workflow_features(card))
    return Path(stem).with_suffix(".json")


__all__ = ["CANDIDATES", "Adaptive", "Selector", "export", "from_card", "load", "pin"]
