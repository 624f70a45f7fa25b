// Topics: list (partitions, records, unflushed, size, records/s), create,
// delete with confirmation.
import { api, get, enc } from '../api.js';
import { scrape, byLabel } from '../metrics.js';
import { h, clear, table, card, num, bytes, rate, errorBox, toast, pager, field, busy } from '../ui.js';

const PAGE = 50;

export async function render(ctx) {
  const list = h('div', {});
  const filter = h('input', { type: 'search', placeholder: 'filter by name', 'aria-label': 'filter topics' });
  let page = 0;
  let prev = null; // {t, high: {topic: sum}} of the previous poll, for records/s
  let last = null;
  const draw = () => {
    if (!last) return;
    const q = filter.value.trim();
    const rows = last.topics.filter((t) => !q || t.name.includes(q));
    const pages = Math.ceil(rows.length / PAGE);
    page = Math.min(page, Math.max(pages - 1, 0));
    clear(list, table(columns(last), rows.slice(page * PAGE, (page + 1) * PAGE), { 'data-testid': 'topics', 'data-empty': 'No topics.' }),
      pages > 1 ? pager(page, pages, (p) => { page = p; draw(); }) : null);
  };
  const load = async () => {
    const [t, m] = await Promise.all([get('/api/v1/topics', { signal: ctx.signal }),
      scrape(['streamhouse_topic_high_watermark_sum', 'streamhouse_topic_unflushed_offsets', 'streamhouse_topic_segment_bytes'], ctx.signal)]);
    const now = Date.now();
    const high = byLabel(m.streamhouse_topic_high_watermark_sum, 'topic');
    const rates = {};
    if (prev) for (const k of Object.keys(high)) rates[k] = Math.max(high[k] - (prev.high[k] || 0), 0) / ((now - prev.t) / 1000);
    prev = { t: now, high };
    last = { topics: t.topics, high, unflushed: byLabel(m.streamhouse_topic_unflushed_offsets, 'topic'),
      size: byLabel(m.streamhouse_topic_segment_bytes, 'topic'), rates };
    if (!ctx.gone) draw();
  };
  filter.addEventListener('input', () => { page = 0; draw(); });
  clear(ctx.main, h('h1', {}, 'Topics'), createForm(load), card(null, h('div', { class: 'row' }, filter), list));
  await load();
  ctx.every(3000, load);
}

function columns(last) {
  return [
    { label: 'name', value: (t) => h('a', { href: '#/topics/' + enc(t.name), 'data-topic': t.name }, t.name) },
    { label: 'partitions', class: 'num', value: (t) => num(t.partitions) },
    { label: 'records', class: 'num', value: (t) => num(last.high[t.name]) },
    { label: 'unflushed', class: 'num', value: (t) => num(last.unflushed[t.name]) },
    { label: 'size in S3', class: 'num', value: (t) => bytes(last.size[t.name]) },
    { label: 'records/s', class: 'num', value: (t) => (t.name in last.rates ? rate(last.rates[t.name], '/s') : '–') },
    { label: 'retention', value: (t) => (t.retention_ms > 0 ? `${(t.retention_ms / 3600000).toFixed(1)} h` : 'forever') },
    { label: 'compression', value: (t) => t.compression },
  ];
}

function createForm(reload) {
  const name = h('input', { name: 'name', required: true, pattern: '[a-zA-Z0-9._\\-]+', maxlength: 249, placeholder: 'orders' });
  const parts = h('input', { name: 'partitions', type: 'number', min: 1, max: 10000, value: '3' });
  const retention = h('input', { name: 'retention_hours', type: 'number', min: 0, step: 'any', value: '0', title: '0 = keep forever' });
  const compression = h('select', { name: 'compression' }, ['zstd', 'lz4', 'none'].map((c) => h('option', { value: c }, c)));
  const out = h('div', {});
  const submit = h('button', { class: 'primary', type: 'submit' }, 'Create topic');
  const form = h('form', { class: 'inline-form', 'data-testid': 'create-topic' },
    field('name', name), field('partitions', parts), field('retention (hours, 0 = forever)', retention), field('compression', compression), submit);
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    busy(submit, async () => {
      clear(out);
      try {
        await api('POST', '/api/v1/topics', {
          name: name.value.trim(), partitions: Number(parts.value),
          retention_ms: Math.round(Number(retention.value) * 3600000), compression: compression.value,
        });
        toast(`Topic ${name.value} created`);
        name.value = '';
        await reload();
      } catch (e) {
        clear(out, errorBox(e));
      }
    });
  });
  return h('details', { class: 'card', open: true }, h('summary', {}, 'Create a topic'), form, out);
}
