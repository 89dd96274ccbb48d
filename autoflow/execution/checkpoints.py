"""Checkpoints of replayed jobs: one small JSON file per job in a folder both the driver
and the Ray workers can read (on one machine, any folder; across machines, shared storage,
as a real training job's checkpoints would be).

A file holds the job's useful work so far in trace seconds (``progress``) and the wall
time it was written (``wall``). It is written by the job itself (rank 0 of a gang): when
its work begins, every ``interval`` trace seconds, when it is asked to stop, and when it
ends. A job resumes from it; the driver reads it to tell how much work a lost job keeps.
Writes are atomic (a temporary file renamed over the old one).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from urllib.parse import quote


def path_for(folder: str | Path, key: str) -> Path:
    """The checkpoint file of job ``key`` (any string: it is percent-encoded)."""
    return Path(folder) / f"{quote(str(key), safe='')}.json"


def read(folder: str | Path, key: str) -> dict | None:
    """The job's last checkpoint, or None before its first. A file that is not a
    checkpoint is an error naming it (a job never silently restarts from zero)."""
    p = path_for(folder, key)
    try:
        text = p.read_text()
    except FileNotFoundError:
        return None
    try:
        ck = json.loads(text)
        progress, wall = float(ck["progress"]), float(ck["wall"])
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{p}: not a checkpoint ({type(e).__name__}: {e})") from None
    if not progress >= 0:
        raise ValueError(f"{p}: progress must be >= 0, got {progress}")
    return {"progress": progress, "wall": wall}


def progress(folder: str | Path, key: str) -> float:
    ck = read(folder, key)
    return 0.0 if ck is None else ck["progress"]


def write(folder: str | Path, key: str, progress_s: float, wall: float) -> None:
    p = path_for(folder, key)
    fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump({"progress": progress_s, "wall": wall}, f)
        os.replace(tmp, p)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
