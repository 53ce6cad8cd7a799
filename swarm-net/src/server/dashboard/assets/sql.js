// The SQL explorer: read-only queries against the server's database (admin).

import * as api from './api.js';
import { h, table } from './util.js';

const EXAMPLE = "SELECT drone, outcome, COUNT(*) AS n FROM builds GROUP BY drone, outcome ORDER BY n DESC";

export function mount(root) {
  const sql = h('textarea', { id: 'sql-text', rows: 5, spellcheck: 'false' });
  sql.value = sessionStorage.getItem('swarm.sql') || EXAMPLE;
  const out = h('div', { id: 'sql-result' });
  const tables = h('div', { class: 'hint', id: 'sql-tables' });
  const run = async () => {
    sessionStorage.setItem('swarm.sql', sql.value);
    out.replaceChildren(h('p', { class: 'muted' }, 'Running…'));
    try {
      const r = await api.get('/api/v1/sql/query?q=' + encodeURIComponent(sql.value));
      out.replaceChildren(
        h('p', { class: 'muted' }, r.rows.length + ' rows' + (r.truncated ? ' (truncated)' : '') + ' in ' + r.elapsed_ms + ' ms'),
        table(r.columns.map((c) => c.name), r.rows.map((row) => row.map((v) => (v === null ? 'NULL' : typeof v === 'object' ? JSON.stringify(v) : v)))));
    } catch (e) {
      out.replaceChildren(h('p', { class: 'bad' }, e.message));
    }
  };
  sql.addEventListener('keydown', (e) => { if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) run(); });
  root.append(h('h2', null, 'SQL explorer'),
    h('p', { class: 'hint' }, 'Read-only (SQLite refuses writes), time-boxed and row-capped. Needs the admin token. Ctrl+Enter runs.'),
    tables, sql, h('div', { class: 'row' }, h('button', { type: 'button', id: 'sql-run', onclick: run }, 'Run')), out);
  api.get('/api/v1/sql/tables').then((r) => {
    tables.replaceChildren('Tables: ', (r.tables || []).map((t) => t.name).join(', '));
  }).catch((e) => { tables.textContent = 'Tables need the admin token: ' + e.message; });
  return {};
}
