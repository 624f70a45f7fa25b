// Reads the agent's Prometheus text exposition (/metrics) into
// {name: [{labels, value}]}; only the names asked for are kept.
import { apiKey } from './api.js';

export async function scrape(names, signal) {
  const headers = {};
  const k = apiKey();
  if (k) headers.Authorization = 'Bearer ' + k;
  const resp = await fetch('/metrics', { headers, signal });
  if (!resp.ok) return {};
  return parse(await resp.text(), new Set(names));
}

export function parse(text, want) {
  const out = {};
  for (const line of text.split('\n')) {
    if (!line || line[0] === '#') continue;
    const m = line.match(/^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)/);
    if (!m || !want.has(m[1])) continue;
    const labels = {};
    for (const l of (m[3] || '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]] = l[2].replace(/\\(.)/g, (_, c) => (c === 'n' ? '\n' : c));
    (out[m[1]] = out[m[1]] || []).push({ labels, value: Number(m[4]) });
  }
  return out;
}

// byLabel maps one series' label value to its value.
export function byLabel(series, label) {
  const out = {};
  for (const s of series || []) out[s.labels[label]] = (out[s.labels[label]] || 0) + s.value;
  return out;
}
