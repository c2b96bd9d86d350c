// Building the page: elements from data, never from HTML text (everything shown is escaped by
// construction), and the small formatting helpers every page uses.

/// An element: `h('button', {class: 'primary', onclick: f}, 'Run now')`. Strings and numbers
/// become text nodes; arrays are flattened; null, undefined and false are left out.
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') {
      el.addEventListener(k.slice(2), v);
    } else if (k === 'dataset') {
      Object.assign(el.dataset, v);
    } else if (k === 'value' || k === 'checked' || k === 'disabled' || k === 'selected') {
      el[k] = v;
    } else {
      el.setAttribute(k, v === true ? '' : String(v));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.append(c instanceof Node ? c : String(c));
  }
}

/// Replace what `el` holds with `children`.
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

let ids = 0;
/// A fresh id for tying a label to its input.
export function uid(prefix = 'f') {
  ids += 1;
  return `${prefix}-${ids}`;
}

export function bytes(n) {
  if (n === null || n === undefined) return '—';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i += 1;
  }
  return `${i === 0 ? v : v.toFixed(v < 10 ? 1 : 0)} ${units[i]}`;
}

export function duration(ms) {
  if (ms === null || ms === undefined) return '—';
  if (ms < 1000) return `${ms} ms`;
  const s = Math.round(ms / 1000);
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${s % 60} s`;
  return `${Math.floor(m / 60)} h ${m % 60} min`;
}

/// "3 min ago" / "in 2 h", with the exact time as a tooltip.
export function ago(iso) {
  if (!iso) return h('span', { class: 'muted' }, 'never');
  const t = new Date(iso);
  const diff = (Date.now() - t.getTime()) / 1000;
  const abs = Math.abs(diff);
  let text;
  if (abs < 45) text = 'just now';
  else if (abs < 3600) text = `${Math.round(abs / 60)} min`;
  else if (abs < 86400) text = `${Math.round(abs / 3600)} h`;
  else text = `${Math.round(abs / 86400)} d`;
  if (abs >= 45) text = diff >= 0 ? `${text} ago` : `in ${text}`;
  return h('time', { datetime: iso, title: when(iso) }, text);
}

/// A date and time in the browser's locale.
export function when(iso) {
  if (!iso) return '—';
  return new Date(iso).toLocaleString(undefined, {
    dateStyle: 'medium',
    timeStyle: 'medium',
  });
}

/// What a job backs up, in a few words.
export function sourceText(s) {
  switch (s.type) {
    case 'path':
      return `files ${s.path}`;
    case 'sqlite':
      return `SQLite ${s.path}`;
    case 'volume':
      return `volume ${s.name}`;
    case 'postgres':
      return `PostgreSQL ${s.all ? 'whole server' : s.database}`;
    case 'mysql':
      return `MySQL ${s.all ? 'whole server' : s.database}`;
    default:
      return s.type;
  }
}

export function statusBadge(status) {
  const label = { success: 'successful', failed: 'failed', running: 'running' }[status] || 'never ran';
  return h('span', { class: `badge ${status || 'none'}` }, label);
}

export function progressBar(progress) {
  if (!progress) return null;
  const total = progress.total_bytes;
  const text = `${progress.files} files, ${bytes(progress.bytes)}${total ? ` of about ${bytes(total)}` : ''}`;
  return h(
    'div',
    { class: 'progress' },
    h('progress', total ? { max: total, value: Math.min(progress.bytes, total), 'aria-label': 'progress' } : { 'aria-label': 'progress' }),
    h('span', { class: 'muted' }, text),
  );
}

/// A modal dialog; resolves with what `onOk` returned, or null when cancelled. `onOk` may throw
/// an error to keep the dialog open with the error shown.
export function dialog({ title, body, ok = 'OK', danger = false, onOk }) {
  return new Promise((resolve) => {
    const error = h('p', { class: 'error', role: 'alert', hidden: true });
    const okButton = h('button', { type: 'submit', class: danger ? 'danger' : 'primary' }, ok);
    const cancel = h('button', { type: 'button' }, 'Cancel');
    const form = h('form', { method: 'dialog' }, h('h2', {}, title), body, error, h('div', { class: 'actions' }, cancel, okButton));
    const dlg = h('dialog', { 'aria-label': title }, form);
    let done = false;
    const finish = (v) => {
      if (done) return;
      done = true;
      dlg.close();
      dlg.remove();
      resolve(v);
    };
    cancel.addEventListener('click', () => finish(null));
    dlg.addEventListener('cancel', () => finish(null));
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      okButton.disabled = true;
      error.hidden = true;
      try {
        finish(onOk ? (await onOk()) ?? true : true);
      } catch (e) {
        error.textContent = e.message;
        error.hidden = false;
        okButton.disabled = false;
      }
    });
    document.body.append(dlg);
    dlg.showModal();
  });
}

/// A short message at the top of the page that goes away by itself.
export function toast(text, kind = 'info') {
  let box = document.getElementById('toasts');
  if (!box) {
    box = h('div', { id: 'toasts', 'aria-live': 'polite' });
    document.body.append(box);
  }
  const t = h('div', { class: `toast ${kind}`, role: kind === 'error' ? 'alert' : 'status' }, text);
  box.append(t);
  setTimeout(() => t.remove(), kind === 'error' ? 10000 : 4000);
}

/// A table: `headers` are the column titles (on phones, each cell is labelled with its column's
/// title; an empty title labels nothing); each row is `[attrs, ...cells]`.
export function table(cls, headers, rows) {
  return h(
    'table',
    { class: cls },
    h('thead', {}, h('tr', {}, headers.map((t) => h('th', { scope: 'col' }, t)))),
    h(
      'tbody',
      {},
      rows.map(([attrs, ...cells]) => h('tr', attrs, cells.map((c, i) => h('td', headers[i] ? { dataset: { label: headers[i] } } : {}, c)))),
    ),
  );
}

/// A file dropped onto `zone`, or chosen with `picker` (an `<input type="file">`), goes to
/// `onFile`.
export function onFileDrop(zone, picker, onFile) {
  picker.addEventListener('change', () => picker.files[0] && onFile(picker.files[0]));
  zone.addEventListener('dragover', (e) => {
    e.preventDefault();
    zone.classList.add('over');
  });
  zone.addEventListener('dragleave', () => zone.classList.remove('over'));
  zone.addEventListener('drop', (e) => {
    e.preventDefault();
    zone.classList.remove('over');
    if (e.dataTransfer.files[0]) onFile(e.dataTransfer.files[0]);
  });
}
