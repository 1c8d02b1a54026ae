// The admin page: polls the admin API once a second and renders what it answers. Everything
// comes from the page's own origin; the session cookie authenticates, and every request that
// changes something carries X-Swapvisor-Csrf, which the API requires of cookie-authenticated
// writes.
"use strict";

const API = "/api/v1/admin";
const POLL_MS = 1000;

const state = {
  polling: false,
  timer: null,
  lastScrape: null, // {at, samples} of the previous /metrics scrape
  configs: new Map(), // generation -> pretty JSON, as this page saw them
  liveConfig: null, // the live config document
  rendered: {}, // section -> the key it was last rendered from
};

class Unauthorized extends Error {}

const $ = (id) => document.getElementById(id);

// An element with attributes (data-*, class, ...) and children (nodes or text).
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value !== undefined && value !== null) node.setAttribute(name, String(value));
  }
  for (const child of children) {
    if (child === undefined || child === null) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

async function api(method, path, body) {
  const headers = {};
  if (method !== "GET") headers["X-Swapvisor-Csrf"] = "1";
  const response = await fetch(path, {
    method,
    headers,
    body,
    credentials: "same-origin",
    cache: "no-store",
  });
  if (response.status === 401) throw new Unauthorized();
  const text = await response.text();
  let data = text;
  try {
    data = JSON.parse(text);
  } catch (_) {
    // Not JSON (the metrics text): kept as text.
  }
  return { status: response.status, etag: response.headers.get("ETag"), data };
}

// ---- login ---------------------------------------------------------------------------------

function showLogin(message) {
  stopPolling();
  for (const id of ["tree", "timeline", "pipelines", "listeners", "config", "config-diff", "action-result"]) {
    $(id).replaceChildren();
  }
  for (const id of ["config-generation", "diff-generations", "poll-state"]) $(id).textContent = "";
  state.rendered = {};
  state.configs.clear();
  state.lastScrape = null;
  $("app").hidden = true;
  $("logout").hidden = true;
  $("login").hidden = false;
  document.body.dataset.view = "login";
  const error = $("login-error");
  error.hidden = !message;
  error.textContent = message || "";
}

function showApp() {
  $("login").hidden = true;
  $("app").hidden = false;
  $("logout").hidden = false;
  document.body.dataset.view = "app";
  startPolling();
}

async function login(event) {
  event.preventDefault();
  const token = $("token").value;
  try {
    const response = await fetch(API + "/login", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ token }),
      credentials: "same-origin",
    });
    if (response.status !== 200) {
      showLogin("Wrong token.");
      return;
    }
    $("token").value = "";
    showApp();
  } catch (error) {
    showLogin("The admin API did not answer: " + error.message);
  }
}

async function logout() {
  try {
    await api("POST", API + "/logout");
  } catch (_) {
    // Logged out either way.
  }
  showLogin();
  // Without a token set, the data is shown again at once.
  probe();
}

// ---- polling -------------------------------------------------------------------------------

function startPolling() {
  if (state.polling) return;
  state.polling = true;
  poll();
}

function stopPolling() {
  state.polling = false;
  clearTimeout(state.timer);
}

async function poll() {
  clearTimeout(state.timer);
  try {
    const [status, config, previous, metrics] = await Promise.all([
      api("GET", API + "/engine/status"),
      api("GET", API + "/engine/config"),
      api("GET", API + "/engine/config/previous"),
      fetch("/metrics", { cache: "no-store" }).then((r) => r.text()),
    ]);
    if (!state.polling) return;
    if (status.status !== 200) throw new Error("status answered " + status.status);
    const plugins = status.data.plugins || [];
    const details = await Promise.all(
      plugins.map((p) => api("GET", API + "/plugins/" + encodeURIComponent(p.name)))
    );
    if (!state.polling) return;
    if (config.status === 200) state.liveConfig = config.data;
    renderTree(status.data);
    renderTimeline(status.data, details.filter((d) => d.status === 200).map((d) => d.data));
    renderMetrics(metrics);
    renderConfig(config, previous);
    $("poll-state").textContent = "updated " + new Date().toLocaleTimeString();
  } catch (error) {
    if (error instanceof Unauthorized) {
      showLogin();
      return;
    }
    $("poll-state").textContent = "error: " + error.message;
  }
  if (state.polling) state.timer = setTimeout(poll, POLL_MS);
}

// Re-renders a section only when what it shows changed, so buttons and selections survive.
function changed(section, value) {
  const key = JSON.stringify(value);
  if (state.rendered[section] === key) return false;
  state.rendered[section] = key;
  return true;
}

// ---- supervision tree ----------------------------------------------------------------------

function field(name, value) {
  return el("span", { class: "field", "data-field": name }, name + " ", el("b", {}, value ?? "–"), " ");
}

function pluginEntry(name) {
  const plugins = (state.liveConfig && state.liveConfig.plugins) || [];
  return plugins.find((p) => p && p.name === name);
}

// The restart group that governs a plugin's crashes, as its status reports it.
function groupOf(plugin) {
  const group = plugin.restartGroup;
  return group ? group.strategy + ": " + group.members.join(", ") : "none";
}

function renderTree(status) {
  if (!changed("tree", [status, state.liveConfig && state.liveConfig.plugins])) return;
  const modules = (status.modules || []).map((m) =>
    el("li", { "data-module": m.name },
      el("span", { class: "node" }, "module " + m.name), " ",
      field("type", m.type), field("state", m.state), m.listening ? field("listening", m.listening) : null)
  );
  const slot = el("li", { "data-node": "slot", "data-serving": status.serving },
    el("span", { class: "node" }, "Slot"), " ",
    field("serving", String(status.serving)), field("engines", status.runningEngines),
    field("listeners", status.listeners), field("retired", status.retirements && status.retirements.retired),
    el("ul", {}, ...modules));
  const active = el("li", { "data-node": "active", "data-generation": status.generation },
    el("span", { class: "node" }, "Active"), " ",
    field("generation", status.generation), field("config", status.configHash),
    field("mode", status.mode), field("in flight", status.inFlight),
    el("ul", {}, slot));
  const plugins = (status.plugins || []).map((p) => {
    const entry = pluginEntry(p.name);
    const reload = el("button", { type: "button", "data-reload-plugin": p.name }, "Reload");
    reload.disabled = !entry;
    reload.addEventListener("click", () => act("POST", API + "/plugins/" + encodeURIComponent(p.name) + "/reload",
      JSON.stringify(pluginEntry(p.name))));
    const restart = entry && entry.restart;
    return el("li", { "data-plugin": p.name, "data-state": p.state, "data-restarts": p.restarts },
      el("span", { class: "node" }, "plugin " + p.name), " ",
      field("kind", p.kind), el("span", { class: "state-" + p.state }, field("state", p.state)),
      field("restarts", p.restarts), field("generation", p.generation),
      field("group", groupOf(p)),
      restart && restart.policy ? field("policy", restart.policy) : null,
      field("version", p.version), p.code ? field("code", p.code.slice(0, 12)) : null,
      p.pid ? field("pid", p.pid) : null,
      // An error it has recovered from is shown as history, dated, not as the present.
      p.lastError ? el("span", { class: p.lastErrorPast ? "muted" : "error", "data-field": "lastError",
        "data-past": String(!!p.lastErrorPast) },
        (p.lastErrorPast ? "last error (recovered, " + (p.lastErrorAt || "") + "): " : "error: ") + p.lastError, " ") : null,
      reload);
  });
  const supervisor = el("li", { "data-node": "supervisor", "data-state": status.state },
    el("span", { class: "node" }, "Supervisor"), " ",
    el("span", { class: "state-" + status.state }, field("state", status.state)),
    field("queued", status.queuedReloads), field("children", status.childActors),
    field("escalations", status.escalations), field("restore attempts", status.restoreAttempts),
    el("ul", {}, active,
      el("li", { "data-node": "plugins" }, el("span", { class: "node" }, "Plugins"),
        el("ul", {}, ...plugins))));
  $("tree").replaceChildren(supervisor);
}

// ---- timeline ------------------------------------------------------------------------------

function renderTimeline(status, plugins) {
  const entries = (status.history || []).map((r) => ({
    kind: "engine", name: "engine", at: r.startedAtMs, outcome: r.outcome, generation: r.generation,
    duration: r.durationsMs && r.durationsMs.total, origin: r.origin, error: r.error,
  }));
  for (const plugin of plugins) {
    for (const r of plugin.history || []) {
      entries.push({
        kind: "plugin", name: plugin.name, at: Date.parse(r.at), outcome: r.outcome,
        generation: r.generation, duration: r.durationMs, origin: r.origin, error: r.error,
      });
    }
  }
  // Newest first; on the same millisecond, the higher generation first.
  entries.sort((a, b) => (b.at - a.at) || (b.generation - a.generation));
  if (!changed("timeline", entries)) return;
  $("timeline").replaceChildren(...entries.map((e) =>
    el("tr", { "data-kind": e.kind, "data-name": e.name, "data-generation": e.generation, "data-outcome": e.outcome },
      el("td", {}, Number.isFinite(e.at) ? new Date(e.at).toLocaleTimeString() : "–"),
      el("td", {}, e.kind === "engine" ? "engine" : "plugin " + e.name),
      el("td", { class: "outcome-" + e.outcome }, e.outcome),
      el("td", {}, e.generation),
      el("td", {}, e.duration === undefined || e.duration === null ? "–" : Number(e.duration).toFixed(1) + " ms"),
      el("td", {}, e.origin),
      el("td", { class: "error" }, e.error || ""))));
}

// ---- metrics -------------------------------------------------------------------------------

// Prometheus text format: `name{label="value",...} number`.
function parseMetrics(text) {
  const samples = [];
  for (const line of String(text).split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const m = line.match(/^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)/);
    if (!m) continue;
    const labels = {};
    for (const l of (m[2] || "").matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) {
      labels[l[1]] = l[2].replace(/\\(.)/g, (_, c) => (c === "n" ? "\n" : c));
    }
    samples.push({ name: m[1], labels, value: Number(m[3]) });
  }
  return samples;
}

// Per pipeline: requests, 5xx answers and the duration histogram's cumulative buckets.
function pipelineCounts(samples) {
  const pipelines = new Map();
  const of = (name) => {
    if (!pipelines.has(name)) pipelines.set(name, { total: 0, errors: 0, buckets: new Map() });
    return pipelines.get(name);
  };
  for (const s of samples) {
    if (s.name === "swapvisor_http_requests_total" && s.labels.pipeline !== undefined) {
      const p = of(s.labels.pipeline);
      p.total += s.value;
      if (s.labels.status_class === "5xx") p.errors += s.value;
    } else if (s.name === "swapvisor_http_request_duration_seconds_bucket" && s.labels.pipeline !== undefined) {
      const le = s.labels.le === "+Inf" ? Infinity : Number(s.labels.le);
      of(s.labels.pipeline).buckets.set(le, s.value);
    }
  }
  return pipelines;
}

// The 99th percentile of the requests between two scrapes, from their bucket deltas,
// interpolated linearly within its bucket; null when no request was timed.
function p99(now, before) {
  const bounds = [...now.keys()].sort((a, b) => a - b);
  const delta = (le) => now.get(le) - ((before && before.get(le)) || 0);
  const count = delta(Infinity);
  if (!(count > 0)) return null;
  const target = 0.99 * count;
  let lower = 0;
  let below = 0;
  for (const le of bounds) {
    const cumulative = delta(le);
    if (cumulative >= target) {
      if (le === Infinity) return { seconds: lower, over: true };
      const share = cumulative > below ? (target - below) / (cumulative - below) : 1;
      return { seconds: lower + (le - lower) * share, over: false };
    }
    lower = le;
    below = cumulative;
  }
  return null;
}

function renderMetrics(text) {
  const samples = parseMetrics(text);
  const at = performance.now();
  const now = pipelineCounts(samples);
  const previous = state.lastScrape;
  state.lastScrape = { at, pipelines: now };
  const rows = [...now.entries()].sort(([a], [b]) => a.localeCompare(b)).map(([name, p]) => {
    const before = previous && previous.pipelines.get(name);
    const seconds = previous ? (at - previous.at) / 1000 : 0;
    const requests = before ? p.total - before.total : NaN;
    const fresh = before && requests >= 0 && seconds > 0;
    const rate = fresh ? (requests / seconds).toFixed(1) : "–";
    const errors = fresh && requests > 0 ? ((100 * (p.errors - before.errors)) / requests).toFixed(1) + " %" : "–";
    const q = fresh ? p99(p.buckets, before.buckets) : null;
    const tail = q ? (q.over ? "> " : "") + (q.seconds * 1000).toFixed(1) + " ms" : "–";
    return el("tr", { "data-pipeline": name },
      el("td", {}, name), el("td", { "data-field": "rate" }, rate),
      el("td", { "data-field": "errors" }, errors), el("td", { "data-field": "p99" }, tail),
      el("td", { "data-field": "total" }, p.total));
  });
  $("pipelines").replaceChildren(...rows);

  const listeners = new Map();
  for (const s of samples) {
    if (s.name !== "swapvisor_listener_connections" && s.name !== "swapvisor_listener_max_connections") continue;
    const key = s.labels.listener + " " + s.labels.kind;
    if (!listeners.has(key)) listeners.set(key, { listener: s.labels.listener, kind: s.labels.kind });
    listeners.get(key)[s.name === "swapvisor_listener_connections" ? "open" : "max"] = s.value;
  }
  $("listeners").replaceChildren(...[...listeners.values()].map((l) =>
    el("tr", { "data-listener": l.listener, "data-kind": l.kind },
      el("td", {}, l.listener), el("td", {}, l.kind),
      el("td", { "data-field": "connections" }, l.open ?? "–"),
      el("td", { "data-field": "max" }, l.max ?? "–"))));
}

// ---- config and its diff -------------------------------------------------------------------

// A line diff by longest common subsequence: [op, line] with op " ", "+" or "-".
function diffLines(before, after) {
  const a = before.split("\n");
  const b = after.split("\n");
  if (a.length * b.length > 4000000) {
    return [...a.map((l) => ["-", l]), ...b.map((l) => ["+", l])];
  }
  const lcs = Array.from({ length: a.length + 1 }, () => new Uint32Array(b.length + 1));
  for (let i = a.length - 1; i >= 0; i--) {
    for (let j = b.length - 1; j >= 0; j--) {
      lcs[i][j] = a[i] === b[j] ? lcs[i + 1][j + 1] + 1 : Math.max(lcs[i + 1][j], lcs[i][j + 1]);
    }
  }
  const out = [];
  let i = 0;
  let j = 0;
  while (i < a.length && j < b.length) {
    if (a[i] === b[j]) {
      out.push([" ", a[i++]]);
      j++;
    } else if (lcs[i + 1][j] >= lcs[i][j + 1]) {
      out.push(["-", a[i++]]);
    } else {
      out.push(["+", b[j++]]);
    }
  }
  while (i < a.length) out.push(["-", a[i++]]);
  while (j < b.length) out.push(["+", b[j++]]);
  return out;
}

function renderConfig(config, previous) {
  if (config.status !== 200) {
    $("config").textContent = "no engine is serving";
    return;
  }
  const generationOf = (answer) => Number(String(answer.etag || "").replace(/\D/g, ""));
  const generation = generationOf(config);
  const text = JSON.stringify(config.data, null, 2);
  state.configs.set(generation, text);
  // The runtime keeps the previous generation's config too.
  if (previous.status === 200) {
    state.configs.set(generationOf(previous), JSON.stringify(previous.data, null, 2));
  }
  if (!changed("config", [generation, text, previous.etag])) return;
  $("config-generation").textContent = "generation " + generation;
  $("config").textContent = text;
  const seen = [...state.configs.keys()].filter((g) => g < generation).sort((a, b) => b - a);
  const diff = $("config-diff");
  if (seen.length === 0) {
    $("diff-generations").textContent = "";
    diff.replaceChildren("no earlier generation: none has activated since the first");
    return;
  }
  $("diff-generations").textContent = seen[0] + " → " + generation;
  diff.setAttribute("data-previous-generation", seen[0]);
  const lines = withContext(diffLines(state.configs.get(seen[0]), text), 3);
  diff.replaceChildren(...lines.map(([op, line]) =>
    el("div", { class: op === "+" ? "diff-add" : op === "-" ? "diff-del" : op === "…" ? "muted" : "" },
      op === "…" ? line : op + " " + line)));
}

// The changed lines with `context` unchanged ones around them; longer unchanged runs are
// folded into one "…" line.
function withContext(lines, context) {
  const near = lines.map(() => false);
  lines.forEach(([op], i) => {
    if (op === " ") return;
    for (let j = Math.max(0, i - context); j <= Math.min(lines.length - 1, i + context); j++) near[j] = true;
  });
  const out = [];
  let folded = 0;
  lines.forEach((line, i) => {
    if (near[i]) {
      if (folded) out.push(["…", "… " + folded + " unchanged lines"]);
      folded = 0;
      out.push(line);
    } else {
      folded++;
    }
  });
  if (folded) out.push(["…", "… " + folded + " unchanged lines"]);
  if (!lines.some(([op]) => op !== " ")) return [["…", "no change"]];
  return out;
}

// ---- actions -------------------------------------------------------------------------------

async function act(method, path, body) {
  const result = $("action-result");
  result.removeAttribute("data-status");
  result.textContent = method + " " + path + " …";
  try {
    const answer = await api(method, path, body);
    result.setAttribute("data-status", answer.data && answer.data.status);
    result.textContent = answer.status + " " + JSON.stringify(answer.data, null, 2);
  } catch (error) {
    if (error instanceof Unauthorized) {
      showLogin();
      return;
    }
    result.textContent = "failed: " + error.message;
  }
  if (state.polling) poll();
}

// ---- start ---------------------------------------------------------------------------------

// Shows the data when the API answers (a session, or no token set), else the login.
async function probe() {
  try {
    await api("GET", API + "/engine/status");
    showApp();
  } catch (error) {
    showLogin(error instanceof Unauthorized ? "" : "The admin API did not answer: " + error.message);
  }
}

function start() {
  $("login-form").addEventListener("submit", login);
  $("logout").addEventListener("click", logout);
  $("reload-file").addEventListener("click", () => act("POST", API + "/engine/reload", ""));
  $("try-activate").addEventListener("click", () => act("POST", API + "/engine/try-activate", $("yaml").value));
  $("reload-yaml").addEventListener("click", () => act("POST", API + "/engine/reload", $("yaml").value));
  probe();
}

document.addEventListener("DOMContentLoaded", start);
