// Talking to swarm: reads through the server's read policy, actions with the
// admin token as a Bearer header. The token lives in this tab's
// sessionStorage only: never in a URL, never in a cookie (so no CSRF).

const KEY = 'swarm.adminToken';

export function token() { return sessionStorage.getItem(KEY) || ''; }
export function setToken(t) { t ? sessionStorage.setItem(KEY, t.trim()) : sessionStorage.removeItem(KEY); }

/** An HTTP failure with the server's own words (and its JSON body, if any). */
export class ApiError extends Error {
  constructor(status, message, data) { super(message); this.status = status; this.data = data || null; }
}

function headers(extra) {
  const h = Object.assign({ Accept: 'application/json' }, extra || {});
  const t = token();
  if (t) h.Authorization = 'Bearer ' + t;
  return h;
}

async function call(method, path, body) {
  const init = { method, headers: headers(body ? { 'Content-Type': 'application/json' } : null), cache: 'no-store' };
  if (body) init.body = JSON.stringify(body);
  let resp;
  try { resp = await fetch(path, init); } catch (e) { throw new ApiError(0, 'cannot reach the server: ' + e.message); }
  const text = await resp.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = null; }
  if (!resp.ok) {
    const msg = (data && data.error) || text || resp.statusText;
    if (resp.status === 401 || resp.status === 403) window.dispatchEvent(new CustomEvent('swarm-auth', { detail: msg }));
    throw new ApiError(resp.status, msg, data);
  }
  return data === null ? text : data;
}

export const get = (path) => call('GET', path);
export const post = (path, body) => call('POST', path, body || {});

/** A control action (pause, resume, unblock, ...): admin. */
export const control = (action, extra) => post('/api/v1/control', Object.assign({ action }, extra || {}));

/** A per-drone action (pause, resume, drain, undrain, reset-escalation): admin. */
export const nodeAction = (name, action) => post('/api/v1/nodes/' + encodeURIComponent(name) + '/' + action);

/** Plain text (build logs). */
export async function getText(path) {
  const resp = await fetch(path, { headers: headers({ Accept: 'text/plain' }), cache: 'no-store' });
  const text = await resp.text();
  if (!resp.ok) {
    let msg = text;
    try { msg = JSON.parse(text).error || text; } catch { /* not JSON */ }
    throw new ApiError(resp.status, msg);
  }
  return text;
}

/**
 * Follows /api/v1/events/stream (server-sent events). Read with fetch rather
 * than EventSource so the Bearer header can go with it when reads need a
 * token. Reconnects with the last id seen; onState(true|false) reports the link.
 */
export function follow(after, onEvent, onState) {
  let last = after || 0;
  let stopped = false;
  let ctrl = null;
  async function once() {
    ctrl = new AbortController();
    const resp = await fetch('/api/v1/events/stream?after=' + last, { headers: headers({ Accept: 'text/event-stream' }), signal: ctrl.signal, cache: 'no-store' });
    if (!resp.ok || !resp.body) throw new ApiError(resp.status, 'event stream refused: ' + resp.status);
    onState(true);
    const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
    let buf = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buf += value;
      let i;
      while ((i = buf.indexOf('\n\n')) >= 0) {
        const block = buf.slice(0, i); buf = buf.slice(i + 2);
        let id = null, data = '', kind = 'message';
        for (const line of block.split('\n')) {
          if (line.startsWith('id: ')) id = Number(line.slice(4));
          else if (line.startsWith('data: ')) data += line.slice(6);
          else if (line.startsWith('event: ')) kind = line.slice(7);
        }
        if (kind === 'gap') { onEvent(null); continue; }
        if (!data) continue;
        if (id !== null) last = id;
        try { onEvent(JSON.parse(data)); } catch { /* a malformed event is skipped */ }
      }
    }
  }
  // A hidden tab lets its stream go and takes it up again when shown: a browser opens at most
  // six connections to one server over HTTP/1.1, and six open tabs, each holding its stream,
  // left none for any fetch, so every button hung (h30). It resumes after the last id it saw.
  const visible = () => new Promise((r) => {
    const on = () => {
      if (document.hidden) return;
      document.removeEventListener('visibilitychange', on);
      r();
    };
    document.addEventListener('visibilitychange', on);
    on();
  });
  const onHide = () => { if (document.hidden && ctrl) ctrl.abort(); };
  document.addEventListener('visibilitychange', onHide);
  (async () => {
    while (!stopped) {
      await visible();
      if (stopped) break;
      try { await once(); } catch { /* reconnect below */ }
      onState(false);
      if (!stopped && !document.hidden) await new Promise((r) => setTimeout(r, 3000));
    }
  })();
  return () => {
    stopped = true;
    document.removeEventListener('visibilitychange', onHide);
    if (ctrl) ctrl.abort();
  };
}
