// The pixelseg page: upload an image, draw the predicted classes over it, explore and download.
// Plain JavaScript with no dependencies, so the page works offline and needs no build step.
// The label map comes once from the API (JSON, run-length encoded); opacity and class toggles are
// redrawn locally, so moving the slider never calls the server again.
"use strict";

// (state, $, drawing, zoom and the before/after split: view.js)

const MAX_ITEMS = 24;   // uploads kept in the strip; older ones are dropped with their bitmaps

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

// Several files at once: each gets a place in the strip and is segmented in turn (one request at a
// time, so the page never floods the server); the first of a batch is shown as soon as it is done.
let queue = Promise.resolve();

function segmentFiles(files) {
  files = Array.from(files || []).filter(Boolean);
  if (!files.length) return;
  if (!state.model) {
    setStatus("The model is not loaded yet" + ($("key-box").hidden ? "." : ": enter the API key first."), "warn");
    return;
  }
  const items = files.map((file) => addItem(file));
  select(items[0]);
  for (const item of items) queue = queue.then(() => segmentItem(item));
}

function addItem(file) {
  const item = { file, name: file.name || "image", status: "busy", message: "", result: null, labels: null,
                 base: null, timing: "", thumb: null };
  state.items.push(item);
  while (state.items.length > MAX_ITEMS) {
    const old = state.items.shift();
    if (old.base && old !== state.current) old.base.close();
    if (old.confidence && old !== state.current) old.confidence.close();
  }
  renderGallery();
  return item;
}

async function segmentItem(item) {
  if (item === state.current) setStatus(`Segmenting ${item.name}…`, "busy");
  document.body.classList.add("busy");
  try {
    const form = new FormData();
    form.append("image", item.file, item.name);
    const t0 = performance.now();
    const res = await fetch("/v1/segment?format=json&rle=true", { method: "POST", body: form, headers: headers() });
    if (!res.ok) throw new Error(await errorText(res));
    const result = await res.json();
    const roundTrip = performance.now() - t0;
    item.base = await upright(item.file, result);
    item.labels = decodeRLE(result.label_rle);
    item.result = result;
    item.timing = timingText(result, res.headers.get("server-timing"), roundTrip);
    item.status = "ok";
  } catch (e) {
    item.status = "error";
    item.message = e.message;
  } finally {
    document.body.classList.remove("busy");
  }
  renderGallery();
  if (item === state.current) select(item);
}

// The model's own time (the call that labeled this image, from the Server-Timing header), and the
// whole round trip as the browser saw it.
function timingText(result, serverTiming, roundTrip) {
  if (result.cached) return `from the cache · ${roundTrip.toFixed(0)} ms round trip`;
  const infer = /(?:^|,)\s*infer;dur=([\d.]+)/.exec(serverTiming || "");
  const model = `model ${(infer ? Number(infer[1]) : result.inference_ms).toFixed(0)} ms`;
  return `${model} · ${roundTrip.toFixed(0)} ms round trip`;
}

// Show one item: its overlay, legend, downloads and status line.
function select(item) {
  state.current = item;
  state.file = item.file;
  state.result = item.result;
  state.labels = item.labels;
  state.base = item.base;
  state.confidence = null;
  state.hidden.clear();
  renderGallery();
  setDownloads(item.status === "ok");
  if (item.status === "ok") {
    buildLayer();
    showStage(true);
    draw();
    setStatus(`${item.name} · ${item.result.width} × ${item.result.height} px · ${item.timing}`, "ok");
    if ($("show-confidence").checked) showConfidence();
  } else {
    showStage(false);
    if (item.status === "error") setStatus(item.message, "error");
    else setStatus(`Segmenting ${item.name}…`, "busy");
  }
  renderLegend();
}

// ------------------------------------------------------------------------------------ confidence

// The confidence map (format=confidence: gray = top class probability x 255) is fetched once per image,
// when the toggle first asks for it, and drawn in place of the class colors.
async function confidenceOf(item) {
  if (!item.confidence) {
    const form = new FormData();
    form.append("image", item.file, item.name);
    const res = await fetch("/v1/segment?format=confidence", { method: "POST", body: form, headers: headers() });
    if (!res.ok) throw new Error(await errorText(res));
    item.temperature = res.headers.get("x-temperature");
    item.confidence = await createImageBitmap(await res.blob());
  }
  return item.confidence;
}

async function showConfidence() {
  const on = $("show-confidence").checked;
  const item = state.current;
  const out = $("confidence-out");
  state.confidence = null;
  out.textContent = on ? "loading…" : "off";
  if (on && item && item.status === "ok") {
    try {
      const bitmap = await confidenceOf(item);
      if (item !== state.current || !$("show-confidence").checked) return;   // moved on meanwhile
      state.confidence = bitmap;
    } catch (e) {
      setStatus(e.message, "error");
    }
  }
  if (state.result) draw();
  // said after drawing, so what the output reads is what the canvas shows
  if (state.confidence) out.textContent = item.temperature && item.temperature !== "1" ? `on (T = ${item.temperature})` : "on";
  else if (on) out.textContent = item && item.status === "error" ? "no image" : "on";
}

function renderGallery() {
  const list = $("gallery");
  list.hidden = state.items.length < 2;
  list.replaceChildren();
  for (const item of state.items) {
    const li = document.createElement("li");
    const button = document.createElement("button");
    button.type = "button";
    button.className = `thumb ${item.status}` + (item === state.current ? " current" : "");
    button.title = item.status === "error" ? `${item.name}: ${item.message}` : item.name;
    button.dataset.status = item.status;
    if (item === state.current) button.setAttribute("aria-current", "true");
    if (item.base) {
      if (!item.thumb) item.thumb = thumbnail(item.base);
      const img = document.createElement("canvas");
      img.width = item.thumb.width;
      img.height = item.thumb.height;
      img.getContext("2d").drawImage(item.thumb, 0, 0);
      button.append(img);
    }
    const name = document.createElement("span");
    name.textContent = item.name;
    button.append(name);
    button.addEventListener("click", () => select(item));
    li.append(button);
    list.append(li);
  }
}

function thumbnail(bitmap) {
  const scale = Math.min(1, 64 / Math.max(bitmap.width, bitmap.height));
  const c = document.createElement("canvas");
  c.width = Math.max(1, Math.round(bitmap.width * scale));
  c.height = Math.max(1, Math.round(bitmap.height * scale));
  c.getContext("2d").drawImage(bitmap, 0, 0, c.width, c.height);
  return c;
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

// ---------------------------------------------------------------------------------------- wiring

function wire() {
  const drop = $("drop");
  $("file").addEventListener("change", (ev) => {
    segmentFiles(ev.target.files);
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
    if (ev.dataTransfer) segmentFiles(ev.dataTransfer.files);
  });
  window.addEventListener("paste", (ev) => {
    if (ev.clipboardData) segmentFiles(ev.clipboardData.files);
  });
  $("show-all").addEventListener("click", () => setAll(true));
  $("show-none").addEventListener("click", () => setAll(false));
  $("dl-label").addEventListener("click", downloadLabel);
  $("dl-overlay").addEventListener("click", downloadOverlay);
  $("dl-json").addEventListener("click", downloadJSON);
  $("show-confidence").addEventListener("change", showConfidence);
  $("key-box").addEventListener("submit", (ev) => {
    ev.preventDefault();
    state.key = $("key").value.trim();
    sessionStorage.setItem("pixelseg-api-key", state.key);
    loadModel();
  });
}

wireView();
wire();
loadModel();
