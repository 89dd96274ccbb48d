"""Small adaptive model cards for the loop's and the service's tests."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
from autoflow.agents.adaptive import CANDIDATES, Selector, export
from autoflow.envs.workload_features import obs_size


def always(name: str, stem: Path) -> Path:
    """An adaptive model card (``stem.json`` + ``stem.npz``) whose selector always puts
    ``name`` in charge."""
    d = obs_size(len(CANDIDATES))
    out = np.zeros(len(CANDIDATES), np.float32)
    out[CANDIDATES.index(name)] = 10.0
    sel = Selector([(np.zeros((d, 4), np.float32), np.zeros(4, np.float32)),
                    (np.zeros((4, len(CANDIDATES)), np.float32), out)])
    export(sel, CANDIDATES, stem, {"note": f"always {name} (test)"})
    return stem.with_suffix(".json")


def fixed_trainer(card: Path):
    """A trainer that hands the loop ``card`` as its challenger, whatever the window."""
    calls = []

    def train(champion, window, cluster, folder, seed=0, cfg=None):
        folder.mkdir(parents=True, exist_ok=True)
        calls.append((Path(champion), len(window)))
        shutil.copy(card, folder / card.name)  # the card names its weights file
        shutil.copy(card.with_suffix(".npz"), folder / card.with_suffix(".npz").name)
        return folder / card.name, {"sources": [], "fit": {"given": card.name}}

    train.calls = calls
    return train
