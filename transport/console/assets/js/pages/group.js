// One consumer group: members and assignments (when the group has a
// coordinator-managed membership), committed offsets and lag per
// partition, reset with a preview of the new lag, delete.
import { api, get, enc } from '../api.js';
import { h, clear, table, card, num, stat, errorBox, toast, field, busy } from '../ui.js';

export async function render(ctx, name) {
  const path = '/api/v1/consumer-groups/' + enc(name);
  const body = h('div', {});
  const reset = h('div', {});
  clear(ctx.main, h('h1', {}, h('a', { href: '#/groups' }, 'Consumer groups'), ' / ', name), body,
    card('Reset offsets', reset), card('Delete group', deleteForm(path, name)));
  const draw = async () => {
    const d = await get(path, { signal: ctx.signal });
    if (!ctx.gone) clear(body, view(d));
    return d;
  };
  const d = await draw();
  clear(reset, resetForm(path, d, draw));
  ctx.every(3000, draw);
}

function view(d) {
  return [
    h('div', { class: 'stats' }, stat('total lag', num(d.total_lag), { 'data-testid': 'total-lag' }),
      stat('partitions', num(d.partitions.length)),
      d.state ? stat('state', d.state) : null,
      d.generation !== undefined ? stat('generation', num(d.generation)) : null),
    d.members ? card('Members', members(d.members))
      : h('p', { class: 'muted small', 'data-testid': 'no-members' }, 'No members reported for this group: its offsets were committed without a group membership (or the agent does not report members).'),
    card('Committed offsets', table([
      { label: 'topic', value: (p) => p.topic },
      { label: 'partition', class: 'num', value: (p) => p.partition },
      { label: 'committed', class: 'num', value: (p) => num(p.offset) },
      { label: 'low', class: 'num', value: (p) => num(p.low_watermark) },
      { label: 'high', class: 'num', value: (p) => num(p.high_watermark) },
      { label: 'lag', class: 'num', value: (p) => h('span', { 'data-testid': `lag-${p.topic}-${p.partition}` }, num(p.lag)) },
      { label: 'committed at', value: (p) => p.committed_at || '–' },
    ], d.partitions, { 'data-testid': 'offsets' })),
  ];
}

function members(ms) {
  return table([
    { label: 'member', value: (m) => m.member_id || m.id },
    { label: 'client', value: (m) => [m.client_id, m.client_host].filter(Boolean).join(' @ ') || '–' },
    { label: 'assignment', value: (m) => assignment(m.assignment || m.assignments) },
  ], ms, { 'data-testid': 'members', 'data-empty': 'No members: nobody consumes with this group now.' });
}

function assignment(a) {
  if (!a) return '–';
  if (Array.isArray(a)) return a.map((x) => (typeof x === 'string' ? x : `${x.topic}[${(x.partitions || []).join(',')}]`)).join(' ');
  return Object.entries(a).map(([t, ps]) => `${t}[${ps.join(',')}]`).join(' ');
}

// resetForm previews the new lag from the topic's watermarks (and, for a
// time, the offset of that time per partition), then resets.
function resetForm(path, d, reload) {
  const topics = [...new Set(d.partitions.map((p) => p.topic))];
  const topic = h('input', { name: 'topic', value: topics[0] || '', list: 'group-topics' });
  const strategy = h('select', { name: 'strategy' }, ['earliest', 'latest', 'offset', 'timestamp'].map((s) => h('option', { value: s }, s)));
  const value = h('input', { name: 'value', placeholder: 'offset, or time (ISO or unix ms)' });
  const partsIn = h('input', { name: 'partitions', placeholder: 'all, or 0,1,2' });
  const preview = h('div', { 'data-testid': 'reset-preview' });
  const out = h('div', {});
  const pv = h('button', { type: 'button' }, 'Preview');
  const submit = h('button', { class: 'primary', type: 'submit' }, 'Reset offsets');
  const form = h('form', { class: 'inline-form', 'data-testid': 'reset' },
    h('datalist', { id: 'group-topics' }, topics.map((t) => h('option', { value: t }))),
    field('topic', topic), field('strategy', strategy), field('offset / time', value), field('partitions', partsIn), pv, submit);
  const request = () => {
    const req = { strategy: strategy.value, topic: topic.value.trim() };
    if (partsIn.value.trim() && partsIn.value.trim() !== 'all') req.partitions = partsIn.value.split(',').map((s) => Number(s.trim()));
    if (strategy.value === 'offset') req.offset = Number(value.value);
    if (strategy.value === 'timestamp') req.timestamp = /^\d+$/.test(value.value.trim()) ? Number(value.value) : Date.parse(value.value);
    return req;
  };
  pv.addEventListener('click', () => busy(pv, async () => {
    clear(out);
    try { clear(preview, await previewTable(d, request())); } catch (e) { clear(preview, errorBox(e)); }
  }));
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    busy(submit, async () => {
      try {
        const r = await api('POST', path + '/reset', request());
        clear(preview);
        clear(out, h('p', { class: 'ok', 'data-testid': 'reset-done' }, `Offsets reset; total lag now ${num(r.total_lag)}.`));
        toast('Offsets reset');
        d = await reload();
      } catch (e) {
        clear(out, errorBox(e));
      }
    });
  });
  return h('div', {}, form, preview, out);
}

async function previewTable(d, req) {
  if (!req.topic) throw new Error('topic: name the topic to reset');
  const t = enc(req.topic);
  const all = (await get(`/api/v1/topics/${t}/partitions`)).partitions;
  const chosen = req.partitions ? all.filter((p) => req.partitions.includes(p.partition)) : all;
  if (req.strategy === 'timestamp' && Number.isNaN(req.timestamp)) throw new Error('time: enter an ISO time or unix milliseconds');
  if (req.strategy === 'offset' && !(req.offset >= 0)) throw new Error('offset: enter a whole number >= 0');
  const current = Object.fromEntries(d.partitions.filter((p) => p.topic === req.topic).map((p) => [p.partition, p.offset]));
  const rows = [];
  for (const p of chosen.slice(0, 200)) {
    let next;
    if (req.strategy === 'earliest') next = p.low_watermark;
    else if (req.strategy === 'latest') next = p.high_watermark;
    else if (req.strategy === 'offset') next = Math.min(Math.max(req.offset, p.low_watermark), p.high_watermark);
    else next = (await get(`/api/v1/topics/${t}/partitions/${p.partition}/offsets?timestamp=${req.timestamp}`)).offset;
    rows.push({ p: p.partition, cur: current[p.partition], next, high: p.high_watermark });
  }
  const curLag = rows.reduce((n, r) => n + (r.cur === undefined ? 0 : r.high - r.cur), 0);
  const newLag = rows.reduce((n, r) => n + (r.high - r.next), 0);
  return h('div', {},
    h('p', {}, 'Preview: total lag ', h('strong', {}, num(curLag)), ' → ', h('strong', { 'data-testid': 'preview-lag' }, num(newLag)),
      chosen.length > 200 ? ` (first 200 of ${chosen.length} partitions shown)` : ''),
    table([
      { label: 'partition', class: 'num', value: (r) => r.p },
      { label: 'committed', class: 'num', value: (r) => (r.cur === undefined ? 'none' : num(r.cur)) },
      { label: 'new offset', class: 'num', value: (r) => num(r.next) },
      { label: 'lag now', class: 'num', value: (r) => (r.cur === undefined ? '–' : num(r.high - r.cur)) },
      { label: 'new lag', class: 'num', value: (r) => num(r.high - r.next) },
    ], rows));
}

function deleteForm(path, name) {
  const confirm = h('input', { name: 'confirm', placeholder: name, autocomplete: 'off' });
  const out = h('div', {});
  const submit = h('button', { class: 'danger', type: 'submit' }, 'Delete group');
  const form = h('form', {}, field(`type "${name}" to confirm`, confirm), submit, out);
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    if (confirm.value !== name) { clear(out, errorBox('Type the group name exactly to confirm.')); return; }
    busy(submit, async () => {
      try {
        await api('DELETE', path);
        toast(`Group ${name} deleted`);
        location.hash = '#/groups';
      } catch (e) {
        clear(out, errorBox(e));
      }
    });
  });
  return form;
}

