// A job: what it backs up and when, whether its data was proven restorable (its restore drills
// and their checks), its records (filter, verify, download, delete, restore) and its restores,
// all updated live.

import { del, get, post, put, query, subscribe } from '../api.js';
import { ago, bytes, dialog, duration, fill, h, progressBar, sourceText, statusBadge, table, toast, when } from '../dom.js';
import { field, input, select } from '../forms.js';
import { session } from '../session.js';
import { jobWarning } from './dashboard.js';
import { dropZone, restoreDialog } from './restore.js';

export async function jobPage(id) {
  const base = `/api/backup-jobs/${encodeURIComponent(id)}`;
  let job = await get(base);
  const operator = session.can('operator');

  const head = h('div', {});
  const recordsBox = h('div', {});
  const drillsBox = h('div', {});
  const restoresBox = h('div', {});
  const status = select([
    ['', 'any status'],
    ['success', 'successful'],
    ['failed', 'failed'],
    ['running', 'running'],
  ]);
  const since = input({ type: 'date' });
  const until = input({ type: 'date' });
  const filters = h('div', { class: 'filters' }, field('Status', 'status', status), field('Started on or after', 'since', since), field('Started on or before', 'until', until));
  for (const f of [status, since, until]) f.addEventListener('change', () => loadRecords());

  const view = h(
    'div',
    {},
    head,
    h('section', { 'aria-labelledby': 'drills-title' }, h('h2', { id: 'drills-title' }, 'Restore drills'), drillsBox),
    h('section', { 'aria-labelledby': 'records-title' }, h('h2', { id: 'records-title' }, 'Records'), filters, recordsBox),
    h('section', { 'aria-labelledby': 'restores-title' }, h('h2', { id: 'restores-title' }, 'Restores'), operator && dropZone(job, () => loadRestores()), restoresBox),
  );

  const drawHead = () => {
    const warning = jobWarning(job);
    fill(
      head,
      h('p', { class: 'crumbs' }, h('a', { href: '#/' }, 'Dashboard'), ' / ', job.name),
      h('h1', {}, job.name, ' ', statusBadge(job.last_status), !job.enabled && h('span', { class: 'badge none' }, 'disabled')),
      warning && h('p', { class: 'warning', role: 'status' }, warning),
      h(
        'dl',
        { class: 'facts' },
        h('dt', {}, 'Backs up'),
        h('dd', {}, job.sources.map(sourceText).join(', ')),
        h('dt', {}, 'Schedule'),
        h('dd', {}, job.schedule ? `${job.schedule} (${job.timezone})` : 'by hand only'),
        h('dt', {}, 'Next run'),
        h('dd', {}, job.next_run ? [ago(job.next_run), ` (${when(job.next_run)})`] : '—'),
        h('dt', {}, 'Last success'),
        h('dd', {}, ago(job.last_success_at)),
        h('dt', {}, 'Proven restorable'),
        h(
          'dd',
          { class: 'proven' },
          job.last_proven_restorable_at
            ? ['the backup of ', ago(job.last_proven_restorable_at), job.last_restore_ms != null && `; restoring it took ${duration(job.last_restore_ms)}`]
            : h('span', { class: 'muted' }, 'not yet: no restore drill has passed'),
        ),
        h('dt', {}, 'Restore drills'),
        h('dd', {}, job.drill_schedule ? [`${job.drill_schedule} (${job.timezone})`, job.next_drill && [', next ', ago(job.next_drill)]] : 'by hand only'),
        h('dt', {}, 'Keeps'),
        h('dd', {}, retentionText(job)),
        h('dt', {}, 'Stored'),
        h('dd', {}, `${bytes(job.stored_bytes)}${job.encrypted ? ', encrypted' : ''}`),
      ),
      operator &&
        h(
          'div',
          { class: 'actions' },
          h('button', { type: 'button', class: 'primary', onclick: runNow, disabled: job.last_status === 'running' }, 'Run now'),
          h('button', { type: 'button', onclick: drillNow, disabled: job.last_drill_status === 'running' }, 'Drill now'),
          h('a', { class: 'button', href: `#/jobs/${encodeURIComponent(id)}/edit` }, 'Edit'),
          h('button', { type: 'button', onclick: toggle }, job.enabled ? 'Disable' : 'Enable'),
          h('button', { type: 'button', class: 'danger', onclick: remove }, 'Delete job'),
        ),
    );
  };

  const runNow = async () => {
    try {
      await post(`${base}/run`);
      toast(`${job.name} started`);
      await refresh();
    } catch (e) {
      toast(e.message, 'error');
    }
  };

  const drillNow = async () => {
    try {
      await post(`${base}/drills`);
      toast(`A restore drill of ${job.name} started`);
      await refresh();
    } catch (e) {
      toast(e.message, 'error');
    }
  };

  const loadDrills = async () => {
    const drills = await get(`${base}/drills${query({ limit: 20 })}`);
    if (drills.length === 0) {
      fill(drillsBox, h('p', { class: 'empty' }, 'No drills yet. A drill restores the newest backup somewhere else and checks that everything came back.'));
      return;
    }
    fill(
      drillsBox,
      table(
        'drills',
        ['Status', 'Started', 'Restore took', 'Checks'],
        drills.map((d) => [
          { dataset: { drill: d.id } },
          [statusBadge(d.status), d.status === 'running' && h('span', { class: 'phase' }, ` ${d.phase}`)],
          when(d.started_at),
          duration(d.restore_ms),
          [
            d.error && h('div', { class: 'error' }, d.error),
            h(
              'ul',
              { class: 'checks' },
              d.checks.map((c) => h('li', { class: c.ok ? 'ok' : 'error' }, h('span', { 'aria-hidden': 'true' }, c.ok ? '✓ ' : '✗ '), h('strong', {}, c.check), `: ${c.detail}`)),
            ),
          ],
        ]),
      ),
    );
  };

  const toggle = async () => {
    try {
      job = await put(base, { enabled: !job.enabled });
      drawHead();
    } catch (e) {
      toast(e.message, 'error');
    }
  };

  const remove = async () => {
    const keep = h('input', { type: 'checkbox', checked: true });
    const done = await dialog({
      title: `Delete ${job.name}?`,
      body: [h('p', {}, 'The job and its schedule are removed.'), field('Keep the backed-up data in its repository (a new job can adopt it)', 'keep_data', keep)],
      ok: 'Delete job',
      danger: true,
      onOk: () => del(`${base}${query({ keep_data: keep.checked })}`),
    });
    if (done) location.hash = '#/';
  };

  const loadRecords = async () => {
    const day = (d, time) => (d.value ? new Date(`${d.value}T${time}`).toISOString() : '');
    const records = await get(`${base}/records${query({ status: status.value, since: day(since, '00:00:00'), until: day(until, '23:59:59.999'), limit: 200 })}`);
    if (records.length === 0) {
      fill(recordsBox, h('p', { class: 'empty' }, status.value || since.value || until.value ? 'No records match.' : 'No records yet.'));
      return;
    }
    fill(recordsBox, table('records', ['Status', 'Started', 'Duration', 'Size', 'Stored', 'Checksum', ''], records.map(recordRow)));
  };

  const recordRow = (r) => {
    const rbase = `${base}/records/${encodeURIComponent(r.id)}`;
    const result = h('div', { class: 'inline-result', 'aria-live': 'polite' });
    const verify = async (ev) => {
      ev.target.disabled = true;
      fill(result, h('span', { class: 'muted' }, 'verifying…'));
      try {
        const v = await post(`${rbase}/verify`);
        fill(result, v.ok ? h('span', { class: 'ok' }, 'Verified: every byte is there and the checksum matches.') : h('span', { class: 'error' }, `Damaged: ${v.error || ''} ${v.damaged.join(', ')}`));
      } catch (e) {
        fill(result, h('span', { class: 'error' }, e.message));
      } finally {
        ev.target.disabled = false;
      }
    };
    const removeRecord = async () => {
      const done = await dialog({
        title: 'Delete this record?',
        body: h('p', {}, `The record of ${when(r.started_at)} and its snapshot are removed; data no other record uses is freed at the next prune.`),
        ok: 'Delete record',
        danger: true,
        onOk: () => del(rbase),
      });
      if (done) loadRecords();
    };
    const usable = r.status === 'success' && r.snapshot_id;
    return [
      { dataset: { record: r.id } },
      [
        statusBadge(r.status),
        r.trigger !== 'manual' && r.trigger !== 'schedule' && h('span', { class: 'muted small' }, ` ${r.trigger}`),
        recoveredTo(r),
        r.status === 'running' && [h('div', { class: 'phase' }, r.phase), progressBar(r.progress)],
        r.error && h('div', { class: 'error small' }, r.error),
        r.verified_at && h('div', { class: r.verify_ok ? 'ok small' : 'error small' }, r.verify_ok ? 'verified ' : 'damaged at verify ', ago(r.verified_at)),
      ],
      when(r.started_at),
      duration(r.duration_ms),
      bytes(r.size_bytes),
      bytes(r.stored_bytes),
      r.checksum ? checksum(r.checksum) : '—',
      h(
        'div',
        { class: 'row-actions' },
        usable && operator && h('a', { class: 'button', href: `#/jobs/${encodeURIComponent(id)}/records/${encodeURIComponent(r.id)}` }, 'Browse'),
        usable && operator && h('button', { type: 'button', onclick: () => restoreDialog(job, r).then((t) => t && loadRestores()) }, 'Restore'),
        usable && operator && h('button', { type: 'button', onclick: verify }, 'Verify'),
        usable && operator && h('a', { class: 'button', href: `${rbase}/download`, download: '' }, 'Download'),
        usable && operator && job.encrypted && h('a', { class: 'button', href: `${rbase}/download?encrypted=true`, download: '', title: 'Sealed with the repository key: coffer decrypt opens it' }, 'Download sealed'),
        operator && r.status !== 'running' && h('button', { type: 'button', class: 'danger', onclick: removeRecord }, 'Delete'),
        result,
      ),
    ];
  };

  const loadRestores = async () => {
    const tasks = await get(`${base}/restores`);
    if (tasks.length === 0) {
      fill(restoresBox, h('p', { class: 'empty' }, 'No restores yet.'));
      return;
    }
    fill(
      restoresBox,
      table(
        'restores',
        ['Status', 'Started', 'Into', 'What', 'Result'],
        tasks.map((t) => [
          { dataset: { restore: t.id } },
          [statusBadge(t.status), ' ', h('span', { class: 'phase' }, t.phase), t.status === 'running' && progressBar(t.progress)],
          when(t.started_at),
          t.target,
          t.paths.length ? t.paths.join(', ') : 'everything',
          [
            t.error && h('span', { class: 'error' }, t.error),
            t.status === 'success' && `${t.files ?? 0} files, ${bytes(t.bytes)}`,
            t.safety_record_id && h('div', { class: 'muted small' }, t.safety_record_removed ? 'The safety record is gone.' : 'A safety record of what was replaced was taken first.'),
          ],
        ]),
      ),
    );
  };

  const refresh = async () => {
    job = await get(base);
    drawHead();
    await Promise.all([loadDrills(), loadRecords(), loadRestores()]);
  };

  let pending = null;
  const stop = subscribe((ev) => {
    if (ev.event !== 'connected' && ev.job_id !== id) return;
    if (ev.event === 'backup.progress' || ev.event === 'restore.progress') {
      const row = recordsBox.querySelector(`tr[data-record="${CSS.escape(ev.record_id)}"]`);
      const box = ev.restore_id ? restoresBox.querySelector(`tr[data-restore="${CSS.escape(ev.restore_id)}"] td`) : row && row.querySelector('td');
      if (box) {
        const old = box.querySelector('.progress');
        const bar = progressBar(ev.progress);
        if (old) old.replaceWith(bar);
        else box.append(bar);
      }
      return;
    }
    clearTimeout(pending);
    pending = setTimeout(() => refresh().catch(() => {}), 200);
  });
  drawHead();
  await Promise.all([loadDrills(), loadRecords(), loadRestores()]);
  return { view, stop: () => (stop(), clearTimeout(pending)) };
}

function retentionText(job) {
  const parts = [];
  if (job.retention_count) parts.push(`the last ${job.retention_count} records`);
  if (job.retention_days) parts.push(`${job.retention_days} days`);
  const r = job.retention || {};
  for (const [k, label] of [
    ['keep_last', 'last'],
    ['keep_hourly', 'hourly'],
    ['keep_daily', 'daily'],
    ['keep_weekly', 'weekly'],
    ['keep_monthly', 'monthly'],
    ['keep_yearly', 'yearly'],
  ]) {
    if (r[k]) parts.push(`${r[k]} ${label}`);
  }
  return parts.length ? parts.join(', ') : 'everything (no retention set)';
}

/// A checksum, shortened, with a button that copies it whole.
function checksum(sum) {
  const copy = async (ev) => {
    try {
      await navigator.clipboard.writeText(sum);
      ev.target.textContent = 'Copied';
    } catch {
      ev.target.textContent = 'Select and copy';
    }
  };
  return h('span', { class: 'checksum' }, h('code', { title: sum }, `${sum.slice(0, 12)}…`), ' ', h('button', { type: 'button', class: 'small', onclick: copy, 'aria-label': 'Copy checksum' }, 'Copy'));
}

/// For a point-in-time recovery's record: the moment it holds, and the tables when only some.
function recoveredTo(r) {
  const d = (r.databases || []).find((x) => x.point_in_time);
  if (!d) return null;
  const only = d.tables && d.tables.length > 0 ? ` (only ${d.tables.join(', ')})` : '';
  return h('div', { class: 'small' }, `recovered to ${when(d.point_in_time)}${only}`);
}
