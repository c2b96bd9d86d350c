// Restoring: a record (all of it or chosen paths, volumes, databases; in place or elsewhere),
// or an archive dropped onto the job's page. What overwrites live data in place must be
// confirmed by typing the job's name, and says that a safety record is taken first.

import { post, query, upload } from '../api.js';
import { bytes, dialog, h, onFileDrop, toast, when } from '../dom.js';
import { field, input } from '../forms.js';

const lines = (text) =>
  text
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean);

/// Type the job's name to go ahead with an in-place restore: resolves to whether it was typed.
function confirmInPlace(job) {
  const name = input({ autocomplete: 'off' });
  return dialog({
    title: `Overwrite ${job.name}'s live data?`,
    body: [
      h('p', {}, 'The restore replaces the data in place. A ', h('code', {}, 'pre_restore'), ' safety record of the data as it is now is taken first, so this can be undone.'),
      field(`Type the job's name (${job.name}) to confirm`, 'confirm', name),
    ],
    ok: 'Restore in place',
    danger: true,
    onOk: () => {
      if (name.value.trim() !== job.name) throw new Error(`Type ${job.name} exactly to confirm.`);
      return true;
    },
  });
}

/// Restore `record` of `job` (`paths`: what to restore, preset): resolves with the task, or null
/// when cancelled.
export async function restoreDialog(job, record, paths = []) {
  const volumes = job.sources.filter((s) => s.type === 'volume');
  const databases = job.sources.filter((s) => s.type === 'postgres' || s.type === 'mysql');
  const sqlite = job.sources.some((s) => s.type === 'sqlite');
  const only = h('textarea', { rows: 3, placeholder: '/srv/app/config.yml' });
  only.value = paths.join('\n');
  const target = input({ placeholder: 'leave empty to restore in place' });
  const targetDb = input({ placeholder: 'leave empty to restore into the original database' });
  const replace = h('input', { type: 'checkbox' });
  const stop = h('input', { type: 'checkbox' });
  const force = h('input', { type: 'checkbox' });
  const picks = [...volumes.map((v) => ['volumes', v.name]), ...databases.filter((d) => !d.all).map((d) => ['databases', d.database])].map(([kind, name]) => ({
    kind,
    name,
    box: h('input', { type: 'checkbox' }),
  }));
  const request = () => {
    const req = { paths: lines(only.value), volumes: [], databases: [] };
    for (const p of picks) if (p.box.checked) req[p.kind].push(p.name);
    if (target.value.trim()) req.target = target.value.trim();
    if (targetDb.value.trim()) {
      req.target_database = targetDb.value.trim();
      req.replace = replace.checked;
    }
    req.stop_containers = stop.checked;
    req.force = force.checked;
    return req;
  };
  const inPlace = (req) => !req.target && !req.target_database;
  return dialog({
    title: `Restore the record of ${when(record.started_at)}`,
    body: [
      h('p', { class: 'muted' }, `${bytes(record.size_bytes)}. Everything it holds is restored unless you choose below.`),
      picks.length > 0 && h('fieldset', {}, h('legend', {}, 'Only these'), picks.map((p) => field(`${p.kind === 'volumes' ? 'Volume' : 'Database'} ${p.name}`, p.kind, p.box))),
      field('Only these paths (one per line)', 'paths', only, 'Absolute paths as backed up: a source, or a file or folder inside one.'),
      field('Into another directory', 'target', target, 'Sources keep their absolute paths below it. It must lie inside the directory restores are allowed into.'),
      databases.length === 1 && !databases[0].all && [field('Into another database', 'target_database', targetDb, 'Created; the original is left alone.'), field('Replace that database if it exists', 'replace', replace)],
      volumes.length > 0 && field('Stop the containers that use the volumes, and start them again afterwards', 'stop_containers', stop),
      sqlite && field('Replace SQLite databases even while programs hold them open', 'force', force),
    ],
    ok: 'Restore',
    onOk: async () => {
      const req = request();
      if (inPlace(req) && !(await confirmInPlace(job))) throw new Error('Not confirmed: nothing was restored.');
      const task = await post(`/api/backup-jobs/${encodeURIComponent(job.id)}/records/${encodeURIComponent(record.id)}/restore`, req);
      toast('Restore started');
      return task;
    },
  });
}

/// A place to drop an archive (or pick one) to restore it into the job's sources in place.
export function dropZone(job, onStarted) {
  const file = h('input', { type: 'file', accept: '.tar,application/x-tar' });
  const zone = h('div', { class: 'dropzone' }, h('p', {}, 'Drop an archive (.tar) here to restore it, or '), field('Choose an archive', 'archive', file));
  const start = async (f) => {
    const sum = input({ placeholder: 'optional', pattern: '[0-9a-fA-F]{64}' });
    const stop = h('input', { type: 'checkbox' });
    const force = h('input', { type: 'checkbox' });
    const bar = h('progress', { max: 1, value: 0, 'aria-label': 'Upload progress', hidden: true });
    const task = await dialog({
      title: `Restore ${f.name} into ${job.name}`,
      body: [
        h('p', {}, `${bytes(f.size)}. The archive replaces the job's data in place; a `, h('code', {}, 'pre_restore'), ' safety record of the data as it is now is taken first.'),
        field('SHA-256 of the archive', 'checksum', sum, 'If given, the upload is refused unless it matches.'),
        job.sources.some((s) => s.type === 'volume') && field('Stop the containers that use the volumes, and start them again afterwards', 'stop_containers', stop),
        job.sources.some((s) => s.type === 'sqlite') && field('Replace SQLite databases even while programs hold them open', 'force', force),
        bar,
      ],
      ok: 'Upload and restore',
      onOk: async () => {
        if (!(await confirmInPlace(job))) throw new Error('Not confirmed: nothing was uploaded.');
        bar.hidden = false;
        const headers = { 'Content-Type': 'application/x-tar' };
        if (sum.value.trim()) headers['X-Checksum-Sha256'] = sum.value.trim();
        const path = `/api/backup-jobs/${encodeURIComponent(job.id)}/restore-upload${query({ stop_containers: stop.checked || '', force: force.checked || '' })}`;
        return upload(path, f, headers, (done, total) => {
          bar.max = total;
          bar.value = done;
        });
      },
    });
    if (task) {
      toast('Restore started');
      onStarted(task);
    }
  };
  onFileDrop(zone, file, start);
  return zone;
}
