// Point-in-time recovery of a MySQL/MariaDB server: what its binlog archive covers (a timeline
// with the full backups recovery can start from), a form to recover to a second, and the
// recoveries with their live phases. The result is a record of the backup's job: restored from
// the job's page like any record.

import { get, post, query } from '../api.js';
import { duration, fill, h, statusBadge, table, when } from '../dom.js';
import { field, input, submitting } from '../forms.js';

const POLL_MS = 2000;

export async function pitrPage(id) {
  const base = `/api/credentials/${encodeURIComponent(id)}`;
  const credential = await get(base);
  const coverageBox = h('div', {});
  const runsBox = h('div', {});
  let timer = null;
  let stopped = false;

  const target = input({ type: 'datetime-local', step: '1', required: true });
  const database = input({ placeholder: 'every database of the backup' });
  const tables = input({ placeholder: 'shop.orders, shop.customers' });
  const allowGaps = h('input', { type: 'checkbox' });
  const form = h(
    'form',
    { class: 'pitr-form', novalidate: true },
    field('Recover to (your local time, to the second)', 'target_time', target, 'Every transaction of that second and before it is in the result, none after.'),
    field('Only this database', 'database', database),
    field('Only these tables', 'tables', tables, 'database.table, separated by commas: the result holds only them, and restoring it replaces only them.'),
    field('Recover even across missing binlog files', 'allow_gaps', allowGaps, 'Their transactions are then missing from the result.'),
    h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary' }, 'Recover')),
  );
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const started = await submitting(form, async () => {
      const at = new Date(target.value);
      if (Number.isNaN(at.getTime())) {
        const err = new Error('choose a date and a time');
        err.field = 'target_time';
        throw err;
      }
      try {
        return await post(`${base}/pitr`, {
          target_time: at.toISOString(),
          database: database.value.trim() || undefined,
          tables: tables.value.trim() || undefined,
          allow_gaps: allowGaps.checked,
        });
      } catch (err) {
        // The reasons a time cannot be reached belong to the time.
        if (err.code && err.code.startsWith('pitr_') && err.code !== 'pitr_running') err.field = 'target_time';
        throw err;
      }
    });
    if (started) loadRuns();
  });

  const loadCoverage = async () => {
    const cov = await get(`${base}/pitr/coverage`);
    fill(coverageBox, coverageView(cov));
  };
  const loadRuns = async () => {
    clearTimeout(timer);
    const runs = await get(`${base}/pitr${query({ limit: 50 })}`);
    fill(runsBox, runs.length === 0 ? h('p', { class: 'muted' }, 'No recoveries yet.') : runsTable(runs));
    if (!stopped) timer = setTimeout(refresh, runs.some((r) => r.status === 'running') ? POLL_MS : 5 * POLL_MS);
  };
  const refresh = () => Promise.all([loadCoverage(), loadRuns()]).catch(() => {});
  await Promise.all([loadCoverage(), loadRuns()]);

  const view = h(
    'section',
    { 'aria-labelledby': 'page-title' },
    h('h1', { id: 'page-title' }, `Point-in-time recovery: ${credential.name}`),
    h('p', { class: 'muted' }, `MySQL ${credential.socket || `${credential.host}:${credential.port}`}`, credential.pitr ? '' : ' — the binary log is not being archived now (turn it on in the credential)'),
    h('section', { 'aria-labelledby': 'coverage-title' }, h('h2', { id: 'coverage-title' }, 'What can be recovered'), coverageBox),
    h('section', { 'aria-labelledby': 'recover-title' }, h('h2', { id: 'recover-title' }, 'Recover'), form),
    h('section', { 'aria-labelledby': 'runs-title' }, h('h2', { id: 'runs-title' }, 'Recoveries'), runsBox),
  );
  return {
    view,
    stop: () => {
      stopped = true;
      clearTimeout(timer);
    },
  };
}

/// The archive's span as a bar from the oldest baseline or event to now: the covered part
/// shaded, a mark per full backup and per reset of the log, the gaps named below.
function coverageView(cov) {
  const until = [cov.latest_event, cov.archived_until].filter(Boolean).sort().pop();
  const starts = [cov.oldest_event, ...cov.baselines.map((b) => b.finished_at)].filter(Boolean).map((t) => Date.parse(t));
  const summary = h(
    'p',
    { class: 'coverage-summary' },
    cov.available ? `${cov.total_events} transactions archived, from ${when(cov.oldest_event)} to ${when(until)}.` : 'Nothing archived yet.',
    ' ',
    cov.baselines.length > 0
      ? `Recovery can start from ${cov.baselines.length} full backup${cov.baselines.length > 1 ? 's' : ''}, the oldest finished ${when(cov.baselines[0].finished_at)}.`
      : 'No full backup through this credential recorded its binlog position yet: back the databases up with a job while the binary log is archived.',
  );
  const parts = [summary];
  if (cov.problem) parts.push(h('p', { class: 'error', role: 'alert' }, `Archiving stands still: ${cov.problem}`));
  if (cov.gaps.length > 0) parts.push(h('p', { class: 'error' }, `Binlog files missing from the archive: ${cov.gaps.join(', ')}. Recovery across them needs “recover even across missing binlog files”.`));
  const resets = cov.resets ?? [];
  if (resets.length > 0) parts.push(h('p', { class: 'error' }, `Breaks in the binary log (the server ran without it, or started it anew) at ${resets.map(when).join(', ')}: recovering to a later time needs a full backup taken after the break, or “recover even across missing binlog files”.`));
  if (starts.length > 0) {
    const from = Math.min(...starts);
    const to = Math.max(Date.now(), from + 1000);
    const at = (t) => `${(((Date.parse(t) - from) / (to - from)) * 100).toFixed(2)}%`;
    const bar = h('div', { class: 'timeline', role: 'img', 'aria-label': `Covered from ${when(cov.oldest_event)} to ${when(until)}` });
    // Positions through the style object: the page's policy allows no style attributes.
    if (cov.available) {
      const covered = h('div', { class: 'covered' });
      covered.style.left = at(cov.oldest_event);
      covered.style.width = `${(((Date.parse(until) - Date.parse(cov.oldest_event)) / (to - from)) * 100).toFixed(2)}%`;
      bar.append(covered);
    }
    for (const b of cov.baselines) {
      const mark = h('a', { class: 'baseline', href: `#/jobs/${encodeURIComponent(b.job_id)}`, title: `Full backup finished ${when(b.finished_at)} (${b.databases.join(', ')})`, 'aria-label': `Full backup finished ${when(b.finished_at)}` });
      mark.style.left = at(b.finished_at);
      bar.append(mark);
    }
    for (const r of resets) {
      const mark = h('span', { class: 'reset', title: `Break in the binary log ${when(r)}`, 'aria-label': `Break in the binary log ${when(r)}` });
      mark.style.left = at(r);
      bar.append(mark);
    }
    parts.push(bar, h('div', { class: 'timeline-scale muted small' }, h('span', {}, when(new Date(from).toISOString())), h('span', {}, 'now')));
  }
  return parts;
}

function runsTable(runs) {
  const phase = (r) => (r.status === 'running' ? h('div', { class: 'phase' }, r.phase) : null);
  const result = (r) =>
    r.record_id && r.status === 'completed'
      ? h('a', { href: `#/jobs/${encodeURIComponent(r.job_id)}` }, 'the record in its job')
      : r.error_message && h('span', { class: 'error small' }, r.error_message);
  return table(
    'pitr-runs',
    ['Status', 'Recovered to', 'Only', 'Started', 'Took', 'Result'],
    runs.map((r) => [
      { dataset: { pitr: r.id } },
      [statusBadge(r.status === 'completed' ? 'success' : r.status), phase(r)],
      when(r.target_time),
      [r.database, r.tables_filter].filter(Boolean).join(': ') || 'everything',
      when(r.started_at),
      duration(r.duration_ms),
      result(r),
    ]),
  );
}
