// Notifications: the channels what happens is told to (a webhook, Discord, Slack, ntfy, Gotify,
// e-mail; their URLs, secrets, tokens and passwords write-only), each with a Test button, and
// the delivery log: every notification and every attempt at delivering it.

import { get } from '../api.js';
import { fill, h, table, when } from '../dom.js';
import { input, select } from '../forms.js';
import { optional, resourcePage, secret } from './admin.js';

const EVENTS = [
  ['backup.failed', 'a backup failed'],
  ['backup.completed', 'a backup completed'],
  ['backup.suspicious', 'a backup looks wrong (much smaller than the recent ones)'],
  ['job.overdue', 'a job is overdue (no successful backup when the schedule expected one)'],
  ['job.recovered', 'an overdue job is back on schedule'],
  ['verify.failed', 'a verification found damage'],
  ['drill.failed', 'a restore drill failed'],
  ['drill.completed', 'a restore drill passed'],
  ['restore.completed', 'a restore completed'],
  ['restore.failed', 'a restore failed'],
  ['system.backup_failed', "a backup of Coffer's own configuration failed"],
  ['pitr.lagging', 'a binary log archive fell behind its server (5 minutes or more)'],
  ['pitr.gap', 'a binary log archive got a gap (the server purged what was not archived)'],
];

const TYPES = [
  ['webhook', 'Webhook (signed JSON)'],
  ['discord', 'Discord'],
  ['slack', 'Slack (or Mattermost, Rocket.Chat)'],
  ['ntfy', 'ntfy'],
  ['gotify', 'Gotify'],
  ['email', 'E-mail (SMTP)'],
];

export async function notificationsPage() {
  const { view } = await resourcePage({
    title: 'Notifications',
    what: 'channel',
    collection: 'notification-channels',
    empty: 'No channels yet: add one to be told when a backup fails, a job is overdue or a restore drill fails.',
    headers: ['Name', 'Type', 'Where', 'Events'],
    cells: (c) => [
      [h('strong', {}, c.name), !c.enabled && h('span', { class: 'badge none' }, ' off')],
      TYPES.find(([t]) => t === c.type)[1],
      h('code', {}, c.target),
      h('span', { class: 'small' }, c.events.join(', ')),
    ],
    form: channelForm,
  });
  const log = h('div', {});
  const load = async () => {
    const notes = await get('/api/notifications?limit=100');
    fill(
      log,
      notes.length === 0
        ? h('p', { class: 'empty' }, 'Nothing sent yet.')
        : table(
            'notifications',
            ['When', 'Channel', 'What', 'Delivery'],
            notes.map((n) => [
              { dataset: { notification: n.id } },
              when(n.created_at),
              n.channel_name,
              [h('div', {}, n.title), h('div', { class: 'muted small' }, n.event)],
              [
                h('span', { class: `badge ${n.status === 'delivered' ? 'success' : n.status === 'failed' ? 'failed' : 'running'}` }, n.status),
                n.next_attempt_at && h('div', { class: 'muted small' }, `next attempt ${when(n.next_attempt_at)}`),
                h(
                  'ul',
                  { class: 'checks small' },
                  n.attempts.map((a) => h('li', { class: a.ok ? 'ok' : 'error' }, `${a.ok ? '✓' : '✗'} ${when(a.at)}: ${a.detail}`)),
                ),
              ],
            ]),
          ),
    );
  };
  await load();
  const tick = setInterval(() => load().catch(() => {}), 5000);
  view.append(h('section', { 'aria-labelledby': 'log-title' }, h('h2', { id: 'log-title' }, 'Delivery log'), log));
  return { view, stop: () => clearInterval(tick) };
}

/// The fields of a channel's dialog: those of its type shown.
function channelForm(c) {
  const mail = (c && c.email) || {};
  const f = {
    name: input({ value: c ? c.name : '' }),
    type: select(TYPES),
    enabled: h('input', { type: 'checkbox', checked: c ? c.enabled : true }),
    url: secret(!!c),
    secret: secret(!!c),
    token: secret(!!c),
    host: input({ value: mail.host || '', placeholder: 'smtp.example.com' }),
    port: input({ type: 'number', value: mail.port || '', placeholder: 'default' }),
    security: select([
      ['starttls', 'STARTTLS'],
      ['tls', 'TLS'],
      ['none', 'none (a server on this machine only)'],
    ]),
    username: input({ value: mail.username || '', autocomplete: 'off' }),
    password: secret(!!c),
    from: input({ value: mail.from || '', placeholder: 'coffer@example.com' }),
    to: input({ value: (mail.to || []).join(', '), placeholder: 'ops@example.com, oncall@example.com' }),
  };
  const checks = EVENTS.map(([e, label]) => [e, h('label', { class: 'check' }, h('input', { type: 'checkbox', value: e, checked: c ? c.events.includes(e) : e.endsWith('failed') || e === 'job.overdue' }), ` ${label}`)]);
  const events = h('div', { class: 'events' }, checks.map(([, el]) => h('div', {}, el)));
  if (c) {
    f.type.value = c.type;
    f.type.disabled = true;
    f.security.value = mail.security || 'starttls';
  }
  // Which type each field belongs to.
  const of = {
    url: ['webhook', 'discord', 'slack', 'ntfy', 'gotify'],
    secret: ['webhook'],
    token: ['ntfy', 'gotify'],
    host: ['email'],
    port: ['email'],
    security: ['email'],
    username: ['email'],
    password: ['email'],
    from: ['email'],
    to: ['email'],
  };
  const showFor = () => {
    for (const [name, types] of Object.entries(of)) {
      const wrap = f[name].closest('[data-field]');
      if (wrap) wrap.hidden = !types.includes(f.type.value);
    }
  };
  f.type.addEventListener('change', showFor);
  setTimeout(showFor);
  const email = f.type.value === 'email';
  return {
    fields: [
      ['Name', 'name', f.name],
      ['Type', 'type', f.type],
      ['URL', 'url', f.url, 'The webhook URL (Discord, Slack), ntfy topic URL (https://ntfy.sh/<topic>) or Gotify server. Stored encrypted, never shown again.'],
      ['Signing secret', 'secret', f.secret, 'Each body is signed with it: X-Coffer-Signature: sha256=<HMAC-SHA256 of the body>.'],
      ['Token', 'token', f.token, 'The Gotify application token, or an ntfy access token if the topic needs one.'],
      ['SMTP server', 'email.host', f.host],
      ['Port', 'email.port', f.port],
      ['Encryption', 'email.security', f.security],
      ['User', 'email.username', f.username],
      ['Password', 'password', f.password, 'Stored encrypted, never shown again.'],
      ['From', 'email.from', f.from],
      ['To (comma separated)', 'email.to', f.to],
      ['Tell it when', 'events', events],
      ['On', 'enabled', f.enabled],
    ],
    body: (adding) => {
      const type = f.type.value;
      const body = {
        name: f.name.value.trim(),
        type: adding ? type : undefined,
        events: checks.filter(([, el]) => el.querySelector('input').checked).map(([e]) => e),
        enabled: f.enabled.checked,
        url: optional(f.url),
        secret: optional(f.secret),
        token: optional(f.token),
        password: optional(f.password),
      };
      if (type === 'email' || (!adding && email)) {
        body.email = {
          host: f.host.value.trim(),
          port: f.port.value ? Number(f.port.value) : undefined,
          security: f.security.value,
          username: optional(f.username),
          from: f.from.value.trim(),
          to: f.to.value
            .split(',')
            .map((t) => t.trim())
            .filter(Boolean),
        };
      }
      return body;
    },
  };
}
