// The message browser: one partition from a start (newest, oldest, an
// offset or a timestamp), newest or oldest first, with a live tail over
// the consume long-poll. Values render as pretty JSON when they parse,
// as text otherwise, and binary (base64 from the API) as hex or base64.
import { get, enc } from '../api.js';
import { h, clear, errorBox, field, time } from '../ui.js';

const MAX = 50;

export function browser(ctx, topic, partitions) {
  const partition = h('input', { name: 'partition', type: 'number', min: 0, max: partitions - 1, value: '0' });
  const from = h('select', { name: 'from' }, [['newest', 'newest records'], ['oldest', 'oldest records'], ['offset', 'an offset'], ['timestamp', 'a time']].map(([v, l]) => h('option', { value: v }, l)));
  const at = h('input', { name: 'at', placeholder: 'offset, or time (ISO or unix ms)' });
  const order = h('select', { name: 'order' }, h('option', { value: 'desc' }, 'newest first'), h('option', { value: 'asc' }, 'oldest first'));
  const tail = h('input', { type: 'checkbox', name: 'tail' });
  const out = h('div', { 'data-testid': 'records' });
  const go = h('button', { class: 'primary', type: 'submit' }, 'Show');
  let run = null; // the AbortController of the live tail
  const form = h('form', { class: 'inline-form', 'data-testid': 'browse' },
    field('partition', partition), field('from', from), field('offset / time', at), field('order', order),
    h('label', { class: 'check' }, tail, ' live tail'), go);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    if (run) run.abort();
    run = new AbortController();
    const signal = AbortSignal.any([ctx.signal, run.signal]);
    const base = `/api/v1/consume?topic=${enc(topic)}&partition=${Number(partition.value)}`;
    try {
      const shown = await firstPage(topic, base, Number(partition.value), from.value, at.value.trim(), signal);
      const rows = order.value === 'desc' ? shown.records.slice().reverse() : shown.records;
      clear(out, summary(shown), list(rows));
      if (tail.checked) liveTail(base, shown.next, order.value, out, signal);
    } catch (e) {
      if (e.name !== 'AbortError') clear(out, errorBox(e));
    }
  });
  return h('div', {}, form, out);
}

// firstPage reads up to MAX records from the chosen start.
async function firstPage(topic, base, p, from, at, signal) {
  let offset;
  if (from === 'oldest') offset = 'earliest';
  else if (from === 'offset') {
    if (!/^\d+$/.test(at)) throw new Error('offset: enter a whole number');
    offset = at;
  } else if (from === 'timestamp') {
    const ms = /^\d+$/.test(at) ? Number(at) : Date.parse(at);
    if (Number.isNaN(ms)) throw new Error('time: enter an ISO time (2026-01-31T12:00:00Z) or unix milliseconds');
    offset = (await get(`/api/v1/topics/${enc(topic)}/partitions/${p}/offsets?timestamp=${ms}`, { signal })).offset;
  } else {
    const r = await get(`/api/v1/topics/${enc(topic)}/partitions/${p}/offsets?timestamp=latest`, { signal });
    offset = Math.max(r.low_watermark, r.high_watermark - MAX);
  }
  const r = await get(`${base}&offset=${offset}&max_records=${MAX}`, { signal });
  return { records: r.records, next: r.next_offset, low: r.low_watermark, high: r.high_watermark };
}

function summary(s) {
  return h('p', { class: 'muted small' }, `${s.records.length} records shown · partition offsets ${s.low} – ${s.high - 1} · next ${s.next}`);
}

// liveTail long-polls from next and adds records as they arrive.
async function liveTail(base, next, order, out, signal) {
  const status = h('p', { class: 'muted small live', 'data-testid': 'tailing' }, '● live: waiting for records…');
  out.prepend(status);
  let ul = out.querySelector('.records') || out.appendChild(list([]));
  while (!signal.aborted) {
    try {
      const r = await get(`${base}&offset=${next}&max_records=${MAX}&wait_ms=10000`, { signal });
      next = r.next_offset;
      for (const rec of r.records) {
        const el = item(rec);
        if (order === 'desc') ul.prepend(el); else ul.append(el);
      }
      while (ul.children.length > 500) (order === 'desc' ? ul.lastChild : ul.firstChild).remove();
    } catch (e) {
      if (e.name === 'AbortError' || signal.aborted) return;
      clear(status, errorBox(e));
      return;
    }
  }
}

function list(records) {
  if (records.length === 0) return h('ul', { class: 'records' }, h('li', { class: 'muted' }, 'No records in this range.'));
  return h('ul', { class: 'records' }, records.map(item));
}

function item(r) {
  const headers = Object.entries(r.headers || {});
  return h('li', { class: 'record', 'data-offset': r.offset },
    h('div', { class: 'record-meta' },
      h('span', { class: 'badge' }, `p${r.partition} @ ${r.offset}`),
      h('span', {}, time(r.timestamp)),
      h('span', {}, 'key: ', r.key === null ? h('em', {}, 'null') : h('code', { 'data-testid': 'record-key' }, decoded(r.key, r.key_encoding))),
      headers.length ? h('span', {}, 'headers: ', headers.map(([k, v]) => h('code', { class: 'header' }, `${k}=${decoded(v, r.headers_encoding)}`))) : null),
    value(r.value, r.value_encoding));
}

// decoded shows a base64 key or header as text when it is printable.
function decoded(s, encoding) {
  if (encoding !== 'base64') return s;
  return 'base64:' + s;
}

function value(v, encoding) {
  if (encoding === 'base64') {
    const raw = atob(v);
    const hex = Array.from(raw.slice(0, 512), (c) => c.charCodeAt(0).toString(16).padStart(2, '0')).join(' ');
    const pre = h('pre', { class: 'value binary', 'data-format': 'hex' }, hex + (raw.length > 512 ? ' …' : ''));
    const btn = h('button', { type: 'button', class: 'link small' }, 'show base64');
    btn.addEventListener('click', () => {
      const isHex = pre.dataset.format === 'hex';
      pre.textContent = isHex ? v : hex;
      pre.dataset.format = isHex ? 'base64' : 'hex';
      btn.textContent = isHex ? 'show hex' : 'show base64';
    });
    return h('div', {}, h('span', { class: 'muted small' }, `binary, ${raw.length} bytes `), btn, pre);
  }
  try {
    const j = JSON.parse(v);
    if (j !== null && typeof j === 'object') return h('pre', { class: 'value json', 'data-format': 'json' }, JSON.stringify(j, null, 2));
  } catch { /* not JSON: plain text */ }
  return h('pre', { class: 'value', 'data-format': 'text' }, v);
}
