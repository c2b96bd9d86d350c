// The dashboard: is everything backed up, and does it come back? Every job with its last run, last
// success, when its data was last proven restorable, next run and sizes, and a warning for each
// job that failed, failed its restore drill, is overdue or never ran. Live: running
// jobs show their phase and progress and turn green or red without a reload.

import { get, subscribe } from '../api.js';
import { ago, bytes, duration, fill, h, progressBar, sourceText, statusBadge, table } from '../dom.js';
import { session } from '../session.js';

/// What needs the user's attention about `job`, if anything.
export function jobWarning(job) {
  if (!job.enabled) return null;
  if (job.last_status === 'failed') return `The last run failed${job.last_error ? `: ${job.last_error}` : '.'}`;
  if (job.last_drill_status === 'failed') return 'The last restore drill failed: see its checks on the job page.';
  if (job.overdue) return 'Overdue: the schedule expected a successful backup that has not come.';
  if (!job.last_run) return job.next_run ? 'Never ran yet.' : 'Never ran, and has no schedule: run it by hand.';
  return null;
}

export async function dashboard() {
  const body = h('div', {});
  const view = h('section', { 'aria-labelledby': 'dash-title' }, h('h1', { id: 'dash-title' }, 'Dashboard'), body);
  const progress = new Map();
  let jobs = [];

  const load = async () => {
    jobs = await get('/api/backup-jobs');
    // Where a running job is: its record's phase and progress.
    await Promise.all(
      jobs
        .filter((j) => j.last_status === 'running')
        .map(async (j) => {
          const [r] = await get(`/api/backup-jobs/${encodeURIComponent(j.id)}/records?limit=1`);
          if (r && r.status === 'running') progress.set(j.id, { phase: r.phase, progress: r.progress });
        }),
    );
    draw();
  };

  const draw = () => {
    const warned = jobs.filter((j) => jobWarning(j));
    const running = jobs.filter((j) => j.last_status === 'running');
    const summary = h(
      'div',
      { class: 'summary' },
      h('div', { class: 'stat' }, h('strong', {}, String(jobs.length)), ' jobs'),
      h('div', { class: `stat ${warned.length ? 'bad' : 'good'}`, role: 'status' }, h('strong', {}, String(warned.length)), warned.length === 1 ? ' needs attention' : ' need attention'),
      h('div', { class: 'stat' }, h('strong', {}, String(running.length)), ' running'),
    );
    if (jobs.length === 0) {
      fill(
        body,
        summary,
        h('p', { class: 'empty' }, 'No backup jobs yet. ', session.can('operator') ? h('a', { href: '#/jobs/new' }, 'Create the first one') : 'An operator can create them.'),
      );
      return;
    }
    fill(
      body,
      summary,
      warned.length > 0 &&
        h(
          'ul',
          { class: 'warnings', 'aria-label': 'Warnings' },
          warned.map((j) => h('li', { class: 'warning' }, h('a', { href: `#/jobs/${encodeURIComponent(j.id)}` }, j.name), ': ', jobWarning(j))),
        ),
      table('jobs', ['Job', 'Last run', 'Last success', 'Proven restorable', 'Next run', 'Size', 'Stored'], jobs.map(row)),
    );
  };

  const row = (j) => {
    const live = progress.get(j.id);
    return [
      { class: jobWarning(j) ? 'attention' : null, dataset: { job: j.name } },
      [
        h('a', { href: `#/jobs/${encodeURIComponent(j.id)}`, class: 'job-name' }, j.name),
        !j.enabled && h('span', { class: 'badge none' }, 'disabled'),
        h('div', { class: 'muted small' }, j.sources.map(sourceText).join(', ')),
      ],
      [
        statusBadge(j.last_status),
        ' ',
        ago(j.last_run),
        j.last_status === 'running' && live && h('div', {}, h('span', { class: 'phase' }, live.phase), progressBar(live.progress)),
      ],
      ago(j.last_success_at),
      j.last_proven_restorable_at ? [ago(j.last_proven_restorable_at), j.last_restore_ms != null && h('div', { class: 'muted small' }, `restore ${duration(j.last_restore_ms)}`)] : h('span', { class: 'muted' }, j.last_drill_status === 'running' ? 'drilling…' : 'not yet'),
      j.next_run ? ago(j.next_run) : h('span', { class: 'muted' }, j.schedule ? 'disabled' : 'by hand'),
      bytes(j.last_size_bytes),
      bytes(j.stored_bytes),
    ];
  };

  let pending = null;
  const reload = () => {
    clearTimeout(pending);
    pending = setTimeout(() => load().catch(() => {}), 200);
  };
  const stop = subscribe((ev) => {
    if (ev.event === 'backup.progress') {
      const p = progress.get(ev.job_id) || { phase: 'reading' };
      progress.set(ev.job_id, { ...p, progress: ev.progress });
      draw();
    } else if (ev.event.startsWith('backup.') || ev.event.startsWith('drill.') || ev.event === 'connected' || ev.event === 'lagged') {
      if (ev.event !== 'backup.started') progress.delete(ev.job_id);
      reload();
    }
  });
  // Ages ("3 min ago") and overdue warnings move on with time.
  const tick = setInterval(reload, 60000);
  await load();
  return {
    view,
    stop: () => {
      stop();
      clearInterval(tick);
      clearTimeout(pending);
    },
  };
}
