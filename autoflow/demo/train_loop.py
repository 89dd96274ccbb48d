"""A built-in demo training job: a small torch training loop on synthetic data that
checkpoints every ``checkpoint_every`` steps and resumes from its last checkpoint.

It is a training job to submit with an entrypoint (``autoflow serve --executor ray``),
so that preemption (checkpoint, stop, resume) and lost work can be seen on real processes:

    python -m autoflow.demo.train_loop --checkpoint-dir DIR --steps 200 \\
        [--checkpoint-every 10] [--seed 0] [--step-time 0.01]

(``--checkpoint-dir`` defaults to ``$AUTOFLOW_CHECKPOINT_DIR``, which autoflow sets for a
job it runs on Ray.)

Every step's batch is drawn from a generator seeded with ``(seed, step)``, so a run that
is stopped and resumed ends with exactly the weights of one that was never stopped. The
checkpoint (``DIR/checkpoint.pt``: model and optimiser state and the step reached) is
written to a temporary file and renamed over the old one, so a run killed mid-write
keeps its previous checkpoint; it is read back with ``torch.load(weights_only=True)``
(no pickled code runs). A run asked to stop (``SIGTERM``, or ``should_stop`` returning
True) checkpoints at the end of the current step and exits with status ``stopped``. A
run killed outright loses the steps since its last checkpoint: the next run starts from
``resumed_from``, and the work lost is the step the killed run had reached less that.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

CHECKPOINT = "checkpoint.pt"
FEATURES, HIDDEN = 16, 32
BATCH = 64


def _model():
    import torch

    return torch.nn.Sequential(torch.nn.Linear(FEATURES, HIDDEN), torch.nn.Tanh(),
                               torch.nn.Linear(HIDDEN, 1))


def _batch(seed: int, step: int):
    """The synthetic regression batch of ``step``: y = sin(x . w) + noise."""
    import torch

    g = torch.Generator().manual_seed(seed * 1_000_003 + step)
    w = torch.Generator().manual_seed(seed)
    true_w = torch.randn(FEATURES, 1, generator=w)
    x = torch.randn(BATCH, FEATURES, generator=g)
    y = torch.sin(x @ true_w) + 0.05 * torch.randn(BATCH, 1, generator=g)
    return x, y


def load_checkpoint(ckpt_dir: Path):
    """``(state, step)`` from ``ckpt_dir/checkpoint.pt``, or ``(None, 0)`` if there is
    none. A file that is not a checkpoint of this job is an error naming it."""
    import torch

    path = ckpt_dir / CHECKPOINT
    if not path.exists():
        return None, 0
    try:
        state = torch.load(path, weights_only=True)
        step = int(state["step"])
        missing = {"model", "optimizer"} - set(state)
        if missing:
            raise KeyError(f"no {', '.join(sorted(missing))}")
    except Exception as e:  # noqa: BLE001 - any unreadable file is reported the same way
        raise ValueError(f"{path}: not a checkpoint of autoflow's demo training job ({e})")
    return state, step


def run(ckpt_dir: str | Path, steps: int, checkpoint_every: int = 10, seed: int = 0,
        step_time: float = 0.0, should_stop: Callable[[], bool] | None = None) -> dict:
    """Trains up to ``steps`` steps, resuming from the checkpoint in ``ckpt_dir``."""
    import torch

    if steps < 1 or checkpoint_every < 1:
        raise ValueError(f"steps and checkpoint_every must be >= 1, got {steps}, "
                         f"{checkpoint_every}")
    ckpt_dir = Path(ckpt_dir)
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    state, start = load_checkpoint(ckpt_dir)
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
    saved, loss = start, float("nan")

    def save(step: int) -> None:
        nonlocal saved
        tmp = ckpt_dir / f".{CHECKPOINT}.{os.getpid()}.tmp"
        torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(),
                    "step": step}, tmp)
        os.replace(tmp, ckpt_dir / CHECKPOINT)
        saved = step

    status = "done"
    for step in range(start, steps):
        t0 = time.perf_counter()
        x, y = _batch(seed, step)
        opt.zero_grad()
        out = torch.nn.functional.mse_loss(model(x), y)
        out.backward()
        opt.step()
        loss = float(out.detach())
        done = step + 1
        if done % checkpoint_every == 0 or done == steps:
            save(done)
        if step_time > 0:  # stands in for a real step's compute
            time.sleep(max(0.0, step_time - (time.perf_counter() - t0)))
        if should_stop is not None and should_stop() and done < steps:
            if saved != done:
                save(done)
            status = "stopped"
            break
    return {"status": status, "resumed_from": start, "step": saved, "steps": steps,
            "loss": loss}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    env_dir = os.environ.get("AUTOFLOW_CHECKPOINT_DIR")  # set for a job run by autoflow
    ap.add_argument("--checkpoint-dir", required=env_dir is None, default=env_dir,
                    help="default: $AUTOFLOW_CHECKPOINT_DIR (set when autoflow runs the job)")
    ap.add_argument("--steps", type=int, required=True)
    ap.add_argument("--checkpoint-every", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--step-time", type=float, default=0.0,
                    help="seconds each step takes at least (default 0)")
    args = ap.parse_args(argv)
    asked = []
    signal.signal(signal.SIGTERM, lambda *_: asked.append(True))
    try:
        result = run(args.checkpoint_dir, args.steps, args.checkpoint_every, args.seed,
                     args.step_time, should_stop=lambda: bool(asked))
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
