// The pixelseg page: upload an image, draw the predicted classes over it, explore and download.
// Plain JavaScript with no dependencies, so the page works offline and needs no build step.
// The label map comes once from the API (JSON, run-length encoded); opacity and class toggles are
// redrawn locally, so moving the slider never calls the server again.
"use strict";

const $ = (id) => document.getElementById(id);

const state = {
  model: null,        // GET /v1/model
  file: null,         // the uploaded File
  result: null,       // POST /v1/segment JSON
  labels: null,       // Uint8Array/Uint16Array, row-major class indices
  base: null,         // ImageBitmap of the upright image
  layer: null,        // canvas with the class colors (hidden classes transparent)
  hidden: new Set(),  // class indices not drawn
  key: sessionStorage.getItem("pixelseg-api-key") || "",
};

function headers() {
  return state.key ? { "X-API-Key": state.key } : {};
}

function setStatus(text, kind = "") {
  const el = $("status");
  el.textContent = text;
  el.className = "status " + kind;
}

async function errorText(res) {
  try {
    const body = await res.json();
    if (body && body.message) return body.message;
  } catch (e) { /* not JSON */ }
  return `${res.status} ${res.statusText}`;
}

function pct(fraction) {
  const p = fraction * 100;
  if (p > 0 && p < 0.1) return "<0.1%";
  return p.toFixed(1) + "%";
}

function rgb(color) {
  return `rgb(${color[0]}, ${color[1]}, ${color[2]})`;
}

function stem(name) {
  const dot = name.lastIndexOf(".");
  return (dot > 0 ? name.slice(0, dot) : name) || "image";
}

function megabytes(n) { return (n / (1024 * 1024)).toFixed(0) + " MB"; }
function megapixels(n) { return (n / 1e6).toFixed(1) + " MP"; }

// ------------------------------------------------------------------------------------ model info

async function loadModel() {
  let res;
  try {
    res = await fetch("/v1/model", { headers: headers() });
  } catch (e) {
    setStatus("The server cannot be reached.", "error");
    return;
  }
  if (res.status === 401) {
    $("key-box").hidden = false;
    $("model-line").textContent = "API key needed";
    setStatus(await errorText(res), "warn");
    return;
  }
  if (!res.ok) {
    setStatus(await errorText(res), "error");
    return;
  }
  $("key-box").hidden = true;
  const m = await res.json();
  state.model = m;
  const miou = m.metrics && typeof m.metrics.mIoU === "number" ? ` · val mIoU ${(m.metrics.mIoU * 100).toFixed(1)}%` : "";
  $("model-line").textContent = `${m.model}${m.encoder ? " / " + m.encoder : ""} · ${m.classes.length} classes${miou}`;
  $("limits").textContent = `${m.input_formats.join(", ")} · up to ${megabytes(m.limits.max_upload_bytes)}, ` +
    `${megapixels(m.limits.max_pixels)}`;
  const info = $("model-info");
  info.replaceChildren();
  const rows = [
    ["model", m.model + (m.encoder ? ` (${m.encoder})` : "")],
    ["backend", `${m.backend} on ${m.device}`],
    ["network input", `${m.preprocessing.image_size.join(" × ")} px, ${m.in_channels} channel(s), ${m.preprocessing.resize}`],
    ["classes", m.classes.map((c) => c.name).join(", ")],
  ];
  if (m.metrics && typeof m.metrics.mIoU === "number") rows.push(["validation mIoU", (m.metrics.mIoU * 100).toFixed(2) + "%"]);
  rows.push(["pixelseg", m.pixelseg_version]);
  for (const [k, v] of rows) {
    const dt = document.createElement("dt");
    dt.textContent = k;
    const dd = document.createElement("dd");
    dd.textContent = v;
    info.append(dt, dd);
  }
  renderLegend();
}

// ------------------------------------------------------------------------------------- segmenting

async function segment(file) {
  if (!file) return;
  if (!state.model) {
    setStatus("The model is not loaded yet" + ($("key-box").hidden ? "." : ": enter the API key first."), "warn");
    return;
  }
  state.file = file;
  setDownloads(false);
  setStatus(`Segmenting ${file.name || "the image"}…`, "busy");
  document.body.classList.add("busy");
  try {
    const form = new FormData();
    form.append("image", file, file.name || "image");
    const res = await fetch("/v1/segment?format=json&rle=true", { method: "POST", body: form, headers: headers() });
    if (!res.ok) {
      setStatus(await errorText(res), "error");
      return;
    }
    const result = await res.json();
    const base = await upright(file, result);
    state.result = result;
    state.labels = decodeRLE(result.label_rle);
    state.base = base;
    state.hidden.clear();
    buildLayer();
    showStage();
    draw();
    renderLegend();
    setDownloads(true);
    const timing = result.cached ? "from the cache" : `${result.inference_ms.toFixed(0)} ms model`;
    setStatus(`${file.name || "image"} · ${result.width} × ${result.height} px · ${timing}`, "ok");
  } catch (e) {
    setStatus("Something went wrong: " + e.message, "error");
  } finally {
    document.body.classList.remove("busy");
  }
}

// The image as the server saw it. The browser decodes it itself when it can (and applies the EXIF
// orientation, as the server does); for what it cannot decode (TIFF) or where the sizes disagree,
// the server's overlay at opacity 0 is exactly the upright image.
async function upright(file, result) {
  try {
    const bmp = await createImageBitmap(file, { imageOrientation: "from-image" });
    if (bmp.width === result.width && bmp.height === result.height) return bmp;
    bmp.close();
  } catch (e) { /* fall through to the server's rendering */ }
  const form = new FormData();
  form.append("image", file, file.name || "image");
  const res = await fetch("/v1/segment?format=overlay&alpha=0&boundaries=false", {
    method: "POST", body: form, headers: headers(),
  });
  if (!res.ok) throw new Error(await errorText(res));
  return createImageBitmap(await res.blob());
}

function decodeRLE(rle) {
  const n = rle.height * rle.width;
  const out = state.model.classes.length > 256 ? new Uint16Array(n) : new Uint8Array(n);
  let pos = 0;
  for (let i = 0; i < rle.values.length; i++) {
    out.fill(rle.values[i], pos, pos + rle.lengths[i]);
    pos += rle.lengths[i];
  }
  if (pos !== n) throw new Error(`label map has ${pos} pixels, expected ${n}`);
  return out;
}

// --------------------------------------------------------------------------------------- drawing

function buildLayer() {
  const { width, height } = state.result;
  if (!state.layer) state.layer = document.createElement("canvas");
  const layer = state.layer;
  layer.width = width;
  layer.height = height;
  const ctx = layer.getContext("2d");
  const img = ctx.createImageData(width, height);
  // one 32-bit RGBA word per class; a Uint32Array view writes a pixel per store (in the machine's byte order)
  const lut = new Uint32Array(state.model.classes.length);
  const bytes = new Uint8Array(lut.buffer);
  state.model.classes.forEach((c, i) => {
    bytes.set([c.color[0], c.color[1], c.color[2], state.hidden.has(i) ? 0 : 255], i * 4);
  });
  const px = new Uint32Array(img.data.buffer);
  const labels = state.labels;
  for (let i = 0; i < labels.length; i++) px[i] = lut[labels[i]];
  ctx.putImageData(img, 0, 0);
}

function draw() {
  const canvas = $("canvas");
  const { width, height } = state.result;
  if (canvas.width !== width || canvas.height !== height) {
    canvas.width = width;
    canvas.height = height;
  }
  const ctx = canvas.getContext("2d");
  ctx.globalAlpha = 1;
  ctx.drawImage(state.base, 0, 0);
  ctx.globalAlpha = Number($("opacity").value) / 100;
  ctx.drawImage(state.layer, 0, 0);
  ctx.globalAlpha = 1;
  fitCanvas();
}

// Scale the canvas to the room it has, small images included (pixelated, so label edges stay sharp).
function fitCanvas() {
  const canvas = $("canvas");
  if (!state.result) return;
  const stage = $("stage");
  const style = getComputedStyle(stage);
  const maxW = stage.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight);
  const maxH = Math.max(200, window.innerHeight * 0.72);
  const scale = Math.min(maxW / canvas.width, maxH / canvas.height);
  canvas.style.width = Math.floor(canvas.width * scale) + "px";
  canvas.style.height = Math.floor(canvas.height * scale) + "px";
  canvas.classList.toggle("pixelated", scale > 1.5);
}

function showStage() {
  $("stage").hidden = false;
  $("drop").classList.add("compact");
}

// ---------------------------------------------------------------------------------------- legend

function renderLegend() {
  const list = $("legend");
  list.replaceChildren();
  if (!state.model) return;
  const classes = state.model.classes;
  let entries;
  if (state.result) {
    // the classes in this image, largest first
    entries = state.result.classes.filter((c) => c.pixels > 0).sort((a, b) => b.pixels - a.pixels);
    const absent = classes.length - entries.length;
    $("legend-note").textContent = absent > 0 ? `${absent} other class${absent > 1 ? "es" : ""} not in this image` : "";
  } else {
    entries = classes;
    $("legend-note").textContent = "Shares appear once an image is segmented.";
  }
  for (const c of entries) {
    const li = document.createElement("li");
    li.dataset.classIndex = c.index;
    li.dataset.name = c.name;
    if (c.fraction !== undefined) li.dataset.fraction = c.fraction;
    const label = document.createElement("label");
    const box = document.createElement("input");
    box.type = "checkbox";
    box.checked = !state.hidden.has(c.index);
    box.disabled = !state.result;
    box.setAttribute("aria-label", `show ${c.name}`);
    box.addEventListener("change", () => {
      if (box.checked) state.hidden.delete(c.index); else state.hidden.add(c.index);
      buildLayer();
      draw();
    });
    const swatch = document.createElement("span");
    swatch.className = "swatch";
    swatch.style.background = rgb(c.color);
    const name = document.createElement("span");
    name.className = "name";
    name.textContent = c.name;
    name.title = c.name;
    label.append(box, swatch, name);
    if (c.fraction !== undefined) {
      const share = document.createElement("span");
      share.className = "share";
      share.textContent = pct(c.fraction);
      const bar = document.createElement("span");
      bar.className = "share-bar";
      bar.style.width = Math.max(0.5, c.fraction * 100) + "%";
      bar.style.background = rgb(c.color);
      label.append(share, bar);
    }
    li.append(label);
    list.append(li);
  }
}

function setAll(visible) {
  if (!state.result) return;
  state.hidden = new Set(visible ? [] : state.model.classes.map((c) => c.index));
  buildLayer();
  draw();
  renderLegend();
}

// ------------------------------------------------------------------------------------ downloads

function setDownloads(enabled) {
  for (const id of ["dl-label", "dl-overlay", "dl-json"]) $(id).disabled = !enabled;
}

function save(blob, name) {
  const url = URL.createObjectURL(blob);
  const a = document.createElement("a");
  a.href = url;
  a.download = name;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

async function downloadLabel() {
  // the server keeps recent label maps by content hash: this second request does not rerun the model
  const form = new FormData();
  form.append("image", state.file, state.file.name || "image");
  const res = await fetch("/v1/segment?format=label", { method: "POST", body: form, headers: headers() });
  if (!res.ok) {
    setStatus(await errorText(res), "error");
    return;
  }
  save(await res.blob(), `${stem(state.file.name)}_label.png`);
}

function downloadOverlay() {
  $("canvas").toBlob((blob) => save(blob, `${stem(state.file.name)}_overlay.png`), "image/png");
}

function downloadJSON() {
  const blob = new Blob([JSON.stringify(state.result, null, 1)], { type: "application/json" });
  save(blob, `${stem(state.file.name)}.json`);
}

// ------------------------------------------------------------------------------ pointer read-out

function showTip(ev) {
  if (!state.result) return;
  const canvas = $("canvas");
  const rect = canvas.getBoundingClientRect();
  const x = Math.floor((ev.clientX - rect.left) * canvas.width / rect.width);
  const y = Math.floor((ev.clientY - rect.top) * canvas.height / rect.height);
  const tip = $("tip");
  if (x < 0 || y < 0 || x >= canvas.width || y >= canvas.height) {
    tip.hidden = true;
    return;
  }
  const c = state.result.classes[state.labels[y * canvas.width + x]];
  tip.textContent = `${c.name} · ${pct(c.fraction)}`;
  tip.hidden = false;
  const stageRect = $("stage").getBoundingClientRect();
  tip.style.left = Math.min(ev.clientX - stageRect.left + 12, stageRect.width - tip.offsetWidth - 4) + "px";
  tip.style.top = (ev.clientY - stageRect.top + 12) + "px";
}

// ---------------------------------------------------------------------------------------- wiring

function wire() {
  const drop = $("drop");
  $("file").addEventListener("change", (ev) => {
    segment(ev.target.files[0]);
    ev.target.value = "";  // picking the same file again should segment it again
  });
  // dropping anywhere on the page works; the drop zone only shows where
  window.addEventListener("dragover", (ev) => {
    ev.preventDefault();
    drop.classList.add("over");
  });
  window.addEventListener("dragleave", (ev) => {
    if (ev.relatedTarget === null) drop.classList.remove("over");
  });
  window.addEventListener("drop", (ev) => {
    ev.preventDefault();
    drop.classList.remove("over");
    const file = ev.dataTransfer && ev.dataTransfer.files[0];
    if (file) segment(file);
  });
  window.addEventListener("paste", (ev) => {
    const file = ev.clipboardData && ev.clipboardData.files[0];
    if (file) segment(file);
  });
  $("opacity").addEventListener("input", () => {
    $("opacity-out").textContent = $("opacity").value + "%";
    if (state.result) draw();
  });
  $("show-all").addEventListener("click", () => setAll(true));
  $("show-none").addEventListener("click", () => setAll(false));
  $("dl-label").addEventListener("click", downloadLabel);
  $("dl-overlay").addEventListener("click", downloadOverlay);
  $("dl-json").addEventListener("click", downloadJSON);
  $("canvas").addEventListener("pointermove", showTip);
  $("canvas").addEventListener("pointerleave", () => { $("tip").hidden = true; });
  $("key-box").addEventListener("submit", (ev) => {
    ev.preventDefault();
    state.key = $("key").value.trim();
    sessionStorage.setItem("pixelseg-api-key", state.key);
    loadModel();
  });
  new ResizeObserver(fitCanvas).observe($("stage"));
  window.addEventListener("resize", fitCanvas);
}

wire();
loadModel();
