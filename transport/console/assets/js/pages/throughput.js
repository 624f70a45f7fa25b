// Throughput: charts of one agent's own metrics over the last minutes
// (sampled by the agent every 2 s; no Prometheus needed).
import { get, enc } from '../api.js';
import { h, clear, card, rate, bytes, field } from '../ui.js';
import { chart } from '../chart.js';

export async function render(ctx) {
  const st = await get('/api/v1/cluster', { signal: ctx.signal });
  const node = h('select', { name: 'node' }, st.members.map((m) => h('option', { value: m.id, selected: m.id === st.node_id }, m.id)));
  const body = h('div', { class: 'charts' });
  const err = h('div', {});
  const draw = async () => {
    const r = await get('/api/v1/metrics/history?node=' + enc(node.value), { signal: ctx.signal });
    if (ctx.gone) return;
    clear(err);
    clear(body, view(r.points));
  };
  node.addEventListener('change', () => draw().catch((e) => clear(err, h('div', { class: 'error' }, e.text || e.message))));
  clear(ctx.main, h('h1', {}, 'Throughput'),
    h('div', { class: 'row' }, field('agent', node), h('p', { class: 'muted small' }, 'Rates of this agent over the last 10 minutes, from its own metrics.')), err, body);
  await draw();
  ctx.every(2000, draw);
}

function last(points, k) {
  for (let i = points.length - 1; i >= 0; i--) if (points[i][k] !== null) return points[i][k];
  return null;
}

function view(ps) {
  const s = (k) => ps.map((p) => [p.t, p[k]]);
  const legend = (items) => h('div', { class: 'legend' }, items.map(([cls, label]) => h('span', { class: 'key ' + cls }, label)));
  const perSec = (v) => rate(v, '/s');
  const bps = (v) => bytes(v) + '/s';
  const ms = (v) => (v === null ? '–' : v.toFixed(v < 10 ? 2 : 0) + ' ms');
  return [
    card(`Records/s — produce ${perSec(last(ps, 'produce_records_per_sec'))}, consume ${perSec(last(ps, 'consume_records_per_sec'))}`,
      chart([{ points: s('produce_records_per_sec'), cls: 'c1' }, { points: s('consume_records_per_sec'), cls: 'c2' }], perSec),
      legend([['c1', 'produced (acknowledged)'], ['c2', 'consumed']])),
    card(`Bytes/s — flushed ${bps(last(ps, 'flush_bytes_per_sec'))}, uploaded ${bps(last(ps, 's3_put_bytes_per_sec'))}`,
      chart([{ points: s('flush_bytes_per_sec'), cls: 'c1' }, { points: s('s3_put_bytes_per_sec'), cls: 'c2' }], bps),
      legend([['c1', 'record bytes flushed into segments'], ['c2', 'bytes PUT to the object store']])),
    card(`Ack latency — p50 ${ms(last(ps, 'ack_p50_ms'))}, p99 ${ms(last(ps, 'ack_p99_ms'))}`,
      chart([{ points: s('ack_p50_ms'), cls: 'c1' }, { points: s('ack_p99_ms'), cls: 'c2' }], ms),
      legend([['c1', 'p50'], ['c2', 'p99']])),
    card(`S3 PUTs/s — ${perSec(last(ps, 's3_puts_per_sec'))}`,
      chart([{ points: s('s3_puts_per_sec'), cls: 'c1' }], perSec)),
  ];
}
