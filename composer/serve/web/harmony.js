// The harmonize view of composer's page (kept apart from app.js): type, upload or play a
// melody, get the other voices from the shipped chorale harmonizer (POST /api/harmonize),
// see them as a piano roll, hear them, download the MIDI file, and re-roll one voice or
// one span of bars (POST /api/infill with the score shown).
"use strict";
(() => {
  const COLORS = ["#d9480f", "#2b8a3e", "#1c7ed6", "#7048e8", "#868e96", "#e67700"];
  const NAMES = ["C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B"];
  let score = null; // the last answer: {parts, meter, key, beats, midi}
  let audio = null;

  function el(tag, attrs = {}, ...kids) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
    for (const kid of kids) node.append(kid);
    return node;
  }

  function field(label, input) {
    const id = input.id;
    return el("span", {}, el("label", { for: id }, label), input);
  }

  function build() {
    const melody = el("input", { id: "h-melody", type: "text", maxlength: "8192",
      value: "G4:1 A4:1 B4:2 A4:1 G4:1 F#4:2 G4:4", autocomplete: "off", size: "48" });
    const upload = el("input", { id: "h-upload", type: "file", accept: ".mid,.midi,audio/midi" });
    const temperature = el("input", { id: "h-temperature", type: "number", min: "0.1", max: "5",
      step: "0.05", value: "0.9" });
    const passes = el("input", { id: "h-passes", type: "number", min: "1", max: "256", value: "32" });
    const seed = el("input", { id: "h-seed", type: "number", min: "0", step: "1" });
    const keys = el("div", { class: "row", id: "h-keys", "aria-label": "Play a melody" });
    for (let p = 60; p <= 81; p++) {
      const name = NAMES[p % 12] + (Math.floor(p / 12) - 1);
      const key = el("button", { type: "button", "data-pitch": String(p) }, name);
      key.addEventListener("click", () => {
        beep(p, 0.3);
        melody.value = (melody.value.trim() + " " + name + ":1").trim();
        upload.value = "";
      });
      keys.append(key);
    }
    const go = el("button", { id: "h-go", type: "button" }, "Harmonize");
    const status = el("span", { id: "h-status", role: "status", "aria-live": "polite" });
    const canvas = el("canvas", { id: "h-roll", width: "900", height: "260" });
    const play = el("button", { id: "h-play", type: "button", disabled: "" }, "Play");
    const download = el("a", { id: "h-download", download: "harmony.mid", hidden: "" },
      "Download MIDI");
    const voice = el("select", { id: "h-voice" });
    const reroll = el("button", { id: "h-reroll-voice", type: "button", disabled: "" },
      "Re-roll this voice");
    const from = el("input", { id: "h-from", type: "number", min: "1", value: "2" });
    const to = el("input", { id: "h-to", type: "number", min: "1", value: "3" });
    const span = el("button", { id: "h-reroll-span", type: "button", disabled: "" },
      "Re-roll these bars");
    const section = el("section", { id: "harmony" },
      el("h2", {}, "Harmonize a melody"),
      el("p", {}, "Type notes with their length in beats (R for a rest), click the keys, or " +
        "upload a MIDI tune; the chorale harmonizer writes alto, tenor and bass under it."),
      el("div", { class: "row" }, field("Melody", melody)), keys,
      el("div", { class: "row" }, field("or a MIDI file", upload)),
      el("div", { class: "row" }, field("Temperature", temperature), field("Passes", passes),
        field("Random seed", seed)),
      el("div", { class: "row" }, go, status), canvas,
      el("div", { class: "row" }, play, download),
      el("div", { class: "row" }, field("Voice", voice), reroll),
      el("div", { class: "row" }, field("Bars from", from), field("to", to), span));
    (document.querySelector("main") || document.body).append(section);
    go.addEventListener("click", () => harmonize());
    play.addEventListener("click", () => (audio ? stop() : start()));
    reroll.addEventListener("click", () => infill(1, bars(), [voice.value]));
    span.addEventListener("click", () => infill(Number(from.value), Number(to.value),
      score.parts.slice(1).map((p) => p.name)));
  }

  function settings() {
    const body = {
      temperature: Number(document.getElementById("h-temperature").value) || 0.9,
      passes: Number(document.getElementById("h-passes").value) || 32,
    };
    const seed = document.getElementById("h-seed").value;
    if (seed !== "") body.rng_seed = Number(seed);
    return body;
  }

  function bars() {
    const per = score.meter[0] * 4 / score.meter[1];
    return Math.max(1, Math.ceil(score.beats / per - 1e-9));
  }

  async function post(url, body) {
    const status = document.getElementById("h-status");
    status.textContent = "Working...";
    for (const b of document.querySelectorAll("#harmony button")) b.disabled = true;
    try {
      const response = await fetch(url, { method: "POST", body: JSON.stringify(body),
        headers: { "Content-Type": "application/json" } });
      const data = await response.json();
      if (!response.ok) throw new Error(data.error || response.statusText);
      score = data;
      status.textContent = `${data.parts.length} voices, ${bars()} bars`;
      show();
    } catch (e) {
      status.textContent = "Error: " + e.message;
    } finally {
      for (const b of document.querySelectorAll("#harmony button")) b.disabled = false;
      if (!score) for (const id of ["h-play", "h-reroll-voice", "h-reroll-span"]) {
        document.getElementById(id).disabled = true;
      }
    }
  }

  async function harmonize() {
    const body = settings();
    const file = document.getElementById("h-upload").files[0];
    if (file) {
      const bytes = new Uint8Array(await file.arrayBuffer());
      let text = "";
      for (let i = 0; i < bytes.length; i += 0x8000) {
        text += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
      }
      body.midi_base64 = btoa(text);
    } else {
      body.melody = document.getElementById("h-melody").value;
    }
    await post("/api/harmonize", body);
  }

  async function infill(first, last, voices) {
    if (!score) return;
    await post("/api/infill", Object.assign(settings(), { parts: score.parts, meter: score.meter,
      key: score.key, from_bar: first, to_bar: last, voices }));
  }

  function show() {
    const canvas = document.getElementById("h-roll");
    const ctx = canvas.getContext("2d");
    const all = score.parts.flatMap((p) => p.notes);
    const lo = Math.min(...all.map((n) => n[0])) - 2, hi = Math.max(...all.map((n) => n[0])) + 2;
    const w = canvas.width / Math.max(score.beats, 1), h = canvas.height / (hi - lo + 1);
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    const per = score.meter[0] * 4 / score.meter[1];
    ctx.strokeStyle = "#ced4da";
    for (let b = 0; b <= score.beats; b += per) {
      ctx.beginPath(); ctx.moveTo(b * w, 0); ctx.lineTo(b * w, canvas.height); ctx.stroke();
    }
    score.parts.forEach((part, i) => {
      ctx.fillStyle = COLORS[i % COLORS.length];
      for (const [p, s, e] of part.notes) {
        ctx.fillRect(s * w + 1, (hi - p) * h, Math.max((e - s) * w - 2, 1), Math.max(h, 2));
      }
    });
    const voice = document.getElementById("h-voice");
    voice.replaceChildren(...score.parts.map((p, i) => el("option", { value: p.name }, p.name)));
    if (score.parts.length > 1) voice.value = score.parts[1].name;
    const bytes = Uint8Array.from(atob(score.midi), (c) => c.charCodeAt(0));
    const link = document.getElementById("h-download");
    if (link.href) URL.revokeObjectURL(link.href);
    link.href = URL.createObjectURL(new Blob([bytes], { type: "audio/midi" }));
    link.hidden = false;
  }

  function beep(pitch, seconds, when = 0, context = null) {
    const ctx = context || new AudioContext();
    const osc = ctx.createOscillator(), gain = ctx.createGain();
    osc.type = "triangle";
    osc.frequency.value = 440 * 2 ** ((pitch - 69) / 12);
    const t = ctx.currentTime + when;
    gain.gain.setValueAtTime(0, t);
    gain.gain.linearRampToValueAtTime(0.12, t + 0.02);
    gain.gain.linearRampToValueAtTime(0, t + Math.max(seconds, 0.05));
    osc.connect(gain).connect(ctx.destination);
    osc.start(t); osc.stop(t + seconds + 0.05);
    return ctx;
  }

  function start() {
    const ctx = new AudioContext(), beat = 0.6;
    for (const part of score.parts) {
      for (const [p, s, e] of part.notes) beep(p, (e - s) * beat * 0.95, s * beat, ctx);
    }
    audio = ctx;
    document.getElementById("h-play").textContent = "Stop";
    setTimeout(() => { if (audio === ctx) stop(); }, score.beats * beat * 1000 + 500);
  }

  function stop() {
    if (audio) audio.close();
    audio = null;
    document.getElementById("h-play").textContent = "Play";
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", build);
  else build();
})();
