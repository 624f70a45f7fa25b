// Consumer groups: every group with its topics and total lag.
import { get, enc } from '../api.js';
import { h, clear, table, num } from '../ui.js';

export async function render(ctx) {
  const body = h('div', {});
  clear(ctx.main, h('h1', {}, 'Consumer groups'), body);
  const draw = async () => {
    const r = await get('/api/v1/consumer-groups', { signal: ctx.signal });
    if (ctx.gone) return;
    clear(body, table([
      { label: 'group', value: (g) => h('a', { href: '#/groups/' + enc(g.group), 'data-group': g.group }, g.group) },
      { label: 'topics', value: (g) => g.topics.join(', ') },
      { label: 'partitions', class: 'num', value: (g) => num(g.partitions) },
      { label: 'total lag', class: 'num', value: (g) => num(g.total_lag) },
      { label: 'members', class: 'num', value: (g) => (g.members === undefined ? '–' : num(g.members)) },
      { label: 'state', value: (g) => g.state || '–' },
    ], r.groups, { 'data-testid': 'groups', 'data-empty': 'No consumer groups: a group appears with its first committed offset.' }));
  };
  await draw();
  ctx.every(3000, draw);
}
