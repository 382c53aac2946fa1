// The pixelseg page, part 1: what is shown of one segmented image and how it is looked at — the
// overlay drawn from the label map, the before/after split, zoom and pan, the pointer read-out.
// app.js (loaded after this file) handles the server, the uploads, the legend and the downloads.
"use strict";

const $ = (id) => document.getElementById(id);

const state = {
  model: null,        // GET /v1/model
  items: [],          // every uploaded image: {file, name, status, message, result, labels, base, timing, thumb}
  current: null,      // the item shown
  file: null,         // the shown item's File
  result: null,       // its POST /v1/segment JSON
  labels: null,       // Uint8Array/Uint16Array, row-major class indices
  base: null,         // ImageBitmap of the upright image
  layer: null,        // canvas with the class colors (hidden classes transparent)
  confidence: null,   // ImageBitmap of the shown item's confidence map, when the toggle is on
  hidden: new Set(),  // class indices not drawn
  zoom: 1,            // on top of the fit-to-room scale
  key: sessionStorage.getItem("pixelseg-api-key") || "",
};

const MAX_ZOOM = 32;

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

// The image, then the class colors right of the before/after split (all of it when the split is 0).
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
  const split = Math.round(width * Number($("compare").value) / 100);
  ctx.save();
  ctx.beginPath();
  ctx.rect(split, 0, width - split, height);
  ctx.clip();
  ctx.globalAlpha = Number($("opacity").value) / 100;
  ctx.drawImage(state.confidence || state.layer, 0, 0);
  ctx.restore();
  fitCanvas();
}

// Scale the canvas to the room it has (times the zoom), small images included (pixelated, so label
// edges stay sharp). Zoomed in, the stage scrolls; the page itself never does sideways.
function fitCanvas() {
  const canvas = $("canvas");
  if (!state.result) return;
  const stage = $("stage");
  const style = getComputedStyle(stage);
  const maxW = stage.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight);
  const maxH = Math.max(200, window.innerHeight * 0.72);
  const fit = Math.min(maxW / canvas.width, maxH / canvas.height);
  const scale = fit * state.zoom;
  canvas.style.width = Math.floor(canvas.width * scale) + "px";
  canvas.style.height = Math.floor(canvas.height * scale) + "px";
  canvas.classList.toggle("pixelated", scale > 1.5);
  stage.classList.toggle("zoomed", state.zoom > 1);
  $("zoom-level").textContent = state.zoom === 1 ? "fit" : Math.round(scale * 100) + "%";
  placeDivider();
}

function placeDivider() {
  const divider = $("divider");
  const value = Number($("compare").value);
  divider.hidden = !state.result || value <= 0 || value >= 100;
  if (divider.hidden) return;
  const canvas = $("canvas");
  divider.style.left = (canvas.offsetLeft + canvas.offsetWidth * value / 100 - 1) + "px";
  divider.style.top = canvas.offsetTop + "px";
  divider.style.height = canvas.offsetHeight + "px";
}

// Zoom about a point of the stage (its center by default), keeping that point where it is.
function setZoom(zoom, at) {
  const stage = $("stage");
  const old = state.zoom;
  state.zoom = Math.min(MAX_ZOOM, Math.max(1, zoom));
  if (state.zoom === old) return;
  const px = at ? at.x : stage.clientWidth / 2;
  const py = at ? at.y : stage.clientHeight / 2;
  const fx = (stage.scrollLeft + px) / stage.scrollWidth;
  const fy = (stage.scrollTop + py) / stage.scrollHeight;
  fitCanvas();
  stage.scrollLeft = fx * stage.scrollWidth - px;
  stage.scrollTop = fy * stage.scrollHeight - py;
}

function showStage(visible = true) {
  $("stage").hidden = !visible;
  $("zoom-bar").hidden = !visible;
  if (visible) $("drop").classList.add("compact");
}

function pct(fraction) {
  const p = fraction * 100;
  if (p > 0 && p < 0.1) return "<0.1%";
  return p.toFixed(1) + "%";
}

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
  const stage = $("stage");
  const stageRect = stage.getBoundingClientRect();
  const left = ev.clientX - stageRect.left + stage.scrollLeft + 12;
  tip.style.left = Math.min(left, stage.scrollLeft + stageRect.width - tip.offsetWidth - 4) + "px";
  tip.style.top = (ev.clientY - stageRect.top + stage.scrollTop + 12) + "px";
}

function wireView() {
  const stage = $("stage");
  const canvas = $("canvas");
  $("zoom-in").addEventListener("click", () => setZoom(state.zoom * 1.5));
  $("zoom-out").addEventListener("click", () => setZoom(state.zoom / 1.5));
  $("zoom-fit").addEventListener("click", () => setZoom(1));
  stage.addEventListener("wheel", (ev) => {
    if (!ev.ctrlKey || !state.result) return;    // plain wheel scrolls the page, as everywhere
    ev.preventDefault();
    const r = stage.getBoundingClientRect();
    setZoom(state.zoom * (ev.deltaY < 0 ? 1.25 : 0.8), { x: ev.clientX - r.left, y: ev.clientY - r.top });
  }, { passive: false });
  // drag to pan when zoomed in
  let drag = null;
  canvas.addEventListener("pointerdown", (ev) => {
    if (state.zoom === 1) return;
    drag = { x: ev.clientX, y: ev.clientY, left: stage.scrollLeft, top: stage.scrollTop };
    canvas.setPointerCapture(ev.pointerId);
  });
  canvas.addEventListener("pointermove", (ev) => {
    if (drag) {
      stage.scrollLeft = drag.left - (ev.clientX - drag.x);
      stage.scrollTop = drag.top - (ev.clientY - drag.y);
    }
    showTip(ev);
  });
  canvas.addEventListener("pointerup", () => { drag = null; });
  canvas.addEventListener("pointerleave", () => { $("tip").hidden = true; });
  $("opacity").addEventListener("input", () => {
    $("opacity-out").textContent = $("opacity").value + "%";
    if (state.result) draw();
  });
  $("compare").addEventListener("input", () => {
    const v = Number($("compare").value);
    $("compare-out").textContent = v === 0 ? "off" : `${v}% before`;
    if (state.result) draw();
  });
  new ResizeObserver(fitCanvas).observe(stage);
  window.addEventListener("resize", fitCanvas);
}
