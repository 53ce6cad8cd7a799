// Profiles: the targets this fleet builds for. Each with its binhost path, world set, packages
// by state, the drones its environment admits (and what differs on the others) and its latest
// release. Profiles are created and changed with `swarm profile`.

import * as api from './api.js';
import { h, table, badge } from './util.js';

const DEFAULT = 'default';

function releasesPath(name) {
  return '/api/v1/releases' + (name === DEFAULT ? '' : '?profile=' + encodeURIComponent(name));
}

// The newest release of a profile, and whether it is the one published.
async function latest(name) {
  try {
    const r = await api.get(releasesPath(name));
    const list = r.releases || [];
    if (!list.length) return h('span', { class: 'muted' }, 'none');
    const newest = list.reduce((a, b) => (b.created_at_ms > a.created_at_ms ? b : a));
    return h('span', { class: 'mono' }, newest.name, ' ',
      r.published === newest.name ? badge('published', 'ok') : r.published ? badge(r.published + ' published', 'warn') : badge('none published', 'warn'));
  } catch (e) {
    return h('span', { class: 'muted', title: e.message }, 'unknown');
  }
}

function drones(p) {
  const matching = p.matching || [];
  const differing = Object.entries(p.differing || {});
  return h('div', null,
    matching.length ? h('span', { class: 'matching mono' }, matching.join(', ')) : badge('none match', 'bad'),
    differing.length ? h('div', { class: 'hint', title: differing.map(([d, why]) => d + ': ' + why).join('\n') },
      differing.length + (differing.length === 1 ? ' other drone differs' : ' other drones differ')) : null);
}

export function mount(root) {
  const body = h('div', { id: 'profiles-table' }, h('p', { class: 'muted' }, 'Loading…'));
  root.append(h('h2', null, 'Profiles'),
    h('p', { class: 'hint' }, 'A profile’s packages are built only by drones its expected environment admits. ',
      'Change profiles with ', h('code', null, 'swarm profile'), '.'),
    body);

  async function refresh() {
    const r = await api.get('/api/v1/profiles');
    const list = r.profiles || [];
    const releases = await Promise.all(list.map((p) => latest(p.name)));
    const rows = list.map((p, i) => {
      const s = p.states || {};
      const vars = Object.keys(p.env || {}).length;
      return [
        h('b', { class: 'profile-name' }, p.name),
        h('span', { class: 'mono binhost' }, p.binhost || '–'),
        vars ? vars + (vars === 1 ? ' variable' : ' variables') : h('span', { class: 'muted' }, 'any'),
        h('span', { class: 'world' }, String((p.world || []).length)),
        h('span', { class: 'states mono' }, (s.queued || 0) + ' queued · ' + (s.building || 0) + ' building · ' +
          (s.built || 0) + ' built · ' + (s.blocked || 0) + ' blocked'),
        drones(p),
        h('span', { class: 'latest' }, releases[i]),
      ];
    });
    body.replaceChildren(table(['profile', 'binhost', 'expects', 'world', 'packages', 'matching drones', 'latest release'], rows,
      (i) => ({ 'data-profile': list[i].name })));
  }
  return { refresh };
}
