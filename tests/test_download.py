"""``autoflow traces download``: served from a local http.server on 127.0.0.1."""

from __future__ import annotations

import functools
import hashlib
import io
import json
import tarfile
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from autoflow.errors import ConfigError, TraceError
from autoflow.traces import download as dl
from autoflow.traces.cli import app
from autoflow.traces.registry import load_workload

FIX = Path(__file__).parent / "fixtures"
SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "traces"
DLRM = "alibaba/clusterdata/cluster-trace-gpu-v2025/disaggregated_DLRM_trace.csv"
OPENB = "alibaba/clusterdata/cluster-trace-gpu-v2023/csv/"
ITP = "microsoft/elasticflow-traces/data/raw-traces.tar.gz"


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # keep test output clean
        pass


@pytest.fixture
def server(tmp_path):
    """(folder served, base URL) of a threading http.server on 127.0.0.1, any free port."""
    root = tmp_path / "srv"
    root.mkdir()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=root))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()
    thread.join()


def put(root: Path, rel: str, data: bytes) -> Path:
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data)
    return p


def tarball(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def quiet() -> Console:
    return Console(record=True, width=200)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_dlrm_trust_on_first_use(tmp_path, server):
    root, url = server
    data = (FIX / "dlrm_small.csv").read_bytes()
    put(root, DLRM, data)
    dest = tmp_path / "cache"
    con = quiet()
    paths = dl.download("alibaba-dlrm", dest=dest, mirror=url, console=con)
    target = dest / "disaggregated_DLRM_trace.csv"
    assert paths == [target] and target.read_bytes() == data
    assert f"alibaba-dlrm:{target}" in con.export_text()
    book = json.loads((dest / dl.CHECKSUMS).read_text())
    assert book == {"disaggregated_DLRM_trace.csv": sha(data)}
    assert len(load_workload(f"alibaba-dlrm:{target}")) == 9
    # later use: the cached copy is verified against the recorded checksum, not re-fetched
    put(root, DLRM, b"changed upstream\n")
    assert dl.download("alibaba-dlrm", dest=dest, mirror=url, console=quiet()) == [target]
    assert target.read_bytes() == data
    # a cached copy that changed is an error and is removed
    target.write_bytes(data + b"tampered\n")
    with pytest.raises(TraceError, match="sha256 mismatch.*recorded on first download"):
        dl.download("alibaba-dlrm", dest=dest, mirror=url, console=quiet())
    assert not target.exists()
    # fetched again, the upstream file no longer matches what was recorded
    with pytest.raises(TraceError, match="sha256 mismatch"):
        dl.download("alibaba-dlrm", dest=dest, mirror=url, console=quiet())
    assert not target.exists() and not list(dest.glob("*.part"))


def test_pinned_checksum_mismatch(tmp_path, server):
    root, url = server
    put(root, OPENB + "openb_pod_list_default.csv", (FIX / "openb_pods_small.csv").read_bytes())
    put(root, OPENB + "openb_node_list_gpu_node.csv", b"sn,cpu_milli,memory_mib,gpu,model\n")
    dest = tmp_path / "openb"
    with pytest.raises(TraceError, match=r"openb_pod_list_default.csv: sha256 mismatch: "
                       r"expected 1ee7ed79\w+ \(pinned\)"):
        dl.download("alibaba-openb", dest=dest, mirror=url, console=quiet())
    assert not (dest / "openb_pod_list_default.csv").exists()
    assert not list(dest.glob("*.part"))


def test_itp_archive_members(tmp_path, server):
    root, url = server
    c04 = (FIX / "itp_small.csv").read_bytes()
    put(root, ITP, tarball({"raw-traces/cluster04.csv": c04,
                            "raw-traces/._cluster04.csv": b"mac resource fork",
                            "raw-traces/README.md": b"not a trace",
                            "raw-traces/cluster07.csv": c04[:200]}))
    dest = tmp_path / "itp"
    con = quiet()
    paths = dl.download("itp", dest=dest, mirror=url, console=con)
    assert paths == [dest / "cluster04.csv", dest / "cluster07.csv"]
    assert (dest / "cluster04.csv").read_bytes() == c04
    text = con.export_text()
    assert f"itp:{dest / 'cluster04.csv'}" in text and "._cluster04" not in text
    book = json.loads((dest / dl.CHECKSUMS).read_text())
    assert set(book) == {"raw-traces.tar.gz", "cluster04.csv", "cluster07.csv"}
    assert len(load_workload(f"itp:{paths[0]}")) == 8
    # a member whose checksum is pinned must match it
    (dest / "raw-traces.tar.gz").unlink()
    (dest / dl.CHECKSUMS).unlink()
    put(root, ITP, tarball({"raw-traces/cluster01.csv": c04}))
    with pytest.raises(TraceError, match=r"cluster01.csv: sha256 mismatch.*pinned"):
        dl.download("itp", dest=dest, mirror=url, console=quiet())
    assert not (dest / "cluster01.csv").exists()


def test_bad_archive(tmp_path, server):
    root, url = server
    put(root, ITP, b"this is not a tarball")
    with pytest.raises(TraceError, match="cannot unpack archive"):
        dl.download("itp", dest=tmp_path / "itp", mirror=url, console=quiet())


def test_not_found(tmp_path, server):
    _, url = server
    with pytest.raises(TraceError, match="download failed: HTTP Error 404"):
        dl.download("alibaba-dlrm", dest=tmp_path / "d", mirror=url, console=quiet())
    assert not list((tmp_path / "d").glob("*.csv*"))


def test_unknown_name():
    with pytest.raises(ConfigError, match="unknown trace 'nope'"):
        dl.download("nope")


def test_env_mirror_and_cache(tmp_path, server, monkeypatch):
    root, url = server
    put(root, DLRM, (FIX / "dlrm_small.csv").read_bytes())
    monkeypatch.setenv(dl.MIRROR_ENV, url)
    monkeypatch.setenv(dl.CACHE_ENV, str(tmp_path / "cache"))
    paths = dl.download("alibaba-dlrm", console=quiet())
    assert paths == [tmp_path / "cache" / "alibaba-dlrm" / "disaggregated_DLRM_trace.csv"]


def test_default_url():
    remote = dl.CATALOG["alibaba-openb"].files[0]
    assert dl.url_of(remote, None) == ("https://github.com/alibaba/clusterdata/raw/HEAD/"
                                       "cluster-trace-gpu-v2023/csv/openb_pod_list_default.csv")
    assert dl.url_of(remote, "http://m/") == f"http://m/{OPENB}openb_pod_list_default.csv"


def test_cli_download(tmp_path, server):
    root, url = server
    put(root, DLRM, (FIX / "dlrm_small.csv").read_bytes())
    dest = tmp_path / "d"
    r = CliRunner().invoke(app, ["download", "alibaba-dlrm", "--dest", str(dest),
                                 "--mirror", url])
    assert r.exit_code == 0, r.output
    assert f"alibaba-dlrm:{dest / 'disaggregated_DLRM_trace.csv'}" in r.stdout
    (dest / "disaggregated_DLRM_trace.csv").write_text("tampered")
    r = CliRunner().invoke(app, ["download", "alibaba-dlrm", "--dest", str(dest),
                                 "--mirror", url])
    assert r.exit_code == 2 and "Traceback" not in r.output
    assert r.stderr.startswith("error: ") and "sha256 mismatch" in r.stderr


# ---------------------------------------------------------------- real files (pinned)

def _shared(rel: str) -> Path:
    p = SHARED / rel
    if not p.exists():
        pytest.skip(f"real trace {rel} not available")
    return p


def test_real_openb_pinned(tmp_path, server):
    root, url = server
    for name in ("openb_pod_list_default.csv", "openb_node_list_gpu_node.csv"):
        link = root / OPENB / name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(_shared(f"alibaba-openb/{name}"))
    dest = tmp_path / "openb"
    con = quiet()
    paths = dl.download("alibaba-openb", dest=dest, mirror=url, console=con)
    assert [p.name for p in paths] == ["openb_pod_list_default.csv",
                                       "openb_node_list_gpu_node.csv"]
    text = con.export_text()
    assert f"alibaba-openb:{paths[0]}" in text and f"alibaba-openb:{paths[1]}" not in text


def test_real_itp_pinned(tmp_path, server):
    root, url = server
    names = sorted(dl.CATALOG["itp"].members)
    put(root, ITP, tarball({f"raw-traces/{n}": _shared(f"itp/{n}").read_bytes() for n in names}))
    paths = dl.download("itp", dest=tmp_path / "itp", mirror=url, console=quiet())
    assert [p.name for p in paths] == names
    book = json.loads((tmp_path / "itp" / dl.CHECKSUMS).read_text())
    assert all(book[n] == dl.CATALOG["itp"].members[n] for n in names)
