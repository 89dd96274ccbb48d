"""``autoflow traces download NAME``: fetch a public trace into a local cache, verified.

Files come from their public GitHub repositories, by default through
``https://github.com/OWNER/REPO/raw/HEAD/PATH`` (which also follows Git LFS). A mirror
replaces that: with ``mirror=URL`` (or ``$AUTOFLOW_TRACE_MIRROR``) a file is fetched from
``URL/OWNER/REPO/PATH`` (``http(s)://`` or ``file://``). Files land in ``dest`` or in
the cache folder ``$AUTOFLOW_CACHE/NAME/`` (default ``~/.cache/autoflow/traces/NAME/``).

Integrity: every file is checked with SHA-256. Files whose checksum is pinned in the
catalog below (the openb CSVs and the six ITP clusters also kept in ``shared/traces``)
must match it. Files with no pinned checksum (the ITP archive itself, its four other
cluster CSVs, the DLRM trace) are trusted on first use: their checksum is recorded in
``checksums.json`` in the cache folder and verified on every later use. A mismatch is
an error and the bad file is removed. Only ``urllib`` is used (no third-party client).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tarfile
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

from ..errors import ConfigError, TraceError

GITHUB_RAW = "https://github.com/{repo}/raw/HEAD/{path}"
MIRROR_ENV = "AUTOFLOW_TRACE_MIRROR"
CACHE_ENV = "AUTOFLOW_CACHE"
CHECKSUMS = "checksums.json"
CHUNK = 1 << 20
TIMEOUT_S = 60


@dataclass(frozen=True)
class Remote:
    """One file in a public repository; ``extract``: a .tar.gz whose CSVs we unpack."""

    repo: str
    path: str
    sha256: str | None = None  # pinned; None = trust on first use
    extract: bool = False

    @property
    def name(self) -> str:
        return PurePosixPath(self.path).name


@dataclass(frozen=True)
class Entry:
    name: str
    fmt: str  # importer format of the trace files
    description: str
    files: tuple[Remote, ...]
    sources: tuple[str, ...] = ()  # file names that are traces; empty = every CSV
    members: dict[str, str] = field(default_factory=dict)  # pinned sha256 of archive members


CATALOG: dict[str, Entry] = {e.name: e for e in (
    Entry("itp", "itp", "Microsoft ITP training jobs, 10 clusters, 2021 (ElasticFlow, "
          "ASPLOS '23; MIT licence)",
          (Remote("microsoft/elasticflow-traces", "data/raw-traces.tar.gz", extract=True),),
          members={
              "cluster01.csv": "27d707f576fce5637f9efec43f610da3d335f36e3c6fd4ded2f5bccfce05974a",
              "cluster02.csv": "7a5849e73aff9f9bc33f87c9bacadf8aab2f3a9e7bc5d70956f5cbf40126526c",
              "cluster03.csv": "282d765c5289ab0ba870f494dd2c67893f9d16d726fdc8a51f13b7412515dbf8",
              "cluster05.csv": "1553359ddd673a0ffc531ca10e73ba729dbacbce905ce878dbb8499d2dbed0fb",
              "cluster06.csv": "52c0d9247d1de9b19a8bdafc25137daf6fa04f274ad3a2eb6dac51226ac2362e",
              "cluster08.csv": "d60c20d0cd05ddf49fddffabbc784ba6177bbc1a762fc5cf8a0bc9056b084db8",
          }),
    Entry("alibaba-openb", "alibaba-openb", "Alibaba GPU-sharing cluster, 2023 (FGD, ATC '23)",
          (Remote("alibaba/clusterdata",
                  "cluster-trace-gpu-v2023/csv/openb_pod_list_default.csv",
                  "1ee7ed79c27a3b0861cda8ddba86a004c6aba904caafa329a76ae93ca63834a8"),
           Remote("alibaba/clusterdata",
                  "cluster-trace-gpu-v2023/csv/openb_node_list_gpu_node.csv",
                  "2beca64b4d3dfa342036a34b56a495c6cef9225db836c81f541282cb1df320b5")),
          sources=("openb_pod_list_default.csv",)),
    Entry("alibaba-dlrm", "alibaba-dlrm", "Alibaba disaggregated DLRM inference, 2025 "
          "(Prism, NSDI '25)",
          (Remote("alibaba/clusterdata",
                  "cluster-trace-gpu-v2025/disaggregated_DLRM_trace.csv"),)),
)}


def cache_dir(name: str) -> Path:
    base = os.environ.get(CACHE_ENV)
    root = Path(base) if base else Path.home() / ".cache" / "autoflow" / "traces"
    return root / name


def url_of(remote: Remote, mirror: str | None) -> str:
    if mirror:
        return f"{mirror.rstrip('/')}/{remote.repo}/{remote.path}"
    return GITHUB_RAW.format(repo=remote.repo, path=remote.path)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def verify(path: Path, pinned: str | None, book: dict[str, str]) -> None:
    """Checks ``path`` against its pinned or recorded checksum; records it if neither."""
    got = sha256_file(path)
    expected = pinned or book.get(path.name)
    if expected is None:
        book[path.name] = got  # trust on first use
        return
    if got != expected:
        path.unlink()
        how = "pinned" if pinned else f"recorded on first download in {CHECKSUMS}"
        raise TraceError(str(path), f"sha256 mismatch: expected {expected} ({how}), got "
                         f"{got}; the file was removed")
    book.setdefault(path.name, got)


def fetch(url: str, target: Path) -> None:
    """Downloads ``url`` to ``target`` through a ``.part`` file, with a progress bar."""
    part = target.with_name(target.name + ".part")
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as r, open(part, "wb") as out, \
                Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                         TransferSpeedColumn(), console=Console(stderr=True)) as progress:
            size = r.headers.get("Content-Length")
            task = progress.add_task(target.name, total=int(size) if size else None)
            for block in iter(lambda: r.read(CHUNK), b""):
                out.write(block)
                progress.update(task, advance=len(block))
    except (urllib.error.URLError, OSError, ValueError) as e:
        part.unlink(missing_ok=True)
        why = e if isinstance(e, urllib.error.HTTPError) else getattr(e, "reason", None) or e
        raise TraceError(url, f"download failed: {why}") from None
    part.replace(target)


def extract_csvs(archive: Path, dest: Path, pinned: dict[str, str], book: dict[str, str]
                 ) -> list[Path]:
    """Unpacks the CSV members of a .tar.gz flat into ``dest`` and verifies each one."""
    out: list[Path] = []
    try:
        with tarfile.open(archive, "r:*") as tar:
            for m in tar.getmembers():
                name = PurePosixPath(m.name).name
                if not m.isfile() or not name.endswith(".csv") or name.startswith("."):
                    continue
                src = tar.extractfile(m)
                if src is None:
                    continue
                target = dest / name
                with src, open(target, "wb") as f:
                    shutil.copyfileobj(src, f, CHUNK)
                verify(target, pinned.get(name), book)
                out.append(target)
    except (tarfile.TarError, EOFError, OSError) as e:
        raise TraceError(str(archive), f"cannot unpack archive: {e}") from None
    if not out:
        raise TraceError(str(archive), "archive holds no CSV files")
    return sorted(out)


def _load_book(dest: Path) -> dict[str, str]:
    p = dest / CHECKSUMS
    if not p.exists():
        return {}
    try:
        return dict(json.loads(p.read_text(encoding="utf-8")))
    except (ValueError, TypeError) as e:
        raise TraceError(str(p), f"unreadable checksum record: {e}") from None


def download(name: str, dest: str | Path | None = None, mirror: str | None = None,
             console: Console | None = None) -> list[Path]:
    """Fetches (or reuses, verified) trace ``name``; prints the sources; returns the paths."""
    if name not in CATALOG:
        raise ConfigError(f"unknown trace {name!r}; downloadable: {', '.join(CATALOG)}")
    entry = CATALOG[name]
    mirror = mirror or os.environ.get(MIRROR_ENV) or None
    folder = Path(dest) if dest else cache_dir(name)
    folder.mkdir(parents=True, exist_ok=True)
    out = console or Console()
    book = _load_book(folder)
    paths: list[Path] = []
    try:
        for remote in entry.files:
            target = folder / remote.name
            if not target.exists():
                fetch(url_of(remote, mirror), target)
            verify(target, remote.sha256, book)  # raises (and removes the file) if changed
            if remote.extract:
                paths += extract_csvs(target, folder, entry.members, book)
            else:
                paths.append(target)
    finally:
        (folder / CHECKSUMS).write_text(json.dumps(book, indent=1, sort_keys=True) + "\n",
                                        encoding="utf-8")
    sources = [p for p in paths if (p.name in entry.sources if entry.sources
                                    else p.suffix == ".csv")]
    out.print(f"{entry.name}: {len(paths)} file(s) in {folder}", soft_wrap=True,
              highlight=False, markup=False)
    for p in sources:
        out.print(f"{entry.fmt}:{p}", soft_wrap=True, highlight=False, markup=False)
    for p in paths:
        if p not in sources:
            out.print(f"(also) {p}", soft_wrap=True, highlight=False, markup=False)
    return paths
