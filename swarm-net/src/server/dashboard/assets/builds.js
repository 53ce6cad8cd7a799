// Builds: history, and each build's log (the drone uploads it with its report).

import * as api from './api.js';
import { h, dur, when, badge } from './util.js';

export function mount(root) {
  const onlyFailed = h('input', { type: 'checkbox', id: 'builds-failed-only' });
  const pkg = h('input', { type: 'search', id: 'builds-package', placeholder: 'package (exact atom)', size: 30 });
  const body = h('div', { id: 'builds-table' });
  const logBox = h('div', { id: 'build-log' });
  root.append(h('h2', null, 'Builds'), h('div', { class: 'row' }, h('label', null, onlyFailed, ' failures only'), pkg), logBox, body);
  let open = null;

  async function showLog(b) {
    open = b.lease;
    logBox.replaceChildren(h('div', { class: 'panel' }, h('p', { class: 'muted' }, 'Loading the log of build ' + b.lease + '…')));
    let content;
    try {
      const text = await api.getText('/api/v1/logs/' + b.lease);
      content = h('pre', { class: 'log', id: 'log-text' }, text);
    } catch (e) {
      content = h('p', { class: 'bad', id: 'log-text' }, e.message);
    }
    logBox.replaceChildren(h('div', { class: 'panel' },
      h('div', { class: 'row' }, h('b', null, b.package), ' on ', b.drone, ' · build ', b.lease, ' · ', b.outcome || 'running',
        h('button', { type: 'button', onclick: () => { open = null; logBox.replaceChildren(); } }, 'Close')),
      b.detail ? h('p', { class: 'bad' }, b.detail) : null, content));
    logBox.scrollIntoView({ block: 'nearest' });
  }

  async function refresh() {
    const q = pkg.value.trim();
    const r = await api.get('/api/v1/logs?limit=300' + (q ? '&package=' + encodeURIComponent(q) : ''));
    let builds = r.builds || [];
    if (onlyFailed.checked) builds = builds.filter((b) => b.outcome && b.outcome !== 'success');
    const failed = (b) => b.outcome && b.outcome !== 'success';
    body.replaceChildren(h('table', null,
      h('thead', null, h('tr', null, ['build', 'package', 'drone', 'outcome', 'duration', 'finished', 'log'].map((c) => h('th', null, c)))),
      h('tbody', null, builds.map((b) => h('tr', { class: failed(b) ? 'fail' : null, 'data-lease': b.lease, 'data-package': b.package },
        h('td', null, b.lease), h('td', { class: 'mono' }, b.package), h('td', null, b.drone),
        h('td', null, b.outcome ? badge(b.outcome + (b.class ? ' (' + b.class + ')' : ''), failed(b) ? 'bad' : 'ok') : badge(b.started_at ? 'building' : 'assigned')),
        h('td', null, dur(b.duration_ms)), h('td', null, when(b.finished_at)),
        h('td', null, b.log_bytes ? h('button', { type: 'button', class: 'open-log', 'data-lease': b.lease, onclick: () => showLog(b) }, 'Log') : h('span', { class: 'muted' }, '–')))))));
  }
  onlyFailed.addEventListener('change', refresh);
  pkg.addEventListener('change', refresh);
  return { refresh };
}
