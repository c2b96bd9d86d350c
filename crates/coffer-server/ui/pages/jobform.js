// Creating and changing a job, with a form that helps: a source editor per type (the node's
// Docker volumes, the stored credentials), the next five runs of the schedule as you type (or
// what is wrong with it), retention explained, and the server's field errors at their fields.

import { get, post, put, query } from '../api.js';
import { fill, h, uid } from '../dom.js';
import { field, input, select, submitting } from '../forms.js';

const TYPES = [
  ['path', 'Files and folders'],
  ['sqlite', 'SQLite database'],
  ['volume', 'Docker volume'],
  ['postgres', 'PostgreSQL'],
  ['mysql', 'MySQL / MariaDB'],
];

/// What is offered in pick lists; each list is left empty when the user may not read it.
async function choices() {
  const quiet = (p) => p.catch(() => []);
  const [volumes, credentials, repositories] = await Promise.all([
    quiet(get('/api/nodes/local/volumes')),
    quiet(get('/api/credentials')),
    quiet(get('/api/repositories')),
  ]);
  return { volumes, credentials, repositories };
}

export async function jobForm(id) {
  const job = id ? await get(`/api/backup-jobs/${encodeURIComponent(id)}`) : null;
  const offer = await choices();

  const name = input({ required: true, value: job ? job.name : '' });
  const sourceList = h('div', { class: 'sources' });
  const editors = [];
  const addSource = (s) => {
    const ed = sourceEditor(s, offer, () => {
      editors.splice(editors.indexOf(ed), 1);
      ed.el.remove();
    });
    editors.push(ed);
    sourceList.append(ed.el);
  };
  (job ? job.sources : [{ type: 'path' }]).forEach(addSource);
  const newType = select(TYPES, { 'aria-label': 'Type of the source to add' });
  const sources = h(
    'fieldset',
    { class: 'field', dataset: { field: 'sources' } },
    h('legend', {}, 'What to back up'),
    sourceList,
    h('div', { class: 'add-source' }, newType, h('button', { type: 'button', onclick: () => addSource({ type: newType.value }) }, 'Add source')),
    h('p', { class: 'field-error', hidden: true }),
  );

  const schedule = input({ value: job && job.schedule ? job.schedule : '', placeholder: '0 3 * * *', autocomplete: 'off', spellcheck: false });
  const zones = typeof Intl.supportedValuesOf === 'function' ? Intl.supportedValuesOf('timeZone') : [];
  const browserZone = Intl.DateTimeFormat().resolvedOptions().timeZone || 'UTC';
  const timezone = input({ value: job ? job.timezone : browserZone, list: 'timezones', autocomplete: 'off' });
  const preview = h('div', { class: 'preview', 'aria-live': 'polite', id: 'schedule-preview' });
  const scheduleField = field('Schedule (cron)', 'schedule', schedule, 'Five fields: minute hour day-of-month month day-of-week, or @daily, @hourly, @weekly. Empty: run by hand only.');
  scheduleField.append(preview);
  const pingUrl = input({ value: job && job.ping_url ? job.ping_url : '', placeholder: 'https://hc-ping.com/<uuid>', autocomplete: 'off', spellcheck: false });
  const drillSchedule = input({ value: job && job.drill_schedule ? job.drill_schedule : '', placeholder: '0 4 * * 0', autocomplete: 'off', spellcheck: false });

  const num = (v) => input({ type: 'number', min: 1, value: v ?? '', inputmode: 'numeric' });
  const r = (job && job.retention) || {};
  const retention = {
    retention_count: num(job && job.retention_count),
    retention_days: num(job && job.retention_days),
    keep_daily: num(r.keep_daily),
    keep_weekly: num(r.keep_weekly),
    keep_monthly: num(r.keep_monthly),
    keep_yearly: num(r.keep_yearly),
  };
  const enabled = h('input', { type: 'checkbox', checked: job ? job.enabled : true });

  let repository = null;
  if (!job && offer.repositories.length > 0) {
    repository = select([['', 'A new local repository in the data directory'], ...offer.repositories.map((x) => [x.id, `${x.name} (${x.url})`])]);
  }

  const form = h(
    'form',
    { class: 'card', novalidate: true },
    h('p', { class: 'crumbs' }, h('a', { href: '#/' }, 'Dashboard'), ' / ', job ? h('a', { href: `#/jobs/${encodeURIComponent(job.id)}` }, job.name) : 'New job'),
    h('h1', {}, job ? `Edit ${job.name}` : 'New backup job'),
    field('Name', 'name', name),
    sources,
    scheduleField,
    field('Time zone of the schedule', 'timezone', timezone, 'An IANA time zone such as Europe/Berlin.'),
    h('datalist', { id: 'timezones' }, zones.map((z) => h('option', { value: z }))),
    field(
      'Restore drills (cron)',
      'drill_schedule',
      drillSchedule,
      'When to prove the newest backup restorable: restore it somewhere else (never over the sources) and compare it with what was backed up. Weekly is a good start: 0 4 * * 0. Empty: drills by hand only.',
    ),
    h(
      'fieldset',
      {},
      h('legend', {}, 'How long to keep records'),
      h('p', { class: 'hint' }, 'After each successful run, records no rule keeps are removed (a record any rule keeps stays). With no rule, every record is kept.'),
      h(
        'div',
        { class: 'grid' },
        field('Keep the last N records', 'retention_count', retention.retention_count),
        field('Keep records younger than N days', 'retention_days', retention.retention_days),
        field('Daily: the last record of each of N days', 'retention.keep_daily', retention.keep_daily),
        field('Weekly: of each of N weeks', 'retention.keep_weekly', retention.keep_weekly),
        field('Monthly: of each of N months', 'retention.keep_monthly', retention.keep_monthly),
        field('Yearly: of each of N years', 'retention.keep_yearly', retention.keep_yearly),
      ),
    ),
    repository ? field('Repository', 'repository_id', repository, 'Where the data goes. It cannot be changed later.') : null,
    field('Ping after each backup (dead man’s switch)', 'ping_url', pingUrl, 'Pinged after each successful backup, and with /fail appended after a failed one (healthchecks.io style). Only hosts an admin allowed in the alerts.ping_hosts setting.'),
    field('Enabled (runs on its schedule)', 'enabled', enabled),
    h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary' }, job ? 'Save' : 'Create job'), h('a', { class: 'button', href: job ? `#/jobs/${encodeURIComponent(job.id)}` : '#/' }, 'Cancel')),
  );

  // The next five runs, as the server computes them, in the job's time zone.
  let timer = null;
  const showPreview = () => {
    clearTimeout(timer);
    timer = setTimeout(async () => {
      const expr = schedule.value.trim();
      if (!expr) return fill(preview, h('span', { class: 'muted' }, 'Runs only when started by hand.'));
      try {
        const p = await get(`/api/schedule-preview${query({ schedule: expr, timezone: timezone.value.trim() })}`);
        const fmt = new Intl.DateTimeFormat(undefined, { dateStyle: 'full', timeStyle: 'short', timeZone: p.timezone });
        fill(preview, h('p', { class: 'muted' }, `Next runs (${p.timezone}):`), h('ol', { class: 'next-runs' }, p.next.map((t) => h('li', {}, fmt.format(new Date(t))))));
      } catch (e) {
        fill(preview, h('p', { class: 'error', role: 'alert' }, e.message));
      }
    }, 250);
  };
  schedule.addEventListener('input', showPreview);
  timezone.addEventListener('change', showPreview);
  showPreview();

  const count = (el) => (el.value === '' ? undefined : Number(el.value));
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    submitting(form, async () => {
      const keep = {};
      for (const k of ['keep_daily', 'keep_weekly', 'keep_monthly', 'keep_yearly']) if (count(retention[k]) !== undefined) keep[k] = count(retention[k]);
      const body = {
        name: name.value,
        sources: editors.map((e) => e.value()),
        schedule: schedule.value.trim(),
        timezone: timezone.value.trim(),
        drill_schedule: drillSchedule.value.trim(),
        ping_url: pingUrl.value.trim(),
        retention_count: count(retention.retention_count),
        retention_days: count(retention.retention_days),
        retention: Object.keys(keep).length ? keep : undefined,
        enabled: enabled.checked,
      };
      let saved;
      if (job) {
        saved = await put(`/api/backup-jobs/${encodeURIComponent(job.id)}`, body);
      } else {
        if (!body.schedule) delete body.schedule;
        if (!body.drill_schedule) delete body.drill_schedule;
        if (!body.ping_url) delete body.ping_url;
        if (repository && repository.value) body.repository_id = repository.value;
        saved = await post('/api/backup-jobs', body);
      }
      location.hash = `#/jobs/${encodeURIComponent(saved.id)}`;
    });
  });
  return { view: form, stop: () => clearTimeout(timer) };
}

/// The fields of one source: `{el, value()}`.
function sourceEditor(s, offer, remove) {
  const kind = TYPES.find(([t]) => t === s.type)[1];
  const body = h('div', { class: 'grid' });
  let value;
  switch (s.type) {
    case 'path': {
      const path = input({ value: s.path || '', placeholder: '/srv/app' });
      const exclude = h('textarea', { rows: 2, placeholder: '*.tmp\nnode_modules' });
      exclude.value = (s.exclude || []).join('\n');
      const caches = h('input', { type: 'checkbox', checked: !!s.exclude_caches });
      body.append(
        field('Path', 'source.path', path, 'An absolute path to a file or folder on this server.'),
        field('Leave out (one pattern per line)', 'source.exclude', exclude, '*.tmp and node_modules match at any depth, /srv/*/cache from the root, ! brings back.'),
        field('Leave out cache folders (those with a CACHEDIR.TAG)', 'source.exclude_caches', caches),
      );
      value = () => ({
        type: 'path',
        path: path.value.trim(),
        exclude: exclude.value
          .split('\n')
          .map((l) => l.trim())
          .filter(Boolean),
        exclude_caches: caches.checked,
      });
      break;
    }
    case 'sqlite': {
      const path = input({ value: s.path || '', placeholder: '/srv/app/data.db' });
      body.append(field('Database file', 'source.path', path, 'Copied consistently while applications write to it.'));
      value = () => ({ type: 'sqlite', path: path.value.trim() });
      break;
    }
    case 'volume': {
      const listId = uid('volumes');
      const name = input({ value: s.name || '', list: listId, autocomplete: 'off' });
      body.append(
        field('Volume', 'source.name', name, offer.volumes.length ? `${offer.volumes.length} volumes on this node.` : 'The name of a Docker volume on this node.'),
        h('datalist', { id: listId }, offer.volumes.map((v) => h('option', { value: v.name }))),
      );
      value = () => ({ type: 'volume', name: name.value.trim() });
      break;
    }
    default: {
      const engine = s.type;
      const creds = offer.credentials.filter((c) => c.engine === engine);
      const credential = creds.length
        ? select(creds.map((c) => [c.id, `${c.name} (${c.user}@${c.host || c.socket || 'local'})`]))
        : input({ placeholder: 'credential id' });
      if (s.credential_id) credential.value = s.credential_id;
      const all = h('input', { type: 'checkbox', checked: !!s.all });
      const listId = uid('databases');
      const database = input({ value: s.database || '', autocomplete: 'off', list: listId });
      const offered = h('datalist', { id: listId });
      const listed = h('p', { class: 'hint', 'aria-live': 'polite' });
      all.addEventListener('change', () => (database.disabled = all.checked));
      database.disabled = all.checked;
      // The server's databases, as the credential reaches them.
      const listDatabases = async () => {
        if (!creds.length || !credential.value) return;
        try {
          const names = await get(`/api/credentials/${encodeURIComponent(credential.value)}/databases`);
          fill(offered, names.map((n) => h('option', { value: n })));
          listed.textContent = `${names.length} databases on that server: ${names.join(', ')}`;
        } catch (e) {
          fill(offered);
          listed.textContent = `The databases cannot be listed: ${e.message}`;
        }
      };
      credential.addEventListener('change', listDatabases);
      listDatabases();
      body.append(
        field('Credential', 'source.credential_id', credential, creds.length ? null : 'No credential for this kind of server yet: an administrator adds one under Credentials.'),
        field('Database', 'source.database', database),
        offered,
        listed,
        field('The whole server (every database)', 'source.all', all),
      );
      const tool = select([
        ['', 'automatic: mydumper where installed, else mariadb-dump'],
        ['mydumper', 'mydumper (tables in parallel)'],
        ['mariadb-dump', 'mariadb-dump (one SQL script)'],
      ]);
      if (s.backup_tool) tool.value = s.backup_tool;
      if (engine === 'mysql') body.append(field('Dump tool', 'source.backup_tool', tool));
      value = () => {
        const v = { type: engine, credential_id: credential.value.trim() };
        if (all.checked) v.all = true;
        else v.database = database.value.trim();
        if (engine === 'mysql' && tool.value) v.backup_tool = tool.value;
        return v;
      };
    }
  }
  const el = h('fieldset', { class: 'source' }, h('legend', {}, kind), body, h('button', { type: 'button', class: 'small', onclick: remove }, `Remove this ${kind.toLowerCase()} source`));
  return { el, value };
}
