// DOM helpers. Data always goes in as text nodes, never as HTML.

// Characters that show as nothing or turn the text around them (bidirectional overrides and
// isolates, zero-width ones, the soft hyphen): the set swarm-core's `DroneName::hidden_char`
// refuses in new drone names. In a drone's environment, a failure's reason or an older name they
// could make one value read as another (h30 F8), so they are shown as their code points.
const HIDDEN = /[\u00AD\u061C\u180E\u200B-\u200F\u202A-\u202E\u2060-\u2064\u2066-\u206F\uFEFF\uFFF9-\uFFFB]/g;

/** `text` with every hidden character shown as ⟨U+XXXX⟩. */
export function shown(text) {
  return String(text).replace(HIDDEN, (c) =>
    '\u27E8U+' + c.charCodeAt(0).toString(16).toUpperCase().padStart(4, '0') + '\u27E9');
}

/** h('td', {class: 'x', onclick: f}, 'text', child...) */
export function h(tag, attrs, ...kids) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else if (k === 'title') el.setAttribute(k, shown(v));
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const kid of kids.flat()) {
    if (kid === null || kid === undefined || kid === false) continue;
    el.append(kid instanceof Node ? kid : document.createTextNode(shown(kid)));
  }
  return el;
}

/** A table from column titles and rows of cells. */
export function table(cols, rows, rowAttrs) {
  return h('table', null,
    h('thead', null, h('tr', null, cols.map((c) => h('th', null, c)))),
    h('tbody', null, rows.map((r, i) => h('tr', rowAttrs ? rowAttrs(i) : null, r.map((c) => h('td', null, c))))));
}

export function dur(ms) {
  if (ms === null || ms === undefined) return '–';
  const s = Math.round(ms / 1000);
  if (s < 60) return s + 's';
  if (s < 3600) return Math.floor(s / 60) + 'm' + String(s % 60).padStart(2, '0') + 's';
  return Math.floor(s / 3600) + 'h' + String(Math.floor((s % 3600) / 60)).padStart(2, '0') + 'm';
}

export function ago(ms, now) { return ms ? dur((now || Date.now()) - ms) + ' ago' : '–'; }
export function when(ms) { return ms ? new Date(ms).toLocaleString() : '–'; }

/** Shows a message in the notice bar for a few seconds. */
export function notice(text, kind) {
  const n = document.getElementById('notice');
  n.textContent = shown(text);
  n.className = kind || '';
  n.hidden = false;
  clearTimeout(notice.t);
  notice.t = setTimeout(() => { n.hidden = true; }, kind === 'bad' ? 9000 : 4000);
}

/** Runs an action, reporting the outcome; refresh() after success. */
export async function act(label, fn, refresh) {
  try {
    const r = await fn();
    notice(label + ': ' + ((r && (r.message || r.status)) || 'done'), 'ok');
    if (refresh) refresh();
    return r;
  } catch (e) {
    notice(label + ' failed: ' + e.message, 'bad');
    return null;
  }
}

export function badge(text, kind) { return h('span', { class: 'badge ' + (kind || '') }, text); }

/** The state name of a queue item. */
export function stateOf(item) {
  const s = item.status || {};
  if (s.state === 'assigned') return s.started ? 'building' : 'assigned';
  return s.state || '?';
}
