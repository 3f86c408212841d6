// filterscope explore: the page. Plain JavaScript, no build step, no network beyond
// this server. Everything it shows comes from the JSON/PNG API (see server.py).
"use strict";

const S = {
  state: null,          // GET /api/state
  models: [],           // GET /api/models
  sigma: null,          // σ (0–255) the page asks for; null: the image's own
  pixel: null,          // [x, y] picked
  hover: null,          // [x, y] under the mouse
  view: { scale: 1, tx: 0, ty: 0 },
  selected: null,       // model whose footprint is outlined
  filters: {},          // model -> last filter JSON
  spectrum: null,       // last spectrum JSON (for the patch outline)
  pickId: 0,            // increases with each pick: late answers are dropped
  pending: 0,
};

const $ = (id) => document.getElementById(id);
const views = () => Array.from(document.querySelectorAll(".view"));

// ------------------------------------------------------------------ requests

let progressTimer = null;
function busy(delta) {
  S.pending += delta;
  document.body.dataset.pending = S.pending;  // read by tests and benchmarks/explore.py
  if (S.pending > 0 && progressTimer === null) {
    // Show the indicator only for work that takes more than 0.3 s.
    progressTimer = setTimeout(() => { $("progress").hidden = false; }, 300);
  }
  $("progress-text").textContent = `working… (${S.pending} request${S.pending === 1 ? "" : "s"})`;
  if (S.pending <= 0) {
    clearTimeout(progressTimer);
    progressTimer = null;
    $("progress").hidden = true;
  }
}

function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== null && v !== undefined) q.set(k, v);
  const text = q.toString();
  return text ? "?" + text : "";
}

async function request(path, params = {}, options = {}) {
  busy(1);
  try {
    const response = await fetch(path + query(params), options);
    if (!response.ok) {
      let message = `${response.status} ${response.statusText}`;
      try { message = (await response.json()).error || message; } catch (e) { /* not JSON */ }
      throw new Error(message);
    }
    return options.blob ? await response.blob() : await response.json();
  } finally {
    busy(-1);
  }
}

function showError(error) {
  $("error").textContent = error ? String(error.message || error) : "";
  $("error").hidden = !error;
}

const channel = () => (S.state && S.state.channels === 3 ? Number($("channel").value) : 0);
const sigmaParam = () => (S.state && S.state.sigma_adjustable ? S.sigma : null);

// ------------------------------------------------------------------ colours

// Diverging scale: blue (negative) - white (0) - red (positive), t in [-1, 1].
const NEG = [33, 102, 172], MID = [247, 247, 247], POS = [178, 24, 43];
function diverging(t) {
  const c = t < 0 ? NEG : POS, a = Math.min(Math.abs(t), 1);
  return MID.map((m, i) => Math.round(m + (c[i] - m) * a));
}

function fmt(v, digits = 4) {
  if (v === null || v === undefined) return "–";
  return Number(v).toFixed(digits);
}

// ------------------------------------------------------------------ views (zoom, pan)

function applyView() {
  const { scale, tx, ty } = S.view;
  for (const view of views()) {
    const stage = view.querySelector(".stage");
    if (!stage) continue;
    stage.style.transform = `translate(${tx}px, ${ty}px) scale(${scale})`;
    stage.style.setProperty("--scale", scale);
  }
}

function fitView() {
  const view = views()[0];
  const { width, height } = S.state;
  const scale = Math.min(view.clientWidth / width, view.clientHeight / height);
  S.view = {
    scale,
    tx: (view.clientWidth - width * scale) / 2,
    ty: (view.clientHeight - height * scale) / 2,
  };
  applyView();
}

function zoomAt(factor, cx, cy) {
  const v = S.view;
  const scale = Math.min(Math.max(v.scale * factor, 0.1), 64);
  const f = scale / v.scale;
  S.view = { scale, tx: cx - (cx - v.tx) * f, ty: cy - (cy - v.ty) * f };
  applyView();
}

function pixelAt(view, clientX, clientY) {
  const img = view.querySelector("img");
  const r = img.getBoundingClientRect();
  const x = Math.floor(((clientX - r.left) / r.width) * S.state.width);
  const y = Math.floor(((clientY - r.top) / r.height) * S.state.height);
  if (x < 0 || y < 0 || x >= S.state.width || y >= S.state.height) return null;
  return [x, y];
}

function buildViews() {
  for (const view of views()) {
    view.innerHTML = "";
    const stage = document.createElement("div");
    stage.className = "stage";
    const img = document.createElement("img");
    img.alt = view.dataset.kind + " image";
    img.width = S.state.width;
    img.height = S.state.height;
    img.draggable = false;
    stage.append(img);
    for (const cls of ["footprint", "patchbox", "marker"]) {
      const d = document.createElement("div");
      d.className = cls;
      d.hidden = true;
      stage.append(d);
    }
    view.append(stage);
  }
  fitView();
}

function place(el, x, y, w, h) {
  el.hidden = false;
  Object.assign(el.style, { left: `${x}px`, top: `${y}px`, width: `${w}px`, height: `${h}px` });
}

function drawOverlays() {
  for (const view of views()) {
    const marker = view.querySelector(".marker");
    const footprint = view.querySelector(".footprint");
    const patchbox = view.querySelector(".patchbox");
    if (!marker) continue;
    if (!S.pixel) { marker.hidden = footprint.hidden = patchbox.hidden = true; continue; }
    const [x, y] = S.pixel;
    place(marker, x, y, 1, 1);
    const f = S.filters[S.selected];
    if (f && f.pixel[0] === x && f.pixel[1] === y) {
      const r = f.extent_99;
      const x0 = Math.max(x - r, 0), y0 = Math.max(y - r, 0);
      const x1 = Math.min(x + r + 1, S.state.width), y1 = Math.min(y + r + 1, S.state.height);
      place(footprint, x0, y0, x1 - x0, y1 - y0);
    } else footprint.hidden = true;
    const sp = S.spectrum;
    if (sp) place(patchbox, sp.origin[0], sp.origin[1], sp.patch, sp.patch);
    else patchbox.hidden = true;
  }
}

function wireViews() {
  for (const view of views()) {
    let drag = null;
    view.addEventListener("pointerdown", (e) => {
      drag = { x: e.clientX, y: e.clientY, tx: S.view.tx, ty: S.view.ty, moved: false };
      view.setPointerCapture(e.pointerId);
    });
    view.addEventListener("pointermove", (e) => {
      S.hover = pixelAt(view, e.clientX, e.clientY);
      if (!drag) return;
      const dx = e.clientX - drag.x, dy = e.clientY - drag.y;
      if (Math.abs(dx) + Math.abs(dy) > 4) drag.moved = true;
      if (drag.moved) {
        S.view.tx = drag.tx + dx;
        S.view.ty = drag.ty + dy;
        applyView();
      }
    });
    view.addEventListener("pointerup", (e) => {
      if (drag && !drag.moved) {
        const p = pixelAt(view, e.clientX, e.clientY);
        if (p) pick(p);
      }
      drag = null;
    });
    view.addEventListener("pointerleave", () => { S.hover = null; });
    view.addEventListener("wheel", (e) => {
      e.preventDefault();
      const r = view.getBoundingClientRect();
      zoomAt(e.deltaY < 0 ? 1.25 : 0.8, e.clientX - r.left, e.clientY - r.top);
    }, { passive: false });
    view.addEventListener("keydown", (e) => onKey(e, view));
  }
}

function onKey(e, view) {
  const step = e.shiftKey ? 10 : 1;
  const moves = { ArrowLeft: [-step, 0], ArrowRight: [step, 0], ArrowUp: [0, -step], ArrowDown: [0, step] };
  const center = S.pixel
    ? [S.view.tx + (S.pixel[0] + 0.5) * S.view.scale, S.view.ty + (S.pixel[1] + 0.5) * S.view.scale]
    : [view.clientWidth / 2, view.clientHeight / 2];
  if (e.key in moves) {
    const [dx, dy] = moves[e.key];
    const [x, y] = S.pixel || [Math.floor(S.state.width / 2), Math.floor(S.state.height / 2)];
    pick([
      Math.min(Math.max(x + dx, 0), S.state.width - 1),
      Math.min(Math.max(y + dy, 0), S.state.height - 1),
    ]);
  } else if (e.key === "Enter" || e.key === " ") {
    pick(S.hover || S.pixel || [Math.floor(S.state.width / 2), Math.floor(S.state.height / 2)]);
  } else if (e.key === "+" || e.key === "=") zoomAt(1.5, ...center);
  else if (e.key === "-" || e.key === "_") zoomAt(1 / 1.5, ...center);
  else if (e.key === "0") fitView();
  else return;
  e.preventDefault();
}

// ------------------------------------------------------------------ images

async function setImage(kind, params) {
  const blob = await request(`/api/image/${kind}`, params, { blob: true });
  const url = URL.createObjectURL(blob);
  const img = document.querySelector(`.view[data-kind="${kind}"] img`);
  const old = img.src;
  img.src = url;
  if (old.startsWith("blob:")) URL.revokeObjectURL(old);
}

async function loadOutput() {
  const sigma = sigmaParam();
  const model = $("output-model").value;
  if (!model) return;
  await setImage("denoised", { model, sigma });
  await setImage("residual", { model, sigma });
  const info = await request("/api/output", { model, sigma });
  $("denoised-psnr").textContent = info.psnr !== undefined ? `(PSNR ${fmt(info.psnr, 2)} dB)` : "";
  $("noisy-psnr").textContent = info.noisy_psnr !== undefined ? `(PSNR ${fmt(info.noisy_psnr, 2)} dB)` : "";
  const map = info.noise_map_255;
  $("noise-map-figure").hidden = map === undefined;
  if (map !== undefined) {
    await setImage("noise-map", { model, sigma });
    $("noise-map-info").textContent =
      `(σ mean ${fmt(map.mean, 2)}, from ${fmt(map.min, 2)} to ${fmt(map.max, 2)}, 0–255; white is twice the RMS)`;
  }
}

// The noisy image first: once it is shown the page can be used; the outputs follow.
async function loadImages() {
  await setImage("noisy", { sigma: sigmaParam() });
  loadOutput().catch(showError);
}

// ------------------------------------------------------------------ filters

// An /api/filter answer's weights (base64 little-endian float32, filter_shape) as
// [channel][row][col] planes.
function filterPlanes(f) {
  const bytes = Uint8Array.from(atob(f.filter), (c) => c.charCodeAt(0));
  const values = new Float32Array(bytes.buffer);
  const shape = f.filter_shape.length === 2 ? [1, ...f.filter_shape] : f.filter_shape;
  const [C, H, W] = shape;
  const planes = [];
  for (let k = 0; k < C; k++) {
    const plane = [];
    for (let r = 0; r < H; r++) plane.push(Array.from(values.subarray((k * H + r) * W, (k * H + r + 1) * W)));
    planes.push(plane);
  }
  return planes;
}

function heatCanvas(weights, origin, pixel) {
  // weights: [row][col] (gray) or [channel][row][col] (colour: channels side by side)
  const planes = Array.isArray(weights[0][0]) ? weights : [weights];
  const h = planes[0].length, w = planes[0][0].length, gap = planes.length > 1 ? 1 : 0;
  let span = 0;
  for (const p of planes) for (const row of p) for (const v of row) span = Math.max(span, Math.abs(v));
  span = span || 1;
  const canvas = document.createElement("canvas");
  canvas.className = "heat";
  canvas.width = planes.length * (w + gap) - gap;
  canvas.height = h;
  const ctx = canvas.getContext("2d");
  const image = ctx.createImageData(canvas.width, h);
  planes.forEach((plane, k) => {
    for (let r = 0; r < h; r++) for (let c = 0; c < w; c++) {
      const [R, G, B] = diverging(plane[r][c] / span);
      const i = 4 * (r * canvas.width + k * (w + gap) + c);
      image.data.set([R, G, B, 255], i);
    }
  });
  ctx.putImageData(image, 0, 0);
  if (pixel) {  // the pixel itself: a one-weight square outline
    ctx.strokeStyle = "#000";
    ctx.lineWidth = 0.15;
    planes.forEach((_, k) => ctx.strokeRect(k * (w + gap) + pixel[0] - origin[0], pixel[1] - origin[1], 1, 1));
  }
  return { canvas, span, planes, w, h, gap };
}

function filterCard(model, f) {
  const card = document.createElement("article");
  card.className = "card filter-card";
  card.tabIndex = 0;
  card.dataset.model = model.name;
  card.dataset.sum = f.sum;
  card.dataset.pixel = f.pixel.join(",");
  const title = document.createElement("h3");
  title.textContent = model.name;
  card.append(title);
  const { canvas, span, planes, w, gap } = heatCanvas(filterPlanes(f), f.origin, f.pixel);
  const px = f.pixel[0] - f.origin[0], py = f.pixel[1] - f.origin[1];
  card.dataset.center = planes[f.channel < planes.length ? f.channel : 0][py][px];
  canvas.setAttribute("role", "img");
  canvas.setAttribute("aria-label",
    `filter of ${model.name} at pixel ${f.pixel.join(", ")}: ${f.size[0]} by ${f.size[1]} weights, sum ${fmt(f.sum)}`);
  const readout = document.createElement("p");
  readout.className = "readout";
  readout.textContent = "hover a weight";
  canvas.addEventListener("mousemove", (e) => {
    const r = canvas.getBoundingClientRect();
    const cx = Math.floor(((e.clientX - r.left) / r.width) * canvas.width);
    const cy = Math.floor(((e.clientY - r.top) / r.height) * canvas.height);
    const k = Math.floor(cx / (w + gap)), c = cx - k * (w + gap);
    if (k >= planes.length || c >= w || cy < 0 || cy >= planes[0].length) return;
    const where = `(${f.origin[0] + c}, ${f.origin[1] + cy})` + (planes.length > 1 ? ` channel ${k}` : "");
    readout.textContent = `weight at ${where}: ${planes[k][cy][c].toExponential(3)}`;
  });
  card.append(canvas);
  const bar = document.createElement("div");
  bar.innerHTML = `<div class="colorbar-strip"></div><div class="colorbar"><span>−${span.toPrecision(2)}</span><span>0</span><span>+${span.toPrecision(2)}</span></div>`;
  card.append(bar, readout);
  const numbers = document.createElement("p");
  numbers.className = "numbers";
  const lines = [
    `<span class="sum">sum of weights ${fmt(f.sum)}</span>`,
    `<span class="center">weight at the pixel ${fmt(card.dataset.center)}</span>`,
    `99% of the energy within ${f.extent_99} px (RMS ${fmt(f.extent_rms, 2)} px)`,
    `negative weights ${(100 * f.negative_fraction).toFixed(1)}% of Σ|w|`,
    `output ${fmt(f.output_value)} (the denoised pixel)` + (f.t ? ` · twicing step t = ${fmt(f.t, 6)}` : ""),
    `<span class="window">window ${f.size[0]}×${f.size[1]} at (${f.origin.join(", ")}), radius ${f.window_radius} px: ` +
      `${(100 * f.window_share).toFixed(1)}% of Σ|w|, sum ${fmt(f.window_sum)}</span>`,
  ];
  if (f.far && f.far.length) {
    lines.push(`plus ${f.far.length} weight(s) from the blind noise estimate, far from the pixel ` +
      `(${(100 * f.far_share).toFixed(1)}% of Σ|w|), e.g. ${fmt(f.far[0][3])} at (${f.far[0][0]}, ${f.far[0][1]})`);
  }
  lines.push(f.precision === "fast" ? "float32 preview; the exact (float64) row follows" : `exact row (${f.precision === "exact" ? "float64" : f.precision})`);
  numbers.innerHTML = lines.join("<br>");
  card.append(numbers);
  const controls = document.createElement("p");
  const widen = document.createElement("button");
  widen.textContent = "wider";
  widen.disabled = f.window_radius >= f.max_radius;
  const fit = document.createElement("button");
  fit.textContent = "fit 99%";
  fit.disabled = f.window_radius === f.window_99;
  const redraw = async (radius) => {
    const g = await request("/api/filter", { model: model.id, x: f.pixel[0], y: f.pixel[1], sigma: sigmaParam(),
      channel: f.channel, precision: f.precision, radius });
    S.filters[model.name] = g;
    card.replaceWith(filterCard(model, g));
    drawOverlays();
  };
  widen.addEventListener("click", (e) => { e.stopPropagation(); redraw(Math.max(2 * f.window_radius, f.window_radius + 4)).catch(showError); });
  fit.addEventListener("click", (e) => { e.stopPropagation(); redraw(null).catch(showError); });
  controls.append(widen, " ", fit);
  card.append(controls);
  const select = () => {
    S.selected = model.name;
    document.querySelectorAll(".filter-card").forEach((c) => c.classList.toggle("selected", c === card));
    drawOverlays();
  };
  card.addEventListener("click", select);
  card.addEventListener("focus", select);
  if (S.selected === model.name) card.classList.add("selected");
  return card;
}

function placeholderCard(model, text) {
  const card = document.createElement("article");
  card.className = "card";
  card.dataset.model = model.name;
  card.innerHTML = `<h3></h3><p></p>`;
  card.querySelector("h3").textContent = model.name;
  card.querySelector("p").textContent = text;
  return card;
}

function slot(model) {
  return document.querySelector(`#filters [data-model="${CSS.escape(model.name)}"]`);
}

async function loadFilters(id) {
  const [x, y] = S.pixel;
  const sigma = sigmaParam();
  const container = $("filters");
  for (const model of S.models) {
    const old = slot(model);
    if (model.kind === "output") {
      if (!old) container.append(placeholderCard(model, `${model.description}.`));
      continue;
    }
    if (old) old.setAttribute("aria-busy", "true");
    else container.append(placeholderCard(model, "computing…"));
  }
  await Promise.all(S.models.filter((m) => m.has_filter).map(async (model) => {
    // Networks: a float32 preview first (fast), then the exact float64 row.
    const precisions = model.kind === "jacobian" ? ["fast", "exact"] : ["exact"];
    for (const precision of precisions) {
      try {
        const f = await request("/api/filter", { model: model.id, x, y, sigma, channel: channel(), precision });
        if (id !== S.pickId) return;
        S.filters[model.name] = f;
        slot(model).replaceWith(filterCard(model, f));
        drawOverlays();
      } catch (error) {
        // A newer pick stopped this one (409): nothing to show.
        if (id === S.pickId) slot(model).replaceWith(placeholderCard(model, `error: ${error.message}`));
        return;
      }
    }
  }));
}

async function loadSigmaRow(id) {
  const model = S.models.find((m) => m.has_filter && m.kind === "jacobian");
  if (!S.state.sigma_adjustable || !model) return;
  $("sigma-row-block").hidden = false;
  if (!$("sigma-row-auto").checked) return;
  $("sigma-row-model").textContent = model.name;
  const row = $("sigma-row");
  row.innerHTML = "";
  const [x, y] = S.pixel;
  for (const sigma of [10, 25, 50, 75, 100]) {
    const f = await request("/api/filter", { model: model.id, x, y, sigma, channel: channel(), precision: "fast", lane: "sigma-row" });
    if (id !== S.pickId) return;
    const card = document.createElement("article");
    card.className = "card";
    card.dataset.sigma = sigma;
    const { canvas } = heatCanvas(filterPlanes(f), f.origin, f.pixel);
    const p = document.createElement("p");
    p.textContent = `σ = ${sigma}: sum ${fmt(f.sum, 3)}, 99% within ${f.extent_99} px`;
    card.append(canvas, p);
    row.append(card);
  }
}

async function loadSpectrum(id) {
  const name = $("spectrum-model").value;
  if (!name || !S.pixel || !$("spectrum-auto").checked) return;
  const [x, y] = S.pixel;
  const sp = await request("/api/spectrum", { model: name, x, y, sigma: sigmaParam() });
  if (id !== S.pickId) return;
  S.spectrum = sp;
  drawOverlays();
  const box = $("spectrum");
  box.innerHTML = "";
  const text = document.createElement("p");
  text.className = "numbers";
  text.textContent = `${name}: ${sp.patch}×${sp.patch} patch at (${sp.origin.join(", ")}), ` +
    `effective dimension d = ${fmt(sp.effective_dim, 1)} of ${sp.singular_values.length}` +
    (sp.clean_energy_fraction !== null ? `, clean patch energy inside the top ${sp.signal_dim}: ${(100 * sp.clean_energy_fraction).toFixed(1)}%` : "");
  box.append(text, plotValues(sp.singular_values, sp.signal_dim));
  const vectors = document.createElement("div");
  vectors.className = "vectors";
  sp.vectors.forEach((v, i) => {
    const fig = document.createElement("figure");
    const { canvas } = heatCanvas(v, [0, 0], null);
    canvas.style.width = "80px";
    const cap = document.createElement("figcaption");
    cap.textContent = `u${i + 1}, s=${sp.singular_values[i].toPrecision(3)}`;
    fig.append(canvas, cap);
    vectors.append(fig);
  });
  box.append(vectors);
}

function plotValues(values, mark) {
  // Singular values against their index, linear axes, with the signal dimension marked.
  const canvas = document.createElement("canvas");
  canvas.className = "plot";
  canvas.width = 360;
  canvas.height = 140;
  canvas.setAttribute("role", "img");
  canvas.setAttribute("aria-label", `singular values, largest ${values[0].toPrecision(3)}`);
  const ctx = canvas.getContext("2d");
  const top = Math.max(...values, 1e-12), n = values.length;
  const X = (i) => 30 + (i / Math.max(n - 1, 1)) * 320, Y = (v) => 125 - (v / top) * 110;
  ctx.strokeStyle = "#999";
  ctx.strokeRect(30, 15, 320, 110);
  ctx.fillStyle = "#555";
  ctx.font = "10px sans-serif";
  ctx.fillText(top.toPrecision(2), 2, 20);
  ctx.fillText("0", 18, 128);
  ctx.fillText(`index (1..${n})`, 150, 138);
  ctx.strokeStyle = "#b2182b";
  ctx.beginPath();
  values.forEach((v, i) => (i ? ctx.lineTo(X(i), Y(v)) : ctx.moveTo(X(i), Y(v))));
  ctx.stroke();
  ctx.strokeStyle = "#0b63c5";
  ctx.setLineDash([3, 3]);
  ctx.beginPath();
  ctx.moveTo(X(mark - 1), 15);
  ctx.lineTo(X(mark - 1), 125);
  ctx.stroke();
  return canvas;
}

async function pick(pixel) {
  const started = performance.now();
  S.pixel = pixel;
  const id = ++S.pickId;
  $("pixel-info").textContent = `Picked pixel (x, y) = (${pixel[0]}, ${pixel[1]}).`;
  document.body.dataset.picked = pixel.join(",");
  drawOverlays();
  showError(null);
  try {
    await loadFilters(id);
    if (id === S.pickId) {
      // Milliseconds from the pick to every filter card drawn (benchmarks/explore.py).
      document.body.dataset.filterMs = (performance.now() - started).toFixed(1);
      document.body.dataset.filtersShown = pixel.join(",");
    }
    await loadSpectrum(id);
    await loadSigmaRow(id);
  } catch (error) {
    showError(error);
  }
}

// ------------------------------------------------------------------ other panels

async function loadDecomposition() {
  const model = $("decomposition-model").value;
  if (!model) return;
  const sigma = sigmaParam();
  const box = $("decomposition");
  const info = await request("/api/decomposition", { model, sigma });
  box.innerHTML = "";
  for (const [kind, label, norm] of [["linear", "linear part A<sub>y</sub>y", info.linear_norm], ["bias", "net bias b<sub>y</sub>", info.bias_norm]]) {
    const card = document.createElement("figure");
    card.className = "card";
    const img = document.createElement("img");
    img.alt = `${kind} of ${model}`;
    img.style.width = "300px";
    img.src = URL.createObjectURL(await request(`/api/image/${kind}`, { model, sigma }, { blob: true }));
    const cap = document.createElement("figcaption");
    cap.innerHTML = `${label}: RMS ${fmt(norm, 2)}` + (kind === "bias" ? ` (gray scale ±${fmt(info.bias_span, 1)})` : "");
    card.append(img, cap);
    box.append(card);
  }
}

async function loadEigen() {
  const model = $("eigen-model").value;
  if (!model) return;
  const sigma = sigmaParam();
  const info = await request("/api/eigen", { model, sigma });
  const box = $("eigen");
  box.innerHTML = "";
  for (let i = 0; i < info.count; i++) {
    const card = document.createElement("figure");
    card.className = "card";
    const img = document.createElement("img");
    img.alt = `eigenimage ${i + 1} of ${model}`;
    img.src = URL.createObjectURL(await request("/api/image/eigen", { model, sigma, index: i }, { blob: true }));
    const cap = document.createElement("figcaption");
    cap.textContent = `#${i + 1}, λ = ${info.eigenvalues[i].toPrecision(4)}`;
    card.append(img, cap);
    box.append(card);
  }
}

function fillSelect(select, models) {
  select.innerHTML = "";
  for (const m of models) {
    const option = document.createElement("option");
    option.value = m.name;
    option.textContent = `${m.name} — ${m.description}`;
    select.append(option);
  }
}

function describeState() {
  const st = S.state;
  const noise = st.sigma_adjustable
    ? `clean image with Gaussian noise σ = ${S.sigma} (seed ${st.seed})`
    : "noisy image analysed as given";
  $("image-info").textContent = `${st.width}×${st.height}, ${st.channels === 1 ? "gray" : "colour"}, ${noise}`;
}

async function reset() {
  S.state = await request("/api/state");
  S.sigma = S.state.sigma;
  S.pixel = null;
  S.filters = {};
  S.spectrum = null;
  S.pickId++;
  $("filters").innerHTML = "";
  $("sigma-row").innerHTML = "";
  $("decomposition").innerHTML = "";
  $("eigen").innerHTML = "";
  $("spectrum").innerHTML = "";
  $("pixel-info").textContent = "No pixel picked yet.";
  const slider = $("sigma");
  $("sigma-control").hidden = !S.state.sigma_adjustable;
  $("channel-control").hidden = S.state.channels !== 3;
  if (S.state.sigma_adjustable) {
    slider.max = Math.max(100, Math.ceil(S.sigma));
    slider.value = S.sigma;
    $("sigma-value").textContent = S.sigma;
  }
  describeState();
  buildViews();
  await loadImages();
}

async function main() {
  S.models = (await request("/api/models")).models;
  const filtered = S.models.filter((m) => m.has_filter);
  S.selected = filtered.length ? filtered[0].name : null;
  fillSelect($("output-model"), S.models);
  const withBias = S.models.filter((m) => m.kind === "jacobian" && m.has_bias);
  $("decomposition-section").hidden = withBias.length === 0;
  fillSelect($("decomposition-model"), withBias);
  const networks = S.models.filter((m) => m.has_spectrum);
  $("spectrum-section").hidden = networks.length === 0;
  fillSelect($("spectrum-model"), networks);
  const nonlocal = S.models.filter((m) => m.has_eigenimages);
  $("eigen-section").hidden = nonlocal.length === 0;
  fillSelect($("eigen-model"), nonlocal);
  wireViews();
  await reset();
  document.body.dataset.ready = "1";

  $("output-model").addEventListener("change", () => loadOutput().catch(showError));
  $("sigma").addEventListener("input", () => { $("sigma-value").textContent = $("sigma").value; });
  $("sigma").addEventListener("change", () => {
    S.sigma = Number($("sigma").value);
    describeState();
    loadImages().catch(showError);
    if (S.pixel) pick(S.pixel);
  });
  $("channel").addEventListener("change", () => { if (S.pixel) pick(S.pixel); });
  $("decomposition-button").addEventListener("click", () => loadDecomposition().catch(showError));
  $("eigen-button").addEventListener("click", () => loadEigen().catch(showError));
  $("spectrum-model").addEventListener("change", () => loadSpectrum(S.pickId).catch(showError));
  $("upload").addEventListener("change", (e) => e.target.files[0] && upload(e.target.files[0]));
  const area = $("images");
  area.addEventListener("dragover", (e) => { e.preventDefault(); area.classList.add("dropping"); });
  area.addEventListener("dragleave", () => area.classList.remove("dropping"));
  area.addEventListener("drop", (e) => {
    e.preventDefault();
    area.classList.remove("dropping");
    if (e.dataTransfer.files[0]) upload(e.dataTransfer.files[0]);
  });
}

async function upload(file) {
  try {
    await request("/api/upload", {}, { method: "POST", body: file });
    await reset();
  } catch (error) {
    showError(error);
  }
}

main().catch(showError);
