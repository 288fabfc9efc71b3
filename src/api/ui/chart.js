// A line chart of a job's epochs: training loss (left axis) and validation EER (right axis, %), drawn as SVG.
const NS = "http://www.w3.org/2000/svg";

function el(name, attrs, text) {
  const e = document.createElementNS(NS, name);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
  if (text !== undefined) e.textContent = text;
  return e;
}

/** Draw `points` ([{epoch, loss, eer}]) of a run of `epochs` epochs into `host` (replacing what was there). */
export function drawEpochChart(host, points, epochs) {
  const W = 640, H = 260, L = 52, R = 52, T = 14, B = 34;
  const svg = el("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": "Training loss and validation EER per epoch" });
  const n = Math.max(epochs || 0, ...points.map((p) => p.epoch), 1);
  const x = (e) => L + ((e - (n > 1 ? 1 : 0)) / Math.max(n - 1, 1)) * (W - L - R);
  // Each axis spans its values with some room (from 0 when they are far from it).
  const span = (vs, floor) => {
    const hi0 = Math.max(...vs, floor), lo0 = Math.min(...vs, hi0);
    const pad = Math.max((hi0 - lo0) * 0.15, hi0 * 0.05, 1e-9);
    return [Math.max(0, lo0 - pad), hi0 + pad];
  };
  const [lossLo, lossHi] = span(points.map((p) => p.loss), 1e-6);
  const [eerLo, eerHi] = span(points.map((p) => p.eer), 0.01);
  const yl = (v) => H - B - ((v - lossLo) / (lossHi - lossLo)) * (H - T - B);
  const ye = (v) => H - B - ((v - eerLo) / (eerHi - eerLo)) * (H - T - B);
  svg.append(el("line", { class: "axis", x1: L, y1: H - B, x2: W - R, y2: H - B }));
  svg.append(el("line", { class: "axis", x1: L, y1: T, x2: L, y2: H - B }));
  svg.append(el("line", { class: "axis", x1: W - R, y1: T, x2: W - R, y2: H - B }));
  for (let k = 0; k <= 4; k++) {
    const l = lossLo + ((lossHi - lossLo) * k) / 4, e = eerLo + ((eerHi - eerLo) * k) / 4;
    svg.append(el("text", { x: L - 6, y: yl(l) + 4, "text-anchor": "end" }, l.toFixed(4)));
    svg.append(el("text", { x: W - R + 6, y: ye(e) + 4 }, `${(e * 100).toFixed(2)}%`));
  }
  const step = Math.max(1, Math.ceil(n / 10));
  for (let e = 1; e <= n; e += step) svg.append(el("text", { x: x(e), y: H - B + 16, "text-anchor": "middle" }, e));
  svg.append(el("text", { x: (L + W - R) / 2, y: H - 4, "text-anchor": "middle" }, "epoch"));
  const line = (cls, f) => {
    if (points.length > 1) svg.append(el("polyline", { class: cls, points: points.map((p) => `${x(p.epoch)},${f(p)}`).join(" ") }));
  };
  line("loss", (p) => yl(p.loss));
  line("eer", (p) => ye(p.eer));
  for (const p of points) {
    const c1 = el("circle", { class: "pt-loss", cx: x(p.epoch), cy: yl(p.loss), r: 4, "data-epoch": p.epoch });
    c1.append(el("title", {}, `epoch ${p.epoch}: loss ${p.loss.toFixed(4)}`));
    const c2 = el("circle", { class: "pt-eer", cx: x(p.epoch), cy: ye(p.eer), r: 4, "data-epoch": p.epoch });
    c2.append(el("title", {}, `epoch ${p.epoch}: validation EER ${(p.eer * 100).toFixed(2)}%`));
    svg.append(c1, c2);
  }
  host.replaceChildren(svg);
}
