// The dashboard shell: tabs, the admin token, the live event stream, and
// refreshes driven by events (plus a slow timer for heartbeat ages).

import * as api from './api.js';
import { notice } from './util.js';
import * as overview from './overview.js';
import * as fleet from './fleet.js';
import * as profiles from './profiles.js';
import * as queue from './queue.js';
import * as builds from './builds.js';
import * as events from './events.js';
import * as releases from './releases.js';
import * as sql from './sql.js';

const VIEWS = { overview, fleet, profiles, queue, builds, events, releases, sql };
const SLOW_REFRESH_MS = 10000;
const EVENT_DEBOUNCE_MS = 700;

const ctx = {
  events: [],          // newest last, at most 500
  listeners: new Set(),
  redraws: new Set(),  // views that draw ctx.events: told when the history arrives after they mount
  status: null,
};

let current = null;    // { name, view }
let pending = null;

function tabName() {
  const t = location.hash.replace('#', '');
  // Own keys only: `#__proto__` or `#toString` are not views.
  return Object.hasOwn(VIEWS, t) ? t : 'overview';
}

async function refreshHeader() {
  try {
    const s = await api.get('/api/v1/status');
    ctx.status = s;
    const el = document.getElementById('farm-state');
    if (s.brake && s.brake.engaged) { el.textContent = 'brake engaged'; el.className = 'badge bad'; }
    else if (s.paused) { el.textContent = 'paused'; el.className = 'badge warn'; }
    else { el.textContent = 'running'; el.className = 'badge ok'; }
    el.dataset.paused = String(!!s.paused);
  } catch (e) {
    const el = document.getElementById('farm-state');
    el.textContent = e.status === 401 || e.status === 403 ? 'needs a token to read' : 'server unreachable';
    el.className = 'badge bad';
  }
}

/** The server's own health (`/api/v1/health`): a store that cannot write or a staging disk that
 * refuses uploads (503, with the reason), or a warning (a store-id file that cannot be written).
 * Only monitors saw it before; now whoever watches the dashboard does too. */
async function refreshHealth() {
  let hl = null;
  try { hl = await api.get('/api/v1/health'); } catch (e) { hl = e.data; }
  // Only swarm's own answer counts: a proxy's sign-in page or error page is no health (h50 F4).
  if (!hl || typeof hl !== 'object' || typeof hl.status !== 'string') hl = null;
  const el = document.getElementById('server-health');
  const banner = document.getElementById('health-banner');
  const warnings = (hl && Array.isArray(hl.warnings)) ? hl.warnings : [];
  const state = !hl ? 'unknown' : hl.status !== 'ok' ? 'unhealthy' : warnings.length ? 'warning' : 'ok';
  el.dataset.state = state;
  el.hidden = state === 'ok' || state === 'unknown';
  banner.hidden = el.hidden;
  if (state === 'unhealthy') {
    el.textContent = 'server unhealthy'; el.className = 'badge bad';
    banner.textContent = 'The server cannot do its work: ' + (hl.reason || 'see /api/v1/health');
    banner.className = 'bad';
  } else if (state === 'warning') {
    el.textContent = 'warning'; el.className = 'badge warn';
    banner.textContent = warnings.join(' · ');
    banner.className = 'warn';
  }
}

async function refresh() {
  pending = null;
  await refreshHeader();
  await refreshHealth();
  if (current && current.view.refresh) {
    try { await current.view.refresh(); } catch (e) { notice('refresh failed: ' + e.message, 'bad'); }
  }
}

function soon() {
  if (!pending) pending = setTimeout(refresh, EVENT_DEBOUNCE_MS);
}

function show() {
  const name = tabName();
  if (current && current.view.unmount) current.view.unmount();
  for (const a of document.querySelectorAll('#tabs a')) a.classList.toggle('active', a.dataset.tab === name);
  const root = document.getElementById('view');
  root.replaceChildren();
  root.dataset.view = name;
  current = { name, view: VIEWS[name].mount(root, ctx, refresh) };
  refresh();
}

function tokenUi() {
  const form = document.getElementById('token-form');
  const input = document.getElementById('token-input');
  const button = document.getElementById('token-button');
  const label = () => { button.textContent = api.token() ? 'Token ✓' : 'Token'; };
  label();
  button.addEventListener('click', () => { form.hidden = !form.hidden; if (!form.hidden) input.focus(); });
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    api.setToken(input.value);
    input.value = '';
    form.hidden = true;
    label();
    notice('Token kept for this tab', 'ok');
    refresh();
  });
  document.getElementById('token-forget').addEventListener('click', () => {
    api.setToken('');
    form.hidden = true;
    label();
    notice('Token forgotten', 'ok');
  });
  window.addEventListener('swarm-auth', (e) => {
    form.hidden = false;
    notice('The server wants a token (the admin token, or its read token): ' + e.detail, 'bad');
  });
}

async function startFeed() {
  let after = 0;
  try {
    const recent = await api.get('/api/v1/events/history?limit=200');
    const list = (recent.events || []).slice().sort((a, b) => a.id - b.id);
    ctx.events.push(...list);
    after = list.length ? list[list.length - 1].id : 0;
    for (const f of ctx.redraws) f();
  } catch { /* the stream still works */ }
  const live = document.getElementById('live');
  api.follow(after, (e) => {
    if (e === null) { soon(); return; }  // missed some: just refresh
    ctx.events.push(e);
    if (ctx.events.length > 500) ctx.events.splice(0, ctx.events.length - 500);
    for (const f of ctx.listeners) f(e);
    soon();
  }, (up) => {
    live.textContent = up ? '● live' : '○ reconnecting';
    live.className = 'badge ' + (up ? 'ok' : 'warn');
    live.dataset.live = String(up);
  });
}

window.addEventListener('hashchange', show);
tokenUi();
show();
startFeed();
setInterval(() => { if (!document.hidden) refresh(); }, SLOW_REFRESH_MS);
