// Queue: filter by state, search, explain inline, block, retry one failed
// package now (the core's `retry`: its backoff ends or it is unblocked, its
// failures are forgotten), retry failures (every backoff and block).

import * as api from './api.js';
import { h, dur, act, badge, stateOf } from './util.js';

const STATES = ['', 'queued', 'assigned', 'built', 'blocked'];
const LIMIT = 1000;

export function mount(root, ctx, refreshAll) {
  const state = h('select', { id: 'queue-state' }, STATES.map((s) => h('option', { value: s }, s || 'every state')));
  const search = h('input', { id: 'queue-search', type: 'search', placeholder: 'search atoms', size: 30 });
  const count = h('span', { class: 'muted', id: 'queue-count' });
  const body = h('div', { id: 'queue-table' });
  const retry = h('button', { type: 'button', title: 'Clear the retry backoff of every failed package',
    onclick: () => act('Retry failures', () => api.control('retry_failures'), refreshAll) }, 'Retry failures');
  root.append(h('h2', null, 'Queue'), h('div', { class: 'row' }, state, search, retry, count), body);
  let items = [];
  const explained = new Map();

  function row(it) {
    const atom = it.atom;
    // A package is (profile, atom): the same atom may be queued once per profile, so every
    // action names the row's profile (`default` for the default one).
    const profile = it.profile || 'default';
    const key = profile + ' ' + atom;
    const pkg = { package: atom, profile };
    const st = stateOf(it);
    const s = it.status || {};
    const explain = h('button', { type: 'button', 'data-explain': atom, onclick: async () => {
      try {
        const r = await api.get('/api/v1/explain?package=' + encodeURIComponent(atom) + '&profile=' + encodeURIComponent(profile));
        explained.set(key, r.explain);
      } catch (e) { explained.set(key, 'explain failed: ' + e.message); }
      draw();
    } }, 'Explain');
    const acts = [explain];
    // A failed package (waiting out its backoff, or blocked) can be retried
    // now: the core ends its wait or unblocks it and forgets its failures, so
    // any free drone, also one it failed on, builds it next. A masked package
    // did not fail (the core refuses to retry it): Unblock is the way.
    const masked = st === 'blocked' && s.reason && s.reason.why === 'masked';
    const failed = (st === 'blocked' && !masked) || (st === 'queued' && (s.retry_at || it.attempts > 0));
    if (failed) {
      acts.push(h('button', { type: 'button', 'data-retry': atom,
        title: st === 'blocked' ? 'Unblock it, forget its failures and build it now' : 'End its backoff, forget its failures and build it now',
        onclick: () => act('Retry ' + atom, () => api.control('retry', pkg), refreshAll) }, 'Retry now'));
    }
    if (st !== 'blocked' && st !== 'built') {
      acts.push(h('button', { type: 'button', class: 'danger', onclick: () => act('Block ' + atom, () => api.control('block', pkg), refreshAll) }, 'Block'));
    }
    let detail = '';
    if (st === 'assigned' || st === 'building') detail = 'on ' + s.drone + ' (lease ' + s.lease + ')';
    if (st === 'blocked') detail = JSON.stringify(s.reason);
    if (st === 'queued' && s.retry_at) detail = 'backoff until ' + new Date(s.retry_at).toLocaleTimeString() + ' (Retry now ends it)';
    const named = it.profile ? h('span', { class: 'hint' }, ' · ' + it.profile) : '';
    const cells = [h('span', { class: 'mono' }, atom, named), badge(st, st === 'blocked' ? 'bad' : st === 'built' ? 'ok' : st === 'building' ? 'ok' : ''),
      it.priority, it.attempts, dur(it.estimate_ms), h('span', { class: 'hint' }, detail, it.last_error ? ' · ' + it.last_error : ''), h('div', { class: 'row' }, acts)];
    const tr = h('tr', { 'data-atom': atom, 'data-profile': profile }, cells.map((c) => h('td', null, c)));
    const why = explained.get(key);
    return why ? [tr, h('tr', null, h('td', { colspan: 7, class: 'explain' }, why))] : [tr];
  }

  let total = 0;
  function draw() {
    body.replaceChildren(h('table', null,
      h('thead', null, h('tr', null, ['package', 'state', 'priority', 'attempts', 'estimate', 'detail', 'actions'].map((c) => h('th', null, c)))),
      h('tbody', null, items.slice(0, 500).flatMap(row))));
    count.textContent = Math.min(items.length, 500) + ' shown' + (total > 500 ? ' of ' + total : '');
  }

  // The server searches the whole queue (a page of it would miss most of a big one).
  async function refresh() {
    const st = state.value ? '&state=' + state.value : '';
    const q = search.value.trim() ? '&q=' + encodeURIComponent(search.value.trim()) : '';
    const r = await api.get('/api/v1/queue?limit=' + LIMIT + st + q);
    items = r.items || [];
    total = r.total || 0;
    draw();
  }
  let typing = null;
  state.addEventListener('change', refresh);
  search.addEventListener('input', () => { clearTimeout(typing); typing = setTimeout(refresh, 250); });
  return { refresh };
}
