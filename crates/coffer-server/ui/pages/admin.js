// Everything around the jobs: repositories and credentials (secrets write-only, shown as set or
// not set), users, the user's own API keys (a new key shown once), settings, the audit log, the
// nodes and what they can do, and the system backups of Coffer's own data.

import { del, get, post, put, query, upload } from '../api.js';
import { ago, bytes, dialog, fill, h, onFileDrop, table, toast, when } from '../dom.js';
import { field, input, select, showAtField, submitting } from '../forms.js';
import { session } from '../session.js';

const page = (title, ...children) => h('section', { 'aria-labelledby': 'page-title' }, h('h1', { id: 'page-title' }, title), ...children);

const set = (yes) => (yes ? h('span', { class: 'badge success' }, 'set') : h('span', { class: 'badge none' }, 'not set'));

/// A form in a dialog whose fields are `[label, name, input, hint]`; `send(values)` saves it.
function formDialog(title, fields, ok, send) {
  const form = h('div', {}, fields.map(([label, name, el, hint]) => field(label, name, el, hint)));
  return dialog({
    title,
    body: form,
    ok,
    onOk: async () => {
      try {
        return await send();
      } catch (e) {
        // Next to its field when the server names one, else at the bottom of the dialog.
        if (!showAtField(form, e)) throw e;
        throw new Error('See the field marked above.');
      }
    },
  });
}

export const optional = (el) => (el.value.trim() === '' ? undefined : el.value.trim());

// ---- repositories and credentials ----

/// A page of stored resources: a table with Test, Edit and Delete per row, and a dialog to add
/// or edit one. `spec.form(item)` gives the dialog's fields and `body(adding)`, what to send.
export async function resourcePage({ title, what, collection, empty, headers, cells, form }) {
  const box = h('div', {});
  const load = async () => {
    const items = await get(`/api/${collection}`);
    fill(
      box,
      items.length === 0
        ? h('p', { class: 'empty' }, empty)
        : table(
            collection,
            [...headers, ''],
            items.map((it) => [{ dataset: { [what]: it.name } }, ...cells(it), actions(it)]),
          ),
    );
  };
  const actions = (it) => {
    const base = `/api/${collection}/${encodeURIComponent(it.id)}`;
    const result = h('div', { class: 'inline-result', 'aria-live': 'polite' });
    return h(
      'div',
      { class: 'row-actions' },
      h('button', { type: 'button', onclick: () => test(`${base}/test`, result) }, 'Test'),
      h('button', { type: 'button', onclick: () => edit(it) }, 'Edit'),
      h('button', { type: 'button', class: 'danger', onclick: () => remove(what, it.name, base, load) }, 'Delete'),
      result,
    );
  };
  const edit = async (it) => {
    const { fields, body } = form(it);
    const done = await formDialog(it ? `Edit ${it.name}` : `Add a ${what}`, fields, it ? 'Save' : `Add ${what}`, () =>
      it ? put(`/api/${collection}/${encodeURIComponent(it.id)}`, body(false)) : post(`/api/${collection}`, body(true)),
    );
    if (done) load();
  };
  await load();
  return { view: page(title, h('div', { class: 'actions' }, h('button', { type: 'button', class: 'primary', onclick: () => edit(null) }, `Add ${what}`)), box) };
}

async function test(path, result) {
  fill(result, h('span', { class: 'muted' }, 'testing…'));
  try {
    const c = await post(path);
    fill(result, h('span', { class: c.ok ? 'ok' : 'error' }, c.detail));
  } catch (e) {
    fill(result, h('span', { class: 'error' }, e.message));
  }
}

async function remove(what, name, path, reload) {
  const done = await dialog({
    title: `Delete ${what} ${name}?`,
    body: h('p', {}, 'This cannot be undone.'),
    ok: `Delete ${what}`,
    danger: true,
    onOk: () => del(path),
  });
  if (done) reload();
}

/// A secret's input: never filled in, saying whether one is stored.
export const secret = (stored) => input({ type: 'password', autocomplete: 'new-password', placeholder: stored ? 'set: leave empty to keep it' : 'not set' });

export function repositoriesPage() {
  return resourcePage({
    title: 'Repositories',
    what: 'repository',
    collection: 'repositories',
    empty: 'No repositories registered: jobs keep their data in local repositories in the data directory.',
    headers: ['Name', 'Where', 'Secret key', 'Encrypted', 'Jobs'],
    cells: (r) => [
      h('strong', {}, r.name),
      [h('code', {}, r.url), r.endpoint && h('div', { class: 'muted small' }, r.endpoint)],
      r.url.startsWith('s3://') ? set(r.has_secret) : '—',
      r.encrypted ? 'yes' : 'no',
      String(r.jobs),
    ],
    form: (r) => {
      const f = {
        name: input({ value: r ? r.name : '' }),
        url: input({ value: r ? r.url : '', placeholder: 's3://bucket/prefix' }),
        endpoint: input({ value: r && r.endpoint ? r.endpoint : '', placeholder: 'https://s3.example.com' }),
        region: input({ value: r && r.region ? r.region : '' }),
        access_key_id: input({ value: r && r.access_key_id ? r.access_key_id : '', autocomplete: 'off' }),
        secret_access_key: secret(r && r.has_secret),
        encrypted: h('input', { type: 'checkbox', checked: r ? r.encrypted : true }),
      };
      return {
        fields: [
          ['Name', 'name', f.name],
          ['Address', 'url', f.url, 's3://bucket/prefix, or file:///path inside the data directory.'],
          ['S3 endpoint', 'endpoint', f.endpoint, 'Empty for AWS.'],
          ['Region', 'region', f.region],
          ['Access key id', 'access_key_id', f.access_key_id],
          ['Secret access key', 'secret_access_key', f.secret_access_key, 'Stored encrypted, never shown again.'],
          ['Encrypt the repository', 'encrypted', f.encrypted],
        ],
        body: () => ({
          name: f.name.value.trim(),
          url: f.url.value.trim(),
          endpoint: optional(f.endpoint),
          region: optional(f.region),
          access_key_id: optional(f.access_key_id),
          secret_access_key: optional(f.secret_access_key),
          encrypted: f.encrypted.checked,
        }),
      };
    },
  });
}

export async function credentialsPage() {
  // Where a binary log archive can go besides the data directory.
  const repositories = await get('/api/repositories');
  return resourcePage({
    title: 'Credentials',
    what: 'credential',
    collection: 'credentials',
    empty: 'No credentials yet: PostgreSQL and MySQL sources reach their servers through one.',
    headers: ['Name', 'Server', 'User', 'Password', 'TLS', 'Binary log archive'],
    cells: (c) => [
      h('strong', {}, c.name),
      `${c.engine === 'postgres' ? 'PostgreSQL' : 'MySQL'} ${c.socket || `${c.host}:${c.port}`}`,
      c.user,
      set(c.has_password),
      c.tls,
      c.engine === 'mysql' ? archive(c) : '—',
    ],
    form: (c) => {
      const f = {
        name: input({ value: c ? c.name : '' }),
        engine: select([
          ['postgres', 'PostgreSQL'],
          ['mysql', 'MySQL / MariaDB'],
        ]),
        host: input({ value: c && c.host ? c.host : '', placeholder: '127.0.0.1' }),
        port: input({ type: 'number', value: c ? c.port : '', placeholder: 'default' }),
        socket: input({ value: c && c.socket ? c.socket : '' }),
        user: input({ value: c ? c.user : '', autocomplete: 'off' }),
        password: secret(c && c.has_password),
        tls: select(['prefer', 'disable', 'require', 'verify-full'].map((t) => [t, t])),
        pitr: h('input', { type: 'checkbox', checked: !!(c && c.pitr) }),
        pitr_repository_id: select([['', 'under the data directory'], ...repositories.map((r) => [r.id, `${r.name} (${r.url})`])]),
      };
      if (c) {
        f.engine.value = c.engine;
        f.engine.disabled = true;
        f.tls.value = c.tls;
        f.pitr_repository_id.value = c.pitr_repository_id || '';
      }
      return {
        fields: [
          ['Name', 'name', f.name],
          ['Server type', 'engine', f.engine],
          ['Host', 'host', f.host],
          ['Port', 'port', f.port],
          ['Or a Unix socket', 'socket', f.socket, 'Its directory (PostgreSQL) or file (MySQL), instead of host and port.'],
          ['User', 'user', f.user],
          ['Password', 'password', f.password, 'Stored encrypted, never shown again.'],
          ['TLS', 'tls', f.tls],
          ['Archive the binary log for point-in-time recovery (MySQL/MariaDB)', 'pitr', f.pitr, 'Needs log_bin and binlog_format ROW or MIXED on the server; Test says whether it has them.'],
          ['Keep the archive in', 'pitr_repository_id', f.pitr_repository_id, 'A registered repository (S3, say) holds it as a repository of its own. Changing it starts a new archive there; the old one stays where it is.'],
        ],
        body: (adding) => ({
          name: f.name.value.trim(),
          engine: adding ? f.engine.value : undefined,
          host: optional(f.host),
          port: f.port.value ? Number(f.port.value) : undefined,
          socket: optional(f.socket),
          user: f.user.value.trim(),
          password: optional(f.password),
          tls: f.tls.value,
          pitr: f.pitr.checked,
          // Empty: back under the data directory (left out when adding).
          pitr_repository_id: f.pitr_repository_id.value || (adding ? undefined : ''),
        }),
      };
    },
  });
}

/// What a MySQL credential's binlog archive covers, read again every few seconds while shown.
function archive(c) {
  const recover = h('a', { href: `#/credentials/${encodeURIComponent(c.id)}/pitr` }, 'Point-in-time recovery');
  if (!c.pitr) return h('span', { class: 'muted' }, 'off ', recover);
  const el = h('span', { class: 'muted' }, 'reading…');
  const show = (cov) =>
    fill(
      el,
      cov.problem && h('div', { class: 'error' }, `Stands still: ${cov.problem}`),
      cov.available ? `${cov.total_events} transactions, ${when(cov.oldest_event)} to ${when(cov.latest_event)}` : 'nothing archived yet',
      cov.gaps.length > 0 && h('div', { class: 'error' }, `Missing: ${cov.gaps.join(', ')}`),
      h('div', {}, recover),
    );
  const read = () =>
    get(`/api/credentials/${encodeURIComponent(c.id)}/pitr/coverage`)
      .then(show, (e) => fill(el, h('span', { class: 'error' }, e.message)))
      .finally(() => el.isConnected && setTimeout(read, 5000));
  read();
  return el;
}

// ---- users ----

const ROLES = [
  ['viewer', 'viewer: reads'],
  ['operator', 'operator: runs, restores'],
  ['admin', 'admin: everything'],
];

export async function usersPage() {
  const box = h('div', {});
  const load = async () => {
    const users = await get('/api/users');
    fill(
      box,
      table(
        'users',
        ['User', 'Role', 'Created', ''],
        users.map((u) => [
          { dataset: { user: u.username } },
          h('strong', {}, u.username),
          u.role,
          when(u.created_at),
          h(
            'div',
            { class: 'row-actions' },
            h('button', { type: 'button', onclick: () => edit(u) }, 'Change'),
            u.id !== session.user.id && h('button', { type: 'button', class: 'danger', onclick: () => remove('user', u.username, `/api/users/${encodeURIComponent(u.id)}`, load) }, 'Delete'),
          ),
        ]),
      ),
    );
  };
  const edit = async (u) => {
    const f = {
      username: input({ autocomplete: 'off' }),
      password: input({ type: 'password', autocomplete: 'new-password', placeholder: u ? 'leave empty to keep it' : '' }),
      role: select(ROLES),
    };
    if (u) f.role.value = u.role;
    const fields = [
      ['Password', 'password', f.password, 'At least 12 characters.'],
      ['Role', 'role', f.role],
    ];
    if (!u) fields.unshift(['Username', 'username', f.username]);
    const done = await formDialog(u ? `Change ${u.username}` : 'Add a user', fields, u ? 'Save' : 'Add user', () =>
      u
        ? put(`/api/users/${encodeURIComponent(u.id)}`, { role: f.role.value, password: optional(f.password) })
        : post('/api/users', { username: f.username.value.trim(), password: f.password.value, role: f.role.value }),
    );
    if (done) load();
  };
  await load();
  return { view: page('Users', h('div', { class: 'actions' }, h('button', { type: 'button', class: 'primary', onclick: () => edit(null) }, 'Add user')), box) };
}

// ---- API keys ----

export async function keysPage() {
  const box = h('div', {});
  const shown = h('div', {});
  const load = async () => {
    const keys = await get('/api/keys');
    fill(
      box,
      keys.length === 0
        ? h('p', { class: 'empty' }, 'No API keys. A key lets a script use the API as you, with at most your role.')
        : table(
            'keys',
            ['Name', 'Key', 'Role', 'Created', 'Expires', 'Last used', ''],
            keys.map((k) => [
              { dataset: { key: k.name } },
              h('strong', {}, k.name),
              h('code', {}, `${k.prefix}…`),
              k.role,
              when(k.created_at),
              k.expires_at ? when(k.expires_at) : 'never',
              ago(k.last_used_at),
              h('button', { type: 'button', class: 'danger', onclick: () => remove('API key', k.name, `/api/keys/${encodeURIComponent(k.id)}`, load) }, 'Revoke'),
            ]),
          ),
    );
  };
  const name = input({});
  const role = select(ROLES.filter(([r]) => session.can(r)));
  role.value = session.user.role;
  const expires = input({ type: 'date' });
  const form = h(
    'form',
    { class: 'card', novalidate: true },
    h('h2', {}, 'New key'),
    h('div', { class: 'grid' }, field('Name', 'name', name, 'What uses it, e.g. "nightly script".'), field('Role', 'role', role), field('Expires on', 'expires_at', expires, 'Empty: never.')),
    h('button', { type: 'submit', class: 'primary' }, 'Create key'),
  );
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    submitting(form, async () => {
      const made = await post('/api/keys', {
        name: name.value.trim(),
        role: role.value,
        expires_at: expires.value ? new Date(`${expires.value}T23:59:59`).toISOString() : undefined,
      });
      const copy = h('button', { type: 'button' }, 'Copy');
      copy.addEventListener('click', async () => {
        await navigator.clipboard.writeText(made.key).then(
          () => (copy.textContent = 'Copied'),
          () => (copy.textContent = 'Select the key and copy it'),
        );
      });
      fill(shown, h('div', { class: 'card new-key', role: 'status' }, h('p', {}, h('strong', {}, `The key "${made.name}": copy it now, it is shown only this once.`)), h('p', {}, h('code', { class: 'secret' }, made.key), ' ', copy)));
      name.value = '';
      await load();
    });
  });
  await load();
  return { view: page('API keys', shown, box, form) };
}

// ---- settings ----

const KNOWN = [
  ['general.auto_backup', 'Take a system backup every day at 03:00 UTC ("true" or "false").'],
  ['general.backup_retention_count', 'How many system backups to keep.'],
  ['system.offsite_repository', 'The id of a repository that also gets a copy of every system backup.'],
  ['system.offsite_keep', 'How many offsite copies to keep.'],
];

export async function settingsPage() {
  const box = h('div', {});
  const load = async () => {
    const settings = await get('/api/settings');
    const byKey = new Map(settings.map((s) => [s.key, s]));
    const keys = [...new Set([...KNOWN.map(([k]) => k), ...settings.map((s) => s.key)])];
    fill(
      box,
      h(
        'div',
        { class: 'settings' },
        keys.map((key) => {
          const s = byKey.get(key);
          const hint = (KNOWN.find(([k]) => k === key) || [])[1];
          const value = input({ value: s ? (typeof s.value === 'string' ? s.value : JSON.stringify(s.value)) : '', placeholder: 'not set' });
          const form = h('form', { class: 'setting', novalidate: true }, field(key, 'value', value, hint), h('button', { type: 'submit' }, 'Save'), s && h('span', { class: 'muted small' }, ` changed ${when(s.updated_at)}`));
          form.addEventListener('submit', (ev) => {
            ev.preventDefault();
            submitting(form, async () => {
              let v = value.value.trim();
              try {
                v = JSON.parse(v);
              } catch {
                // Plain text is a string.
              }
              await put(`/api/settings/${encodeURIComponent(key)}`, { value: v });
              toast(`${key} saved`);
              await load();
            });
          });
          return form;
        }),
      ),
    );
  };
  await load();
  return { view: page('Settings', box) };
}

// ---- audit log ----

export async function auditPage() {
  const user = input({});
  const action = input({ placeholder: 'e.g. POST /api/users, or keys' });
  const since = input({ type: 'date' });
  const box = h('div', {});
  const filters = h('form', { class: 'filters', novalidate: true }, field('User', 'user', user), field('Action', 'action', action), field('On or after', 'since', since), h('button', { type: 'submit' }, 'Filter'));
  const load = () =>
    submitting(filters, async () => {
      const entries = await get(
        `/api/audit${query({ user: user.value.trim(), action: action.value.trim(), since: since.value ? new Date(`${since.value}T00:00:00`).toISOString() : '', limit: 200 })}`,
      );
      fill(
        box,
        entries.length === 0
          ? h('p', { class: 'empty' }, 'Nothing matches.')
          : table(
              'audit',
              ['When', 'Who', 'From', 'Action', 'Target', 'Result'],
              entries.map((e) => [
                {},
                when(e.at),
                e.username || e.user_id || '—',
                e.client_ip || '—',
                h('code', {}, e.action),
                h('code', {}, e.target),
                h('span', { class: e.status < 400 ? 'ok' : 'error' }, String(e.status)),
              ]),
            ),
      );
    });
  filters.addEventListener('submit', (ev) => {
    ev.preventDefault();
    load();
  });
  await load();
  return { view: page('Audit log', filters, box) };
}

// ---- nodes ----

export async function nodesPage() {
  const nodes = await get('/api/nodes');
  return {
    view: page(
      'Nodes',
      nodes.map((n) =>
        h(
          'div',
          { class: 'card' },
          h('h2', {}, `${n.name} `, h('span', { class: 'muted small' }, `Coffer ${n.version}`)),
          h('p', {}, 'Docker engine: ', h('span', { class: n.docker.ok ? 'ok' : 'error' }, n.docker.detail)),
          table(
            'tools',
            ['Tool', 'Version', 'Where'],
            n.tools.map((t) => [{}, h('strong', {}, t.name), t.version || h('span', { class: 'error' }, 'missing: the sources that need it cannot run'), t.path || '—']),
          ),
        ),
      ),
    ),
  };
}

// ---- system backups ----

export async function systemPage() {
  const box = h('div', {});
  const load = async () => {
    const backups = await get('/api/system/backups');
    fill(
      box,
      backups.length === 0
        ? h('p', { class: 'empty' }, 'No system backups yet.')
        : table(
            'system-backups',
            ['Name', 'Taken', 'Size', ''],
            backups.map((b) => [
              { dataset: { backup: b.name } },
              h('code', {}, b.name),
              when(new Date(b.created_at * 1000).toISOString()),
              bytes(b.size),
              h(
                'div',
                { class: 'row-actions' },
                h('a', { class: 'button', href: `/api/system/backups/${encodeURIComponent(b.name)}`, download: '' }, 'Download'),
                h('button', { type: 'button', onclick: () => restore(b.name) }, 'Restore'),
                h('button', { type: 'button', class: 'danger', onclick: () => remove('system backup', b.name, `/api/system/backups/${encodeURIComponent(b.name)}`, load) }, 'Delete'),
              ),
            ]),
          ),
    );
  };
  const confirmText = 'Coffer replaces its whole configuration (users, jobs, records, settings) with the backup. A system backup of what it replaces is taken first.';
  const restore = async (name) => {
    const done = await dialog({
      title: `Restore ${name}?`,
      body: h('p', {}, confirmText),
      ok: 'Restore',
      danger: true,
      onOk: () => post(`/api/system/restore/${encodeURIComponent(name)}`),
    });
    if (done) {
      toast('Restored. Log in again if your session ended.');
      load();
    }
  };
  const secrets = h('input', { type: 'checkbox' });
  const passphrase = input({ type: 'password', autocomplete: 'new-password' });
  const form = h(
    'form',
    { class: 'card', novalidate: true },
    h('h2', {}, 'New system backup'),
    field('Include the secrets (passwords, keys), sealed under a passphrase', 'include_secrets', secrets),
    field('Passphrase', 'passphrase', passphrase, 'At least 12 characters; needed to restore the secrets.'),
    h('button', { type: 'submit', class: 'primary' }, 'Back up now'),
  );
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    submitting(form, async () => {
      const made = await post(`/api/system/backups${query({ include_secrets: secrets.checked || '' })}`, passphrase.value ? { passphrase: passphrase.value } : undefined);
      toast(`${made.name} taken${made.offsite ? (made.offsite.error ? `; the offsite copy failed: ${made.offsite.error}` : '; copied offsite') : ''}`, made.offsite && made.offsite.error ? 'error' : 'info');
      passphrase.value = '';
      await load();
    });
  });
  const file = h('input', { type: 'file', accept: '.zip,application/zip' });
  const zone = h('div', { class: 'dropzone' }, h('p', {}, 'Drop a system backup (.zip) here to restore it, or '), field('Choose a system backup', 'file', file));
  const restoreFile = async (f) => {
    const done = await dialog({
      title: `Restore ${f.name}?`,
      body: h('p', {}, confirmText),
      ok: 'Upload and restore',
      danger: true,
      onOk: () => upload('/api/system/restore', f, { 'Content-Type': 'application/zip' }, () => {}),
    });
    if (done) {
      toast('Restored. Log in again if your session ended.');
      load();
    }
  };
  onFileDrop(zone, file, restoreFile);
  await load();
  return { view: page('System backups', h('p', { class: 'muted' }, "Coffer's own data: users, jobs, records, settings. Keep one somewhere else."), form, zone, box) };
}
