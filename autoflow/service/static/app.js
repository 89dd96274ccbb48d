// autoflow dashboard: reads the API with a bearer token kept in sessionStorage.
// No build step, no dependencies. Every value from the API goes through textContent.
"use strict";

const KEY = "autoflow-token";
const REFRESH_MS = Number(new URLSearchParams(location.search).get("refresh") || 3) * 1000;
const ETA_LIMIT = 3;
const WHY_LIMIT = 20; // pending reasons asked for the head of the queue
let timer = null;

const $ = (id) => document.getElementById(id);

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v;
    else if (k === "style") e.style.cssText = v;
    else e.setAttribute(k, v);
  }
  for (const c of children) {
    if (c === null || c === undefined) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

class Unauthorized extends Error {}

async function api(path) {
  const r = await fetch(path, {
    headers: { Authorization: "Bearer " + sessionStorage.getItem(KEY) },
  });
  if (r.status === 401 || r.status === 403) {
    let detail = "HTTP " + r.status;
    try { detail = (await r.json()).detail; } catch (e) { /* not JSON */ }
    throw new Unauthorized(detail);
  }
  if (!r.ok) {
    const err = new Error(path + ": HTTP " + r.status);
    err.status = r.status;
    throw err;
  }
  return r.json();
}

function fmtSeconds(s) {
  if (s === null || s === undefined) return "—";
  if (s < 120) return s.toFixed(0) + " s";
  if (s < 7200) return (s / 60).toFixed(0) + " min";
  if (s < 172800) return (s / 3600).toFixed(1) + " h";
  return (s / 86400).toFixed(1) + " d";
}

function fmtGpus(x) {
  return Number.isInteger(x) ? String(x) : x.toFixed(2);
}

function showLogin(message) {
  clearTimeout(timer);
  $("main").hidden = true;
  $("logout").hidden = true;
  $("login").hidden = false;
  $("login-error").textContent = message || "";
  $("token").focus();
}

function renderPolicy(p) {
  const box = $("policy");
  box.replaceChildren("policy ", el("b", { id: "policy-name" }, p.policy));
  if (p.label && p.label !== p.policy) box.append(" (" + p.label + ")");
  if (p.model_sha256) box.append(el("span", { class: "model", title: p.model_sha256 },
    " model " + p.model_sha256.slice(0, 12)));
}

function renderSelfOptimize(so) {
  const box = $("self-optimize");
  if (!so) { box.hidden = true; return; }
  box.hidden = false;
  const c = so.champion || {};
  const parts = [el("h2", {}, "Self-optimizing")];
  parts.push(el("p", { id: "champion" }, "champion ",
    el("b", { title: c.serving || "" }, c.serving ? c.serving.slice(0, 12) : "none"),
    c.event ? " — " + c.event + ": " : "", el("span", { id: "champion-reason" }, c.reason || "")));
  const l = so.loop;
  if (l) {
    parts.push(el("p", { class: "muted" }, `windows of ${l.window_jobs} jobs: ${l.windows} ` +
      `closed, ${l.drifts} drifted, ${l.retrainings} retrained, ${l.promotions} promoted` +
      (l.judging !== null ? ` (judging window ${l.judging})` : "")));
    const rows = (l.recent || []).slice().reverse().map((w) => {
      const perf = w.performance ? "×" + w.performance.ratio.toFixed(3) + " of " + w.performance.best : "";
      const made = w.retrainings || [];
      const won = made.find((e) => e.promoted);
      const what = w.error ? "error: " + w.error
        : won ? "promoted " + (won.name || won.challenger.slice(0, 12)) + ": " + won.reason
        : made.length ? made.map((e) => (e.name || "challenger") + ": " + e.reason).join("; ")
        : (w.note || "");
      return el("tr", {}, el("td", {}, String(w.index)), el("td", {}, String(w.outcomes)),
        el("td", {}, w.drift_detected ? "yes" : ""), el("td", {}, perf), el("td", {}, what));
    });
    parts.push(el("table", { id: "loop-windows" },
      el("thead", {}, el("tr", {}, ...["window", "outcomes", "drift", "champion vs best", "decision"]
        .map((h) => el("th", {}, h)))), el("tbody", {}, ...rows)));
  }
  box.replaceChildren(...parts);
}

function renderSummary(s) {
  const item = (k, v) => el("div", {}, el("div", { class: "k" }, k), el("div", { class: "v" }, v));
  $("summary").replaceChildren(
    item("nodes", s.nodes),
    item("GPUs allocated", fmtGpus(s.gpus_allocated) + " / " + s.gpus),
    item("fragmentation", (100 * s.fragmentation).toFixed(0) + " %"),
    item("pending", s.pending),
    item("running", s.running),
    item("decisions", s.last_decision),
    item("cluster time", fmtSeconds(s.time)),
  );
}

function gpuCells(n) {
  // one cell per GPU: idle GPUs empty; the used capacity spread evenly over the busy ones
  const busy = n.gpus - n.gpus_idle;
  const fill = busy > 0 ? Math.min(1, Math.max(0, n.gpus_used / busy)) : 0;
  const cells = [];
  for (let i = 0; i < n.gpus; i++) {
    const f = i < busy ? fill : 0;
    cells.push(el("div", { class: "gpu", title: "GPU " + i },
      el("span", { style: "width:" + (100 * f).toFixed(1) + "%" })));
  }
  return cells;
}

function renderNodes(nodes) {
  const box = $("nodes");
  if (!nodes.length) {
    box.replaceChildren(el("p", { class: "muted" }, "No cluster registered (POST /v1/clusters)."));
    return;
  }
  box.replaceChildren(...nodes.map((n) => {
    const name = el("div", { class: "name", title: n.gpu_type }, n.name);
    if (n.state !== "up") name.append(el("span", { class: "state " + n.state }, n.state));
    return el("div", { class: "node", "data-node": n.name },
      name,
      el("div", { class: "bar" }, ...gpuCells(n)),
      el("div", { class: "num" }, fmtGpus(n.gpus_used) + "/" + n.gpus + " " + n.gpu_type));
  }));
}

function reasonText(job, why) {
  if (why && Array.isArray(why.reasons) && why.reasons.length) {
    let t = why.reasons.map((r) => r.message || r.code).join("; ");
    if (why.eta_s !== null && why.eta_s !== undefined) t += " (ETA " + fmtSeconds(why.eta_s) + ")";
    return t;
  }
  let t = job.reason || (why && why.state) || "pending";
  if (job.preemptions) t += " (preempted " + job.preemptions + "×)";
  return t;
}

async function renderQueue(queue, total, held) {
  $("queue-count").textContent = "(" + total + " pending" + (held ? ", " + held + " held" : "") + ")";
  const rows = queue.map((j) => {
    const reason = el("td", { class: "reason" }, reasonText(j, null));
    const tr = el("tr", { "data-job": j.job_id },
      el("td", {}, j.held ? "held" : j.position),
      el("td", { class: "job" }, j.job_id),
      el("td", { class: "workflow" }, j.workflow_id || ""),
      el("td", {}, fmtGpus(j.num_gpus * j.gpu_milli / 1000) + (j.gpu_types.length ? " " + j.gpu_types.join("|") : "")),
      el("td", {}, fmtSeconds(j.waited_s)),
      reason);
    return { j, tr, reason };
  });
  const body = $("queue").tBodies[0];
  body.replaceChildren(...rows.map((r) => r.tr));
  if (!rows.length) body.append(el("tr", {}, el("td", { colspan: 6, class: "muted" }, "The queue is empty.")));
  await Promise.all(rows.slice(0, WHY_LIMIT).map(async (r, i) => {
    try {
      // an ETA is a what-if replay: only for the head of the queue; reasons for the rest
      const eta = i < ETA_LIMIT && !r.j.held ? "" : "?eta=false";
      const why = await api("/v1/jobs/" + encodeURIComponent(r.j.job_id) + "/why" + eta);
      r.reason.textContent = reasonText(r.j, why);
    } catch (e) {
      if (e instanceof Unauthorized) throw e;
      // no explanation available (route missing, job ended meanwhile): keep its state
    }
  }));
}

function elapsed(w, now) {
  // running or ended: since its first start; not started yet: how long it has waited
  if (w.start_time === null || w.start_time === undefined) return "waiting " + fmtSeconds(now - w.submit_time);
  const end = w.finish_time === null || w.finish_time === undefined ? now : w.finish_time;
  return fmtSeconds(end - w.start_time);
}

function renderWorkflows(workflows, now) {
  const active = workflows.filter((w) => !["succeeded", "failed", "cancelled"].includes(w.state)).length;
  $("workflows-count").textContent = "(" + active + " active, " + (workflows.length - active) + " ended)";
  const body = $("workflows").tBodies[0];
  body.replaceChildren(...workflows.map((w) => el("tr", { "data-workflow": w.workflow_id },
    el("td", { class: "job" }, w.workflow_id),
    el("td", {}, w.template || ""),
    el("td", { class: "state-" + w.state }, w.state),
    el("td", {}, el("div", { class: "chips" }, ...w.stages.map((s) => el("span", {
      class: "stage stage-" + s.state, "data-stage": s.name,
      title: s.name + ": " + s.state + " (" + s.jobs + " job" + (s.jobs === 1 ? "" : "s") + ")",
    }, s.name + (s.jobs > 1 ? " ×" + s.jobs : ""), el("small", {}, s.state))))),
    el("td", { class: "elapsed" }, elapsed(w, now)))));
  if (!workflows.length) body.append(el("tr", {}, el("td", { colspan: 5, class: "muted" }, "No workflows.")));
}

function renderDecisions(decisions) {
  const body = $("decisions").tBodies[0];
  body.replaceChildren(...decisions.map((d) => el("tr", { "data-seq": d.seq },
    el("td", {}, d.seq),
    el("td", { class: "action-" + d.action }, d.action),
    el("td", { class: "job" }, d.job_id),
    el("td", { class: "where" }, d.nodes.map((n) => n.node + "×" + fmtGpus(n.gpus)).join(", ")),
    el("td", { class: "why" }, d.message || d.reason || ""))));
  if (!decisions.length) body.append(el("tr", {}, el("td", { colspan: 5, class: "muted" }, "No decisions yet.")));
}

async function refresh() {
  clearTimeout(timer);
  try {
    const d = await api("/v1/dashboard");
    $("login").hidden = true;
    $("main").hidden = false;
    $("logout").hidden = false;
    renderPolicy(d.policy);
    renderSelfOptimize(d.self_optimize);
    renderSummary(d.summary);
    renderNodes(d.nodes);
    renderDecisions(d.decisions);
    renderWorkflows(d.workflows || [], d.time);
    await renderQueue(d.queue, d.summary.pending, d.summary.held || 0);
    $("status").textContent = "updated " + new Date().toLocaleTimeString();
    document.body.dataset.loaded = "1";
  } catch (e) {
    if (e instanceof Unauthorized) {
      sessionStorage.removeItem(KEY);
      showLogin(e.message || "The token was refused.");
      return;
    }
    $("status").textContent = "error: " + e.message;
  }
  timer = setTimeout(refresh, REFRESH_MS);
}

$("login-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  sessionStorage.setItem(KEY, $("token").value.trim());
  $("token").value = "";
  refresh();
});

$("logout").addEventListener("click", () => {
  sessionStorage.removeItem(KEY);
  showLogin("");
});

if (sessionStorage.getItem(KEY)) refresh();
else showLogin("");
