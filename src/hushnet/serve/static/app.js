// hushnet serve: the page. No framework, no CDN: it ships inside the package and works offline.
"use strict";

const token = new URLSearchParams(location.search).get("token");

// An API URL with the token (audio elements cannot send headers, so it travels as ?token=).
function api(path, params = {}) {
  const url = new URL("api/" + path, location.href);
  url.search = "";
  for (const [key, value] of Object.entries(params)) if (value !== undefined && value !== null) url.searchParams.set(key, value);
  if (token) url.searchParams.set("token", token);
  return url.toString();
}

async function getJSON(path, params) {
  const response = await fetch(api(path, params));
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(body.detail || response.statusText);
  return body;
}

function formatSeconds(s) {
  if (!isFinite(s)) return "";
  const m = Math.floor(s / 60), r = s - 60 * m;
  return m ? `${m}:${r.toFixed(0).padStart(2, "0")} min` : `${r.toFixed(1)} s`;
}

function formatBytes(n) {
  return n > 2 ** 20 ? `${(n / 2 ** 20).toFixed(1)} MB` : `${Math.max(1, Math.round(n / 1024))} kB`;
}

// A perceptual dark-to-bright colour ramp (close to "magma") for the spectrograms.
const RAMP = (() => {
  const stops = [[0, 0, 4], [40, 11, 84], [101, 21, 110], [159, 42, 99], [212, 72, 66], [245, 125, 21], [250, 193, 39], [252, 255, 164]];
  const table = new Uint8ClampedArray(256 * 3);
  for (let i = 0; i < 256; i++) {
    const x = (i / 255) * (stops.length - 1), k = Math.min(Math.floor(x), stops.length - 2), f = x - k;
    for (let c = 0; c < 3; c++) table[3 * i + c] = stops[k][c] + f * (stops[k + 1][c] - stops[k][c]);
  }
  return table;
})();

function drawSpectrogram(canvas, spec) {
  const bytes = Uint8Array.from(atob(spec.data), (c) => c.charCodeAt(0));
  const image = new ImageData(spec.columns, spec.rows);
  for (let row = 0; row < spec.rows; row++) {
    const y = spec.rows - 1 - row; // low frequencies at the bottom
    for (let col = 0; col < spec.columns; col++) {
      const v = bytes[row * spec.columns + col], o = 4 * (y * spec.columns + col);
      image.data[o] = RAMP[3 * v]; image.data[o + 1] = RAMP[3 * v + 1]; image.data[o + 2] = RAMP[3 * v + 2]; image.data[o + 3] = 255;
    }
  }
  const scratch = document.createElement("canvas");
  scratch.width = spec.columns; scratch.height = spec.rows;
  scratch.getContext("2d").putImageData(image, 0, 0);
  canvas.width = Math.max(spec.columns, 400); canvas.height = 128;
  const context = canvas.getContext("2d");
  context.imageSmoothingEnabled = true;
  context.drawImage(scratch, 0, 0, canvas.width, canvas.height);
  canvas.dataset.drawn = "1";
}

// --- one file's card -----------------------------------------------------------------------------
class Card {
  constructor(batch, index, file) {
    this.batch = batch; this.index = index;
    this.root = document.getElementById("card-template").content.firstElementChild.cloneNode(true);
    this.q = (selector) => this.root.querySelector(selector);
    this.q(".name").textContent = file.name;
    this.q(".meta").textContent = formatBytes(file.size);
    this.inputPlayer = this.q(".input .player");
    this.outputPlayer = this.q(".output .player");
    this.slider = this.q(".dry");
    this.state = "uploading";
    this.setProgress(0, "uploading…");
    this.q(".ab").addEventListener("click", () => this.toggle());
    this.slider.addEventListener("input", () => this.showDry());
    // Arrow keys fire one change per step: render once the slider rests.
    this.slider.addEventListener("change", () => { clearTimeout(this.pending); this.pending = setTimeout(() => this.render(), 250); });
  }

  get dry() { return Number(this.slider.value) / 100; }

  setProgress(fraction, text) {
    const percent = Math.round(100 * fraction);
    this.q(".fill").style.width = percent + "%";
    this.q(".progress").setAttribute("aria-valuenow", String(percent));
    this.q(".status").textContent = text;
  }

  update(file) {
    if (this.state === "done" || this.state === "failed") return;
    if (file.state === "queued") this.setProgress(0, "waiting for a worker…");
    else if (file.state === "running") this.setProgress(file.progress, `denoising… ${Math.round(100 * file.progress)} %`);
    else if (file.state === "failed") {
      this.state = "failed"; this.root.classList.add("failed");
      this.setProgress(1, "error: " + file.error);
      this.q(".status").setAttribute("role", "alert");
    } else if (file.state === "done") {
      this.state = "done"; this.root.classList.add("done");
      this.file = file;
      const channels = file.channels === 1 ? "mono" : file.channels === 2 ? "stereo" : `${file.channels} channels`;
      this.q(".meta").textContent = `${formatSeconds(file.seconds)} · ${file.sample_rate / 1000} kHz · ${channels}`;
      this.setProgress(1, "done");
      this.q(".notes").textContent = file.notes.join("; ");
      this.showResult();
    }
  }

  fileUrl(which, params = {}) { return api(`jobs/${this.batch.id}/files/${this.index}/${which}`, params); }

  showResult() {
    this.q(".result").hidden = false;
    this.slider.value = String(Math.round(this.batch.dry * 100));
    this.showDry();
    this.inputPlayer.src = this.fileUrl("input");
    this.outputPlayer.src = this.fileUrl("output", { dry: this.dry });
    this.q(".download").href = this.fileUrl("output", { dry: this.dry, download: 1 });
    this.q(".download").setAttribute("download", this.file.download_name);
    getJSON(`jobs/${this.batch.id}/files/${this.index}/spectrogram`, { which: "input" })
      .then((spec) => drawSpectrogram(this.q(".input .spectrogram"), spec)).catch((e) => this.note(e));
    this.drawOutput();
    // Only one of the two plays at a time.
    this.inputPlayer.addEventListener("play", () => this.outputPlayer.pause());
    this.outputPlayer.addEventListener("play", () => this.inputPlayer.pause());
  }

  drawOutput() {
    const canvas = this.q(".output .spectrogram");
    canvas.dataset.drawn = "";
    getJSON(`jobs/${this.batch.id}/files/${this.index}/spectrogram`, { which: "output", dry: this.dry })
      .then((spec) => { drawSpectrogram(canvas, spec); canvas.dataset.dry = String(this.dry); }).catch((e) => this.note(e));
  }

  note(error) { this.q(".notes").textContent = "error: " + error.message; }

  showDry() {
    const percent = Number(this.slider.value);
    this.q(".dry-value").textContent = percent === 0 ? "0 % original" : `${percent} % original`;
  }

  // Re-render the output with the slider's dry/wet, at the same position and play state.
  render() {
    const player = this.outputPlayer, at = player.currentTime, playing = !player.paused;
    player.addEventListener("loadedmetadata", () => {
      player.currentTime = Math.min(at, player.duration || at);
      if (playing) player.play();
    }, { once: true });
    player.src = this.fileUrl("output", { dry: this.dry });
    this.q(".download").href = this.fileUrl("output", { dry: this.dry, download: 1 });
    this.drawOutput();
    this.batch.refreshZip();
  }

  // A/B: switch to the other recording at the same position.
  toggle() {
    const button = this.q(".ab");
    const toOriginal = button.getAttribute("aria-pressed") !== "true";
    const [from, to] = toOriginal ? [this.outputPlayer, this.inputPlayer] : [this.inputPlayer, this.outputPlayer];
    const playing = !from.paused || !to.paused;
    to.currentTime = from.currentTime;
    from.pause();
    if (playing) to.play().catch(() => {});
    button.setAttribute("aria-pressed", String(toOriginal));
    button.textContent = toOriginal ? "A/B: hear the denoised" : "A/B: hear the original";
  }
}

// --- one upload (a job) --------------------------------------------------------------------------
class Batch {
  constructor(files, dry) {
    this.files = files; this.dry = dry;
    this.root = document.getElementById("batch-template").content.firstElementChild.cloneNode(true);
    this.root.querySelector(".batch-title").textContent = `${files.length} recording${files.length > 1 ? "s" : ""}`;
    this.cards = files.map((file, i) => new Card(this, i, file));
    for (const card of this.cards) this.root.querySelector(".cards").append(card.root);
    this.root.querySelector(".delete").addEventListener("click", () => this.remove());
    document.getElementById("batches").prepend(this.root);
    this.upload();
  }

  upload() {
    const form = new FormData();
    for (const file of this.files) form.append("file", file, file.name);
    form.append("dry", String(this.dry));
    const request = new XMLHttpRequest();
    request.open("POST", api("jobs"));
    // Parts go in order, so each file's share of the upload progress follows from the sizes.
    const offsets = []; let total = 0;
    for (const file of this.files) { offsets.push(total); total += file.size; }
    request.upload.addEventListener("progress", (event) => {
      const sent = event.lengthComputable ? event.loaded * (total / event.total) : 0;
      this.cards.forEach((card, i) => {
        const fraction = Math.max(0, Math.min(1, (sent - offsets[i]) / (this.files[i].size || 1)));
        card.setProgress(fraction * 0.1, `uploading… ${Math.round(100 * fraction)} %`);
      });
    });
    request.addEventListener("load", () => {
      let body = {};
      try { body = JSON.parse(request.responseText); } catch (e) { /* keep {} */ }
      if (request.status !== 201) return this.fail(body.detail || `upload failed (${request.status})`);
      this.id = body.id;
      this.poll();
    });
    request.addEventListener("error", () => this.fail("upload failed: the server could not be reached"));
    request.send(form);
  }

  fail(message) {
    for (const card of this.cards) card.update({ state: "failed", error: message });
  }

  async poll() {
    if (this.removed) return;
    try {
      const job = await getJSON(`jobs/${this.id}`);
      job.files.forEach((file, i) => this.cards[i].update(file));
      if (job.state !== "finished") return setTimeout(() => this.poll(), 400);
      this.refreshZip();
    } catch (error) {
      this.fail(error.message);
    }
  }

  refreshZip() {
    const link = this.root.querySelector(".download-all");
    const done = this.cards.filter((card) => card.state === "done");
    link.hidden = done.length === 0;
    link.href = api(`jobs/${this.id}/zip`, { dry: this.cards.map((card) => card.dry).join(",") });
  }

  async remove() {
    this.removed = true;
    for (const card of this.cards) { card.inputPlayer.pause(); card.outputPlayer.pause(); }
    if (this.id) await fetch(api(`jobs/${this.id}`), { method: "DELETE" }).catch(() => {});
    this.root.remove();
  }
}

// --- the page ------------------------------------------------------------------------------------
function initialDry() {
  const value = Number(document.getElementById("initial-dry").value);
  return isFinite(value) ? Math.max(0, Math.min(100, value)) / 100 : 0;
}

function add(files) {
  if (files.length) new Batch(Array.from(files), initialDry());
}

const picker = document.getElementById("picker");
document.getElementById("pick").addEventListener("click", () => picker.click());
picker.addEventListener("change", () => { add(picker.files); picker.value = ""; });
const drop = document.getElementById("drop");
for (const name of ["dragenter", "dragover"]) document.addEventListener(name, (e) => { e.preventDefault(); drop.classList.add("over"); });
for (const name of ["dragleave", "drop"]) document.addEventListener(name, (e) => { e.preventDefault(); if (name === "drop" || e.target === document.documentElement) drop.classList.remove("over"); });
document.addEventListener("drop", (e) => add(e.dataTransfer.files));

getJSON("health").then((h) => {
  document.getElementById("health").textContent = `model ${h.model} · ${h.engine} on ${h.device} · hushnet ${h.version}`;
}).catch((e) => { document.getElementById("health").textContent = "server: " + e.message; });
