// The console's shell: hash routing, the health banner, the API-key button.
import { askKey, apiKey, get, probe } from './api.js';
import { h, clear, errorBox } from './ui.js';
import * as cluster from './pages/cluster.js';
import * as topics from './pages/topics.js';
import * as topic from './pages/topic.js';
import * as groups from './pages/groups.js';
import * as group from './pages/group.js';
import * as durability from './pages/durability.js';
import * as throughput from './pages/throughput.js';

const routes = [
  [/^#\/cluster$/, cluster, 'cluster'],
  [/^#\/topics$/, topics, 'topics'],
  [/^#\/topics\/(.+)$/, topic, 'topics'],
  [/^#\/groups$/, groups, 'groups'],
  [/^#\/groups\/(.+)$/, group, 'groups'],
  [/^#\/durability$/, durability, 'durability'],
  [/^#\/throughput$/, throughput, 'throughput'],
];

let current = null; // the page context in force

// Context is what a page gets: its root element, an abort signal that
// fires when the user leaves, and every() for polling that stops then.
class Context {
  constructor(main) {
    this.main = main;
    this.ctrl = new AbortController();
    this.timers = [];
  }
  get signal() { return this.ctrl.signal; }
  get gone() { return this.ctrl.signal.aborted; }
  every(ms, fn) {
    let running = false;
    const tick = async () => {
      if (running || this.gone) return;
      running = true;
      try { await fn(); } catch (e) { if (e.name !== 'AbortError') console.warn('refresh failed', e); } finally { running = false; }
    };
    this.timers.push(setInterval(tick, ms));
  }
  close() {
    this.ctrl.abort();
    this.timers.forEach(clearInterval);
  }
}

async function route() {
  const hash = location.hash || '#/cluster';
  if (!location.hash) history.replaceState(null, '', '#/cluster');
  const main = document.getElementById('main');
  main.dataset.page = '';
  main.dataset.ready = 'false';
  if (current) current.close();
  current = new Context(main);
  const ctx = current;
  for (const [re, page, nav] of routes) {
    const m = hash.match(re);
    if (!m) continue;
    document.querySelectorAll('#nav a').forEach((a) => a.classList.toggle('active', a.dataset.page === nav));
    clear(main, h('p', { class: 'muted' }, 'Loading…'));
    try {
      await page.render(ctx, ...m.slice(1).map(decodeURIComponent));
      main.dataset.page = nav;
      main.dataset.ready = 'true';
    } catch (e) {
      if (e.name === 'AbortError' || ctx.gone) return;
      clear(main, errorBox(e));
      main.dataset.ready = 'true';
    }
    return;
  }
  clear(main, h('p', {}, 'No such page. ', h('a', { href: '#/cluster' }, 'Go to the cluster.')));
}

// banner shows why the cluster cannot serve fully: this agent not ready,
// or no Raft leader. Polled every 3 s.
async function refreshBanner() {
  const banner = document.getElementById('banner');
  const ready = await probe('/ready');
  const msgs = [];
  if (!ready.ok) {
    msgs.push(`This agent is not ready: ${(ready.body && ready.body.reason) || 'status ' + ready.status}. Reads and writes may fail; what is shown may be stale.`);
  }
  try {
    const st = await get('/api/v1/cluster');
    document.getElementById('agent').textContent = 'via ' + st.node_id;
    if (!st.raft_leader) msgs.push('The cluster has no Raft leader: writes are refused until one is elected.');
  } catch (e) {
    if (e.status !== 401 && e.status !== 403) msgs.push(`Cluster status unavailable: ${e.text || e.message}`);
  }
  banner.hidden = msgs.length === 0;
  banner.textContent = msgs.join(' ');
}

window.addEventListener('hashchange', route);
document.getElementById('key-button').addEventListener('click', async () => {
  if (await askKey(apiKey() ? 'Replace or forget the API key of this tab.' : 'Enter an API key.')) route();
});
route();
refreshBanner();
setInterval(refreshBanner, 3000);
