// hark's page: plain JavaScript, no build step, nothing from the internet.
"use strict";

const $ = (id) => document.getElementById(id);
let csrf = null;
let classes = [];
let thresholds = {};
let lastRecordSaved = 0;
let recordLabelShown = null;

// ---------------------------------------------------------------- requests

async function api(method, url, body, headers) {
  const options = { method, headers: { ...(headers || {}) }, credentials: "same-origin" };
  if (method !== "GET") options.headers["X-CSRF-Token"] = csrf;
  if (body instanceof Blob || body instanceof ArrayBuffer) {
    options.body = body;
  } else if (body !== undefined) {
    options.body = JSON.stringify(body);
    options.headers["Content-Type"] = "application/json";
  }
  const response = await fetch(url, options);
  if (response.status === 401) { location.href = "/login"; throw new Error("log in first"); }
  const data = response.headers.get("Content-Type")?.startsWith("application/json") ? await response.json() : null;
  if (!response.ok) throw new Error((data && data.error) || `${response.status} ${response.statusText}`);
  return data;
}

function banner(text, ok) {
  const b = $("banner");
  b.textContent = text;
  b.className = ok ? "ok" : "";
  b.hidden = !text;
  if (ok) setTimeout(() => { if (b.textContent === text) b.hidden = true; }, 4000);
}

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") node.className = v;
    else if (k === "style") Object.assign(node.style, v);  // CSSOM: allowed by the page's CSP, unlike style=""
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return node;
}

function when(iso) {
  const d = new Date(iso);
  return isNaN(d) ? iso : d.toLocaleString([], { dateStyle: "short", timeStyle: "medium" });
}

// ---------------------------------------------------------------- tabs

const loaders = { live: () => {}, record: loadRecord, review: loadCaptures, model: loadModel };

function showTab() {
  const name = (location.hash || "#live").slice(1);
  const tab = loaders[name] ? name : "live";
  for (const s of document.querySelectorAll("section.tab")) s.hidden = s.id !== tab;
  for (const a of document.querySelectorAll("nav a")) a.classList.toggle("active", a.dataset.tab === tab);
  loaders[tab]();
}

// ---------------------------------------------------------------- live

const spec = { canvas: null, ctx: null, mels: 40 };

function setupSpectrogram(mels) {
  spec.canvas = $("spectrogram");
  spec.mels = mels;
  spec.canvas.height = mels * 3;
  spec.canvas.width = 600;
  spec.ctx = spec.canvas.getContext("2d");
  spec.ctx.fillStyle = "#000";
  spec.ctx.fillRect(0, 0, spec.canvas.width, spec.canvas.height);
}

// viridis-like ramp, the same as the server's pictures
const ANCHORS = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]];
const PALETTE = Array.from({ length: 256 }, (_, i) => {
  const x = (i / 255) * 4, k = Math.min(3, Math.floor(x)), t = x - k;
  return ANCHORS[k].map((a, c) => Math.round(a + (ANCHORS[k + 1][c] - a) * t));
});

function drawColumns(b64) {
  if (!b64 || !spec.ctx) return;
  const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  const n = Math.floor(bytes.length / spec.mels);
  if (!n) return;
  const { canvas, ctx, mels } = spec;
  const w = Math.min(n, canvas.width);
  ctx.drawImage(canvas, -w, 0);
  const img = ctx.createImageData(w, canvas.height);
  const scale = canvas.height / mels;
  for (let col = 0; col < w; col++) {
    const frame = n - w + col;
    for (let y = 0; y < canvas.height; y++) {
      const band = mels - 1 - Math.floor(y / scale);
      const [r, g, b] = PALETTE[bytes[frame * mels + band]];
      const i = (y * w + col) * 4;
      img.data[i] = r; img.data[i + 1] = g; img.data[i + 2] = b; img.data[i + 3] = 255;
    }
  }
  ctx.putImageData(img, canvas.width - w, 0);
}

function setupBars() {
  const bars = $("bars");
  bars.replaceChildren();
  for (const label of classes) {
    const t = thresholds[label] ?? 0.5;
    bars.append(el("div", { class: "bar", "data-label": label },
      el("span", { class: "label" }, label),
      el("div", { class: "track" }, el("div", { class: "fill" }),
        el("div", { class: "threshold", style: { left: `${(t * 100).toFixed(1)}%` }, title: `threshold ${t}` })),
      el("span", { class: "value" }, "0.00")));
  }
}

function showScores(scores) {
  for (const bar of document.querySelectorAll(".bar")) {
    const label = bar.dataset.label;
    const v = scores[label] ?? 0;
    const fill = bar.querySelector(".fill");
    fill.style.width = `${Math.min(100, v * 100).toFixed(1)}%`;
    fill.classList.toggle("over", v >= (thresholds[label] ?? 0.5));
    bar.querySelector(".value").textContent = v.toFixed(2);
  }
}

function addDetections(items, fresh) {
  const list = $("detections");
  for (const d of items) {
    const li = el("li", { class: fresh ? "fresh detection" : "detection" },
      el("span", { class: "label" }, d.label), el("span", {}, d.score.toFixed(3)), el("span", {}, when(d.time)));
    list.prepend(li);
  }
  while (list.children.length > 20) list.lastChild.remove();
}

function showState(s) {
  const state = $("state");
  state.textContent = s.mic_lost ? "microphone lost" : s.state;
  state.className = "chip " + (s.mic_lost ? "bad" : s.state === "recording" ? "rec" : s.state === "muted" ? "" : "ok");
  $("mic").textContent = s.mic_lost ? "mic lost" : "mic ok";
  $("mic").className = "chip " + (s.mic_lost ? "bad" : "ok");
  const broker = $("broker");
  broker.hidden = s.broker === null;
  broker.textContent = s.broker ? "broker connected" : "broker not connected";
  broker.className = "chip " + (s.broker ? "ok" : "bad");
  $("model-name").textContent = `model ${s.model}`;
  const mute = $("mute");
  mute.textContent = s.muted ? "Unmute" : "Mute";
  mute.classList.toggle("on", s.muted);
  mute.dataset.muted = s.muted ? "1" : "0";
  showRecord(s.record);
}

function hello(msg) {
  classes = msg.classes;
  thresholds = msg.thresholds;
  if (spec.mels !== msg.mels || !spec.ctx) setupSpectrogram(msg.mels);
  setupBars();
  $("detections").replaceChildren();
  addDetections(msg.recent, false);
  showState(msg.state);
  fillLabels();
}

let socket = null;
function connect() {
  socket = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`);
  socket.onmessage = (event) => {
    const msg = JSON.parse(event.data);
    if (msg.type === "hello") return hello(msg);
    if (msg.hello) hello(msg.hello);
    drawColumns(msg.spec);
    showScores(msg.scores);
    if (msg.detections) addDetections(msg.detections, true);
    showState(msg.state);
  };
  socket.onclose = () => setTimeout(connect, 2000);
}

// ---------------------------------------------------------------- record

function fillLabels() {
  const list = $("rec-labels");
  list.replaceChildren(...classes.map((c) => el("option", { value: c })));
  if (!$("rec-label").value && classes.length) $("rec-label").value = classes[0];
}

function showRecord(job) {
  const status = $("rec-status");
  const busy = job && ["starting", "countdown", "recording"].includes(job.phase);
  $("rec-start").disabled = $("rec-background").disabled = busy;
  $("rec-cancel").hidden = !busy;
  if (!job) { status.textContent = ""; return; }
  const which = `${job.label} ${Math.min(job.index + 1, job.count)}/${job.count}`;
  status.className = "big" + (job.phase === "recording" ? " recording" : "");
  status.textContent = {
    starting: `${which}: starting…`,
    countdown: `${which}: get ready… ${Math.ceil(job.left_s)}`,
    recording: `● ${which}: recording`,
    done: `${job.saved.length} clip(s) of ${job.label} saved`,
    cancelled: `cancelled after ${job.saved.length} clip(s)`,
    failed: `stopped: ${job.error}`,
  }[job.phase] || job.phase;
  if (job.saved.length !== lastRecordSaved) {
    lastRecordSaved = job.saved.length;
    if (!$("record").hidden) loadClips(job.label === "background" ? "_background_noise_" : job.label);
  }
}

async function startRecording(background) {
  const body = { count: Number($("rec-count").value) || 1 };
  if (background) {
    body.background = true;
    body.count = 1;
  } else {
    body.label = $("rec-label").value.trim();
    body.seconds = Number($("rec-seconds").value) || undefined;
  }
  try {
    lastRecordSaved = 0;
    recordLabelShown = background ? "_background_noise_" : body.label;
    await loadClips(recordLabelShown);
    showRecord(await api("POST", "/api/record", body));
    banner("");
  } catch (err) { banner(err.message); }
}

function clipCard(root, folder, name, extra, actions) {
  const base = `/files/${root}/${encodeURIComponent(folder)}/${encodeURIComponent(name.replace(/\.wav$/, ""))}`;
  return el("div", { class: "card", "data-name": name },
    el("img", { src: `${base}.png`, alt: `spectrogram of ${name}`, loading: "lazy" }),
    el("audio", { src: `${base}.wav`, controls: "", preload: "none" }),
    extra, actions);
}

async function loadClips(folder) {
  if (!folder) return;
  recordLabelShown = folder;
  $("clips-title").textContent = `Clips of ${folder === "_background_noise_" ? "background" : folder}`;
  try {
    const clips = await api("GET", `/api/clips/${encodeURIComponent(folder)}`);
    $("clips").replaceChildren(...clips.map((c) => clipCard("dataset", c.folder, c.name,
      el("div", { class: "meta" }, el("span", {}, c.name)),
      el("div", { class: "actions" }, el("button", { class: "secondary delete", onclick: async () => {
        try { await api("DELETE", `/api/clips/${encodeURIComponent(c.folder)}/${encodeURIComponent(c.name)}`);
              loadClips(folder); } catch (err) { banner(err.message); }
      } }, "Delete")))));
    if (!clips.length) $("clips").append(el("p", { class: "hint" }, "No clips yet."));
  } catch (err) { banner(err.message); }
}

function loadRecord() {
  const label = $("rec-label").value.trim();
  if (label) loadClips(recordLabelShown || label);
}

async function checkDataset() {
  const out = $("dataset");
  out.textContent = "reading…";
  try {
    const r = await api("GET", "/api/dataset/check");
    const head = el("tr", {}, ...["class", "clips", "duration", "rates (Hz)", "clipped", "silent", "duplicates"]
      .map((h) => el("th", {}, h)));
    const rows = r.rows.map((row) => el("tr", {}, el("td", {}, row.name), el("td", {}, row.clips),
      el("td", {}, `${row.duration_s.toFixed(1)} s`), el("td", {}, row.rates.join(", ") || "-"),
      el("td", {}, row.clipped), el("td", {}, row.silent), el("td", {}, row.duplicates)));
    out.replaceChildren(el("div", { class: "scroll" }, el("table", { id: "dataset-table" }, head, ...rows)),
      el("ul", { class: "errors" }, ...r.errors.map((e) => el("li", {}, e))),
      el("ul", { class: "warnings" }, ...r.warnings.map((w) => el("li", {}, w))));
  } catch (err) { out.textContent = err.message; }
}

// ---------------------------------------------------------------- review

async function loadCaptures() {
  const box = $("captures");
  try {
    const captures = await api("GET", "/api/captures");
    box.replaceChildren(...captures.map((c) => {
      const [label, stem] = c.id.split("/");
      const verdict = (v) => async () => {
        try {
          const r = await api("POST", `/api/captures/${encodeURIComponent(label)}/${encodeURIComponent(stem)}`,
                              { verdict: v });
          banner(v === "delete" ? `${c.id} deleted` : `${c.id} moved to ${r.moved_to}`, true);
          loadCaptures();
        } catch (err) { banner(err.message); }
      };
      return clipCard("captures", label, `${stem}.wav`,
        el("div", { class: "meta" }, el("b", {}, c.label),
           el("span", {}, c.score === null ? "" : c.score.toFixed(3)), el("span", {}, when(c.time))),
        el("div", { class: "actions" },
           el("button", { class: "right", onclick: verdict("right") }, "Right"),
           el("button", { class: "wrong", onclick: verdict("wrong") }, "Wrong"),
           el("button", { class: "secondary delete", onclick: verdict("delete") }, "Delete")));
    }));
    if (!captures.length) {
      box.append(el("p", { class: "hint" }, "No captures yet (the config needs recording.capture: true)."));
    }
  } catch (err) { banner(err.message); }
}

// ---------------------------------------------------------------- model

function pct(x) { return x === null || x === undefined ? "-" : `${(x * 100).toFixed(0)}%`; }

async function loadModel() {
  try {
    const m = await api("GET", "/api/model");
    const rows = [
      ["Name", m.name], ["Classes", m.labels.join(", ")],
      ["Thresholds", m.labels.map((l) => `${l} ${m.thresholds[l]?.toFixed(2)}`).join(", ")],
      ["Base", m.base ?? "-"], ["Trained", m.created ? when(m.created) : "-"],
      ["Expected recall", m.expected_recall ? m.labels.map((l) => `${l} ${pct(m.expected_recall[l])}`).join(", ") : "-"],
      ["False alarms per hour", m.false_alarms_per_hour
        ? m.labels.map((l) => `${l} ${m.false_alarms_per_hour[l]?.toFixed(2)}`).join(", ")
          + (m.false_alarms_budget !== null && m.false_alarms_budget !== undefined ? ` (budget ${m.false_alarms_budget})` : "")
        : "-"],
      ["Folder", m.path],
    ];
    $("model-info").replaceChildren(...rows.map(([k, v]) => el("tr", {}, el("th", {}, k), el("td", {}, v))));
    $("report").hidden = !m.report;
    $("rollback").hidden = !m.previous;
    $("rollback").title = m.previous ? `back to ${m.previous}` : "";
  } catch (err) { banner(err.message); }
}

async function upload(event) {
  event.preventDefault();
  const file = $("upload-file").files[0];
  if (!file) return;
  $("upload").disabled = true;
  $("upload-status").textContent = `uploading ${file.name} (${(file.size / 1e6).toFixed(1)} MB) and checking it…`;
  try {
    const r = await api("POST", "/api/model", file, { "Content-Type": "application/octet-stream", "X-Filename": file.name });
    $("upload-status").textContent = "";
    banner(`now running ${r.name} (${r.labels.join(", ")})`, true);
    loadModel();
  } catch (err) {
    $("upload-status").textContent = "";
    banner(`upload refused: ${err.message}`);
  } finally { $("upload").disabled = false; }
}

async function rollback() {
  try {
    const r = await api("POST", "/api/model/rollback", {});
    banner(`rolled back: now running ${r.name} (${r.labels.join(", ")})`, true);
    loadModel();
  } catch (err) { banner(err.message); }
}

// ---------------------------------------------------------------- start

async function start() {
  const session = await api("GET", "/api/session");
  csrf = session.csrf;
  $("logout").hidden = !session.password;
  $("logout").onclick = async () => { await api("POST", "/logout", {}); location.href = "/login"; };
  $("mute").onclick = async () => {
    try { showState(await api("POST", "/api/mute", { muted: $("mute").dataset.muted !== "1" })); }
    catch (err) { banner(err.message); }
  };
  $("record-form").onsubmit = (e) => { e.preventDefault(); startRecording(false); };
  $("rec-background").onclick = () => startRecording(true);
  $("rec-cancel").onclick = () => api("POST", "/api/record/cancel", {}).catch((err) => banner(err.message));
  $("rec-label").onchange = () => { const l = $("rec-label").value.trim(); if (/^[a-z0-9][a-z0-9_-]*$/.test(l)) loadClips(l); };
  $("check").onclick = checkDataset;
  $("upload-form").onsubmit = upload;
  $("rollback").onclick = rollback;
  window.addEventListener("hashchange", showTab);
  const status = await api("GET", "/api/status");
  hello({ classes: status.classes, thresholds: status.thresholds, recent: status.recent, state: status,
          mels: spec.mels });
  showTab();
  connect();
}

start().catch((err) => banner(err.message));
