// DOM and formatting helpers. Pages build elements with h(); text is
// always set as text (never parsed as HTML), so record keys and values
// cannot inject markup.

export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else if (k === 'value') el.value = v;
    else if (k === 'style') el.style.cssText = v; // CSSOM: allowed by the page's CSP
    else el.setAttribute(k, v === true ? '' : v);
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === undefined || c === null || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

export function clear(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

export function num(n) {
  if (n === null || n === undefined || Number.isNaN(n)) return '–';
  return Number(n).toLocaleString('en-US');
}

export function bytes(n) {
  if (n === null || n === undefined) return '–';
  const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  let v = Number(n);
  while (Math.abs(v) >= 1024 && i < u.length - 1) { v /= 1024; i++; }
  return (i === 0 ? v.toFixed(0) : v.toFixed(1)) + ' ' + u[i];
}

export function rate(n, unit) {
  if (n === null || n === undefined) return '–';
  const v = Number(n);
  return (v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2)) + ' ' + unit;
}

export function duration(ms) {
  if (ms === null || ms === undefined) return '–';
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const s = ms / 1000;
  if (s < 120) return `${s.toFixed(1)} s`;
  const m = s / 60;
  if (m < 120) return `${m.toFixed(1)} min`;
  return `${(m / 60).toFixed(1)} h`;
}

export function time(ms) {
  if (!ms) return '–';
  return new Date(ms).toISOString().replace('T', ' ').replace('Z', ' UTC');
}

export function ago(ms, now = Date.now()) {
  if (!ms) return 'never';
  return duration(Math.max(now - ms, 0)) + ' ago';
}

// table renders rows with columns [{label, value(row) -> node|text, class}].
export function table(columns, rows, attrs = {}) {
  return h('div', { class: 'table-wrap' },
    h('table', attrs,
      h('thead', {}, h('tr', {}, columns.map((c) => h('th', { class: c.class }, c.label)))),
      h('tbody', {}, rows.length === 0
        ? h('tr', {}, h('td', { colspan: columns.length, class: 'muted' }, attrs['data-empty'] || 'nothing yet'))
        : rows.map((r) => h('tr', {}, columns.map((c) => h('td', { class: c.class, 'data-label': c.label }, c.value(r))))))));
}

// errorBox shows an API error where the action was taken.
export function errorBox(e) {
  const text = e && e.text ? e.text : String(e && e.message ? e.message : e);
  const hint = e && e.status === 403 ? ' — your API key is not allowed to do this; use a key with the scope the action needs.' : '';
  return h('div', { class: 'error', role: 'alert', 'data-status': e && e.status }, text + hint);
}

export function toast(text, kind = 'ok') {
  const t = h('div', { class: 'toast ' + kind, role: 'status' }, text);
  document.getElementById('toasts').append(t);
  setTimeout(() => t.remove(), 5000);
}

// pager renders "page i of n" controls; onPage(i) is called with the new page.
export function pager(page, pages, onPage, label) {
  return h('div', { class: 'pager', 'data-testid': 'pager' },
    h('button', { type: 'button', disabled: page <= 0, onclick: () => onPage(page - 1) }, '‹ Prev'),
    h('span', {}, `${label || 'Page'} ${page + 1} of ${Math.max(pages, 1)}`),
    h('button', { type: 'button', disabled: page >= pages - 1, onclick: () => onPage(page + 1) }, 'Next ›'));
}

export function card(title, ...body) {
  return h('section', { class: 'card' }, title ? h('h2', {}, title) : null, ...body);
}

export function stat(label, value, attrs = {}) {
  return h('div', Object.assign({ class: 'stat' }, attrs), h('div', { class: 'stat-value' }, value), h('div', { class: 'stat-label' }, label));
}

// field is a labelled form control.
export function field(label, control) {
  return h('label', { class: 'field' }, h('span', {}, label), control);
}

// busy disables a button while fn runs.
export async function busy(btn, fn) {
  btn.disabled = true;
  try { return await fn(); } finally { btn.disabled = false; }
}
