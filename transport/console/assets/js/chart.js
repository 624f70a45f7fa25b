// A small SVG line chart: series of [t, y] points over a shared time axis.
const NS = 'http://www.w3.org/2000/svg';

function el(tag, attrs, text) {
  const e = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}

// chart draws series [{name, points: [[t, y|null]], cls}] with y formatted by fmt.
export function chart(series, fmt, { width = 600, height = 180 } = {}) {
  const pad = { l: 64, r: 8, t: 8, b: 22 };
  const svg = el('svg', { viewBox: `0 0 ${width} ${height}`, class: 'chart', role: 'img', preserveAspectRatio: 'none' });
  const all = series.flatMap((s) => s.points.filter((p) => p[1] !== null && p[1] !== undefined));
  if (all.length === 0) {
    svg.append(el('text', { x: width / 2, y: height / 2, 'text-anchor': 'middle', class: 'chart-empty' }, 'no data yet'));
    return svg;
  }
  const times = series.flatMap((s) => s.points.map((p) => p[0]));
  const t0 = Math.min(...times);
  const t1 = Math.max(...times, t0 + 1);
  const ymax = Math.max(...all.map((p) => p[1]), 1e-9) * 1.1;
  const x = (t) => pad.l + ((t - t0) / (t1 - t0)) * (width - pad.l - pad.r);
  const y = (v) => height - pad.b - (v / ymax) * (height - pad.t - pad.b);
  for (const f of [0, 0.5, 1]) {
    svg.append(el('line', { x1: pad.l, x2: width - pad.r, y1: y(ymax * f / 1.1), y2: y(ymax * f / 1.1), class: 'grid' }));
    svg.append(el('text', { x: pad.l - 4, y: y(ymax * f / 1.1) + 4, 'text-anchor': 'end', class: 'axis' }, fmt(ymax * f / 1.1)));
  }
  svg.append(el('text', { x: pad.l, y: height - 6, class: 'axis' }, `${Math.round((t1 - t0) / 60000 * 10) / 10} min ago`));
  svg.append(el('text', { x: width - pad.r, y: height - 6, 'text-anchor': 'end', class: 'axis' }, 'now'));
  for (const s of series) {
    let d = '';
    let pen = 'M';
    for (const [t, v] of s.points) {
      if (v === null || v === undefined) { pen = 'M'; continue; }
      d += `${pen}${x(t).toFixed(1)},${y(v).toFixed(1)} `;
      pen = 'L';
    }
    svg.append(el('path', { d, class: 'line ' + (s.cls || '') }));
    // A point with no neighbour draws no line: mark it.
    s.points.forEach(([t, v], i) => {
      const alone = (j) => j < 0 || j >= s.points.length || s.points[j][1] === null || s.points[j][1] === undefined;
      if (v !== null && v !== undefined && alone(i - 1) && alone(i + 1)) svg.append(el('circle', { cx: x(t), cy: y(v), r: 3, class: 'dot ' + (s.cls || '') }));
    });
  }
  return svg;
}
