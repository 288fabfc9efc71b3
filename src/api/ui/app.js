// Siamese console: verify, collections (enrol, browse, erase, verify, identify), models and retrain jobs.
// Plain DOM and fetch against the service's own /v1 API; the API key stays in this tab (sessionStorage).
import { drawEpochChart } from "./chart.js";

const KEY_STORE = "siamese.apiKey";
let apiKey = sessionStorage.getItem(KEY_STORE) || "";
let page = null; // AbortController of the screen on show: navigating away stops its requests and streams.
let modelsCache = null;

// ---------- small helpers ----------

/** An element with attributes (`on…` are listeners) and children (strings become text, never HTML). */
function h(tag, attrs = {}, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on") && typeof v === "function") e.addEventListener(k.slice(2), v);
    else if (k === "class") e.className = v;
    else if (k === "style") e.style.cssText = v; // CSSOM, which the page's CSP allows (a style attribute it does not)
    else e.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of kids.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    e.append(c instanceof Node ? c : String(c));
  }
  return e;
}

const enc = encodeURIComponent;
const fmt = (x, d = 4) => (typeof x === "number" && Number.isFinite(x) ? x.toFixed(d) : "–");
const pct = (x, d = 2) => (typeof x === "number" && Number.isFinite(x) ? `${(x * 100).toFixed(d)} %` : "–");
const when = (ms) => (ms ? new Date(ms).toLocaleString() : "–");

/** A problem+json answer (or a network failure) as an exception. */
class Problem extends Error {
  constructor(p) {
    super(p.detail || p.title || `HTTP ${p.status}`);
    this.status = p.status;
    this.code = p.code || `http_${p.status}`;
    this.detail = p.detail || p.title || "request failed";
    this.body = p;
  }
}

/** Call the API: `json` or `form` body; answers parsed JSON (or a Blob with `blob`, the Response with `stream`). */
async function api(path, opts = {}) {
  const headers = { accept: opts.accept || "application/json" };
  if (apiKey) headers["x-api-key"] = apiKey;
  let body = opts.form;
  if (opts.json !== undefined) {
    headers["content-type"] = "application/json";
    body = JSON.stringify(opts.json);
  }
  let r;
  try {
    r = await fetch(path, { method: opts.method || (body ? "POST" : "GET"), headers, body, signal: opts.signal });
  } catch (e) {
    if (e.name === "AbortError") throw e;
    throw new Problem({ status: 0, code: "network", detail: `the service did not answer (${e.message})` });
  }
  if (!r.ok) {
    let p;
    try {
      p = await r.json();
    } catch {
      p = { status: r.status, code: `http_${r.status}`, detail: r.statusText || "request failed" };
    }
    p.status = r.status;
    if (r.status === 401) askKey(p.detail);
    throw new Problem(p);
  }
  if (opts.blob) return r.blob();
  if (opts.stream) return r;
  const t = await r.text();
  return t ? JSON.parse(t) : null;
}

/** An alert box for a failed call: 401/403 in plain words, otherwise the problem's `detail` and `code`. */
function errorBox(err) {
  if (err.name === "AbortError") return null;
  if (!(err instanceof Problem)) return h("div", { class: "error", role: "alert" }, String(err.message || err));
  let text;
  if (err.status === 401) text = `Not signed in (401): ${err.detail}. Set an API key with the "API key" button.`;
  else if (err.status === 403) text = `Not allowed (403): ${err.detail}. This key lacks the scope for this action.`;
  else text = err.detail;
  const box = h("div", { class: "error", role: "alert", "data-code": err.code, "data-status": err.status }, text);
  if (err.status !== 401 && err.status !== 403) box.append(h("span", { class: "muted" }, ` (${err.status} ${err.code})`));
  return box;
}

/** Show `err` in `slot` (an element emptied first); nothing for an aborted request. */
function showError(slot, err) {
  const box = errorBox(err);
  slot.replaceChildren(...(box ? [box] : []));
  if (!box) return;
  if (!(err instanceof Problem)) console.error(err);
}

/** Run `fn` with `button` disabled, errors into `errSlot`. */
async function busy(button, errSlot, fn) {
  button.disabled = true;
  errSlot.replaceChildren();
  try {
    await fn();
  } catch (e) {
    showError(errSlot, e);
  } finally {
    button.disabled = false;
  }
}

function status(text) {
  document.getElementById("status").textContent = text || "";
}

async function models(refresh = false) {
  if (!modelsCache || refresh) modelsCache = (await api("/v1/models", { signal: page.signal })).models;
  return modelsCache;
}

function field(label, control, hint) {
  return h("div", { class: "field" }, h("label", { for: control.id }, label), control, hint ? h("small", { class: "muted" }, hint) : null);
}

function select(id, options, value) {
  return h("select", { id }, options.map(([v, t]) => h("option", { value: v, selected: v === value }, t)));
}

function fileInput(id, label, multiple = false) {
  return h("input", { id, type: "file", accept: "image/*,.pgm,.tif,.tiff", multiple, "aria-label": label });
}

/** Draw an image file into a canvas (null when the browser cannot decode that format). */
async function bitmapOf(file) {
  try {
    return await createImageBitmap(file);
  } catch {
    return null;
  }
}

// ---------- API key ----------

function askKey(why) {
  const d = document.getElementById("key-dialog");
  document.getElementById("key-why").textContent = why
    ? `The server says: ${why}. A key is kept in this tab only and sent with every request.`
    : "A key is kept in this tab only and sent with every request.";
  if (d.open) return; // leave what the person is typing alone
  document.getElementById("key-input").value = apiKey;
  d.returnValue = ""; // Esc must not repeat the last choice
  d.showModal();
}

function setupKeyDialog() {
  const d = document.getElementById("key-dialog");
  const b = document.getElementById("key-button");
  const label = () => (b.textContent = apiKey ? "API key ✓" : "API key");
  label();
  b.addEventListener("click", () => askKey(""));
  d.addEventListener("close", () => {
    if (d.returnValue === "save") apiKey = document.getElementById("key-input").value.trim();
    else if (d.returnValue === "forget") apiKey = "";
    else return;
    if (apiKey) sessionStorage.setItem(KEY_STORE, apiKey);
    else sessionStorage.removeItem(KEY_STORE);
    modelsCache = null;
    label();
    route();
  });
}

// ---------- verify ----------

/** A drop zone for one image: pick a file, drop one, or take a camera photo; draws the image and a face. */
function imageSlot(name, label) {
  const slot = { file: null, bitmap: null };
  const input = fileInput(`verify-file-${name}`, label);
  const canvas = h("canvas", { id: `verify-canvas-${name}`, width: 10, height: 10, hidden: true, role: "img", "aria-label": `${label} preview` });
  const note = h("p", { class: "muted" }, "Drop an image here, or");
  const video = h("video", { hidden: true, playsinline: true, muted: true, "aria-label": "camera" });
  const camera = h("button", { type: "button", class: "ghost", id: `verify-camera-${name}`, "aria-label": `Use the camera for the ${label.toLowerCase()}` }, "Use camera");
  const snap = h("button", { type: "button", hidden: true }, "Take photo");
  let stream = null;
  const zone = h("div", { class: "drop", id: `verify-drop-${name}` }, h("strong", {}, label), canvas, video, note,
    h("div", { class: "pick" }, input, camera, snap));

  async function setFile(file) {
    slot.file = file;
    const bm = await bitmapOf(file);
    if (slot.file !== file) return bm?.close(); // a later pick won
    slot.bitmap?.close();
    slot.bitmap = bm;
    slot.draw(null);
    note.textContent = slot.bitmap ? file.name : `${file.name}: no preview for this format (the server reads it)`;
  }
  slot.draw = (face) => {
    const bm = slot.bitmap;
    if (!bm) {
      canvas.hidden = true;
      return;
    }
    // Small photos are drawn larger (the face box and landmarks stay readable), large ones smaller.
    const scale = Math.min(3, 300 / Math.max(bm.width, bm.height));
    canvas.width = Math.round(bm.width * scale);
    canvas.height = Math.round(bm.height * scale);
    const g = canvas.getContext("2d");
    g.drawImage(bm, 0, 0, canvas.width, canvas.height);
    if (face) {
      const [x1, y1, x2, y2] = face.box.map((v) => v * scale);
      g.lineWidth = Math.max(2, canvas.width / 160);
      g.strokeStyle = "#39d353";
      g.strokeRect(x1, y1, x2 - x1, y2 - y1);
      g.fillStyle = "#ff4d6d";
      for (const [x, y] of face.landmarks) {
        g.beginPath();
        g.arc(x * scale, y * scale, Math.max(2, canvas.width / 120), 0, 2 * Math.PI);
        g.fill();
      }
      canvas.setAttribute("data-face", "drawn");
    } else canvas.removeAttribute("data-face");
    canvas.hidden = false;
  };
  input.addEventListener("change", () => input.files[0] && setFile(input.files[0]));
  zone.addEventListener("dragover", (e) => {
    e.preventDefault();
    zone.classList.add("over");
  });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (e) => {
    e.preventDefault();
    zone.classList.remove("over");
    if (e.dataTransfer.files[0]) setFile(e.dataTransfer.files[0]);
  });
  if (!navigator.mediaDevices?.getUserMedia) camera.hidden = true;
  const stop = () => {
    stream?.getTracks().forEach((t) => t.stop());
    stream = null;
    video.hidden = true;
    snap.hidden = true;
  };
  camera.addEventListener("click", async () => {
    stop();
    const signal = page.signal;
    try {
      const s = await navigator.mediaDevices.getUserMedia({ video: true });
      if (signal.aborted) return s.getTracks().forEach((t) => t.stop());
      stream = s;
      video.srcObject = stream;
      video.hidden = false;
      snap.hidden = false;
      canvas.hidden = true;
      await video.play();
    } catch (e) {
      note.textContent = `Camera not available: ${e.message}`;
      stop();
    }
  });
  snap.addEventListener("click", () => {
    const c = h("canvas", { width: video.videoWidth, height: video.videoHeight });
    c.getContext("2d").drawImage(video, 0, 0);
    stop();
    c.toBlob((b) => b && setFile(new File([b], "camera.png", { type: "image/png" })), "image/png");
  });
  page.signal.addEventListener("abort", stop);
  slot.el = zone;
  return slot;
}

function verdictLine(same, modality, id) {
  const noun = modality === "signature" ? ["Same writer", "Different writers"] : ["Same person", "Different people"];
  return h("div", { class: `verdict ${same ? "same" : "different"}`, id, "data-verdict": same ? "same" : "different" },
    same ? `✔ ${noun[0]}` : `✘ ${noun[1]}`);
}

/** Distance and threshold on one scale (green side: same). */
function scale(distance, threshold) {
  const max = Math.max(threshold * 2, distance * 1.15, 1e-6);
  const at = (v) => `${Math.min(100, (v / max) * 100).toFixed(2)}%`;
  const s = h("div", { class: "scale", role: "img", "aria-label": `distance ${fmt(distance)} against threshold ${fmt(threshold)}` },
    h("div", { class: "bar" }),
    h("div", { class: "mark t", style: `left:${at(threshold)}` }, h("span", {}, `threshold ${fmt(threshold, 3)}`)),
    h("div", { class: "mark", style: `left:${at(distance)}` }, h("span", {}, `distance ${fmt(distance, 3)}`)));
  s.firstChild.style.setProperty("--t", at(threshold));
  return s;
}

async function viewVerify(root) {
  root.append(h("h1", {}, "Verify two images"));
  const err = h("div", { id: "verify-error" });
  const result = h("div", { id: "verify-result", "aria-live": "polite" });
  let list;
  try {
    list = await models();
  } catch (e) {
    showError(err, e);
    root.append(err);
    return;
  }
  const def = list.find((m) => m.default) || list[0];
  const modelSel = select("verify-model", list.map((m) => [m.id, `${m.id} (${m.modality})`]), def?.id);
  const metricSel = select("verify-metric", [["", "model default"], ["euclidean", "Euclidean"], ["cosine", "cosine"]], "");
  const thr = h("input", { id: "verify-threshold", type: "number", step: "any", min: 0, placeholder: "calibrated" });
  const a = imageSlot("a", "First image");
  const b = imageSlot("b", "Second image");
  const run = h("button", { type: "button", id: "verify-run" }, "Verify");
  root.append(
    h("section", { class: "panel" },
      h("div", { class: "grid2" }, a.el, b.el),
      h("div", { class: "row" }, field("Model", modelSel), field("Metric", metricSel), field("Threshold", thr), run)),
    err, result);
  run.addEventListener("click", () => busy(run, err, async () => {
    if (!a.file || !b.file) throw new Error("Pick two images first.");
    result.replaceChildren(h("p", { class: "muted" }, "Comparing…"));
    const form = new FormData();
    form.append("image_a", a.file, a.file.name);
    form.append("image_b", b.file, b.file.name);
    form.append("model", modelSel.value);
    if (metricSel.value) form.append("metric", metricSel.value);
    if (thr.value.trim()) form.append("threshold", thr.value.trim());
    form.append("chips", "true");
    let v;
    try {
      v = await api("/v1/verify", { form, signal: page.signal });
    } catch (e) {
      result.replaceChildren();
      a.draw(null);
      b.draw(null);
      throw e;
    }
    const m = list.find((x) => x.id === v.model.id);
    a.draw(v.faces?.image_a);
    b.draw(v.faces?.image_b);
    const t = v.timings;
    result.replaceChildren(h("section", { class: "panel" },
      verdictLine(v.verified, m?.modality, "verdict"),
      scale(v.distance, v.threshold),
      h("div", { class: "grid2" },
        h("dl", { class: "kv" },
          h("dt", {}, "Distance"), h("dd", { id: "verify-distance" }, `${fmt(v.distance)} (${v.metric})`),
          h("dt", {}, "Threshold"), h("dd", {}, `${fmt(v.threshold)}${v.threshold_overridden ? " (from this request)" : " (calibrated)"}`),
          h("dt", {}, "Calibrated score"), h("dd", { id: "verify-score" }, `${pct(v.score, 1)} probability of the same identity`),
          h("dt", {}, "Model"), h("dd", {}, `${v.model.id} v${v.model.version}`),
          h("dt", {}, "Timings"), h("dd", {}, `decode ${fmt(t.decode_ms, 1)} ms · queue ${fmt(t.queue_ms, 1)} ms · inference ${fmt(t.inference_ms, 1)} ms · total ${fmt(t.total_ms, 1)} ms (batch of ${t.batch_images})`)),
        v.chips
          ? h("div", {},
            h("h3", {}, "What the encoder saw"),
            h("div", { class: "chips", id: "verify-chips" },
              h("figure", {}, h("img", { src: v.chips.image_a, alt: "encoder input for the first image" }), h("figcaption", {}, "first")),
              h("figure", {}, h("img", { src: v.chips.image_b, alt: "encoder input for the second image" }), h("figcaption", {}, "second"))))
          : null)));
    result.scrollIntoView({ block: "nearest" });
  }));
}

// ---------- collections ----------

async function viewCollections(root) {
  root.append(h("h1", {}, "Collections"));
  const err = h("div");
  root.append(err);
  let cols, list;
  try {
    [cols, list] = await Promise.all([api("/v1/collections", { signal: page.signal }), models()]);
  } catch (e) {
    return showError(err, e);
  }
  root.append(h("section", { class: "panel" }, h("table", { id: "collections-table" },
    h("thead", {}, h("tr", {}, h("th", {}, "Name"), h("th", {}, "Modality"), h("th", { class: "hide-narrow" }, "Model"),
      h("th", { class: "num" }, "Subjects"), h("th", { class: "num" }, "Samples"))),
    h("tbody", {}, cols.collections.map((c) => h("tr", {},
      h("td", {}, h("a", { href: `#/collections/${enc(c.name)}` }, c.name)), h("td", {}, c.modality),
      h("td", { class: "hide-narrow" }, `${c.model.id} v${c.model.version}`),
      h("td", { class: "num" }, c.subjects), h("td", { class: "num" }, c.samples)))))));
  const name = h("input", { id: "collection-name", type: "text", placeholder: "e.g. staff-badges", required: true });
  const modality = select("collection-modality", [["face", "face"], ["signature", "signature"]], "face");
  const model = select("collection-model", [["", "the modality's default"], ...list.map((m) => [m.id, `${m.id} (${m.modality})`])], "");
  const create = h("button", { type: "button", id: "collection-create" }, "Create collection");
  const cerr = h("div");
  root.append(h("section", { class: "panel" }, h("h2", {}, "New collection"),
    h("div", { class: "row" }, field("Name", name), field("Modality", modality), field("Model", model), create), cerr));
  create.addEventListener("click", () => busy(create, cerr, async () => {
    const body = { name: name.value.trim(), modality: modality.value };
    if (model.value) body.model = model.value;
    await api("/v1/collections", { json: body, signal: page.signal });
    location.hash = `#/collections/${enc(body.name)}`;
  }));
}

/** The outcome of a probe against one subject. */
function subjectVerdict(v, modality) {
  return h("div", {},
    verdictLine(v.verified, modality, "subject-verdict"),
    scale(v.distance, v.threshold),
    h("dl", { class: "kv" },
      h("dt", {}, "Distance"), h("dd", {}, `${fmt(v.distance)} (${v.metric}, rule ${v.rule})`),
      h("dt", {}, "Threshold"), h("dd", {}, fmt(v.threshold)),
      h("dt", {}, "Calibrated score"), h("dd", {}, pct(v.score, 1)),
      h("dt", {}, "Time"), h("dd", {}, `${fmt(v.total_ms, 1)} ms`)));
}

async function viewCollection(root, cname) {
  const err = h("div");
  root.append(h("p", {}, h("a", { href: "#/collections" }, "← Collections")), err);
  let c;
  try {
    c = await api(`/v1/collections/${enc(cname)}`, { signal: page.signal });
  } catch (e) {
    return showError(err, e);
  }
  root.append(h("h1", {}, `Collection ${c.name}`),
    h("p", { class: "muted" }, `${c.modality} · model ${c.model.id} v${c.model.version} · ${c.subjects} subjects · ${c.samples} samples`));

  // New subject.
  const sname = h("input", { id: "subject-name", type: "text", placeholder: "name or id", maxlength: 256 });
  const screate = h("button", { type: "button", id: "subject-create" }, "Create subject");
  const serr = h("div");
  screate.addEventListener("click", () => busy(screate, serr, async () => {
    const s = await api(`/v1/collections/${enc(c.name)}/subjects`, { json: { name: sname.value }, signal: page.signal });
    location.hash = `#/collections/${enc(c.name)}/subjects/${enc(s.name)}`;
  }));

  // Identify.
  const probe = fileInput("identify-file", "Probe image for identification");
  const topk = h("input", { id: "identify-topk", type: "number", min: 1, max: 100, value: 5 });
  const irun = h("button", { type: "button", id: "identify-run" }, "Identify");
  const ierr = h("div");
  const ires = h("div", { id: "identify-result", "aria-live": "polite" });
  irun.addEventListener("click", () => busy(irun, ierr, async () => {
    if (!probe.files[0]) throw new Error("Pick a probe image first.");
    const form = new FormData();
    form.append("image", probe.files[0], probe.files[0].name);
    form.append("top_k", topk.value || "5");
    ires.replaceChildren(h("p", { class: "muted" }, "Searching…"));
    let r;
    try {
      r = await api(`/v1/collections/${enc(c.name)}/identify`, { form, signal: page.signal });
    } catch (e) {
      ires.replaceChildren();
      throw e;
    }
    const head = r.match
      ? h("div", { class: "verdict same", id: "identify-match", "data-match": r.match.subject }, "✔ Match: ",
        h("a", { href: `#/collections/${enc(c.name)}/subjects/${enc(r.match.subject)}` }, r.match.subject))
      : h("div", { class: "verdict different", id: "identify-match", "data-match": "" }, "✘ Unknown: no subject within the threshold");
    queueMicrotask(() => ires.scrollIntoView({ block: "nearest" }));
    ires.replaceChildren(h("section", { class: "panel" }, head,
      h("p", { class: "muted" }, `${r.searched} embeddings searched · ${r.metric}, rule ${r.rule}, threshold ${fmt(r.threshold)} · ${fmt(r.total_ms, 1)} ms`),
      h("table", {}, h("thead", {}, h("tr", {}, h("th", {}, "#"), h("th", {}, "Subject"), h("th", { class: "num" }, "Distance"),
        h("th", { class: "num" }, "Score"), h("th", {}, "Within threshold"))),
      h("tbody", {}, r.candidates.map((k, i) => h("tr", { class: "candidate" }, h("td", {}, i + 1),
        h("td", {}, h("a", { href: `#/collections/${enc(c.name)}/subjects/${enc(k.subject)}` }, k.subject)),
        h("td", { class: "num" }, fmt(k.distance)), h("td", { class: "num" }, pct(k.score, 1)),
        h("td", { class: k.within_threshold ? "ok-text" : "bad-text" }, k.within_threshold ? "yes" : "no")))))));
  }));

  // Quality control: the policy, and the audit of what the embeddings flag.
  const policy = select("quality-policy", [["flag", "store and flag"], ["refuse", "refuse flagged samples"]], c.quality_policy);
  const perr = h("div");
  policy.addEventListener("change", () => busy(policy, perr, async () => {
    const r = await api(`/v1/collections/${enc(c.name)}`, { method: "PATCH", json: { quality_policy: policy.value }, signal: page.signal });
    policy.value = r.quality_policy;
    status(`Quality policy of ${c.name}: ${r.quality_policy}`);
  }));
  const arun = h("button", { type: "button", id: "audit-run" }, "Audit");
  const aerr = h("div");
  const ares = h("div", { id: "audit-result", "aria-live": "polite" });
  arun.addEventListener("click", () => busy(arun, aerr, async () => {
    const a = await api(`/v1/collections/${enc(c.name)}/audit`, { signal: page.signal });
    const link = (sub) => h("a", { href: `#/collections/${enc(c.name)}/subjects/${enc(sub)}` }, sub);
    ares.replaceChildren(
      h("p", { class: "muted", id: "audit-summary" }, `${a.audited} samples audited · ${a.samples.length} flagged · ${a.subjects.length} subjects disagree · ${a.metric} threshold ${fmt(a.threshold)} · ${fmt(a.total_ms, 1)} ms`),
      a.samples.length ? h("table", {}, h("thead", {}, h("tr", {}, h("th", {}, "Subject"), h("th", {}, "Verdict"), h("th", {}, "Why"))),
        h("tbody", { id: "audit-samples" }, a.samples.map((x) => h("tr", { "data-verdict": x.quality.verdict, "data-sample": x.sample_id },
          h("td", {}, link(x.subject)), h("td", { class: "bad-text" }, x.quality.verdict.replace("_", " ")), h("td", {}, x.quality.reasons.join("; "))))))
        : h("p", {}, "No sample is flagged."),
      a.subjects.length ? h("table", {}, h("thead", {}, h("tr", {}, h("th", {}, "Subject"), h("th", { class: "num" }, "Samples"),
        h("th", { class: "num" }, "Pairs beyond threshold"), h("th", { class: "num" }, "Median pair distance"))),
        h("tbody", { id: "audit-subjects" }, a.subjects.map((x) => h("tr", {}, h("td", {}, link(x.subject)), h("td", { class: "num" }, x.samples),
          h("td", { class: "num" }, pct(x.pairs_beyond_threshold, 0)), h("td", { class: "num" }, fmt(x.median_pair_distance))))))
        : null);
  }));

  // Subjects, paged.
  const filter = h("input", { id: "subject-filter", type: "text", placeholder: "name starts with…", "aria-label": "Filter subjects by prefix" });
  const tbody = h("tbody", { id: "subjects" });
  const more = h("button", { type: "button", class: "ghost", hidden: true }, "More");
  const lerr = h("div");
  let cursor = null;
  let seq = 0;
  async function load(reset) {
    const mine = ++seq;
    if (reset) cursor = null;
    const q = new URLSearchParams({ limit: "50" });
    if (cursor) q.set("cursor", cursor);
    if (filter.value.trim()) q.set("prefix", filter.value.trim());
    try {
      const r = await api(`/v1/collections/${enc(c.name)}/subjects?${q}`, { signal: page.signal });
      if (mine !== seq) return; // a newer listing is on its way
      if (reset) tbody.replaceChildren();
      for (const s of r.subjects) {
        tbody.append(h("tr", {}, h("td", {}, h("a", { href: `#/collections/${enc(c.name)}/subjects/${enc(s.name)}` }, s.name)),
          h("td", { class: "num" }, s.samples), h("td", { class: "hide-narrow" }, when(s.created_at))));
      }
      if (!tbody.children.length) tbody.append(h("tr", {}, h("td", { colspan: 3, class: "muted" }, "No subjects yet.")));
      cursor = r.next_cursor;
      more.hidden = !cursor;
    } catch (e) {
      showError(lerr, e);
    }
  }
  let timer;
  filter.addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(() => load(true), 250);
  });
  more.addEventListener("click", () => load(false));

  // Erase the whole collection.
  const erase = h("button", { type: "button", class: "danger", id: "collection-erase" }, "Erase collection…");
  const eslot = h("div");
  erase.addEventListener("click", () => confirmBox(eslot,
    `Erase collection '${c.name}' with its ${c.subjects} subjects and ${c.samples} samples? This cannot be undone.`,
    "collection-erase-confirm", async () => {
      await api(`/v1/collections/${enc(c.name)}`, { method: "DELETE", signal: page.signal });
      location.hash = "#/collections";
    }));

  root.append(
    h("div", { class: "grid2" },
      h("section", { class: "panel" }, h("h2", {}, "New subject"), h("div", { class: "row" }, field("Name", sname), screate), serr),
      h("section", { class: "panel" }, h("h2", {}, "Identify (1:N)"),
        h("div", { class: "row" }, field("Probe", probe), field("Top k", topk), irun), ierr)),
    ires,
    h("section", { class: "panel" }, h("h2", {}, "Subjects"), h("div", { class: "row" }, filter),
      h("table", {}, h("thead", {}, h("tr", {}, h("th", {}, "Name"), h("th", { class: "num" }, "Samples"), h("th", { class: "hide-narrow" }, "Created"))), tbody),
      more, lerr),
    h("section", { class: "panel", id: "quality-panel" }, h("h2", {}, "Quality control"),
      h("p", { class: "muted" }, "Uploads judge each file against the subject's other samples: inconsistent (likely another person or a forgery), duplicate, low quality."),
      h("div", { class: "row" }, field("Flagged uploads", policy), arun), perr, aerr, ares),
    h("section", { class: "panel" }, h("h2", {}, "Danger zone"), erase, eslot));
  await load(true);
}

/** An inline confirmation in `slot`: `text`, a red button (`id`) that runs `action`, and a way out. */
function confirmBox(slot, text, id, action) {
  const err = h("div");
  const opener = document.activeElement;
  const yes = h("button", { type: "button", class: "danger", id }, "Erase for good");
  const no = h("button", { type: "button", class: "ghost" }, "Keep");
  no.addEventListener("click", () => {
    slot.replaceChildren();
    opener?.focus();
  });
  yes.addEventListener("click", () => busy(yes, err, action));
  const textId = `${id}-text`;
  slot.replaceChildren(h("div", { class: "confirm", role: "alertdialog", "aria-label": "Confirm erasure", "aria-describedby": textId },
    h("p", { id: textId }, text), h("div", { class: "row" }, yes, no), err));
  no.focus();
}

async function viewSubject(root, cname, sname) {
  const base = `/v1/collections/${enc(cname)}/subjects/${enc(sname)}`;
  const err = h("div");
  root.append(h("p", {}, h("a", { href: `#/collections/${enc(cname)}` }, `← Collection ${cname}`)), err);
  let c, s;
  try {
    [c, s] = await Promise.all([api(`/v1/collections/${enc(cname)}`, { signal: page.signal }), api(base, { signal: page.signal })]);
  } catch (e) {
    return showError(err, e);
  }
  const count = h("span", { id: "subject-count" }, s.samples);
  root.append(h("h1", { id: "subject-title" }, s.name),
    h("p", { class: "muted" }, `${c.modality} subject in ${c.name} · `, count, " samples · created ", when(s.created_at)));
  if (s.metadata) root.append(h("pre", { class: "panel" }, JSON.stringify(s.metadata, null, 2)));

  // Samples with their stored originals.
  const thumbs = h("div", { class: "thumbs", id: "samples" });
  const terr = h("div");
  const urls = [];
  page.signal.addEventListener("abort", () => urls.forEach((u) => URL.revokeObjectURL(u)));
  async function loadSamples() {
    urls.splice(0).forEach((u) => URL.revokeObjectURL(u));
    try {
      const r = await api(`${base}/samples?limit=200`, { signal: page.signal });
      count.textContent = r.samples.length + (r.next_cursor ? "+" : "");
      thumbs.replaceChildren(...(r.samples.length ? [] : [h("p", { class: "muted" }, "No samples yet.")]));
      for (const [i, sm] of r.samples.entries()) {
        const img = h("img", { alt: `sample ${i + 1} of ${s.name}` });
        const del = h("button", { type: "button", class: "ghost", "aria-label": `Delete sample ${i + 1}` }, "Delete");
        del.addEventListener("click", () => busy(del, terr, async () => {
          await api(`${base}/samples/${enc(sm.id)}`, { method: "DELETE", signal: page.signal });
          await loadSamples();
        }));
        thumbs.append(h("figure", { class: "sample", "data-id": sm.id }, img,
          h("figcaption", {}, `${sm.kind} · ${sm.width}×${sm.height}`,
            sm.quality && sm.quality.verdict !== "ok"
              ? h("span", { class: "flag", title: sm.quality.reasons.join("; ") }, ` · ${sm.quality.verdict.replace("_", " ")}`) : null), del));
        api(`${base}/samples/${enc(sm.id)}/image`, { blob: true, signal: page.signal }).then((b) => {
          const u = URL.createObjectURL(b);
          urls.push(u);
          img.src = u;
        }, () => (img.alt = `sample ${i + 1}: image not available`));
      }
    } catch (e) {
      showError(terr, e);
    }
  }

  // Upload.
  const files = fileInput("upload-files", "Images to enrol", true);
  const kind = select("upload-kind", [["genuine", "genuine"], ["forgery", "skilled forgery"]], "genuine");
  const up = h("button", { type: "button", id: "upload-run" }, "Upload");
  const uerr = h("div");
  const ures = h("div", { id: "upload-result", "aria-live": "polite" });
  up.addEventListener("click", () => busy(up, uerr, async () => {
    const picked = [...files.files];
    if (!picked.length) throw new Error("Pick one or more images first.");
    const form = new FormData();
    for (const f of picked) form.append("image", f, f.name);
    if (c.modality === "signature") form.append("kind", kind.value);
    ures.replaceChildren(h("p", { class: "muted" }, `Uploading ${picked.length} files…`));
    let r;
    try {
      r = await api(`${base}/samples`, { form, signal: page.signal });
    } catch (e) {
      ures.replaceChildren();
      // Every file refused: 422 with the same per-file results.
      if (!Array.isArray(e.body?.results)) throw e;
      r = e.body;
    }
    const noun = c.modality === "face" ? "photo" : "scan";
    ures.replaceChildren(h("p", { id: "upload-summary" }, `${r.stored} stored, ${r.failed} refused`),
      h("ul", { class: "filelist" }, r.results.map((x) => h("li", { "data-status": x.status, class: x.error ? "bad-text" : "ok-text" },
        `${noun} ${x.index + 1} (${picked[x.index]?.name ?? "?"}): `,
        x.error ? `${x.error.message.replace(/^image\[\d+\]: /, "")} [${x.error.code}]` : "stored",
        x.quality && x.quality.verdict !== "ok" && !x.error
          ? h("span", { class: "flag", "data-verdict": x.quality.verdict }, ` · flagged ${x.quality.verdict.replace("_", " ")}: ${x.quality.reasons.join("; ")}`)
          : null))));
    files.value = "";
    await loadSamples();
  }));

  // Verify a probe against this subject.
  const probe = fileInput("subject-verify-file", "Probe image to verify against this subject");
  const vrun = h("button", { type: "button", id: "subject-verify-run" }, "Verify");
  const verr = h("div");
  const vres = h("div", { id: "subject-verify-result", "aria-live": "polite" });
  vrun.addEventListener("click", () => busy(vrun, verr, async () => {
    if (!probe.files[0]) throw new Error("Pick a probe image first.");
    const form = new FormData();
    form.append("image", probe.files[0], probe.files[0].name);
    vres.replaceChildren();
    const v = await api(`${base}/verify`, { form, signal: page.signal });
    vres.replaceChildren(subjectVerdict(v, c.modality));
  }));

  // Erase.
  const erase = h("button", { type: "button", class: "danger", id: "subject-erase" }, "Erase subject…");
  const eslot = h("div");
  erase.addEventListener("click", () => confirmBox(eslot,
    `Erase '${s.name}' and all ${count.textContent} samples (images and embeddings)? This cannot be undone.`,
    "subject-erase-confirm", async () => {
      await api(base, { method: "DELETE", signal: page.signal });
      location.hash = `#/collections/${enc(c.name)}`;
    }));

  root.append(
    h("div", { class: "grid2" },
      h("section", { class: "panel" }, h("h2", {}, "Add samples"),
        h("div", { class: "row" }, field(c.modality === "face" ? "Photos" : "Scans", files),
          c.modality === "signature" ? field("Kind", kind) : null, up), uerr, ures),
      h("section", { class: "panel" }, h("h2", {}, "Verify a probe against this subject"),
        h("div", { class: "row" }, field("Probe", probe), vrun), verr, vres)),
    h("section", { class: "panel" }, h("h2", {}, "Samples"), thumbs, terr),
    h("section", { class: "panel" }, h("h2", {}, "Danger zone"), erase, eslot));
  await loadSamples();
}

// ---------- models and jobs ----------

function stateBadge(state, id) {
  const cls = { succeeded: "ok", failed: "bad", cancelled: "bad", interrupted: "bad", running: "run", queued: "run" }[state] || "";
  return h("span", { class: `badge ${cls}`, id, "data-state": state }, state);
}

/** A version's figures as its card records them: held-out test identities, else validation identities. */
function cardFigures(card) {
  const ev = card?.evaluation || {};
  if (typeof ev.test?.eer === "number") return `test: EER ${pct(ev.test.eer)}, AUC ${fmt(ev.test.auc, 4)}`;
  const m = card?.default_metric || "euclidean";
  const v = ev.validation?.[m];
  if (typeof v?.eer === "number") return `validation: EER ${pct(v.eer)}, AUC ${fmt(v.auc, 4)}`;
  return "–";
}

async function viewModels(root) {
  root.append(h("h1", {}, "Models and retrain jobs"));
  const err = h("div");
  root.append(err);
  let list, cols;
  try {
    [list, cols] = await Promise.all([models(true), api("/v1/collections", { signal: page.signal })]);
  } catch (e) {
    return showError(err, e);
  }
  const versions = {};
  for (const m of list) {
    const panel = h("section", { class: "panel", id: `model-${m.id}` });
    root.append(panel);
    const verr = h("div");
    panel.append(h("h2", {}, m.id, m.default ? h("span", { class: "badge" }, " default") : null),
      h("p", { class: "muted" }, `${m.modality} · ${m.embedding_size}-d embedding · input ${m.input.width}×${m.input.height}×${m.input.channels} · `
        + `${m.default_metric} threshold ${fmt(m.thresholds?.[m.default_metric]?.value)} · on ${m.device}`));
    try {
      const v = await api(`/v1/models/${enc(m.id)}/versions`, { signal: page.signal });
      versions[m.id] = v;
      panel.append(h("table", { class: "versions" },
        h("thead", {}, h("tr", {}, h("th", {}, "Version"), h("th", {}, "State"), h("th", { class: "hide-narrow" }, "From"),
          h("th", {}, "Evaluation"), h("th", { class: "hide-narrow" }, "Created"), h("th", {}, ""))),
        h("tbody", {}, v.versions.map((x) => {
          const act = x.active ? null : h("button", { type: "button", class: "ghost", id: `activate-${m.id}-${x.version}` },
            x.version < v.active ? "Roll back to this" : "Activate");
          act?.addEventListener("click", () => busy(act, verr, async () => {
            const r = await api(`/v1/models/${enc(m.id)}/versions/${x.version}/activate`, { method: "POST", signal: page.signal });
            status(`${r.model} v${r.version} is active (${r.embedded} samples embedded).`);
            route();
          }));
          return h("tr", {}, h("td", {}, `v${x.version}`), h("td", {}, x.active ? h("span", { class: "badge ok" }, "active") : "–"),
            h("td", { class: "hide-narrow" }, x.job ? h("a", { href: `#/jobs/${enc(x.job)}` }, `job from v${x.parent_version}`) : "shipped"),
            h("td", {}, cardFigures(x.card)), h("td", { class: "hide-narrow" }, when(x.created_at)), h("td", {}, act));
        }))), verr);
    } catch (e) {
      showError(verr, e);
      panel.append(verr);
    }
  }

  // Start a job.
  const jm = select("job-model", [["", "the collection's model"], ...list.map((m) => [m.id, m.id])], "");
  const jc = select("job-collection", [["", "none"], ...cols.collections.map((c) => [c.name, `${c.name} (${c.subjects} subjects)`])], "");
  const jd = h("input", { id: "job-dataset", type: "text", placeholder: "folder under the data root" });
  const num = (id, value, step, min) => h("input", { id, type: "number", step, min, value, style: "width:7rem" });
  const je = num("job-epochs", 3, 1, 1);
  const jlr = h("input", { id: "job-lr", type: "number", step: "any", min: 0, placeholder: "default", style: "width:7rem" });
  const jmargin = h("input", { id: "job-margin", type: "number", step: "any", min: 0, placeholder: "default", style: "width:7rem" });
  const jbp = h("input", { id: "job-batch-pairs", type: "number", step: 1, min: 2, placeholder: "default", style: "width:7rem" });
  const jt = h("input", { id: "job-time-limit", type: "number", step: "any", min: 0, placeholder: "none", style: "width:7rem" });
  const jaug = h("input", { id: "job-augment", type: "checkbox", checked: true });
  const jauto = h("input", { id: "job-auto-promote", type: "checkbox" });
  const frozen = h("fieldset", { class: "row", id: "job-freeze" });
  const fillFreeze = () => {
    const groups = versions[jm.value || (list.find((m) => m.default) || list[0])?.id]?.layer_groups || [];
    frozen.replaceChildren(h("legend", {}, "Frozen layer groups"), ...groups.map((g) =>
      h("label", {}, h("input", { type: "checkbox", value: g, name: "freeze" }), ` ${g}`)));
  };
  jm.addEventListener("change", fillFreeze);
  fillFreeze();
  const start = h("button", { type: "button", id: "job-start" }, "Start job");
  const jerr = h("div", { id: "job-start-error" });
  start.addEventListener("click", () => busy(start, jerr, async () => {
    const body = { epochs: Number(je.value) };
    if (jm.value) body.base = jm.value;
    if (jc.value) body.collection = jc.value;
    if (jd.value.trim()) body.dataset = jd.value.trim();
    if (jlr.value) body.lr = Number(jlr.value);
    if (jmargin.value) body.margin = Number(jmargin.value);
    if (jbp.value) body.batch_pairs = Number(jbp.value);
    if (jt.value) body.time_limit_min = Number(jt.value);
    const fz = [...frozen.querySelectorAll("input:checked")].map((i) => i.value);
    if (fz.length) body.freeze = fz;
    if (!jaug.checked) body.augment = { rotation_deg: 0, shift: 0, scale: 0, brightness: 0, contrast: 0, mirror: false };
    body.auto_promote = jauto.checked;
    const j = await api("/v1/jobs", { json: body, signal: page.signal });
    location.hash = `#/jobs/${enc(j.id)}`;
  }));
  root.append(h("section", { class: "panel" }, h("h2", {}, "Start a retrain job"),
    h("p", { class: "muted" }, "Contrastive fine-tuning of a model on a collection's enrolled samples and/or a dataset folder; the candidate is judged against the active version on identities it never trained on."),
    h("div", { class: "row" }, field("Base model", jm), field("Collection", jc), field("Dataset", jd)),
    h("div", { class: "row" }, field("Epochs", je), field("Learning rate", jlr), field("Margin", jmargin), field("Pairs per batch", jbp), field("Time limit (min)", jt)),
    frozen,
    h("div", { class: "row" }, h("label", {}, jaug, " augmentation (shift, rotation, scale, …)"),
      h("label", {}, jauto, " activate the candidate if it beats the active version")),
    h("div", { class: "row" }, start), jerr));

  // Recent jobs.
  const lerr = h("div");
  const tbody = h("tbody", { id: "jobs" });
  root.append(h("section", { class: "panel" }, h("h2", {}, "Recent jobs"),
    h("table", {}, h("thead", {}, h("tr", {}, h("th", {}, "Job"), h("th", {}, "Model"), h("th", {}, "State"), h("th", { class: "num" }, "Epochs"),
      h("th", { class: "hide-narrow" }, "Created"))), tbody), lerr));
  try {
    const r = await api("/v1/jobs?limit=20", { signal: page.signal });
    for (const j of r.jobs) {
      tbody.append(h("tr", {}, h("td", {}, h("a", { href: `#/jobs/${enc(j.id)}` }, j.id)), h("td", {}, j.model), h("td", {}, stateBadge(j.state)),
        h("td", { class: "num" }, `${j.history.length}/${j.params?.epochs ?? "?"}`), h("td", { class: "hide-narrow" }, when(j.created_at))));
    }
    if (!r.jobs.length) tbody.append(h("tr", {}, h("td", { colspan: 5, class: "muted" }, "No jobs yet.")));
  } catch (e) {
    showError(lerr, e);
  }
}

/** Read a server-sent event stream with the API key (EventSource cannot send headers). */
async function followEvents(path, onEvent) {
  const r = await api(path, { stream: true, accept: "text/event-stream", signal: page.signal });
  const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buf += value.replace(/\r\n/g, "\n");
    let i;
    while ((i = buf.indexOf("\n\n")) >= 0) {
      const block = buf.slice(0, i);
      buf = buf.slice(i + 2);
      let kind = "message";
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) kind = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
      }
      if (data.length) onEvent(kind, JSON.parse(data.join("\n")));
    }
  }
}

/** `{genuine, impostor, total}` (or a bare count) in words. */
function pairCount(p) {
  if (typeof p === "number") return `${p} pairs`;
  if (p && typeof p.total === "number") return `${p.total} pairs (${p.genuine} genuine, ${p.impostor} impostor)`;
  return "pairs";
}

async function viewJob(root, id) {
  const err = h("div");
  root.append(h("p", {}, h("a", { href: "#/models" }, "← Models and jobs")), err);
  let j, list;
  try {
    [j, list] = await Promise.all([api(`/v1/jobs/${enc(id)}`, { signal: page.signal }), models()]);
  } catch (e) {
    return showError(err, e);
  }
  const metric = list.find((m) => m.id === j.model)?.default_metric || "euclidean";
  const epochs = j.params?.epochs;
  const points = new Map();
  const stateSlot = h("span", {}, stateBadge(j.state, "job-state"));
  const chart = h("div", { class: "chart", id: "job-chart" });
  const rows = h("tbody", { id: "job-epochs" });
  const report = h("div", { id: "job-report" });
  const actions = h("div", { class: "row" });
  const aerr = h("div");
  const errorLine = h("p", { class: "bad-text", id: "job-error" }, j.error || "");

  const addEpoch = (e) => {
    points.set(e.epoch, { epoch: e.epoch, loss: e.train_loss, eer: e[`val_eer_${metric}`], raw: e });
    const pts = [...points.values()].sort((a, b) => a.epoch - b.epoch);
    drawEpochChart(chart, pts, epochs);
    rows.replaceChildren(...pts.map((p) => h("tr", {}, h("td", {}, p.epoch), h("td", { class: "num" }, fmt(p.loss)),
      h("td", { class: "num" }, pct(p.raw.val_eer_euclidean)), h("td", { class: "num" }, pct(p.raw.val_eer_cosine)),
      h("td", { class: "num" }, fmt(p.raw[`val_auc_${metric}`])), h("td", { class: "num" }, `${fmt(p.raw.seconds, 1)} s`))));
  };
  const setActions = (state) => {
    actions.replaceChildren();
    if (state === "queued" || state === "running") {
      const b = h("button", { type: "button", class: "danger", id: "job-cancel" }, "Cancel job");
      b.addEventListener("click", () => busy(b, aerr, () => api(`/v1/jobs/${enc(id)}`, { method: "DELETE", signal: page.signal })));
      actions.append(b);
    }
    if (state === "cancelled" || state === "interrupted") {
      const b = h("button", { type: "button", id: "job-resume" }, "Resume from checkpoint");
      b.addEventListener("click", () => busy(b, aerr, async () => {
        await api(`/v1/jobs/${enc(id)}/resume`, { method: "POST", signal: page.signal });
        route();
      }));
      actions.append(b);
    }
  };
  const showReport = async () => {
    try {
      const r = await api(`/v1/jobs/${enc(id)}/report`, { signal: page.signal });
      const job = await api(`/v1/jobs/${enc(id)}`, { signal: page.signal });
      const row = (label, f) => h("tr", {}, h("td", {}, label), h("td", { class: "num" }, f(r.candidate)), h("td", { class: "num" }, f(r.active)));
      const imgs = h("div", { class: "grid3" });
      for (const [file, caption] of [["roc.png", "ROC, both models"], ["distances-candidate.png", "Distances, candidate"], ["distances-active.png", "Distances, active"]]) {
        const img = h("img", { alt: caption });
        imgs.append(h("figure", {}, img, h("figcaption", { class: "muted" }, caption)));
        api(`/v1/jobs/${enc(id)}/report/${file}`, { blob: true, signal: page.signal }).then((b) => {
          img.src = URL.createObjectURL(b);
          img.addEventListener("load", () => URL.revokeObjectURL(img.src), { once: true });
        }, () => {});
      }
      const activate = !job.promoted && job.candidate_version
        ? h("button", { type: "button", id: "job-activate" }, `Activate candidate v${job.candidate_version}`) : null;
      activate?.addEventListener("click", () => busy(activate, aerr, async () => {
        await api(`/v1/models/${enc(j.model)}/versions/${job.candidate_version}/activate`, { method: "POST", signal: page.signal });
        status(`${j.model} v${job.candidate_version} is active.`);
        route();
      }));
      report.replaceChildren(h("section", { class: "panel report" }, h("h2", {}, "Candidate against the active version"),
        h("p", { class: r.better ? "ok-text" : "warn-text", id: "job-better" },
          r.better ? `The candidate (v${r.candidate.version}) is better than the active version (v${r.active.version}).`
            : `The candidate (v${r.candidate.version}) is not better than the active version (v${r.active.version}).`,
          job.promoted ? " It was activated." : ""),
        h("p", { class: "muted" }, `${pairCount(r.pairs)}, ${r.gate}; best epoch ${r.best_epoch}; ${fmt(r.seconds, 0)} s of training.`),
        h("table", {}, h("thead", {}, h("tr", {}, h("th", {}, `Figure (${r.candidate.metric})`), h("th", { class: "num" }, `candidate v${r.candidate.version}`),
          h("th", { class: "num" }, `active v${r.active.version}`))),
        h("tbody", {}, row("EER", (x) => pct(x.eer)), row("AUC", (x) => fmt(x.auc)), row("TAR at FAR 0.1 %", (x) => pct(x["tar_at_far_1e-3"])))),
        activate ? h("div", { class: "row" }, activate) : null, imgs));
    } catch (e) {
      showError(report, e);
    }
  };

  root.append(h("h1", {}, `Job ${j.id}`),
    h("p", {}, stateSlot, ` · model ${j.model} · created ${when(j.created_at)}`, j.candidate_version ? ` · candidate v${j.candidate_version}` : ""),
    errorLine, actions, aerr,
    h("section", { class: "panel" }, h("h2", {}, "Loss and validation EER per epoch"),
      h("div", { class: "legend" }, h("span", { class: "l" }, "training loss"), h("span", { class: "e" }, `validation EER (${metric})`)),
      chart,
      h("table", {}, h("thead", {}, h("tr", {}, h("th", {}, "Epoch"), h("th", { class: "num" }, "Loss"), h("th", { class: "num" }, "EER eucl."),
        h("th", { class: "num" }, "EER cos."), h("th", { class: "num" }, "AUC"), h("th", { class: "num" }, "Time"))), rows)),
    report,
    h("details", { class: "panel" }, h("summary", {}, "Parameters"), h("pre", {}, JSON.stringify(j.params, null, 2))));
  j.history.forEach(addEpoch);
  if (!j.history.length) drawEpochChart(chart, [], epochs);
  setActions(j.state);
  if (j.state === "succeeded") showReport();
  if (j.state === "queued" || j.state === "running") {
    followEvents(`/v1/jobs/${enc(id)}/events`, (kind, data) => {
      if (kind === "epoch") addEpoch(data);
      if (kind === "state") {
        stateSlot.replaceChildren(stateBadge(data.state, "job-state"));
        errorLine.textContent = data.error || "";
        setActions(data.state);
        if (data.state === "succeeded") showReport();
      }
    }).then(() => {
      // The stream ended before the job did (server restart, proxy): look again shortly.
      const st = stateSlot.firstChild?.dataset.state;
      const me = page;
      if (st === "queued" || st === "running") setTimeout(() => page === me && route(), 2000);
    }, (e) => showError(aerr, e));
  }
}

// ---------- routing ----------

const ROUTES = [
  [/^#\/verify$/, "verify", viewVerify],
  [/^#\/collections$/, "collections", viewCollections],
  [/^#\/collections\/([^/]+)$/, "collections", viewCollection],
  [/^#\/collections\/([^/]+)\/subjects\/(.+)$/, "collections", viewSubject],
  [/^#\/models$/, "models", viewModels],
  [/^#\/jobs\/([^/]+)$/, "models", viewJob],
];

const TITLES = { viewVerify: "Verify", viewCollections: "Collections", viewCollection: "Collection", viewSubject: "Subject", viewModels: "Models and jobs", viewJob: "Job" };

async function route() {
  page?.abort();
  const me = (page = new AbortController());
  const hash = location.hash || "#/verify";
  const hit = ROUTES.find(([re]) => re.test(hash));
  if (!hit) {
    location.hash = "#/verify";
    return;
  }
  const [re, tab, view] = hit;
  for (const a of document.querySelectorAll("nav a")) {
    if (a.dataset.tab === tab) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  const root = document.getElementById("view");
  // Each screen draws into its own container: one left behind by a quick navigation draws into nothing.
  const box = h("div");
  root.replaceChildren(box);
  root.removeAttribute("data-ready");
  root.setAttribute("data-view", view.name);
  document.title = `${TITLES[view.name] || "Siamese"} · Siamese console`;
  try {
    const args = hash.match(re).slice(1).map(decodeURIComponent);
    await view(box, ...args);
  } catch (e) {
    const err = errorBox(e);
    if (err) box.append(err);
  }
  if (page !== me) return;
  root.setAttribute("data-ready", "true");
  if (document.activeElement === document.body) root.focus({ preventScroll: true });
}

setupKeyDialog();
window.addEventListener("hashchange", () => {
  status("");
  route();
});
route();
