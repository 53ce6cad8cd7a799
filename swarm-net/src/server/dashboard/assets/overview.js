// Overview: the queue by state, cores, the brake, generation and Portage
// snapshot, charts from swarm's own time series, and the control panel.

import * as api from './api.js';
import { h, act, badge } from './util.js';

const ACTIONS = [
  ['pause', 'Pause the farm', 'No new work is handed out; running builds finish.'],
  ['resume', 'Resume', 'Hand out work again.'],
  ['release_brake', 'Release the brake', 'Let reclaims and escalations run again.'],
  ['retry_failures', 'Retry failures', 'Clear retry backoff on failed packages.'],
  ['unblock', 'Unblock all', 'Queue every blocked package again.'],
  ['rebalance', 'Rebalance', 'Take back work that has not started and hand it out again.'],
  ['clear_failures', 'Clear failure memory', 'Forget which drones failed which packages.'],
];

function card(n, label, id) { return h('div', { class: 'card', id }, h('div', { class: 'n' }, n), h('div', { class: 'l' }, label)); }

export function mount(root, ctx, refreshAll) {
  const cards = h('div', { class: 'cards', id: 'overview-cards' });
  const facts = h('div', { class: 'panel', id: 'overview-facts' });
  const charts = h('div', { class: 'charts' });
  const rateEl = h('div', { class: 'panel', id: 'chart-rate' });
  const depthEl = h('div', { class: 'panel', id: 'chart-depth' });
  const coresEl = h('div', { class: 'panel', id: 'chart-cores' });
  charts.append(rateEl, depthEl, coresEl);
  const panel = h('div', { class: 'panel', id: 'control-panel' },
    h('h2', null, 'Control panel'),
    h('p', { class: 'hint' }, 'Actions need the admin token.'),
    h('div', { class: 'row' }, ACTIONS.map(([action, label, title]) =>
      h('button', { type: 'button', id: 'control-' + action, title, class: action === 'pause' ? 'danger' : null,
        onclick: () => act(label, () => api.control(action), refreshAll) }, label))));
  root.append(h('h2', null, 'Queue'), cards, facts, h('h2', null, 'History (1-minute buckets)'), charts, panel);
  const plots = {};

  function plot(key, el, title, series, data) {
    const width = Math.max(300, el.clientWidth - 30);
    if (!window.uPlot) { el.replaceChildren(h('p', { class: 'muted' }, 'charts unavailable')); return; }
    if (plots[key] && plots[key].series.length === series.length + 1) {
      plots[key].setData(data);
      plots[key].setSize({ width, height: 180 });
      return;
    }
    el.replaceChildren();
    plots[key] = new window.uPlot({
      title, width, height: 180,
      // At least the last hour on the x axis, so one point is not a year wide. From the data,
      // not from the min and max uPlot passes: for a single point it pads them by 1,000 days, and
      // a fresh server's charts ran to 2029.
      scales: { x: { time: true, range: (u) => {
        const xs = u.data[0] || [];
        const now = Date.now() / 1000;
        return [Math.min(xs.length ? xs[0] : now, now - 3600), Math.max(xs.length ? xs[xs.length - 1] : now, now)];
      } } },
      // What the x axis spans, for a test to read (the axis is drawn on a canvas).
      hooks: { setScale: [(u, key) => { if (key === 'x') el.dataset.xspan = String(Math.round(u.scales.x.max - u.scales.x.min)); }] },
      axes: [{ stroke: '#8a96a3', grid: { stroke: '#273240' } }, { stroke: '#8a96a3', grid: { stroke: '#273240' } }],
      series: [{}, ...series],
    }, data, el);
  }

  async function refresh() {
    const s = ctx.status || await api.get('/api/v1/status');
    const c = s.counts || {};
    const ts = await api.get('/api/v1/timeseries?minutes=360');
    const pts = ts.points || [];
    const last = pts[pts.length - 1] || {};
    cards.replaceChildren(
      card(c.ready ?? 0, 'ready', 'count-ready'),
      card((c.queued ?? 0) - (c.ready ?? 0), 'waiting / backoff', 'count-waiting'),
      card((c.assigned ?? 0) - (c.building ?? 0), 'assigned, not started', 'count-assigned'),
      card(c.building ?? 0, 'building', 'count-building'),
      card(c.built ?? 0, 'built', 'count-built'),
      card(c.blocked ?? 0, 'blocked', 'count-blocked'),
      card((last.cores_busy ?? 0) + ' / ' + (last.cores_total ?? 0), 'cores busy', 'count-cores'),
      card(s.nodes_online ?? 0, 'drones online', 'count-drones'));
    const brake = s.brake || {};
    facts.replaceChildren(
      h('div', { class: 'row' },
        'Farm: ', s.paused ? badge('paused', 'warn') : badge('running', 'ok'),
        ' Brake: ', brake.engaged ? badge('engaged', 'bad') : badge('released', 'ok'),
        brake.engaged ? h('span', { class: 'bad', id: 'brake-reason' }, brake.reason) : null),
      h('div', { class: 'row muted' },
        'Generation ', h('b', null, s.generation ?? '–'),
        ' · Portage snapshot ', h('b', null, s.expected_portage || 'any'),
        ' · leases ', h('b', null, s.leases ?? 0),
        ' · log position ', h('b', null, s.seq ?? '–')));
    const x = pts.map((p) => p.t / 1000);
    plot('rate', rateEl, 'Builds per minute', [
      { label: 'built', stroke: '#3fb950', width: 2 },
      { label: 'failed', stroke: '#f85149', width: 2 },
      { label: 'reclaimed', stroke: '#d29922' },
    ], [x, pts.map((p) => p.builds_ok), pts.map((p) => p.builds_failed), pts.map((p) => p.reclaims)]);
    plot('depth', depthEl, 'Queue depth', [
      { label: 'queued', stroke: '#58a6ff', width: 2 },
      { label: 'assigned', stroke: '#d29922' },
      { label: 'building', stroke: '#3fb950' },
      { label: 'blocked', stroke: '#f85149' },
    ], [x, pts.map((p) => p.queued), pts.map((p) => p.assigned), pts.map((p) => p.building), pts.map((p) => p.blocked)]);
    plot('cores', coresEl, 'Cores', [
      { label: 'busy', stroke: '#3fb950', width: 2 },
      { label: 'online', stroke: '#8a96a3' },
    ], [x, pts.map((p) => p.cores_busy), pts.map((p) => p.cores_total)]);
  }
  return { refresh };
}
