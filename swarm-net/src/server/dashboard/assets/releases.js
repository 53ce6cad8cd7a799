// Releases of the binhost: list, create, diff two, publish (the safety gate's
// refusal shown with every reason, and an explicit override that needs a
// reason), roll back, keep and tag. Reads are open; every action needs the
// admin token and is recorded by the server as an event.

import * as api from './api.js';
import { h, when, act, badge, notice } from './util.js';

const base = '/api/v1/releases';
const path = (name, action) => base + '/' + encodeURIComponent(name) + (action ? '/' + action : '');

function size(bytes) {
  if (bytes === undefined || bytes === null) return '–';
  if (bytes < 1024 * 1024) return Math.round(bytes / 1024) + ' KiB';
  return (bytes / 1024 / 1024).toFixed(1) + ' MiB';
}

function cpvList(id, title, cpvs, kind) {
  return h('div', null, h('b', null, title + ' (' + cpvs.length + ')'),
    cpvs.length ? h('ul', { id }, cpvs.map((c) => h('li', { class: 'mono ' + (kind || ''), 'data-cpv': c }, c)))
      : h('p', { class: 'muted', id }, 'none'));
}

export function mount(root, ctx, refreshAll) {
  const createName = h('input', { id: 'release-create-name', placeholder: 'name (default: the UTC time)', size: 28, maxlength: 64 });
  const published = h('span', { id: 'release-published' });
  const rollback = h('button', { type: 'button', id: 'release-rollback', class: 'danger', disabled: true,
    onclick: () => act('Roll back', () => api.post(base + '/rollback'), refreshAll) }, 'Roll back');
  const create = h('button', { type: 'button', id: 'release-create', title: 'Snapshot what staging holds into a new release (not published)',
    onclick: async () => {
      const name = createName.value.trim();
      try {
        const r = await api.post(base, name ? { name } : {});
        const skipped = (r.skipped || []).length;
        notice('Created ' + r.release.name + ': ' + r.release.packages + ' packages' +
          (skipped ? ', ' + skipped + ' staging files skipped' : '') + ' (not published)', 'ok');
        createName.value = '';
        refreshAll();
      } catch (e) {
        notice('Create release failed: ' + e.message, 'bad');
      }
    } }, 'Create release');
  const diffRun = h('button', { type: 'button', id: 'release-diff-run', onclick: () => diff() }, 'Diff A → B');
  const table = h('div', { id: 'releases-body' }, h('p', { class: 'muted' }, 'Loading…'));
  const diffOut = h('div', { id: 'release-diff-out' });
  const gateOut = h('div', { id: 'release-gate-out' });
  const tagOut = h('div', { id: 'release-tag-out' });
  root.append(h('h2', null, 'Releases'),
    h('div', { class: 'panel' },
      h('div', { class: 'row' }, h('span', null, 'Published: '), published, rollback),
      h('div', { class: 'row' }, createName, create, diffRun,
        h('span', { class: 'hint' }, 'Actions need the admin token. Pick A and B in the table to diff them.'))),
    gateOut, tagOut, table, diffOut);

  let sel = { a: null, b: null };
  const picked = { a: false, b: false };  // by the operator, not the default
  let names = [];
  let drawn = '';

  async function diff() {
    if (!sel.a || !sel.b || sel.a === sel.b) { notice('Pick two different releases (A and B) to diff', 'bad'); return; }
    try {
      const d = await api.get(base + '/diff?a=' + encodeURIComponent(sel.a) + '&b=' + encodeURIComponent(sel.b));
      diffOut.replaceChildren(h('div', { class: 'panel', id: 'release-diff', 'data-a': d.a, 'data-b': d.b, 'data-unchanged': d.unchanged },
        h('h2', null, 'From ', h('span', { class: 'mono' }, d.a), ' to ', h('span', { class: 'mono' }, d.b)),
        cpvList('diff-added', 'added', d.added || [], 'ok'),
        cpvList('diff-removed', 'removed', d.removed || [], 'bad'),
        cpvList('diff-changed', 'rebuilt (content changed)', d.changed || [], 'warn'),
        h('p', { class: 'muted' }, d.unchanged + ' unchanged')));
    } catch (e) {
      diffOut.replaceChildren(h('p', { class: 'bad', id: 'release-diff' }, 'Diff failed: ' + e.message));
    }
  }

  // Publishing: the server asks the safety gate; a refusal (409) lists every
  // reason, and only an explicit override with a written reason goes past it.
  async function publish(name, force) {
    const body = force ? { force: true, reason: force } : {};
    try {
      const r = await api.post(path(name, 'publish'), body);
      gateOut.replaceChildren();
      notice('Published ' + r.release + (r.previous ? ' (was ' + r.previous + ')' : '') + (r.forced ? ' over the gate: ' + r.forced : ''), 'ok');
      refreshAll();
    } catch (e) {
      if (e.status === 409 && e.data && Array.isArray(e.data.reasons)) { refused(name, e.data.reasons); return; }
      notice('Publish ' + name + ' failed: ' + e.message, 'bad');
    }
  }

  function refused(name, reasons) {
    const reason = h('textarea', { id: 'force-reason', rows: 2, maxlength: 1000,
      placeholder: 'Why publishing anyway is safe (recorded as an event with the reasons it overrides)' });
    const force = h('button', { type: 'button', id: 'force-publish', class: 'danger', onclick: () => {
      const why = reason.value.trim();
      if (!why) { notice('An override needs a reason', 'bad'); reason.focus(); return; }
      publish(name, why);
    } }, 'Publish anyway');
    gateOut.replaceChildren(h('div', { class: 'panel', id: 'release-refusal', 'data-release': name },
      h('p', null, h('b', { class: 'bad' }, 'The safety gate refuses to publish '), h('span', { class: 'mono' }, name),
        ' (' + reasons.length + ' reason' + (reasons.length === 1 ? '' : 's') + '):'),
      h('ul', { id: 'refusal-reasons' }, reasons.map((r) => h('li', { class: 'mono' }, r))),
      h('p', { class: 'hint' }, 'Fix them (build what is missing, then create a new release), or override:'),
      reason,
      h('div', { class: 'row' }, force,
        h('button', { type: 'button', onclick: () => gateOut.replaceChildren() }, 'Cancel'))));
  }

  function tagForm(name) {
    const input = h('input', { id: 'release-tag-input', placeholder: 'tag (letters, digits, . _ -)', size: 24, maxlength: 64 });
    tagOut.replaceChildren(h('div', { class: 'panel row', id: 'release-tag' },
      'Tag ', h('span', { class: 'mono' }, name), input,
      h('button', { type: 'button', id: 'release-tag-add', onclick: async () => {
        const tag = input.value.trim();
        if (!tag) { input.focus(); return; }
        if (await act('Tag ' + name, () => api.post(path(name, 'tag'), { tag }), refreshAll)) tagOut.replaceChildren();
      } }, 'Add tag'),
      h('button', { type: 'button', onclick: () => tagOut.replaceChildren() }, 'Cancel')));
    input.focus();
  }

  function radio(which, name) {
    return h('input', { type: 'radio', name: 'diff-' + which, value: name, checked: sel[which] === name, title: which.toUpperCase(),
      onchange: () => { sel[which] = name; picked[which] = true; } });
  }

  function row(x, current) {
    const name = x.name;
    const tags = (x.tags || []).map((t) => h('span', { class: 'badge', 'data-tag': t }, t, ' ',
      h('button', { type: 'button', class: 'link', title: 'Remove the tag ' + t,
        onclick: () => act('Untag ' + name, () => api.post(path(name, 'tag'), { tag: t, remove: true }), refreshAll) }, '×')));
    const acts = h('div', { class: 'row' },
      name === current ? null : h('button', { type: 'button', 'data-publish': name, onclick: () => publish(name, null) }, 'Publish'),
      h('button', { type: 'button', 'data-keep': name, title: x.kept ? 'Let retention remove it again' : 'Protect it from purge',
        onclick: () => act((x.kept ? 'Unkeep ' : 'Keep ') + name, () => api.post(path(name, 'keep'), { keep: !x.kept }), refreshAll) },
      x.kept ? 'Unkeep' : 'Keep'),
      h('button', { type: 'button', 'data-tag-open': name, onclick: () => tagForm(name) }, 'Tag…'));
    const cells = [radio('a', name), radio('b', name), h('span', { class: 'mono' }, name),
      name === current ? badge('published', 'ok') : '', when(x.created_at_ms), x.packages, size(x.bytes), 'gen ' + x.generation,
      h('span', null, x.kept ? badge('kept', 'warn') : null, ' ', tags), acts];
    return h('tr', { 'data-release': name, class: name === current ? 'published' : null }, cells.map((c) => h('td', null, c)));
  }

  async function refresh() {
    let r;
    try {
      r = await api.get(base);
    } catch (e) {
      table.replaceChildren(h('p', { class: 'bad' }, 'Cannot list releases: ' + e.message));
      return;
    }
    const list = r.releases || [];
    const current = r.published || null;
    published.replaceChildren(current ? h('b', { class: 'mono' }, current) : h('span', { class: 'muted' }, 'nothing yet'),
      h('span', { class: 'hint' }, ' · clients install from ' + (r.binhost || '/binhost/')));
    published.dataset.name = current || '';
    rollback.disabled = !r.rollback_to;
    rollback.textContent = r.rollback_to ? 'Roll back to ' + r.rollback_to : 'Roll back';
    rollback.title = r.rollback_to ? 'Publish ' + r.rollback_to + ' again (the release published before ' + current + ')'
      : 'Nothing earlier to roll back to';
    names = list.map((x) => x.name);
    // Default pair: the two newest; the operator's pick stays while it exists.
    if (!picked.b || !names.includes(sel.b)) { sel.b = names[names.length - 1] || null; picked.b = false; }
    if (!picked.a || !names.includes(sel.a)) { sel.a = names[names.length - 2] || null; picked.a = false; }
    // Redraw only what changed, so a button is not replaced under a click.
    const key = JSON.stringify([r, sel]);
    if (key === drawn) return;
    drawn = key;
    if (!list.length) {
      table.replaceChildren(h('p', { class: 'muted' }, 'No release yet: create one from what staging holds (here, or swarm release create).'));
      return;
    }
    table.replaceChildren(h('table', { id: 'releases-table' },
      h('thead', null, h('tr', null, ['A', 'B', 'name', '', 'created', 'packages', 'size', 'generation', 'kept / tags', 'actions'].map((c) => h('th', null, c)))),
      h('tbody', null, list.slice().reverse().map((x) => row(x, current)))));
    table.append(h('p', { class: 'hint' }, 'Retention keeps the published release, kept and tagged ones, and the newest ' + r.keep_last + '.'));
  }
  return { refresh };
}
