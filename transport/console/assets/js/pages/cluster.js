// Cluster: the agents as the answering agent sees them (gossip state, Raft
// suffrage, leader, term, indexes, partitions led, version, addresses), the
// partition-leader distribution and readiness.
import { get, probe } from '../api.js';
import { h, clear, table, card, stat, num } from '../ui.js';

export async function render(ctx) {
  const body = h('div', {});
  clear(ctx.main, h('h1', {}, 'Cluster'), body);
  // Every agent's readiness comes through the durability endpoint, which
  // asks the other agents (up to 2 s each): polled on its own so a slow
  // agent never delays the cluster view.
  let readiness = {};
  const loadReadiness = async () => {
    const d = await get('/api/v1/durability', { signal: ctx.signal });
    readiness = Object.fromEntries(d.agents.map((a) => [a.id, a]));
  };
  const draw = async () => {
    const [st, ready] = await Promise.all([get('/api/v1/cluster', { signal: ctx.signal }), probe('/ready')]);
    if (!ctx.gone) clear(body, view(st, ready, readiness));
  };
  await draw();
  loadReadiness().then(draw).catch(() => {});
  ctx.every(2000, draw);
  ctx.every(3000, loadReadiness);
}

function readyCell(id, a) {
  const t = { 'data-testid': 'ready-' + id };
  if (!a) return h('span', Object.assign(t, { class: 'muted' }), '…');
  if (a.error) return h('span', Object.assign(t, { class: 'error-text', title: a.error }), 'no answer');
  return a.ready ? h('span', Object.assign(t, { class: 'badge state-alive' }), 'ready')
    : h('span', Object.assign(t, { class: 'badge state-suspect', title: a.not_ready_reason }), a.not_ready_reason || 'not ready');
}

function view(st, ready, readiness) {
  const total = st.members.reduce((n, m) => n + m.partition_leaderships.length, 0);
  return [
    h('div', { class: 'stats' },
      stat('answering agent', st.node_id),
      stat('Raft state', st.raft_state),
      stat('Raft leader', st.raft_leader || 'none', { 'data-testid': 'raft-leader', class: st.raft_leader ? 'stat' : 'stat bad' }),
      stat('term', num(st.raft_term)),
      stat('commit / applied index', `${num(st.commit_index)} / ${num(st.applied_index)}`),
      stat('readiness', ready.ok ? 'ready' : (ready.body && ready.body.reason) || 'not ready', { class: ready.ok ? 'stat' : 'stat bad', 'data-testid': 'readiness' })),
    card('Agents', table([
      { label: 'agent', value: (m) => h('span', {}, m.id, m.raft_leader ? h('span', { class: 'badge leader', title: 'Raft leader' }, 'leader') : null) },
      { label: 'gossip', value: (m) => h('span', { class: 'badge state-' + m.gossip_state, 'data-testid': 'gossip-' + m.id }, m.gossip_state) },
      { label: 'Raft suffrage', value: (m) => m.raft_suffrage },
      { label: 'readiness', value: (m) => readyCell(m.id, readiness[m.id]) },
      { label: 'partitions led', class: 'num', value: (m) => num(m.partition_leaderships.length) },
      { label: 'version', value: (m) => m.version || '–' },
      { label: 'HTTP', value: (m) => m.http_addr || '–' },
      { label: 'gRPC', value: (m) => m.grpc_addr || '–' },
      { label: 'peer', value: (m) => m.peer_addr || '–' },
    ], st.members, { 'data-testid': 'members' }),
    h('p', { class: 'muted small' }, `Voters: ${st.voters.join(', ') || 'none'}. Non-voters: ${st.non_voters.join(', ') || 'none'}. Last contact with the leader: ${st.last_contact_ms < 0 ? 'never' : st.last_contact_ms + ' ms ago'}.`)),
    card('Partition leaders', distribution(st.members, total)),
  ];
}

function distribution(members, total) {
  if (total === 0) return h('p', { class: 'muted' }, 'No partitions yet.');
  return h('div', { class: 'bars' }, members.map((m) => {
    const n = m.partition_leaderships.length;
    const pct = (100 * n) / total;
    return h('div', { class: 'bar-row' },
      h('span', { class: 'bar-label' }, m.id),
      h('span', { class: 'bar' }, h('span', { class: 'bar-fill', style: `width:${pct.toFixed(1)}%` })),
      h('span', { class: 'bar-value' }, `${num(n)} (${pct.toFixed(0)}%)`));
  }));
}
