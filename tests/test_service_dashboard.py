"""The dashboard in a real browser: ``autoflow serve --executor sim`` on 127.0.0.1 (a real
uvicorn in a subprocess), a cluster and jobs through the API, and Debian's headless
``chromium`` driven by Playwright: the page asks for a token, then renders the nodes with
their GPU occupancy, the queue with each job's pending reason, the recent decisions with
their explanations and the serving policy. A screenshot is kept under ``tests/artifacts/``
(or ``$AUTOFLOW_ARTIFACTS``).

Outside CI the browser test is skipped when chromium or Playwright is missing; in CI
(``CI`` set) it runs (``.ci/run`` installs chromium).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from servicekit import until

httpx = pytest.importorskip("httpx")

CHROMIUM = shutil.which("chromium")
try:
    from playwright.sync_api import expect, sync_playwright
except ImportError:  # pragma: no cover (the dev extra installs it)
    sync_playwright = None

needs_browser = pytest.mark.skipif(
    (CHROMIUM is None or sync_playwright is None) and not os.environ.get("CI"),
    reason="Debian's chromium or Playwright is missing (CI installs both)")

CLUSTER = {"name": "lab", "nodes": [{"name": "node-a", "gpu_type": "a100", "gpus": 4},
                                    {"name": "node-b", "gpu_type": "v100", "gpus": 2}]}
POLICY = "fifo"  # never preempts: the running jobs and the queue hold still
LONG = 10**7  # cluster seconds: at --time-scale 600 no job ends during the test


def artifacts_dir() -> Path:
    d = Path(os.environ.get("AUTOFLOW_ARTIFACTS") or Path(__file__).parent / "artifacts")
    d.mkdir(parents=True, exist_ok=True)
    return d


@contextlib.contextmanager
def dashboard_page(url: str):
    """A page of headless Debian chromium (Playwright) at ``url``, closed after."""
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM,
                                     args=["--no-sandbox", "--disable-dev-shm-usage"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(url)
            yield page
        finally:
            browser.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]




@pytest.fixture
def server(tmp_path):
    db = f"sqlite:///{tmp_path}/dash.db"
    cli = [sys.executable, "-m", "autoflow"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    made = subprocess.run([*cli, "tokens", "create", "--scope", "admin", "--name", "ops",
                           "--db", db], capture_output=True, text=True, env=env, check=True)
    admin = made.stdout.strip().splitlines()[-1]
    made = subprocess.run([*cli, "tokens", "create", "--scope", "reader", "--name", "viewer",
                           "--db", db], capture_output=True, text=True, env=env, check=True)
    reader = made.stdout.strip().splitlines()[-1]
    port = free_port()
    log = open(tmp_path / "serve.log", "w")  # noqa: SIM115 (closed below)
    proc = subprocess.Popen([*cli, "serve", "--db", db, "--port", str(port), "--executor",
                             "sim", "--time-scale", "600", "--policy", POLICY,
                             "--log-level", "warning"],
                            stdout=log, stderr=subprocess.STDOUT, env=env)
    base = f"http://127.0.0.1:{port}"

    def healthy():
        if proc.poll() is not None:
            raise AssertionError(f"autoflow serve exited {proc.returncode}: "
                                 f"{(tmp_path / 'serve.log').read_text()}")
        try:
            return httpx.get(base + "/healthz").status_code == 200
        except httpx.TransportError:
            return False

    try:
        until(healthy, "the server answers /healthz")
        yield base, admin, reader
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def populate(base: str, admin: str) -> dict:
    h = {"Authorization": f"Bearer {admin}"}
    with httpx.Client(base_url=base, headers=h) as c:
        assert c.post("/v1/clusters", json=CLUSTER).status_code == 201
        ids = {}
        for name, spec in (("big", {"num_gpus": 4, "gpu_types": ["a100"]}),
                           ("small", {"num_gpus": 2, "gpu_types": ["v100"]}),
                           ("waits", {"num_gpus": 4}),
                           ("waits-too", {"num_gpus": 2, "user": "carol"})):
            r = c.post("/v1/jobs", json={"job_id": f"job-{name}", "duration_estimate_s": LONG,
                                         "user": "alice", **spec})
            assert r.status_code == 201, r.text
            ids[name] = r.json()["job_id"]
            if name == "small":  # both running before the others arrive
                until(lambda: len(c.get("/v1/dashboard").json()["decisions"]) == 2,
                      "two jobs started (their decisions committed)")
        return ids


def test_page_and_dashboard_route(server):
    base, admin, reader = server
    ids = populate(base, admin)
    page = httpx.get(base + "/")
    assert page.status_code == 200  # the page holds no data: no token needed
    assert page.headers["content-type"].startswith("text/html")
    assert "/static/app.js" in page.text
    for asset in ("/static/app.js", "/static/style.css"):
        assert httpx.get(base + asset).status_code == 200, asset
    assert httpx.get(base + "/v1/dashboard").status_code == 401
    d = httpx.get(base + "/v1/dashboard", headers={"Authorization": f"Bearer {reader}"}).json()
    assert d["policy"]["policy"] == POLICY
    assert [n["name"] for n in d["nodes"]] == ["node-a", "node-b"]
    assert [n["gpus_used"] for n in d["nodes"]] == [4, 2]
    assert [j["job_id"] for j in d["queue"]] == [ids["waits"], ids["waits-too"]]
    assert [j["position"] for j in d["queue"]] == [1, 2]
    assert [j["reason"] for j in d["queue"]] == [
        f"does not fit: needs {n} GPU(s), the best live node of an allowed type has 0 free"
        for n in (4, 2)]
    assert {x["job_id"] for x in d["decisions"]} == {ids["big"], ids["small"]}
    assert all(x["action"] == "start" and x["message"] for x in d["decisions"])
    assert d["summary"]["gpus_allocated"] == 6 and d["summary"]["gpus"] == 6
    assert d["workflows"] == []  # no workflow submitted


@needs_browser
def test_dashboard_in_headless_chromium(server):
    assert CHROMIUM and sync_playwright, "CI must have Debian's chromium and Playwright"
    base, admin, reader = server
    ids = populate(base, admin)
    with dashboard_page(base + "/?refresh=1") as page:
        # no token yet: the page asks for one; a wrong one is refused
        expect(page.locator("#login")).to_be_visible()
        page.fill("#token", "not-a-token")
        page.click("#login-form button[type=submit]")
        expect(page.locator("#login-error")).to_contain_text("invalid or revoked token")
        assert page.evaluate("sessionStorage.getItem('autoflow-token')") is None

        page.fill("#token", reader)
        page.click("#login-form button[type=submit]")
        expect(page.locator("#main")).to_be_visible()
        label = httpx.get(base + "/v1/policy",
                          headers={"Authorization": f"Bearer {reader}"}).json()["label"]
        expect(page.locator("#policy-name")).to_have_text(POLICY)
        expect(page.locator("#policy")).to_contain_text(label)

        # nodes with their GPU occupancy: one cell per GPU, filled where used
        nodes = page.locator("#nodes .node")
        expect(nodes).to_have_count(2)
        expect(nodes.nth(0)).to_contain_text("node-a")
        expect(nodes.nth(0)).to_contain_text("4/4 a100")
        expect(nodes.nth(1)).to_contain_text("2/2 v100")
        expect(nodes.nth(0).locator(".gpu")).to_have_count(4)
        widths = nodes.nth(1).locator(".gpu > span").evaluate_all(
            "els => els.map(e => e.style.width)")
        assert widths == ["100%", "100%"]

        # the queue in policy order, each job with its pending reason
        rows = page.locator("#queue tbody tr[data-job]")
        expect(rows).to_have_count(2)
        expect(rows.nth(0)).to_contain_text(ids["waits"])
        expect(rows.nth(1)).to_contain_text(ids["waits-too"])
        expect(page.locator("#queue-count")).to_have_text("(2 pending)")
        h = {"Authorization": f"Bearer {reader}"}
        for i, name in enumerate(("waits", "waits-too")):
            why = httpx.get(f"{base}/v1/jobs/{ids[name]}/why", headers=h)
            cell = rows.nth(i).locator("td.reason")
            if why.status_code == 200:  # the reason the API gives is the one shown
                expect(cell).to_contain_text(why.json()["reasons"][0]["message"])
            else:  # no explanation route (yet): the dashboard's own one-line reason
                need = 4 if name == "waits" else 2
                expect(cell).to_have_text(f"does not fit: needs {need} GPU(s), the best "
                                          f"live node of an allowed type has 0 free")

        # recent decisions with their explanations, newest first
        dec = page.locator("#decisions tbody tr[data-seq]")
        expect(dec).to_have_count(2)
        expect(dec.nth(0)).to_contain_text(ids["small"])
        expect(dec.nth(0)).to_contain_text("node-b×2")
        expect(dec.nth(1)).to_contain_text(ids["big"])
        expect(dec.nth(1).locator("td.why")).to_contain_text("placed on node-a")
        expect(page.locator("#summary")).to_contain_text("6 / 6")
        expect(page.locator("#self-optimize")).to_be_hidden()  # no --self-optimize
        expect(page.locator("#workflows tbody")).to_have_text("No workflows.")

        # it refreshes: a new job shows up without a reload
        httpx.post(base + "/v1/jobs", headers={"Authorization": f"Bearer {admin}"},
                   json={"job_id": "job-late", "num_gpus": 1, "duration_estimate_s": LONG})
        expect(rows).to_have_count(3)
        expect(page.locator("#queue")).to_contain_text("job-late")
        page.wait_for_function("document.body.dataset.loaded === '1'")
        page.screenshot(path=str(artifacts_dir() / "dashboard.png"), full_page=True)

        # the token lasts the tab's session: a reload needs no new one
        page.reload()
        expect(page.locator("#main")).to_be_visible()
        expect(page.locator("#login")).to_be_hidden()
        page.click("#logout")
        expect(page.locator("#login")).to_be_visible()
        assert page.evaluate("sessionStorage.getItem('autoflow-token')") is None
    assert (artifacts_dir() / "dashboard.png").stat().st_size > 10_000


PIPELINE = {"name": "recsys", "stages": [
    {"name": "prep", "num_gpus": 1, "duration_hint_s": LONG},
    {"name": "train", "num_gpus": 2, "depends_on": ["prep"], "replicas": 2,
     "duration_hint_s": 600},
    {"name": "eval", "num_gpus": 1, "depends_on": ["train"], "duration_hint_s": 60}]}


@needs_browser
def test_workflows_panel_in_headless_chromium(server):
    """A workflow's stages as chips, in order, each with its state: the first one runs,
    the later ones are held for it."""
    assert CHROMIUM and sync_playwright, "CI must have Debian's chromium and Playwright"
    base, admin, reader = server
    h = {"Authorization": f"Bearer {admin}"}
    with httpx.Client(base_url=base, headers=h) as c:
        assert c.post("/v1/clusters", json=CLUSTER).status_code == 201
        r = c.post("/v1/workflows", json={"template": PIPELINE, "run": "nightly-7"})
        assert r.status_code == 201, r.text
        until(lambda: c.get("/v1/workflows/nightly-7").json()["stages"][0]["state"]
              == "running", "the first stage runs")
    with dashboard_page(base + "/?refresh=1") as page:
        page.fill("#token", reader)
        page.click("#login-form button[type=submit]")
        expect(page.locator("#main")).to_be_visible()

        row = page.locator('#workflows tbody tr[data-workflow="nightly-7"]')
        expect(row).to_have_count(1)
        expect(row).to_contain_text("nightly-7")
        expect(row).to_contain_text("recsys")
        expect(row.locator("td.state-running")).to_have_text("running")
        chips = row.locator(".stage")
        expect(chips).to_have_count(3)
        expect(chips.nth(0)).to_have_attribute("data-stage", "prep")
        expect(chips.nth(0)).to_have_class("stage stage-running")
        expect(chips.nth(0)).to_contain_text("prep")
        expect(chips.nth(1)).to_have_attribute("data-stage", "train")
        expect(chips.nth(1)).to_have_class("stage stage-held")
        expect(chips.nth(1)).to_contain_text("train ×2")
        expect(chips.nth(2)).to_have_attribute("data-stage", "eval")
        expect(chips.nth(2)).to_have_class("stage stage-held")
        expect(page.locator("#workflows-count")).to_have_text("(1 active, 0 ended)")
        # the held stages' jobs are in the queue too, with their workflow
        expect(page.locator('#queue tr[data-job="nightly-7-eval"] td.workflow')
               ).to_have_text("nightly-7")
        page.wait_for_function("document.body.dataset.loaded === '1'")
        page.screenshot(path=str(artifacts_dir() / "dashboard-workflows.png"),
                        full_page=True)
    assert (artifacts_dir() / "dashboard-workflows.png").stat().st_size > 10_000


@needs_browser
def test_self_optimize_panel_in_headless_chromium(tmp_path):
    """``--self-optimize``: the dashboard shows the served champion, the registry event
    that made it champion with its reason, and the loop's windows."""
    assert CHROMIUM and sync_playwright, "CI must have Debian's chromium and Playwright"
    from servicekit import Server, make_token

    db = f"sqlite:///{tmp_path}/so.db"
    srv = Server(db, tmp_path / "serve.log", "--executor", "sim", "--self-optimize",
                 "--self-optimize-interval", "0.2", "--self-optimize-window", "50").start()
    try:
        reader = make_token(db, "reader", "viewer")
        h = {"Authorization": f"Bearer {reader}"}
        until(lambda: httpx.get(srv.url + "/v1/loop", headers=h).json()["champion"]["serving"],
              "the shipped model is the champion")
        champ = httpx.get(srv.url + "/v1/loop", headers=h).json()["champion"]
        with dashboard_page(srv.url + "/?refresh=1") as page:
            page.fill("#token", reader)
            page.click("#login-form button[type=submit]")
            panel = page.locator("#self-optimize")
            expect(panel).to_be_visible()
            expect(page.locator("#champion")).to_contain_text(champ["serving"][:12])
            expect(page.locator("#champion")).to_contain_text("promote")
            expect(page.locator("#champion-reason")).to_have_text(champ["reason"])
            expect(panel).to_contain_text("windows of 50 jobs: 0 closed")
            expect(page.locator("#policy")).to_contain_text(champ["serving"][:12])
            page.screenshot(path=str(artifacts_dir() / "dashboard-self-optimize.png"),
                            full_page=True)
    finally:
        srv.stop()
