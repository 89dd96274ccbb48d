"""Atomic saves: a file autoflow writes is either the old one or the whole new one.

``write_text``/``write_bytes`` write to a temporary file in the same folder (so that the
rename stays on one file system), flush and ``fsync`` it, then ``os.replace`` it over the
target, which is atomic on POSIX and Windows. An error or an interrupt part-way leaves the
target as it was and removes the temporary file. Used for ``results.json``,
``manifest.json``, ``train_summary.json`` and every other JSON file written through
``autoflow.jsonsafe.write``, and every PNG (``save_figure``).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


MODE = 0o666 & ~_umask()  # what open() gives a new file (mkstemp's own is 0o600)


def write_bytes(path: str | Path, data: bytes) -> None:
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            if hasattr(os, "fchmod"):  # POSIX
                os.fchmod(f.fileno(), MODE)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:  # an error or an interrupt: the target is untouched
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):  # the rename itself survives a crash (best effort)
        dirfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dirfd)
        finally:
            os.close(dirfd)


def write_text(path: str | Path, text: str, encoding: str = "utf-8") -> None:
    write_bytes(path, text.encode(encoding))


def save_figure(fig, path: str | Path, **kwargs) -> None:
    """Render a matplotlib figure to PNG bytes, then write them atomically."""
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", **kwargs)
    write_bytes(path, buf.getvalue())
