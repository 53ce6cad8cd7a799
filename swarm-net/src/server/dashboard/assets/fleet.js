// Fleet: each drone's health, slots, running builds with progress and ETA,
// last heartbeat, escalation step; pause, drain, resume.

import * as api from './api.js';
import { h, table, dur, ago, act, badge, shown } from './util.js';

const STEPS = ['none', 'restart service', 'hard restart', 'reboot', 'manual'];

function statusBadge(d) {
  const kind = d.status === 'online' ? 'ok' : d.status === 'suspect' ? 'warn' : 'bad';
  return badge(d.status, kind);
}

function healthBadge(hl) {
  return badge(hl, hl === 'healthy' ? 'ok' : hl === 'degraded' || hl === 'recovering' ? 'warn' : 'bad');
}

function progress(p) {
  const pct = Math.min(100, p.progress_pct ?? 0);
  const eta = p.estimated_s ? Math.max(0, p.estimated_s - p.elapsed_s) : null;
  return h('div', { class: 'mono' },
    p.package, ' ',
    p.building_since ? h('span', { class: 'bar', title: pct + '%' }, h('i', { style: 'width:' + pct + '%' })) : badge('not started', 'warn'),
    p.building_since ? ' ' + dur(p.elapsed_s * 1000) + (eta !== null ? ' · ETA ' + dur(eta * 1000) : '') : '');
}

// Which profiles a drone builds for; a drone no profile admits gets no work: say what differs
// from the closest profile.
function envDrift(d) {
  const diffs = d.env_differences || [];
  if (!diffs.length) {
    const serves = d.serves || [];
    // Only the default profile, expecting nothing: nothing worth a line.
    if (!serves.some((p) => p !== 'default')) return null;
    return h('div', { class: 'hint serves', 'data-serves': serves.join(',') }, 'serves ' + serves.join(', '));
  }
  const text = diffs.map((x) => x.key + ' (' + (x.actual === null || x.actual === undefined ? 'not reported' : x.actual) + ' vs ' + x.expected + ')').join(', ');
  const b = badge('env drift', 'bad');
  b.setAttribute('title', shown(text));
  b.classList.add('env-drift');
  const closest = d.closest_profile || 'default';
  return h('span', null, b, h('div', { class: 'hint differs', 'data-closest': closest }, 'differs from ' + closest + ' in ' + text));
}

export function mount(root, ctx, refreshAll) {
  const body = h('div', { id: 'fleet-table' });
  root.append(h('h2', null, 'Drones'), body);

  async function refresh() {
    const r = await api.get('/api/v1/nodes?all=true');
    const nodes = r.nodes || r;
    const now = Date.now();
    if (!nodes.length) { body.replaceChildren(h('p', { class: 'muted' }, 'No drone has registered yet.')); return; }
    const rows = nodes.map((d) => {
      const name = d.name;
      const btn = (label, action, danger) => h('button', { type: 'button', class: danger ? 'danger' : null, 'data-drone': name, 'data-action': action,
        onclick: () => act(label + ' ' + name, () => api.nodeAction(name, action), refreshAll) }, label);
      const flags = [d.paused ? badge('paused', 'warn') : null, d.drained ? badge('drained', 'warn') : null,
        d.grounded_until ? badge('grounded', 'bad') : null, envDrift(d), d.no_work ? h('div', { class: 'hint' }, d.no_work) : null];
      return [
        h('b', { class: 'drone-name' }, name),
        h('span', null, statusBadge(d), ' ', healthBadge(d.health), ' ', flags),
        (d.leases || []).length + ' / ' + d.slots,
        d.cores + ' cores · ' + Math.round((d.ram_mb || 0) / 1024) + ' GB',
        (d.build_progress || []).length ? (d.build_progress || []).map(progress) : h('span', { class: 'muted' }, 'idle'),
        ago(d.last_heartbeat, now),
        STEPS[d.escalation_steps] || String(d.escalation_steps),
        d.builds_ok + ' ok / ' + d.builds_failed + ' failed',
        h('div', { class: 'row' }, d.paused ? btn('Resume', 'resume') : btn('Pause', 'pause', true),
          d.drained ? btn('Undrain', 'undrain') : btn('Drain', 'drain', true),
          d.escalation_steps ? btn('Reset escalation', 'reset-escalation') : null),
      ];
    });
    body.replaceChildren(table(['drone', 'health', 'slots', 'size', 'running builds', 'last heartbeat', 'escalation', 'builds', 'actions'], rows));
  }
  return { refresh };
}
