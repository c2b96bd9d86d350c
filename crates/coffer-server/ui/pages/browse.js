// A record's files: folders expand in place (read from the repository a folder at a time), and
// files or folders ticked here are what a restore brings back.

import { get, query } from '../api.js';
import { bytes, fill, h, when } from '../dom.js';
import { session } from '../session.js';
import { restoreDialog } from './restore.js';

/// `rwxr-x---` from permission bits.
function modeText(mode, type) {
  const bits = ['r', 'w', 'x'];
  let s = type === 'dir' ? 'd' : type === 'symlink' ? 'l' : '-';
  for (let i = 8; i >= 0; i -= 1) s += mode & (1 << i) ? bits[(8 - i) % 3] : '-';
  return s;
}

export async function browsePage(id, rid) {
  const jobBase = `/api/backup-jobs/${encodeURIComponent(id)}`;
  const [job, record] = await Promise.all([get(jobBase), get(`${jobBase}/records/${encodeURIComponent(rid)}`)]);
  const chosen = new Set();
  // What a restore can name: a path or SQLite source, or anything inside one. Volumes and
  // databases are restored whole (chosen in the restore dialog).
  const roots = job.sources.filter((s) => s.type === 'path' || s.type === 'sqlite').map((s) => s.path.replace(/\/+$/, ''));
  const restorable = (path) => roots.some((r) => path === r || path.startsWith(`${r}/`));
  const count = h('span', { class: 'muted', 'aria-live': 'polite' }, 'Nothing chosen: a restore brings back everything.');
  const restore = h('button', { type: 'button', class: 'primary' }, 'Restore…');
  restore.addEventListener('click', () => restoreDialog(job, record, [...chosen]).then((t) => t && (location.hash = `#/jobs/${encodeURIComponent(id)}`)));
  const onChoose = (path, on) => {
    if (on) chosen.add(path);
    else chosen.delete(path);
    count.textContent = chosen.size ? `${chosen.size} chosen to restore.` : 'Nothing chosen: a restore brings back everything.';
  };

  /// The entries of the folder at `path`, as a list whose folders expand.
  const folder = async (path) => {
    const tree = await get(`${jobBase}/records/${encodeURIComponent(rid)}/tree${query({ path })}`);
    if (tree.entries.length === 0) return h('p', { class: 'muted small' }, 'empty folder');
    return h('ul', { class: 'tree' }, tree.entries.map((e) => entry(e)));
  };

  const entry = (e) => {
    const box = h('input', { type: 'checkbox', 'aria-label': `Choose ${e.path}` });
    box.addEventListener('change', () => onChoose(e.path, box.checked));
    const facts = h('span', { class: 'facts muted small' }, e.type === 'file' ? bytes(e.size) : '', ' ', h('code', {}, modeText(e.mode, e.type)), ' ', when(e.mtime), e.target ? ` → ${e.target}` : '');
    if (e.type !== 'dir') {
      return h('li', {}, session.can('operator') && restorable(e.path) && box, h('span', { class: 'name' }, e.name), facts);
    }
    const children = h('div', { hidden: true });
    const toggle = h('button', { type: 'button', class: 'folder', 'aria-expanded': 'false' }, `${e.name}/`);
    let loaded = false;
    toggle.addEventListener('click', async () => {
      const open = toggle.getAttribute('aria-expanded') === 'true';
      toggle.setAttribute('aria-expanded', String(!open));
      children.hidden = open;
      if (!open && !loaded) {
        loaded = true;
        fill(children, h('p', { class: 'muted small' }, 'reading…'));
        try {
          fill(children, await folder(e.path));
        } catch (err) {
          loaded = false;
          fill(children, h('p', { class: 'error' }, err.message));
        }
      }
    });
    return h('li', {}, session.can('operator') && restorable(e.path) && box, toggle, facts, children);
  };

  const view = h(
    'div',
    {},
    h('p', { class: 'crumbs' }, h('a', { href: '#/' }, 'Dashboard'), ' / ', h('a', { href: `#/jobs/${encodeURIComponent(id)}` }, job.name), ' / record'),
    h('h1', {}, `${job.name}, ${when(record.started_at)}`),
    h('p', { class: 'muted' }, `${bytes(record.size_bytes)} in the archive.`),
    session.can('operator') && h('div', { class: 'actions' }, restore, count),
    roots.length < job.sources.length && h('p', { class: 'hint' }, 'Volumes and databases are restored whole: choose them in the restore dialog.'),
    h('section', { 'aria-label': 'Files of the record', class: 'tree-root' }, await folder('/')),
  );
  return { view };
}
