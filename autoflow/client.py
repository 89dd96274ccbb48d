"""A Python client for ``autoflow serve``.

>>> from autoflow.client import Client
>>> c = Client("http://127.0.0.1:8080", token)
>>> c.add_cluster("lab", [{"name": "n0", "gpu_type": "a100", "gpus": 8}])
>>> job = c.submit(num_gpus=2, duration_estimate_s=3600)
>>> c.job(job["job_id"])["state"]
'running'
>>> c.why(job["job_id"])["reasons"]
>>> c.submit(num_gpus=1, workflow_id="nightly-7", depends_on=[job["job_id"]])
>>> run = c.submit_workflow({"name": "recsys", "stages": [...]}, run="recsys-7")
>>> c.workflow(run["workflow_id"])["state"]
'pending'
>>> c.cancel_workflow(run["workflow_id"], running=True)["cancelled"]

An executor long-polls ``decisions(after=cursor, wait=30)`` and reports ``report(job_id,
"finished")``. Every error the server answers raises :class:`ClientError` with its status
and message.
"""

from __future__ import annotations

import os
from typing import Self
from urllib.parse import quote

import httpx

DEFAULT_URL = "http://127.0.0.1:8080"


class ClientError(Exception):
    def __init__(self, status: int, detail, method: str, path: str):
        self.status = status
        self.detail = detail
        code = f"{status} " if status else ""  # 0: no answer at all
        super().__init__(f"{method} {path}: {code}{_message(detail)}")


def _message(detail) -> str:
    if isinstance(detail, list):  # validation errors: "field: message"
        return "; ".join(f"{'.'.join(str(x) for x in d.get('loc', [])[1:])}: {d.get('msg')}"
                         if isinstance(d, dict) else str(d) for d in detail)
    return str(detail)


class Client:
    def __init__(self, url: str | None = None, token: str | None = None,
                 timeout: float = 30.0):
        self.url = (url or os.environ.get("AUTOFLOW_URL") or DEFAULT_URL).rstrip("/")
        token = token or os.environ.get("AUTOFLOW_TOKEN")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _call(self, method: str, path: str, **kw):
        try:
            r = self.http.request(method, path, **kw)
        except httpx.HTTPError as e:
            raise ClientError(0, f"cannot reach {self.url}: {e}", method, path) from e
        if r.status_code >= 400:
            try:
                detail = r.json().get("detail", r.text)
            except ValueError:
                detail = r.text
            raise ClientError(r.status_code, detail, method, path)
        return r.json()

    # -- service -------------------------------------------------------------------------
    def health(self) -> dict:
        return self._call("GET", "/healthz")

    def add_cluster(self, name: str, nodes: list[dict]) -> dict:
        return self._call("POST", "/v1/clusters", json={"name": name, "nodes": nodes})

    def nodes(self) -> list[dict]:
        return self._call("GET", "/v1/nodes")["nodes"]

    def node(self, name: str, action: str) -> dict:
        """``action``: heartbeat, cordon, uncordon, drain or failure."""
        return self._call("POST", f"/v1/nodes/{name}/{action}")

    # -- jobs -----------------------------------------------------------------------------
    def submit(self, **job) -> dict:
        return self._call("POST", "/v1/jobs", json=job)

    def jobs(self, state: list[str] | str | None = None, user: str | None = None,
             limit: int = 100, after: int = 0) -> dict:
        params: dict = {"limit": limit, "after": after}
        if state:
            params["state"] = [state] if isinstance(state, str) else list(state)
        if user is not None:
            params["user"] = user
        return self._call("GET", "/v1/jobs", params=params)

    def all_jobs(self, **filters) -> list[dict]:
        out, after = [], 0
        while True:
            page = self.jobs(after=after, limit=1000, **filters)
            out += page["jobs"]
            if page["next"] is None:
                return out
            after = page["next"]

    def job(self, job_id: str) -> dict:
        return self._call("GET", f"/v1/jobs/{job_id}")

    def cancel(self, job_id: str) -> dict:
        return self._call("DELETE", f"/v1/jobs/{job_id}")

    def why(self, job_id: str) -> dict:
        return self._call("GET", f"/v1/jobs/{job_id}/why")

    # -- workflows ----------------------------------------------------------------------------
    def submit_workflow(self, template: dict, run: str | None = None) -> dict:
        """One run of a workflow template (the mapping a workflow file holds, as
        ``autoflow.workflow_file`` reads it); ``run``: its id (default ``NAME-<12 hex>``).
        Returns ``{"workflow_id", "jobs"}``."""
        body: dict = {"template": template}
        if run is not None:
            body["run"] = run
        return self._call("POST", "/v1/workflows", json=body)

    def workflow(self, workflow_id: str) -> dict:
        """The workflow's state and times, its stages and their jobs."""
        return self._call("GET", f"/v1/workflows/{quote(workflow_id, safe='')}")

    def cancel_workflow(self, workflow_id: str, running: bool = False) -> dict:
        """Cancels its pending jobs (held or waiting); ``running``: its running jobs too.
        Returns the workflow as ``workflow`` does, plus ``cancelled`` (the job ids)."""
        return self._call("DELETE", f"/v1/workflows/{quote(workflow_id, safe='')}",
                          params={"running": "true" if running else "false"})

    def simulate(self, jobs: list[dict]) -> dict:
        return self._call("POST", "/v1/simulate", json={"jobs": jobs})

    # -- executors ----------------------------------------------------------------------------
    def decisions(self, after: int = 0, wait: float = 0.0, limit: int = 500) -> dict:
        return self._call("GET", "/v1/decisions",
                          params={"after": after, "wait": wait, "limit": limit},
                          timeout=self.http.timeout.read + wait if self.http.timeout.read
                          else None)

    def report(self, job_id: str, event: str, time: float | None = None,
               message: str | None = None) -> dict:
        body: dict = {"event": event}
        if time is not None:
            body["time"] = time
        if message:
            body["message"] = message
        return self._call("POST", f"/v1/jobs/{job_id}/events", json=body)

    def report_many(self, events: list[dict]) -> list[dict]:
        """Several events in one request: ``[{"job_id", "event", "time"?, "message"?}]``;
        one result each (a refused one has ``status`` and ``detail``)."""
        return self._call("POST", "/v1/events", json={"events": events})["results"]

    # -- policy ------------------------------------------------------------------------------
    def policy(self) -> dict:
        return self._call("GET", "/v1/policy")

    def set_policy(self, policy: str) -> dict:
        return self._call("PUT", "/v1/policy", json={"policy": policy})
