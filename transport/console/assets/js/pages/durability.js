// Durability / DR: per agent, what is not yet in the object store (the
// backlog of the partitions it uploads, its oldest record, its last
// upload) and the Postgres checkpoint; and the recovery point: what a
// restore from Postgres and the bucket would lose right now.
import { get } from '../api.js';
import { h, clear, table, card, num, bytes, duration, ago, stat } from '../ui.js';

export async function render(ctx) {
  const body = h('div', {});
  clear(ctx.main, h('h1', {}, 'Durability / DR'), body);
  const draw = async () => {
    const d = await get('/api/v1/durability', { signal: ctx.signal });
    if (!ctx.gone) clear(body, view(d));
  };
  await draw();
  ctx.every(2000, draw);
}

function view(d) {
  const rp = d.recovery_point;
  const ok = (a) => !a.error;
  return [
    card('Recovery point',
      h('div', { class: 'stats' },
        stat('records a restore would lose now', num(rp.records_at_risk), { 'data-testid': 'rp-records', class: rp.records_at_risk > 0 ? 'stat warn' : 'stat good' }),
        stat('oldest of them', rp.window_ms > 0 ? duration(rp.window_ms) : 'none', { 'data-testid': 'rp-window' })),
      h('p', { class: 'muted small' }, 'A restore rebuilds the cluster from the last Postgres checkpoint plus the segment objects in the bucket: it keeps everything already in S3 and loses only records not yet flushed. Restore into empty data directories, then start the agents:'),
      h('pre', { class: 'command', 'data-testid': 'restore-command' }, rp.restore_command)),
    card('Flush backlog per agent', table([
      { label: 'agent', value: (a) => a.id },
      { label: 'partitions uploaded', class: 'num', value: (a) => (ok(a) ? num(a.led_partitions) : '–') },
      { label: 'unflushed records', class: 'num', value: (a) => (ok(a) ? h('span', { 'data-testid': 'unflushed-records-' + a.id }, num(a.unflushed_records)) : '–') },
      { label: 'unflushed bytes (led)', class: 'num', value: (a) => (ok(a) ? bytes(a.led_unflushed_bytes) : '–') },
      { label: 'local store', class: 'num', value: (a) => (ok(a) ? h('span', { 'data-testid': 'store-bytes-' + a.id, 'data-value': a.unflushed_bytes }, bytes(a.unflushed_bytes)) : '–') },
      { label: 'oldest unflushed', value: (a) => (ok(a) ? (a.oldest_unflushed_ms ? duration(a.oldest_unflushed_age_ms) : 'none') : '–') },
      { label: 'last segment upload', value: (a) => (ok(a) ? ago(a.last_segment_commit_ms, a.now_ms) : '–') },
      { label: 'segments written', class: 'num', value: (a) => (ok(a) ? h('span', { 'data-testid': 'segments-' + a.id, 'data-value': a.segments_written }, num(a.segments_written)) : '–') },
      { label: 'upload failures', class: 'num', value: (a) => (ok(a) ? num(a.upload_failures) : h('span', { class: 'error-text' }, a.error)) },
    ], d.agents, { 'data-testid': 'backlog' })),
    card('Postgres checkpoints', table([
      { label: 'agent', value: (a) => a.id },
      { label: 'state', value: (a) => cpState(a) },
      { label: 'last checkpoint', value: (a) => (a.checkpoint && a.checkpoint.last_at_ms ? ago(a.checkpoint.last_at_ms) : '–') },
      { label: 'Raft index', class: 'num', value: (a) => (a.checkpoint ? h('span', { 'data-testid': 'cp-index-' + a.id, class: a.checkpoint.leader ? 'cp-writing-index' : '' }, num(a.checkpoint.last_raft_index)) : '–') },
      { label: 'lag', value: (a) => (a.checkpoint && a.checkpoint.leader ? duration(a.checkpoint.lag_ms) : '–') },
      { label: 'failures (in a row / total)', class: 'num', value: (a) => (a.checkpoint ? `${num(a.checkpoint.consecutive_failures)} / ${num(a.checkpoint.failures_total)}` : '–') },
      { label: 'last error', value: (a) => (a.checkpoint && a.checkpoint.last_error) || '' },
    ], d.agents, { 'data-testid': 'checkpoints' })),
  ];
}

function cpState(a) {
  if (a.error) return h('span', { class: 'error-text' }, a.error);
  const c = a.checkpoint;
  if (!c) return h('span', { class: 'badge state-dead', title: 'DATABASE_URL is not set' }, 'not configured');
  if (!c.connected) return h('span', { class: 'badge state-suspect' }, 'not connected');
  return h('span', { class: 'badge state-alive' + (c.leader ? ' cp-writing' : '') }, c.leader ? 'writing (Raft leader)' : 'standby');
}


