"""Duration predictors: a quantile MLP (optionally on a pretrained encoder), and baselines.

Every predictor maps decision-time features (``features.NAMES``) to quantiles
``QUANTILES`` of the log remaining run time.

* ``mlp``: features, piecewise-linearly encoded in 16 quantile bins each (or standardized:
  ``bins`` 0) -> trunk (an ``Encoder``: a plain MLP to an embedding;
  pretrained from ``DIR/encoder.pt`` + ``DIR/encoder.json`` or, with ``--encoder none``,
  the same network from scratch) -> head -> the median and two softplus offsets (so that
  the quantiles never cross). Trained with the pinball loss on standardized labels.
* ``gbm``: gradient-boosted trees, one per quantile: scikit-learn's
  ``HistGradientBoostingRegressor(loss="quantile")``, which implements LightGBM's
  histogram algorithm (LightGBM itself is not installed). Saved as JSON (the trees'
  nodes) and predicted by ``_tree_predict`` here: nothing is ever unpickled.
* ``history``: ``autoflow.core.estimator.DurationEstimator`` fed each job's completion
  at its finish time, as the scheduler core does; its point estimate of the total
  duration ``P`` gives remaining ``P - a`` while ``P > a``, else ``a`` (a job that has
  outlived its estimate is expected to run as long again); all quantiles equal it.

A model folder holds ``model.json`` (kind, feature schema, quantiles, normalisation,
hyper-parameters, the training trace, label fraction and seed, and the sha256 of the
weights file) and ``model.pt`` (a state dict, read with ``torch.load(weights_only=True)``
from the very bytes hashed) or ``trees.json``. A folder is loaded only from a path the
user names; a wrong hash or schema is a one-line ``ConfigError``.
"""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import numpy as np

from .. import atomic, jsonsafe, trust
from ..core.estimator import DurationEstimator
from ..errors import ConfigError
from ..workload import Workload
from . import features as F
from .trees import Forest
from .trees import export as export_trees

QUANTILES = (0.1, 0.5, 0.9)
FORMAT = "autoflow-predictor/1"
ENCODER_FORMAT = "autoflow-encoder/1"
KINDS = ("mlp", "gbm")

# hyper-parameters of the MLP (each: what it does)
MLP_DEFAULTS = {
    "hidden": [64, 64],     # trunk widths (the encoder's, when one is given, win)
    "embedding": 32,        # trunk output width
    "head": 32,             # head hidden width
    "epochs": 20,           # passes over the labelled examples ...
    "min_steps": 300,       # ... but at least this many optimizer steps (few labels)
    "batch": 256,           # examples per step
    "lr": 2e-3,             # Adam learning rate
    "weight_decay": 1e-4,   # L2 on all weights (regularizes small label fractions)
    "trunk_lr": 1.0,        # the trunk's learning rate, times lr (0: a frozen trunk)
    "patience": 0,          # > 0: early stopping after this many passes without gain on
                            # a seeded fifth of the labelled examples (3x the steps)
    "bins": 16,             # > 0: piecewise-linear encoding of each feature in this many
                            # quantile bins (``Encoder``; 0: standardized features); an
                            # encoder's own setting wins
}
GBM_DEFAULTS = {"max_iter": 150, "learning_rate": 0.08, "max_leaf_nodes": 31,
                "min_samples_leaf": 20, "l2_regularization": 0.0}


def _torch():
    import torch

    return torch


def ple_edges(x: np.ndarray, bins: int) -> tuple[np.ndarray, np.ndarray]:
    """Per feature, ``bins`` bins between quantiles of ``x`` (their lower edges and
    widths, shape (features, bins)); repeated edges (a feature with few values) leave
    bins of zero width, encoded as steps."""
    q = np.nanquantile(x, np.linspace(0.0, 1.0, bins + 1), axis=0).T  # (features, bins+1)
    lo, width = q[:, :-1], np.diff(q, axis=1)
    return lo, np.where(width > 1e-9, width, 1e-9)


def _modules():
    torch = _torch()
    nn = torch.nn

    class Encoder(nn.Module):
        """Feature vector (raw) -> embedding; carries its own input normalisation. With
        ``bins`` > 0 each feature enters piecewise-linearly encoded (``ple_edges``): one
        input per bin, 0 below it, 1 above it, linear inside; bounded, so a feature
        outside the range seen (a longer trace's counts) does not extrapolate."""

        def __init__(self, n_in: int, hidden: list[int], embedding: int, bins: int = 0):
            super().__init__()
            self.bins = int(bins)
            self.register_buffer("mean", torch.zeros(n_in))
            self.register_buffer("std", torch.ones(n_in))
            if self.bins:
                self.register_buffer("lo", torch.zeros(n_in, self.bins))
                self.register_buffer("width", torch.ones(n_in, self.bins))
            layers, w = [], n_in * max(self.bins, 1)
            for h in hidden:
                layers += [nn.Linear(w, h), nn.ReLU()]
                w = h
            layers += [nn.Linear(w, embedding), nn.ReLU()]
            self.net = nn.Sequential(*layers)

        def set_inputs(self, x: np.ndarray) -> None:
            """Normalisation (and bin edges) from the rows ``x``."""
            mean, std = x.mean(axis=0), x.std(axis=0)
            self.mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
            self.std.copy_(torch.as_tensor(np.where(std > 1e-8, std, 1.0), dtype=torch.float32))
            if self.bins:
                lo, width = ple_edges(x, self.bins)
                self.lo.copy_(torch.as_tensor(lo, dtype=torch.float32))
                self.width.copy_(torch.as_tensor(width, dtype=torch.float32))

        def forward(self, x):
            if not self.bins:
                return self.net((x - self.mean) / self.std)
            z = ((x.unsqueeze(-1) - self.lo) / self.width).clamp(0.0, 1.0)
            return self.net(z.flatten(1))

    class QuantileNet(nn.Module):
        def __init__(self, trunk: Encoder, embedding: int, head: int):
            super().__init__()
            self.trunk = trunk
            self.head = nn.Sequential(nn.Linear(embedding, head), nn.ReLU(),
                                      nn.Linear(head, 3))

        def forward(self, x):
            o = self.head(self.trunk(x))
            mid = o[:, 1:2]
            sp = nn.functional.softplus
            return torch.cat([mid - sp(o[:, 0:1]), mid, mid + sp(o[:, 2:3])], dim=1)

    return Encoder, QuantileNet


# ---------------------------------------------------------------- files and hashes


def _read_json(path: Path, what: str) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise ConfigError(f"{what} {path}: cannot read it: {e.strerror or e}") from None
    except ValueError as e:
        raise ConfigError(f"{what} {path}: not JSON ({e})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{what} {path}: expected a JSON object")
    return data


def _check_schema(recorded, what: str) -> None:
    if not isinstance(recorded, dict) or recorded.get("version") != F.FEATURE_VERSION or \
            recorded.get("names") != list(F.NAMES):
        v = recorded.get("version") if isinstance(recorded, dict) else None
        raise ConfigError(f"{what}: its feature schema (version {v}) is not this autoflow's "
                          f"(version {F.FEATURE_VERSION}, {len(F.NAMES)} features): refit it")


def _hashed_bytes(path: Path, sha: str, what: str) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ConfigError(f"{what}: cannot read {path.name}: {e.strerror or e}") from None
    if not isinstance(sha, str) or trust.sha256_bytes(data) != sha:
        raise ConfigError(f"{what}: {path.name} does not match the sha256 recorded in "
                          f"its JSON (changed or corrupted): refusing to load it")
    return data


def _load_state(data: bytes, what: str) -> dict:
    try:
        return _torch().load(io.BytesIO(data), weights_only=True, map_location="cpu")
    except Exception as e:  # noqa: BLE001 - any unreadable file is one line
        raise ConfigError(f"{what}: cannot read its weights: {trust.why(e)}") from None


def _state_bytes(module) -> bytes:
    buf = io.BytesIO()
    _torch().save(module.state_dict(), buf)
    return buf.getvalue()


def save_encoder(encoder, folder: str | Path, extra: dict | None = None) -> None:
    """Writes ``encoder.pt`` + ``encoder.json`` (for the pretraining that makes them)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    data = _state_bytes(encoder)
    atomic.write_bytes(folder / "encoder.pt", data)
    lin = [m for m in encoder.net if hasattr(m, "out_features")]
    jsonsafe.write(folder / "encoder.json", {
        "format": ENCODER_FORMAT, "features": F.schema(),
        "hidden": [m.out_features for m in lin[:-1]], "embedding": lin[-1].out_features,
        "bins": encoder.bins, "sha256": trust.sha256_bytes(data), **(extra or {})})


def load_encoder(folder: str | Path):
    """The encoder in ``folder`` (``encoder.json`` + ``encoder.pt``), checked."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ConfigError(f"--encoder {folder}: no such folder (or pass --encoder none)")
    missing = [n for n in ("encoder.json", "encoder.pt") if not (folder / n).is_file()]
    if missing:
        raise ConfigError(f"--encoder {folder}: the folder lacks {' and '.join(missing)}")
    what = f"encoder {folder}"
    card = _read_json(folder / "encoder.json", "encoder card")
    if card.get("format") != ENCODER_FORMAT:
        raise ConfigError(f"{what}: encoder.json is not an {ENCODER_FORMAT} card")
    _check_schema(card.get("features"), what)
    try:
        hidden = [int(h) for h in card["hidden"]]
        emb = int(card["embedding"])
        bins = int(card.get("bins", 0))  # encoders before the bins: 0
    except (KeyError, TypeError, ValueError):
        raise ConfigError(f"{what}: encoder.json lacks hidden/embedding sizes") from None
    if not 0 <= bins <= 64:
        raise ConfigError(f"{what}: encoder.json's bins must be in [0, 64], got {bins}")
    state = _load_state(_hashed_bytes(folder / "encoder.pt", card.get("sha256"), what), what)
    Encoder, _ = _modules()
    enc = Encoder(len(F.NAMES), hidden, emb, bins)
    try:
        enc.load_state_dict(state)
    except (RuntimeError, KeyError) as e:
        raise ConfigError(f"{what}: weights do not fit encoder.json: {trust.why(e)}") from None
    return enc, {"path": str(folder.resolve()), "sha256": card["sha256"],
                 "hidden": hidden, "embedding": emb, "bins": bins}


# ---------------------------------------------------------------- the MLP


def pinball_torch(pred, y):
    torch = _torch()
    q = torch.tensor(QUANTILES, dtype=pred.dtype).unsqueeze(0)
    d = y.unsqueeze(1) - pred
    return torch.maximum(q * d, (q - 1) * d).mean()


class Predictor:
    """A fitted predictor: ``predict(x)`` -> (n, 3) quantiles of log remaining seconds."""

    def __init__(self, kind: str, meta: dict, net=None, trees=None):
        self.kind, self.meta, self.net, self.trees = kind, meta, net, trees
        self._forest = Forest(self.trees) if kind == "gbm" else None

    def predict(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        if self.kind == "gbm":
            return np.sort(self._forest.predict(x), axis=1)
        torch = _torch()
        norm = self.meta["label_norm"]
        self.net.eval()
        with torch.no_grad():
            z = self.net(torch.as_tensor(x, dtype=torch.float32)).numpy().astype(np.float64)
        return z * norm["std"] + norm["mean"]

    def save(self, folder: str | Path) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        if self.kind == "mlp":
            name, data = "model.pt", _state_bytes(self.net)
        else:
            name = "trees.json"
            data = (jsonsafe.dumps({"trees": self.trees}, indent=None) + "\n").encode()
        atomic.write_bytes(folder / name, data)
        meta = {**self.meta, "weights": name, "sha256": trust.sha256_bytes(data)}
        jsonsafe.write(folder / "model.json", meta)
        self.meta = meta


def fit_mlp(ex: F.Examples, *, seed: int, encoder: str | Path | None = None,
            params: dict | None = None, info: dict | None = None) -> Predictor:
    torch = _torch()
    p = {**MLP_DEFAULTS, **(params or {})}
    torch.manual_seed(seed)
    Encoder, QuantileNet = _modules()
    x = np.asarray(ex.x, dtype=np.float64)
    mean, std = x.mean(axis=0), x.std(axis=0)
    std = np.where(std > 1e-8, std, 1.0)
    enc_info = None
    if encoder is not None:
        trunk, enc_info = load_encoder(encoder)
        p["hidden"], p["embedding"] = enc_info["hidden"], enc_info["embedding"]
        p["bins"] = enc_info["bins"]
    else:
        trunk = Encoder(x.shape[1], list(p["hidden"]), int(p["embedding"]), int(p["bins"]))
        trunk.set_inputs(x)
    net = QuantileNet(trunk, int(p["embedding"]), int(p["head"]))
    ym, ys = float(ex.y.mean()), float(ex.y.std()) or 1.0
    xt = torch.as_tensor(x, dtype=torch.float32)
    yt = torch.as_tensor((ex.y - ym) / ys, dtype=torch.float32)
    n, patience, trunk_lr = len(yt), int(p["patience"]), float(p["trunk_lr"])
    if patience:  # a seeded fifth of the labelled examples judges when to stop
        order = torch.randperm(n, generator=torch.Generator().manual_seed(seed + 7))
        k = max(1, n // 5)
        xv, yv, xt, yt = xt[order[:k]], yt[order[:k]], xt[order[k:]], yt[order[k:]]
        n = len(yt)
    if trunk_lr == 1.0:
        groups = net.parameters()
    else:
        for w in trunk.parameters():
            w.requires_grad_(trunk_lr > 0)
        groups = [{"params": list(net.head.parameters()), "lr": p["lr"]}]
        if trunk_lr > 0:
            groups.append({"params": list(trunk.parameters()), "lr": p["lr"] * trunk_lr})
    opt = torch.optim.Adam(groups, lr=p["lr"], weight_decay=p["weight_decay"])
    b = int(p["batch"])
    per_pass = math.ceil(n / b)
    steps = max(int(p["epochs"]) * per_pass, int(p["min_steps"])) * (3 if patience else 1)
    gen = torch.Generator().manual_seed(seed)
    perm, at = torch.randperm(n, generator=gen), 0
    best, best_state, bad, done = math.inf, None, 0, 0
    for step in range(steps):
        net.train()
        if at >= n:
            perm, at = torch.randperm(n, generator=gen), 0
        idx = perm[at:at + b]
        at += b
        loss = pinball_torch(net(xt[idx]), yt[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        done = step + 1
        if patience and done % per_pass == 0:
            net.eval()
            with torch.no_grad():
                v = float(pinball_torch(net(xv), yv))
            if v < best - 1e-4:
                best, bad = v, 0
                best_state = {k: t.detach().clone() for k, t in net.state_dict().items()}
            else:
                bad += 1
                if bad >= patience:
                    break
    if best_state is not None:
        net.load_state_dict(best_state)
    steps = done
    meta = _meta("mlp", info, p, seed)
    meta.update(norm={"mean": mean.tolist(), "std": std.tolist()},
                label_norm={"mean": ym, "std": ys}, encoder=enc_info, steps=steps)
    return Predictor("mlp", meta, net=net)


def _meta(kind: str, info: dict | None, params: dict, seed: int) -> dict:
    return {"format": FORMAT, "kind": kind, "features": F.schema(),
            "quantiles": list(QUANTILES), "target": "log remaining seconds",
            "hyperparameters": params, "seed": seed, **(info or {})}


# ---------------------------------------------------------------- gradient-boosted trees


def fit_gbm(ex: F.Examples, *, seed: int, params: dict | None = None,
            info: dict | None = None) -> Predictor:
    from sklearn.ensemble import HistGradientBoostingRegressor

    p = {**GBM_DEFAULTS, **(params or {})}
    exported = []
    for q in QUANTILES:
        m = HistGradientBoostingRegressor(loss="quantile", quantile=q, random_state=seed,
                                          early_stopping=False, **p)
        m.fit(ex.x, ex.y)
        exported.append(export_trees(m))
    return Predictor("gbm", _meta("gbm", info, p, seed), trees=exported)


# ---------------------------------------------------------------- the history baseline


def history_predict(workload: Workload, ex: F.Examples, prior: float | None = None) -> np.ndarray:
    """The history estimator's remaining time for each example, as (n, 3) log quantiles
    (all three equal: the estimator gives a point)."""
    jobs = workload.jobs
    est = DurationEstimator(prior)
    order = sorted(range(len(jobs)), key=lambda i: F.finish_time(jobs[i]))
    total = np.empty(len(jobs))
    ptr = 0
    for i, job in enumerate(jobs):
        while ptr < len(order) and F.finish_time(jobs[order[ptr]]) <= job.submit_time:
            est.observe(jobs[order[ptr]])
            ptr += 1
        total[i] = est.predict(job)
    p = total[ex.job]
    rem = np.where(p > ex.attained, p - ex.attained, ex.attained)
    logr = np.log(np.maximum(rem, F.MIN_REMAINING_S))
    return np.repeat(logr[:, None], len(QUANTILES), axis=1)


# ---------------------------------------------------------------- loading


def load(folder: str | Path) -> Predictor:
    """The predictor in ``folder`` (a path the user named), hash and schema checked."""
    folder = Path(folder)
    what = f"model {folder}"
    if not folder.is_dir():
        raise ConfigError(f"--model {folder}: no such folder")
    if not (folder / "model.json").is_file():
        raise ConfigError(f"--model {folder}: the folder lacks model.json")
    meta = _read_json(folder / "model.json", "model card")
    if meta.get("format") != FORMAT or meta.get("kind") not in KINDS:
        raise ConfigError(f"{what}: model.json is not an {FORMAT} card of kind "
                          f"{' or '.join(KINDS)}")
    _check_schema(meta.get("features"), what)
    if list(meta.get("quantiles") or ()) != list(QUANTILES):
        raise ConfigError(f"{what}: quantiles {meta.get('quantiles')} are not {QUANTILES}")
    name = "model.pt" if meta["kind"] == "mlp" else "trees.json"
    if not (folder / name).is_file():
        raise ConfigError(f"{what}: the folder lacks {name}")
    data = _hashed_bytes(folder / name, meta.get("sha256"), what)
    if meta["kind"] == "gbm":
        try:
            exported = json.loads(data)["trees"]
        except (ValueError, KeyError, TypeError):
            raise ConfigError(f"{what}: trees.json holds no trees") from None
        return Predictor("gbm", meta, trees=exported)
    Encoder, QuantileNet = _modules()
    try:
        p = meta["hyperparameters"]
        bins = int(p.get("bins", 0))  # models before the bins: 0
        if not 0 <= bins <= 64:
            raise ValueError(bins)
        net = QuantileNet(Encoder(len(F.NAMES), [int(h) for h in p["hidden"]],
                                  int(p["embedding"]), bins),
                          int(p["embedding"]), int(p["head"]))
        float(meta["label_norm"]["mean"]), float(meta["label_norm"]["std"])
    except (KeyError, TypeError, ValueError):
        raise ConfigError(f"{what}: model.json lacks its hyper-parameters or "
                          f"normalisation") from None
    try:
        net.load_state_dict(_load_state(data, what))
    except (RuntimeError, KeyError) as e:
        raise ConfigError(f"{what}: weights do not fit model.json: {trust.why(e)}") from None
    return Predictor("mlp", meta, net=net)
