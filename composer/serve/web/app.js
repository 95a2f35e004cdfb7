// composer serve: the page's script. Plain JS, no libraries, nothing loaded from elsewhere.
"use strict";

const $ = (id) => document.getElementById(id);
let continueFrom = null; // {id, label}: the result "Continue from here" chose

function showError(message) {
  const box = $("error");
  box.textContent = message || "";
  box.hidden = !message;
}

async function getJSON(url) {
  const response = await fetch(url);
  const body = await response.json();
  if (!response.ok) throw new Error(body.error || response.statusText);
  return body;
}

function showSeedRows() {
  const kind = $("seed-kind").value;
  for (const row of document.querySelectorAll("[data-seed]")) {
    row.hidden = row.dataset.seed !== kind;
  }
}

function takesLine(model) {
  // One line under the model's name: what it takes (vocabulary, size, controls, instruments).
  const t = model.takes || {};
  const names = (model.controls || []).map((c) => c.name === "style" && t.styles && t.styles.length
    ? `style (${t.styles.join(", ")})` : c.name);
  const parts = [t.vocabulary, t.size, "controls: " + (names.join(", ") || "none"),
    t.instruments ? "instruments and drums" : "one instrument"];
  return parts.filter(Boolean).join(" · ");
}

function renderControls(models) {
  // The chosen model's controls, one input each: number (min/max/step), choice or text;
  // its numeric controls that may change over time can also be drawn as a plan.
  const model = models.find((m) => m.id === $("model").value);
  $("model-takes").textContent = model ? takesLine(model) : "";
  const box = $("controls");
  box.replaceChildren();
  const controls = (model && model.controls) || [];
  $("controls-box").hidden = controls.length === 0;
  for (const c of controls) {
    const row = document.createElement("div");
    row.className = "row";
    const label = document.createElement("label");
    const id = "control-" + c.name;
    label.htmlFor = id;
    label.textContent = c.label || c.name;
    let input;
    if (Array.isArray(c.choices)) {
      input = document.createElement("select");
      input.append(new Option("(model's choice)", ""));
      for (const choice of c.choices) input.append(new Option(String(choice), String(choice)));
    } else if (c.text) {
      input = document.createElement("input");
      input.type = "text";
      input.placeholder = c.placeholder || "";
      input.maxLength = 400;
    } else {
      input = document.createElement("input");
      input.type = "number";
      for (const key of ["min", "max", "step"]) if (c[key] !== undefined) input[key] = c[key];
    }
    input.id = id;
    input.dataset.control = c.name;
    input.dataset.numeric = Array.isArray(c.choices) || c.text ? "" : "1";
    row.append(label, input);
    box.append(row);
  }
  // Tempo is one per piece: only the other numeric controls are drawn over time.
  const drawable = controls.filter((c) => !Array.isArray(c.choices) && !c.text &&
                                          c.name !== "tempo");
  const select = $("plan-control");
  select.replaceChildren(...drawable.map((c) => new Option(c.label || c.name, c.name)));
  plan.inputs = Object.fromEntries(drawable.map((c) => [c.name, c]));
  $("plan-box").hidden = drawable.length === 0;
  clearPlan();
}

// ---------------------------------------------------------------- the plan over time

const PLAN_BINS = 24; // the piece's seconds in this many steps
const plan = {inputs: {}, values: new Array(PLAN_BINS).fill(null), drawing: false};

function planInput() { return plan.inputs[$("plan-control").value]; }
function planSeconds() { return Math.max(1, Number($("length").value) || 30); }

function planRange(c) {
  const lo = c.min !== undefined ? c.min : 0;
  const hi = c.max !== undefined ? c.max : lo + 10;
  return [lo, c.name === "density" ? Math.min(hi, 16) : hi]; // notes/s past 16: rare
}

function clearPlan() {
  plan.values.fill(null);
  showPlan();
}

function planSegments() {
  // Runs of equal values as {"from": seconds, NAME: value}; a run left undrawn after a
  // drawn one unsets the control (null: the value above, or the model's own).
  const c = planInput();
  if (!c) return [];
  const seconds = planSeconds(), out = [];
  let last = null;
  plan.values.forEach((v, i) => {
    if (v === last) return;
    out.push({from: Math.round((i * seconds / PLAN_BINS) * 100) / 100, [c.name]: v});
    last = v;
  });
  return out;
}

function showPlan() {
  const segments = planSegments();
  $("plan-json").textContent = segments.length ? JSON.stringify(segments) : "none";
  drawPlan();
}

function blankCanvas(canvas, defaultWidth, defaultHeight) {
  // A white canvas at the screen's pixel density; its context and CSS size.
  const scale = window.devicePixelRatio || 1;
  const width = canvas.clientWidth || defaultWidth, height = canvas.clientHeight || defaultHeight;
  canvas.width = width * scale;
  canvas.height = height * scale;
  const g = canvas.getContext("2d");
  g.scale(scale, scale);
  g.fillStyle = "#fff";
  g.fillRect(0, 0, width, height);
  return { g, width, height };
}

function drawPlan() {
  const canvas = $("plan"), c = planInput();
  if (!c || $("plan-box").hidden) return;
  const { g, width, height } = blankCanvas(canvas, 600, 140);
  const [lo, hi] = planRange(c), area = planArea(width, height);
  const y = (v) => area.top + (1 - (v - lo) / (hi - lo)) * area.h;
  g.font = "10px sans-serif";
  g.fillStyle = "#666";
  g.strokeStyle = "#eee";
  for (let k = 0; k <= 4; k++) {
    const v = lo + (hi - lo) * k / 4;
    g.beginPath(); g.moveTo(area.left, y(v)); g.lineTo(width, y(v)); g.stroke();
    g.fillText(String(hi - lo > 5 ? Math.round(v) : Math.round(v * 10) / 10), 2, y(v) + 3);
  }
  const seconds = planSeconds(), step = seconds > 60 ? 10 : seconds > 20 ? 5 : 1;
  for (let t = 0; t <= seconds && t / seconds * area.w < area.w - 20; t += step) {
    g.fillText(t + " s", area.left + t / seconds * area.w, height - 2);
  }
  const binW = area.w / PLAN_BINS;
  plan.values.forEach((v, i) => {
    if (v === null) return;
    g.fillStyle = "rgba(60, 120, 200, 0.35)";
    g.fillRect(area.left + i * binW, y(v), binW, area.top + area.h - y(v));
    g.fillStyle = "rgb(40, 90, 170)";
    g.fillRect(area.left + i * binW, y(v) - 1, binW, 3);
  });
  canvas.dataset.segments = String(planSegments().length);
}

function planArea(width, height) {
  return {left: 30, top: 6, w: width - 34, h: height - 22};
}

function drawAt(event) {
  // The bin under the pointer takes its value; the bins a fast drag skipped since the last
  // point are filled along the straight line between the two.
  const canvas = $("plan"), c = planInput();
  if (!c) return;
  const box = canvas.getBoundingClientRect(), area = planArea(box.width, box.height);
  const i = Math.floor((event.clientX - box.left - area.left) / area.w * PLAN_BINS);
  const [lo, hi] = planRange(c);
  const share = 1 - (event.clientY - box.top - area.top) / area.h;
  const v = Math.min(hi, Math.max(lo, lo + share * (hi - lo)));
  const bin = Math.min(PLAN_BINS - 1, Math.max(0, i));
  const from = plan.last || {bin, v};
  const lo_ = Math.min(from.bin, bin), hi_ = Math.max(from.bin, bin);
  const step = c.step || 0.1;
  for (let k = lo_; k <= hi_; k++) {
    const t = hi_ === lo_ ? 1 : (k - from.bin) / (bin - from.bin);
    const value = from.v + (v - from.v) * t;
    plan.values[k] = Math.round(Math.round(value / step) * step * 1000) / 1000;
  }
  plan.last = {bin, v};
  showPlan();
}

function startPlanEditor() {
  const canvas = $("plan");
  canvas.addEventListener("pointerdown", (e) => {
    plan.drawing = true;
    plan.last = null;
    canvas.setPointerCapture(e.pointerId);
    drawAt(e);
  });
  canvas.addEventListener("pointermove", (e) => { if (plan.drawing) drawAt(e); });
  canvas.addEventListener("pointerup", () => { plan.drawing = false; });
  $("plan-clear").addEventListener("click", clearPlan);
  $("plan-control").addEventListener("change", clearPlan);
  $("length").addEventListener("input", showPlan);
  window.addEventListener("resize", drawPlan);
}

function request() {
  const num = (id) => Number($(id).value);
  const body = {
    model: $("model").value,
    seed: $("seed-kind").value,
    seconds: num("length"),
    num: num("num"),
    temperature: num("temperature"),
    top_p: num("top-p"),
  };
  if ($("rng-seed").value !== "") body.rng_seed = num("rng-seed");
  if (body.seed === "pitches") {
    body.pitches = $("pitches").value.trim();
    body.style = $("style").value;
  }
  if (body.seed === "opening") body.opening = $("opening").value;
  if (body.seed === "result" && continueFrom) body.result = continueFrom.id;
  const controls = {};
  for (const input of document.querySelectorAll("[data-control]")) {
    if (input.value === "") continue;
    controls[input.dataset.control] = input.dataset.numeric ? Number(input.value) : input.value;
  }
  if (Object.keys(controls).length) body.controls = controls;
  const segments = planSegments();
  if (segments.length) body.plan = segments;
  return body;
}

function drawRoll(canvas, roll) {
  // Time along x, pitch along y; the seed's part on a shaded band, a line where it ends.
  const { g, width, height } = blankCanvas(canvas, 800, 220);
  const notes = roll.notes;
  if (!notes.length) return;
  const left = 34, bottom = 16;
  let lo = 127, hi = 0;
  for (const [, , pitch] of notes) { lo = Math.min(lo, pitch); hi = Math.max(hi, pitch); }
  lo -= 2; hi += 2;
  const end = Math.max(roll.seconds, 0.1) * 1.01;
  const x = (t) => left + (t / end) * (width - left - 4);
  const rowH = (height - bottom - 4) / (hi - lo + 1);
  const y = (p) => 4 + (hi - p) * rowH;
  if (roll.seed_seconds > 0) {
    g.fillStyle = "rgba(255, 150, 0, 0.16)";
    g.fillRect(x(0), 0, x(roll.seed_seconds) - x(0), height - bottom);
    g.strokeStyle = "rgb(230, 120, 0)";
    g.setLineDash([5, 4]);
    g.beginPath();
    g.moveTo(x(roll.seed_seconds), 0);
    g.lineTo(x(roll.seed_seconds), height - bottom);
    g.stroke();
    g.setLineDash([]);
    g.fillStyle = "rgb(200, 100, 0)";
    g.font = "11px sans-serif";
    g.fillText("seed", x(0) + 3, 12);
  }
  g.font = "10px sans-serif";
  for (let p = lo; p <= hi; p++) {
    if (p % 12 !== 0) continue;
    g.fillStyle = "#eee";
    g.fillRect(left, y(p) + rowH, width - left, 1);
    g.fillStyle = "#666";
    g.fillText("C" + (p / 12 - 1), 2, y(p) + rowH);
  }
  for (const [start, stop, pitch, velocity] of notes) {
    const v = velocity / 127;
    g.fillStyle = `rgb(${Math.round(40 + 30 * v)}, ${Math.round(60 + 120 * v)}, ${Math.round(140 + 60 * v)})`;
    g.fillRect(x(start), y(pitch), Math.max(1, x(stop) - x(start)), Math.max(1, rowH - 0.5));
  }
  g.fillStyle = "#666";
  const step = end > 60 ? 10 : end > 20 ? 5 : 1;
  for (let t = 0; t <= end && x(t) < width - 24; t += step) g.fillText(t + " s", x(t), height - 3);
}

function addResult(piece, index) {
  const item = document.createElement("li");
  item.className = "result";
  item.id = "result-" + piece.id;
  const meta = document.createElement("p");
  meta.className = "meta";
  meta.textContent = `${piece.seconds} s, ${piece.notes} notes` +
    (piece.seed_seconds ? `, seed ${piece.seed_seconds} s (shaded)` : "") +
    ` · audio: ${piece.audio}`;
  const canvas = document.createElement("canvas");
  canvas.className = "roll";
  canvas.setAttribute("role", "img");
  canvas.setAttribute("aria-label", "Piano roll of result " + index);
  const actions = document.createElement("div");
  actions.className = "actions";
  const audio = document.createElement("audio");
  audio.controls = true;
  audio.preload = "auto";
  audio.src = piece.urls.wav;
  audio.setAttribute("aria-label", "Play result " + index);
  const link = document.createElement("a");
  link.className = "download-mid";
  link.href = piece.urls.mid;
  link.download = `composer-${piece.id.slice(0, 6)}.mid`;
  link.textContent = "Download .mid";
  const again = document.createElement("button");
  again.type = "button";
  again.className = "continue";
  again.textContent = "Continue from here";
  again.addEventListener("click", () => {
    continueFrom = {id: piece.id, label: "result " + index};
    const option = $("seed-kind").querySelector("option[value=result]");
    option.disabled = false;
    $("seed-kind").value = "result";
    $("continue-note").textContent = `Continuing from ${continueFrom.label} (all of it is the seed).`;
    showSeedRows();
    $("generate").focus();
  });
  actions.append(audio, link, again);
  item.append(meta, canvas, actions);
  $("results").prepend(item);
  getJSON(piece.urls.roll).then((roll) => {
    drawRoll(canvas, roll);
    canvas.dataset.drawn = String(roll.notes.length);
  }).catch((e) => showError("piano roll: " + e.message));
}

let counter = 0;

async function generate(event) {
  event.preventDefault();
  showError("");
  const body = request();
  let init;
  if (body.seed === "upload") {
    const file = $("upload").files[0];
    if (!file) { showError("choose a MIDI file to upload"); return; }
    const form = new FormData();
    form.append("request", JSON.stringify(body));
    form.append("midi", file);
    init = {method: "POST", body: form};
  } else {
    init = {method: "POST", headers: {"Content-Type": "application/json"},
            body: JSON.stringify(body)};
  }
  const began = Date.now();
  const bar = $("busy");
  $("generate").disabled = true;
  bar.hidden = false;
  bar.removeAttribute("value"); // indeterminate until the first progress
  let line = "Waiting for the server";
  const tick = () => { $("status").textContent = `${line}… ${Math.round((Date.now() - began) / 1000)} s`; };
  tick();
  const timer = setInterval(tick, 500);
  try {
    const response = await fetch("/api/jobs", init);
    let answer;
    try { answer = await response.json(); } catch { answer = {error: response.statusText}; }
    if (!response.ok) throw new Error(answer.error || response.statusText);
    let job = {state: "queued"};
    while (job.state === "queued" || job.state === "running") {
      await new Promise((resolve) => setTimeout(resolve, 300));
      job = await getJSON(answer.url);
      if (job.state === "queued") line = "Queued (other requests first)";
      if (job.state === "running") {
        line = !job.total ? "Generating" : job.done < job.total
          ? `Generating: ${job.done} of ${job.total} s of music` : "Rendering the audio";
        if (job.total) { bar.max = job.total; bar.value = job.done; }
      }
      tick();
    }
    if (job.state === "failed") throw new Error(job.error);
    for (const piece of job.results) addResult(piece, ++counter);
    $("status").textContent = `Done in ${((Date.now() - began) / 1000).toFixed(1)} s`;
  } catch (e) {
    $("status").textContent = "";
    showError(e.message);
  } finally {
    clearInterval(timer);
    bar.hidden = true;
    $("generate").disabled = false;
  }
}

async function start() {
  showSeedRows();
  $("seed-kind").addEventListener("change", showSeedRows);
  $("pitches").addEventListener("input", () => {
    if ($("pitches").value.trim()) { $("seed-kind").value = "pitches"; showSeedRows(); }
  });
  $("upload").addEventListener("change", () => {
    if ($("upload").files.length) { $("seed-kind").value = "upload"; showSeedRows(); }
  });
  $("form").addEventListener("submit", generate);
  startPlanEditor();
  try {
    const [{models, limits}, {openings}] = await Promise.all([
      getJSON("/api/models"), getJSON("/api/openings")]);
    for (const m of models) $("model").append(new Option(m.name, m.id));
    for (const o of openings) $("opening").append(new Option(o.name, o.id));
    $("length").max = limits.seconds;
    $("num").max = limits.num;
    $("model").addEventListener("change", () => renderControls(models));
    renderControls(models);
    document.body.dataset.ready = "1";
  } catch (e) {
    showError("cannot reach the server: " + e.message);
  }
}

document.addEventListener("DOMContentLoaded", start);
