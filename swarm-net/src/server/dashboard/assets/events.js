// Events: the activity feed, pushed by the server (no polling).

import { h, when } from './util.js';

function line(e) {
  const b = e.body || {};
  const extra = [];
  for (const k of ['reason', 'duration_ms', 'class', 'detail', 'action', 'why']) {
    if (b[k] !== undefined && b[k] !== null) extra.push(k + '=' + (typeof b[k] === 'object' ? JSON.stringify(b[k]) : b[k]));
  }
  return h('li', { 'data-kind': e.kind, 'data-id': e.id },
    h('span', { class: 'muted mono' }, when(e.at_ms), ' '),
    h('b', { class: e.kind === 'build_failed' || e.kind === 'blocked' ? 'bad' : e.kind === 'built' ? 'ok' : null }, e.kind), ' ',
    e.package ? h('span', { class: 'mono' }, e.package, ' ') : null,
    e.drone ? h('span', null, 'on ', e.drone, ' ') : null,
    h('span', { class: 'muted' }, extra.join(' ')));
}

export function mount(root, ctx) {
  const filter = h('input', { type: 'search', id: 'events-filter', placeholder: 'filter (kind, package, drone)', size: 30 });
  const list = h('ul', { class: 'events', id: 'events-list' });
  root.append(h('h2', null, 'Events ', h('span', { class: 'hint' }, '(live)')), h('div', { class: 'row' }, filter), list);
  const match = (e) => {
    const q = filter.value.trim().toLowerCase();
    return !q || [e.kind, e.package, e.drone].some((v) => v && v.toLowerCase().includes(q));
  };
  const draw = () => list.replaceChildren(...ctx.events.filter(match).slice(-300).reverse().map(line));
  const onEvent = (e) => { if (match(e)) list.prepend(line(e)); while (list.childNodes.length > 300) list.lastChild.remove(); };
  ctx.listeners.add(onEvent);
  ctx.redraws.add(draw);
  filter.addEventListener('input', draw);
  draw();
  return { unmount: () => { ctx.listeners.delete(onEvent); ctx.redraws.delete(draw); } };
}
