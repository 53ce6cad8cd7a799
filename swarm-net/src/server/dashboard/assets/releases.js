// Releases of the binhost: list, diff, publish, roll back. Shown only when the
// server has the release endpoints; otherwise a plain "not available".

import * as api from './api.js';
import { h, table, when } from './util.js';

export function mount(root) {
  const body = h('div', { id: 'releases-body' }, h('p', { class: 'muted' }, 'Loading…'));
  root.append(h('h2', null, 'Releases'), body);

  async function refresh() {
    let r;
    try {
      r = await api.get('/api/v1/releases');
    } catch (e) {
      if (e.status === 404 || e.status === 405) {
        body.replaceChildren(h('div', { class: 'panel', id: 'releases-unavailable' },
          h('p', null, h('b', null, 'Releases are not available on this server.')),
          h('p', { class: 'muted' }, 'This swarm serve has no release endpoints (/api/v1/releases). The binhost release work ships them; once the server has them this tab lists, diffs, publishes and rolls back releases.')));
        return;
      }
      body.replaceChildren(h('p', { class: 'bad' }, 'Cannot list releases: ' + e.message));
      return;
    }
    const list = Array.isArray(r) ? r : (r.releases || []);
    if (!list.length) { body.replaceChildren(h('p', { class: 'muted' }, 'No release has been created yet (swarm release create).')); return; }
    body.replaceChildren(table(['name', 'created', 'packages', 'published'],
      list.map((x) => [h('span', { class: 'mono' }, x.name ?? x.id ?? '?'), when(x.created_at_ms ?? x.created_ms), x.packages ?? x.package_count ?? '–', x.published ? 'yes' : ''])));
  }
  return { refresh };
}
