// Topic detail: partitions (leader, epoch, watermarks, flushed offset,
// unflushed records and bytes, segments and objects; paginated), config,
// add partitions, delete, the message browser and a test producer.
import { api, get, enc } from '../api.js';
import { h, clear, table, card, num, bytes, ago, errorBox, toast, pager, field, busy } from '../ui.js';
import { browser } from './browser.js';

const PAGE = 50;

export async function render(ctx, name) {
  const path = '/api/v1/topics/' + enc(name);
  // One page of partitions per call, whatever the topic's partition count.
  const page = (p) => get(`${path}/storage?from=${p * PAGE}&count=${PAGE}`, { signal: ctx.signal });
  const first = await page(0);
  const t = first.topic;
  const parts = h('div', {});
  const state = { page: 0 };
  const drawParts = async (loaded) => {
    const r = loaded || await page(state.page);
    const pages = Math.ceil(r.topic.partitions / PAGE);
    if (ctx.gone) return;
    clear(parts, h('p', { class: 'muted small' }, `${num(r.topic.partitions)} partitions`),
      table(partColumns(), r.partitions, { 'data-testid': 'partitions' }),
      pages > 1 ? pager(state.page, pages, (p) => { state.page = p; drawParts(); }, 'Partitions page') : null);
  };
  clear(ctx.main,
    h('h1', {}, h('a', { href: '#/topics' }, 'Topics'), ' / ', h('span', { 'data-testid': 'topic-name' }, name)),
    h('div', { class: 'muted small' }, `id ${t.id} · created ${t.created_at} · ${num(t.partitions)} partitions`),
    card('Partitions', parts),
    card('Message browser', browser(ctx, name, t.partitions)),
    h('div', { class: 'grid2' }, card('Produce a test record', produceForm(name)), card('Configuration', configForm(ctx, path))),
    h('div', { class: 'grid2' }, card('Add partitions', addPartitionsForm(path, t, () => drawParts())), card('Delete topic', deleteForm(path, name))));
  await drawParts(first);
  ctx.every(3000, () => drawParts());
}

function partColumns() {
  const s = (p) => p;
  return [
    { label: 'partition', class: 'num', value: (p) => p.partition },
    { label: 'leader', value: (p) => p.leader || '–' },
    { label: 'epoch', class: 'num', value: (p) => num(p.leader_epoch) },
    { label: 'low', class: 'num', value: (p) => num(p.low_watermark) },
    { label: 'high', class: 'num', value: (p) => num(p.high_watermark) },
    { label: 'flushed', class: 'num', value: (p) => num(p.flushed_offset) },
    { label: 'unflushed', class: 'num', value: (p) => num(p.unflushed_records) },
    { label: 'unflushed bytes', class: 'num', value: (p) => bytes(s(p).unflushed_bytes) },
    { label: 'segments', class: 'num', value: (p) => num(p.segments) },
    { label: 'objects', class: 'num', value: (p) => num(s(p).objects) },
    { label: 'in S3', class: 'num', value: (p) => bytes(s(p).segment_bytes) },
    { label: 'last upload', value: (p) => (s(p).last_segment_commit_ms ? ago(s(p).last_segment_commit_ms) : '–') },
  ];
}

function produceForm(topic) {
  const key = h('input', { name: 'key', placeholder: 'null key when empty' });
  const value = h('textarea', { name: 'value', rows: 3, placeholder: '{"hello":"world"}' });
  const headers = h('input', { name: 'headers', placeholder: '{"source":"console"}' });
  const partition = h('input', { name: 'partition', type: 'number', min: 0, placeholder: 'by key' });
  const out = h('div', {});
  const submit = h('button', { class: 'primary', type: 'submit' }, 'Produce');
  const form = h('form', { 'data-testid': 'produce' }, field('key', key), field('value', value), field('headers (JSON object)', headers), field('partition', partition), submit, out);
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    busy(submit, async () => {
      clear(out);
      const rec = { topic, value: value.value };
      if (key.value !== '') rec.key = key.value;
      if (partition.value !== '') rec.partition = Number(partition.value);
      try {
        if (headers.value.trim()) rec.headers = JSON.parse(headers.value);
      } catch (e) {
        clear(out, errorBox(`headers: not a JSON object (${e.message})`));
        return;
      }
      try {
        const r = await api('POST', '/api/v1/produce', rec);
        clear(out, h('p', { class: 'ok', 'data-testid': 'produced' }, `Stored at partition ${r.partition}, offset ${r.offset}.`));
      } catch (e) {
        clear(out, errorBox(e));
      }
    });
  });
  return form;
}

function configForm(ctx, path) {
  const box = h('div', {}, h('p', { class: 'muted' }, 'Loading…'));
  const load = async () => {
    const c = await get(path + '/config', { signal: ctx.signal });
    const inputs = {};
    const out = h('div', {});
    const submit = h('button', { class: 'primary', type: 'submit' }, 'Save changes');
    const rows = Object.keys(c.configs).sort().map((k) => {
      inputs[k] = h('input', { name: k, value: c.configs[k] });
      return field(k + (c.defaults.includes(k) ? ' (default)' : ''), inputs[k]);
    });
    const form = h('form', { 'data-testid': 'config' }, rows, submit, out);
    form.addEventListener('submit', (ev) => {
      ev.preventDefault();
      const set = {};
      for (const [k, el] of Object.entries(inputs)) if (el.value !== c.configs[k]) set[k] = el.value;
      if (Object.keys(set).length === 0) { clear(out, h('p', { class: 'muted' }, 'Nothing changed.')); return; }
      busy(submit, async () => {
        try {
          await api('PATCH', path + '/config', set);
          toast('Configuration saved');
          await load();
        } catch (e) {
          clear(out, errorBox(e));
        }
      });
    });
    clear(box, form);
  };
  load().catch((e) => clear(box, errorBox(e)));
  return box;
}

function addPartitionsForm(path, t, reload) {
  const count = h('input', { name: 'count', type: 'number', min: t.partitions + 1, max: 10000, value: String(Math.min(t.partitions + 1, 10000)) });
  const out = h('div', {});
  const submit = h('button', { class: 'primary', type: 'submit' }, 'Add partitions');
  const form = h('form', { 'data-testid': 'add-partitions' }, field('new total partition count', count),
    h('p', { class: 'muted small' }, 'As in Kafka, keyed records may map to another partition afterwards.'), submit, out);
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    busy(submit, async () => {
      try {
        const r = await api('POST', path + '/partitions', { count: Number(count.value) });
        clear(out, h('p', { class: 'ok' }, `The topic now has ${r.partitions} partitions.`));
        count.min = r.partitions + 1;
        await reload();
      } catch (e) {
        clear(out, errorBox(e));
      }
    });
  });
  return form;
}

function deleteForm(path, name) {
  const confirm = h('input', { name: 'confirm', placeholder: name, autocomplete: 'off' });
  const out = h('div', {});
  const submit = h('button', { class: 'danger', type: 'submit' }, 'Delete topic');
  const form = h('form', { 'data-testid': 'delete-topic' },
    field(`type "${name}" to confirm`, confirm),
    h('p', { class: 'muted small' }, 'Deletes every record of the topic; consumer-group offsets on it go too.'), submit, out);
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    if (confirm.value !== name) { clear(out, errorBox('Type the topic name exactly to confirm.')); return; }
    busy(submit, async () => {
      try {
        await api('DELETE', path);
        toast(`Topic ${name} deleted`);
        location.hash = '#/topics';
      } catch (e) {
        clear(out, errorBox(e));
      }
    });
  });
  return form;
}
