// Coffer's web interface: a small single-page app over the JSON API. Pages are addressed by the
// part of the address after `#` (`#/jobs/<id>`), so a reload or a shared link opens the same
// page; the server serves one page and these modules.

import { ApiError, disconnect, get, onUnauthorized, post } from './api.js';
import { fill, h } from './dom.js';
import { field, input, submitting } from './forms.js';
import { session } from './session.js';
import { dashboard } from './pages/dashboard.js';
import { auditPage, credentialsPage, keysPage, nodesPage, repositoriesPage, settingsPage, systemPage, usersPage } from './pages/admin.js';
import { browsePage } from './pages/browse.js';
import { jobPage } from './pages/job.js';
import { jobForm } from './pages/jobform.js';
import { notificationsPage } from './pages/notifications.js';
import { pitrPage } from './pages/pitr.js';

const routes = [
  [/^\/$/, () => dashboard()],
  [/^\/jobs\/new$/, () => jobForm(null)],
  [/^\/jobs\/([^/]+)\/edit$/, (id) => jobForm(id)],
  [/^\/jobs\/([^/]+)$/, (id) => jobPage(id)],
  [/^\/jobs\/([^/]+)\/records\/([^/]+)$/, (id, rid) => browsePage(id, rid)],
  [/^\/nodes$/, () => nodesPage()],
  [/^\/keys$/, () => keysPage()],
  [/^\/repositories$/, () => repositoriesPage()],
  [/^\/credentials$/, () => credentialsPage()],
  [/^\/credentials\/([^/]+)\/pitr$/, (id) => pitrPage(id)],
  [/^\/users$/, () => usersPage()],
  [/^\/notifications$/, () => notificationsPage()],
  [/^\/settings$/, () => settingsPage()],
  [/^\/audit$/, () => auditPage()],
  [/^\/system$/, () => systemPage()],
];

const root = document.getElementById('app');
/// Called when the page is left: pages return a function that stops their live updates.
let leave = null;
/// Which render is the latest: a page that finishes loading after the user moved on is dropped.
let latest = 0;

async function render() {
  const mine = ++latest;
  if (leave) leave();
  leave = null;
  const path = location.hash.replace(/^#/, '') || '/';
  if (!session.user) {
    const health = await get('/api/health').catch(() => ({}));
    return health.setup_required ? setupPage() : loginPage();
  }
  const main = h('main', { id: 'main' });
  fill(root, header(path), main);
  const match = routes.map(([re, page]) => [path.match(re), page]).find(([m]) => m);
  if (!match) {
    fill(main, h('h1', {}, 'Not found'), h('p', {}, 'There is no such page. ', h('a', { href: '#/' }, 'Back to the dashboard')));
    return;
  }
  const [m, page] = match;
  try {
    const { view, stop } = await page(...m.slice(1).map(decodeURIComponent));
    if (mine !== latest) {
      if (stop) stop();
      return;
    }
    fill(main, view);
    leave = stop || null;
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) return;
    fill(main, h('h1', {}, 'Something went wrong'), h('p', { class: 'error', role: 'alert' }, e.message));
  }
}

function header(path) {
  const link = (href, text) => h('a', { href, 'aria-current': `#${path}` === href ? 'page' : null }, text);
  return h(
    'header',
    { class: 'top' },
    h('a', { href: '#/', class: 'brand' }, 'Coffer'),
    h(
      'nav',
      { 'aria-label': 'Main' },
      link('#/', 'Dashboard'),
      session.can('operator') && link('#/jobs/new', 'New job'),
      link('#/nodes', 'Nodes'),
      link('#/keys', 'API keys'),
      session.can('admin') && [
        link('#/repositories', 'Repositories'),
        link('#/credentials', 'Credentials'),
        link('#/notifications', 'Notifications'),
        link('#/users', 'Users'),
        link('#/settings', 'Settings'),
        link('#/audit', 'Audit log'),
        link('#/system', 'System backups'),
      ],
    ),
    h(
      'div',
      { class: 'who' },
      h('span', {}, session.user.username, ' ', h('span', { class: 'muted' }, `(${session.user.role})`)),
      h('button', { type: 'button', onclick: logout }, 'Log out'),
    ),
  );
}

async function logout() {
  await post('/api/auth/logout').catch(() => {});
  session.user = null;
  disconnect();
  location.hash = '#/';
  render();
}

function authPage(title, intro, fields, button, action) {
  const form = h('form', { class: 'card narrow', novalidate: true }, h('h1', {}, title), intro && h('p', {}, intro), fields, h('button', { type: 'submit', class: 'primary' }, button));
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    submitting(form, action);
  });
  fill(root, h('main', { class: 'center' }, form));
  form.querySelector('input').focus();
}

async function signedIn() {
  session.user = await get('/api/auth/me');
  render();
}

function loginPage() {
  const username = input({ autocomplete: 'username', required: true });
  const password = input({ type: 'password', autocomplete: 'current-password', required: true });
  authPage(
    'Log in to Coffer',
    null,
    [field('Username', 'username', username), field('Password', 'password', password)],
    'Log in',
    async () => {
      await post('/api/auth/login', { username: username.value, password: password.value });
      await signedIn();
    },
  );
}

function setupPage() {
  const username = input({ autocomplete: 'username', required: true });
  const password = input({ type: 'password', autocomplete: 'new-password', required: true, minlength: 12 });
  authPage(
    'Welcome to Coffer',
    'Create the first administrator. You can add more users later.',
    [field('Username', 'username', username), field('Password', 'password', password, 'At least 12 characters.')],
    'Create administrator',
    async () => {
      await post('/api/auth/setup', { username: username.value, password: password.value });
      await post('/api/auth/login', { username: username.value, password: password.value });
      await signedIn();
    },
  );
}

onUnauthorized(() => {
  if (!session.user) return;
  session.user = null;
  disconnect();
  render();
});

window.addEventListener('hashchange', render);

(async () => {
  try {
    session.user = await get('/api/auth/me');
  } catch {
    session.user = null;
  }
  render();
})();
