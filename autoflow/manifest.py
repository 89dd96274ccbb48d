"""Run manifests: configuration, seed, versions and git commit, written beside results."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

PACKAGES = ("autoflow", "numpy", "simpy", "pandas", "pydantic", "matplotlib", "torch",
            "gymnasium", "stable-baselines3", "sb3-contrib", "sdv", "ray")


def versions() -> dict:
    out = {"python": sys.version.split()[0]}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def git_commit(cwd: str | Path | None = None) -> str:
    here = Path(cwd or Path(__file__).resolve().parent)
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True,
                             text=True, timeout=10, check=False).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=here, capture_output=True, text=True, timeout=10,
                               check=False).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    if not sha:
        return "unknown"
    return sha + ("-dirty" if dirty.strip() else "")


def machine() -> dict:
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "platform": platform.platform()}


COMPLETE, INTERRUPTED, FAILED = "complete", "interrupted", "failed"


def build(command: str, config: dict, seed: int, status: str = COMPLETE) -> dict:
    """``status``: ``complete``, or ``interrupted`` (Ctrl-C) / ``failed`` for a run that
    stopped part-way and saved what had finished."""
    return {"command": command, "config": config, "seed": seed, "status": status,
            "versions": versions(), "git_commit": git_commit(), "machine": machine(),
            "created": datetime.now(UTC).isoformat(timespec="seconds")}


def write(path: str | Path, manifest: dict) -> None:
    """Strict JSON, saved atomically (a temporary file in the same folder, then a rename)."""
    from . import jsonsafe

    jsonsafe.write(path, manifest, default=str)


def save_run(out: str | Path, results: dict, command: str, config: dict,
             seed: int = 0) -> dict:
    """A benchmark's or experiment's results: ``out/results.json`` and, beside it,
    ``out/manifest.json`` (``out`` created); returns the manifest."""
    from . import jsonsafe

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    man = build(command, config, seed)
    jsonsafe.write(out / "results.json", results)
    write(out / "manifest.json", man)
    return man
