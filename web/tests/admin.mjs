// Browser tests of the admin pages and the invite link's signup (docs/web.md), against a
// real `jumpgate start --dev` made by crates/jumpgate/tests/web_ui.rs, on the shared
// harness (harness.mjs). Tests named `admin: ...` act as an admin (the editor role),
// `refusal: ...` check what is refused; web_ui.rs runs each group against its own cluster.
//
// Besides the harness's environment:
//   JUMPGATE_ADMIN_USER, JUMPGATE_ADMIN_OTPAUTH   a user with the editor role (password: JUMPGATE_PASSWORD)
//   JUMPGATE_BIN        the `jumpgate` binary, to join an agent with the config the join-token page shows
//
// One login per user and test run: a TOTP code is accepted once, so the admin's session
// (its cookie) is kept and reused by the next tests.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, openSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import jsQR from 'jsqr';
import { artefacts, base, env, maybe, open, password, totp, user as plainUser, otpauth as plainOtpauth } from './harness.mjs';

const adminUser = env('JUMPGATE_ADMIN_USER');
const adminOtpauth = env('JUMPGATE_ADMIN_OTPAUTH');
const NEW_PASSWORD = 'correct horse battery staple';
/** The code after the current one: accepted a step early, and unused by a signup's confirmation. */
const nextCode = (uri) => totp(uri, Date.now() + 30_000);

async function logIn(page, name, pass, code) {
  await page.goto(`${base}/web/login`);
  await page.getByRole('heading', { name: 'Log in to Jumpgate' }).waitFor();
  await page.getByLabel('User name').fill(name);
  await page.getByLabel('Password').fill(pass);
  await page.getByLabel('One-time code').fill(code);
  await page.getByRole('button', { name: 'Log in' }).click();
}

let adminState = null;

/** A page logged in as the admin (logging in once per run, then reusing the cookie). */
async function asAdmin(t, options = {}) {
  if (adminState !== null) {
    return open(t, { ...options, storageState: adminState });
  }
  const opened = await open(t, options);
  await logIn(opened.page, adminUser, password, totp(adminOtpauth));
  await opened.page.getByRole('heading', { name: 'Resources' }).waitFor();
  adminState = await opened.context.storageState();
  return opened;
}

/** A call to the web API from inside the page (same origin, the browser's own cookie and trust). */
function call(page, method, path, body, csrf = true) {
  return page.evaluate(
    async ({ method, path, body, csrf }) => {
      const headers = { Accept: 'application/json' };
      if (body !== undefined) {
        headers['Content-Type'] = 'application/json';
      }
      if (csrf) {
        const session = await fetch('/webapi/web/session');
        if (session.ok) {
          headers['X-CSRF-Token'] = (await session.json()).csrf_token;
        }
      }
      const response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
      const text = await response.text();
      let json = null;
      try {
        json = JSON.parse(text);
      } catch {
        json = null;
      }
      return { status: response.status, json, text };
    },
    { method, path, body, csrf },
  );
}

/** The QR code on the page, decoded from the canvas's pixels. */
async function readQr(page) {
  const canvas = page.getByTestId('qr');
  await canvas.waitFor();
  const image = await canvas.evaluate((element) => {
    const context = element.getContext('2d');
    const pixels = context.getImageData(0, 0, element.width, element.height);
    return { width: element.width, height: element.height, data: Array.from(pixels.data) };
  });
  const decoded = jsQR(Uint8ClampedArray.from(image.data), image.width, image.height);
  assert.ok(decoded !== null, 'no QR code could be read from the canvas');
  return decoded.data;
}

/** Signs `name` up from `link` in a fresh page; returns the otpauth URI read from the QR code. */
async function signUp(t, link, name) {
  const { page, problems } = await open(t);
  const token = new URL(link).hash.slice(1);
  const seen = [];
  page.on('request', (request) => seen.push(request.url()));
  await page.goto(link);
  await page.getByRole('heading', { name: 'Sign up to Jumpgate' }).waitFor();
  assert.equal(await page.getByTestId('signup-user').textContent(), name);
  // The token is gone from the address bar, and no request carried it in its URL.
  assert.ok(!page.url().includes(token), page.url());
  assert.deepEqual(
    seen.filter((url) => url.includes(token)),
    [],
  );
  const uri = await readQr(page);
  assert.match(uri, /^otpauth:\/\/totp\//);
  assert.ok(uri.includes(encodeURIComponent(name)) || uri.includes(name), uri);
  // The URI as text matches the QR code.
  await page.getByText("Can't scan? Show the URI").click();
  assert.equal(await page.getByTestId('otpauth-uri').textContent(), uri);
  await page.screenshot({ path: join(artefacts, 'signup.png'), fullPage: true });

  await page.getByLabel('New password').fill(NEW_PASSWORD);
  await page.getByLabel('Password again').fill(NEW_PASSWORD);
  // A wrong code: the enrolment does not count, the invite still works.
  const wrong = String((Number(totp(uri)) + 500_000) % 1_000_000).padStart(6, '0');
  await page.getByLabel('Code from the app').fill(wrong);
  await page.getByRole('button', { name: 'Sign up' }).click();
  await page.getByTestId('signup-error').filter({ hasText: 'does not match' }).waitFor();
  await page.getByLabel('Code from the app').fill(totp(uri));
  await page.getByRole('button', { name: 'Sign up' }).click();
  await page.getByTestId('signup-done').waitFor();
  // The link is spent.
  await page.goto(link);
  await page.getByTestId('signup-error').filter({ hasText: 'already used' }).waitFor();
  assert.deepEqual(problems, []);
  return uri;
}

/** Adds a user on the Users page, by keyboard; returns the invite link shown. */
async function addUser(page, name, roles, logins) {
  await page.goto(`${base}/web/users`);
  await page.getByRole('heading', { name: 'Users', exact: true }).waitFor();
  await page.getByLabel('User name').focus();
  await page.keyboard.type(name);
  await page.keyboard.press('Tab');
  await page.keyboard.press('ControlOrMeta+a');
  await page.keyboard.type(roles);
  await page.keyboard.press('Tab');
  await page.keyboard.type(logins);
  await page.keyboard.press('Tab');
  assert.equal(await page.evaluate(() => document.activeElement?.textContent), 'Add user');
  await page.keyboard.press('Enter');
  const link = await page.getByTestId('invite-url').textContent();
  assert.match(link, /^https:\/\/[^/]+\/web\/invite#[0-9a-f]{64}$/);
  await page.getByTestId(`user-${name}`).waitFor();
  return link;
}

maybe('admin: add a user, sign up from the invite (QR code decoded), log in as them', async (t) => {
  const { page, problems } = await asAdmin(t);
  // The admin's pages are in the header.
  for (const name of ['Users', 'Roles', 'Join tokens']) {
    await page.getByRole('navigation', { name: 'Pages' }).getByRole('link', { name, exact: true }).waitFor();
  }
  const link = await addUser(page, 'nina', 'access', 'root');
  assert.equal(new URL(link).port, new URL(base).port, 'the invite link names this proxy');
  await page.screenshot({ path: join(artefacts, 'users.png'), fullPage: true });

  const uri = await signUp(t, link, 'nina');

  const { page: hers, problems: herProblems } = await open(t);
  await logIn(hers, 'nina', NEW_PASSWORD, nextCode(uri));
  await hers.getByRole('heading', { name: 'Resources' }).waitFor();
  assert.equal(await hers.getByTestId('user').textContent(), 'nina');
  // An access user: no admin links.
  assert.equal(await hers.getByRole('link', { name: 'Users', exact: true }).count(), 0);
  assert.deepEqual(herProblems, []);
  assert.deepEqual(problems, []);
});

maybe('admin: lock a user: their login shows the lock message; unlock; reset gives a new invite', async (t) => {
  const { page, problems } = await asAdmin(t);
  const link = await addUser(page, 'lucy', 'access', 'root');
  // Lucy signs up through the API the page uses (the page itself is tested above).
  const token = new URL(link).hash.slice(1);
  const invite = await call(page, 'POST', '/webapi/web/invite', { token }, false);
  assert.equal(invite.status, 200, invite.text);
  const done = await call(
    page,
    'POST',
    '/webapi/web/invite/complete',
    { token, password: NEW_PASSWORD, otp: totp(invite.json.otpauth_uri) },
    false,
  );
  assert.equal(done.status, 200, done.text);

  // Locked from the page, with a message for her.
  await page.reload();
  await page.getByLabel('User', { exact: true }).selectOption('lucy');
  await page.getByLabel('Message shown to them').fill('Locked during the incident review; ask Sam');
  await page.getByRole('button', { name: 'Lock', exact: true }).click();
  await page.getByTestId('users-notice').filter({ hasText: 'lucy is locked.' }).waitFor();
  await page.getByTestId('user-lucy').filter({ hasText: 'Locked: Locked during the incident review' }).waitFor();

  const { page: hers } = await open(t);
  await logIn(hers, 'lucy', NEW_PASSWORD, nextCode(invite.json.otpauth_uri));
  const refusal = hers.getByTestId('login-error');
  await refusal.waitFor();
  assert.match(await refusal.textContent(), /Locked during the incident review; ask Sam/);
  await hers.screenshot({ path: join(artefacts, 'login-locked.png'), fullPage: true });

  await page.getByRole('button', { name: 'Unlock lucy' }).click();
  await page.getByTestId('users-notice').filter({ hasText: 'lucy is unlocked.' }).waitFor();
  await page.getByTestId('user-lucy').filter({ hasText: 'Active' }).waitFor();

  await page.getByRole('button', { name: 'Reset lucy' }).click();
  const again = await page.getByTestId('invite-url').textContent();
  assert.notEqual(again, link);
  assert.match(again, /\/web\/invite#[0-9a-f]{64}$/);

  // Delete, with a confirmation step.
  await page.getByRole('button', { name: 'Delete lucy' }).click();
  await page.getByRole('button', { name: 'Confirm delete lucy' }).click();
  await page.getByTestId('users-notice').filter({ hasText: 'lucy is deleted.' }).waitFor();
  // The list reloads after the notice: wait for the row to go (fails after the timeout).
  await page.getByTestId('user-lucy').waitFor({ state: 'detached' });
  assert.equal(await page.getByTestId('user-lucy').count(), 0);
  assert.deepEqual(problems, []);
});

const BAD_ROLE = `kind: role
version: v7
metadata:
  name: web-role
spec:
  allow:
    logins: [web]
    rules:
      - resources: [session]
        verbz: [list]
`;

maybe('admin: a role with a YAML error shows the error at its line; fixed, it is created', async (t) => {
  const { page, problems } = await asAdmin(t);
  await page.goto(`${base}/web/roles`);
  await page.getByRole('heading', { name: 'Roles', exact: true }).waitFor();
  // The built-in roles are listed; one opens as YAML.
  await page.getByRole('button', { name: 'editor', exact: true }).click();
  await page.getByRole('heading', { name: 'Edit editor' }).waitFor();
  assert.match(await page.getByLabel('Role (YAML)').inputValue(), /name: editor/);

  await page.getByRole('button', { name: 'New role' }).click();
  await page.getByLabel('Role (YAML)').fill(BAD_ROLE);
  await page.getByRole('button', { name: 'Create role' }).click();
  const error = page.getByTestId('role-error');
  await error.waitFor();
  const message = await error.textContent();
  assert.match(message, /^Line 10, column 9: /);
  assert.match(message, /verbz/);
  assert.equal(await page.getByTestId('error-line').textContent(), '10');
  await page.screenshot({ path: join(artefacts, 'roles-error.png'), fullPage: true });
  // "Go to line" puts the caret there.
  await page.getByRole('button', { name: 'Go to line 10' }).click();
  const caret = await page.getByLabel('Role (YAML)').evaluate((area) => area.selectionStart);
  assert.equal(BAD_ROLE.slice(caret, caret + 5), 'verbz');

  // A syntax error has its position too.
  await page.getByLabel('Role (YAML)').fill(BAD_ROLE.replace('logins: [web]', 'logins: [web'));
  await page.getByRole('button', { name: 'Create role' }).click();
  await page.getByTestId('role-error').filter({ hasText: /^Line \d+, column \d+: .*syntax error/ }).waitFor();

  await page.getByLabel('Role (YAML)').fill(BAD_ROLE.replace('verbz', 'verbs'));
  await page.getByRole('button', { name: 'Create role' }).click();
  await page.getByTestId('role-notice').filter({ hasText: 'Role web-role created.' }).waitFor();
  await page.getByRole('button', { name: 'web-role', exact: true }).waitFor();
  // A second create of the same name is refused (saving an open role replaces it).
  const again = await call(page, 'POST', '/webapi/web/roles', { yaml: BAD_ROLE.replace('verbz', 'verbs'), overwrite: false });
  assert.equal(again.status, 409, again.text);
  assert.deepEqual(problems, []);
});

maybe('admin: a join token shows the config to paste; an agent started with it appears in resources', async (t) => {
  const { page, problems } = await asAdmin(t);
  await page.goto(`${base}/web/tokens`);
  await page.getByRole('heading', { name: 'Join tokens', exact: true }).waitFor();
  await page.getByLabel('Joins as').selectOption('node');
  await page.getByLabel('Valid for (minutes)').fill('10');
  await page.getByRole('button', { name: 'Create token' }).click();
  const config = await page.getByTestId('join-config').textContent();
  const command = await page.getByTestId('join-command').textContent();
  assert.match(config, /proxy_server: \S+:\d+/);
  assert.match(config, /auth_token: "[0-9a-f]{64}"/);
  assert.match(config, /ca_pin: "sha256:[0-9a-f]{64}"/);
  assert.equal(command, 'sudo jumpgate start -c /etc/jumpgate.yaml');
  const id = (await page.getByRole('heading', { name: /^Token \S+ for a node$/ }).textContent()).split(' ')[1];
  await page.getByTestId(`token-${id}`).waitFor();
  await page.screenshot({ path: join(artefacts, 'tokens.png'), fullPage: true });

  // On "the new server": the config as shown, with this test's data directory and a
  // host name of its own (the dev node has this host's), started as the page says.
  const dir = mkdtempSync(join(tmpdir(), 'jumpgate-web-join-'));
  const file = join(dir, 'jumpgate.yaml');
  writeFileSync(
    file,
    config
      .replace('data_dir: /var/lib/jumpgate', `data_dir: ${join(dir, 'data')}`)
      .replace('jumpgate:\n', 'jumpgate:\n  nodename: web-joined\n'),
  );
  const log = openSync(join(artefacts, 'joined-agent.log'), 'w');
  const agent = spawn(env('JUMPGATE_BIN'), ['start', '-c', file], { stdio: ['ignore', log, log] });
  t.after(() => agent.kill('SIGTERM'));

  await page.goto(`${base}/web/resources`);
  const row = page.locator('table.nodes tbody th', { hasText: 'web-joined' });
  const deadline = Date.now() + 60_000;
  while ((await row.count()) === 0) {
    assert.ok(Date.now() < deadline, `the joined agent never appeared (log: ${join(artefacts, 'joined-agent.log')})`);
    assert.equal(agent.exitCode, null, 'the agent exited');
    await page.waitForTimeout(1000);
    await page.reload();
    await page.getByRole('heading', { name: 'Resources' }).waitFor();
  }
  // The token was single-use: it is gone; a revoke of another works.
  await page.goto(`${base}/web/tokens`);
  await page.getByRole('heading', { name: 'Join tokens', exact: true }).waitFor();
  // Once the list has loaded (a table or "No join tokens."), the used token is not in it.
  await page.getByText('Loading…').waitFor({ state: 'detached' });
  assert.equal(await page.getByTestId(`token-${id}`).count(), 0);
  await page.getByRole('button', { name: 'Create token' }).click();
  const other = (await page.getByRole('heading', { name: /^Token \S+ for a node$/ }).textContent()).split(' ')[1];
  await page.getByRole('button', { name: `Revoke ${other}` }).click();
  await page.getByText(`Token ${other} revoked.`).waitFor();
  await page.getByTestId(`token-${other}`).waitFor({ state: 'detached' });
  assert.deepEqual(problems, []);
});

maybe('admin: the admin pages at 200% zoom do not scroll sideways', async (t) => {
  const { page, problems } = await asAdmin(t, { viewport: { width: 640, height: 400 }, deviceScaleFactor: 2 });
  for (const [path, heading] of [
    ['/web/users', 'Users'],
    ['/web/roles', 'Roles'],
    ['/web/tokens', 'Join tokens'],
  ]) {
    await page.goto(`${base}${path}`);
    await page.getByRole('heading', { name: heading, exact: true }).waitFor();
    await page.waitForLoadState('networkidle');
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
    await page.screenshot({ path: join(artefacts, `zoom-${heading.replace(' ', '-').toLowerCase()}.png`), fullPage: true });
    assert.ok(overflow <= 0, `${path} scrolls sideways by ${overflow}px at 200%`);
  }
  assert.deepEqual(problems, []);
});

maybe('refusal: a non-admin sees no admin links, a typed admin URL is refused, and so is the API', async (t) => {
  const { page, problems } = await open(t);
  await logIn(page, plainUser, password, totp(plainOtpauth));
  await page.getByRole('heading', { name: 'Resources' }).waitFor();
  const nav = page.getByRole('navigation', { name: 'Pages' });
  for (const name of ['Users', 'Roles', 'Join tokens']) {
    assert.equal(await nav.getByRole('link', { name, exact: true }).count(), 0, name);
  }
  const session = await call(page, 'GET', '/webapi/web/session');
  assert.deepEqual(
    { users: session.json.can.users, roles: session.json.can.roles, tokens: session.json.can.tokens },
    { users: false, roles: false, tokens: false },
  );
  for (const path of ['/web/users', '/web/roles', '/web/tokens']) {
    await page.goto(`${base}${path}`);
    await page.getByRole('heading', { name: 'Not allowed' }).waitFor();
    assert.match(await page.getByTestId('forbidden').textContent(), /Your roles do not allow you to manage/);
  }
  await page.screenshot({ path: join(artefacts, 'forbidden.png'), fullPage: true });

  // The API refuses what the pages hide: auth decides, the calls run as this user.
  const everything = `kind: role
version: v7
metadata:
  name: escalate
spec:
  allow:
    logins: [root]
    rules:
      - resources: ['*']
        verbs: ['*']
`;
  const attempts = [
    ['GET', '/webapi/web/users'],
    ['POST', '/webapi/web/users', { name: 'mallory', roles: ['editor'], logins: ['root'] }],
    ['POST', `/webapi/web/users/${plainUser}/reset`],
    ['POST', `/webapi/web/users/${adminUser}/lock`, { message: 'x' }],
    ['POST', `/webapi/web/users/${adminUser}/unlock`],
    ['DELETE', `/webapi/web/users/${adminUser}`],
    ['GET', '/webapi/web/roles'],
    ['GET', '/webapi/web/roles/editor'],
    ['POST', '/webapi/web/roles', { yaml: everything, overwrite: true }],
    ['DELETE', '/webapi/web/roles/editor'],
    ['GET', '/webapi/web/tokens'],
    ['POST', '/webapi/web/tokens', { role: 'node', ttl_seconds: 600 }],
  ];
  for (const [method, path, body] of attempts) {
    const answer = await call(page, method, path, body);
    assert.equal(answer.status, 403, `${method} ${path}: ${answer.text}`);
    assert.equal(answer.json?.error?.code, 'permission_denied', `${method} ${path}: ${answer.text}`);
  }
  assert.deepEqual(problems, []);
});

maybe('refusal: a cross-site form post and a request without the CSRF token are refused', async (t) => {
  const { page, problems } = await asAdmin(t);
  // Same origin, with the cookie, without the session's token.
  const bare = await call(page, 'POST', '/webapi/web/users', { name: 'no-token', roles: ['access'] }, false);
  assert.equal(bare.status, 403, bare.text);
  assert.match(bare.json.error.message, /X-CSRF-Token/);

  // Another site's page posts a form (text/plain, shaped as JSON) to the admin API.
  const evil = 'https://evil.example/';
  await page.route(`${evil}**`, (route) =>
    route.fulfill({
      contentType: 'text/html',
      body: `<!doctype html><form method="POST" enctype="text/plain" action="${base}/webapi/web/users">
        <input name='{"name":"csrf-victim","roles":["editor"],"logins":["root"],"x":"' value='"}'>
        </form><script>document.forms[0].submit()</script>`,
    }),
  );
  const posted = page.waitForResponse((response) => response.url() === `${base}/webapi/web/users` && response.request().method() === 'POST');
  await page.goto(evil);
  const answer = await posted;
  assert.ok([401, 403, 415].includes(answer.status()), `the cross-site post got ${answer.status()}`);
  await page.unroute(`${evil}**`);
  // Nothing was made.
  await page.goto(`${base}/web/users`);
  await page.getByTestId(`user-${adminUser}`).waitFor();
  assert.equal(await page.getByTestId('user-csrf-victim').count(), 0);
  assert.equal(await page.getByTestId('user-no-token').count(), 0);
  assert.deepEqual(problems, []);
});

maybe('refusal: a bad or incomplete invite link says so', async (t) => {
  const { page, problems } = await open(t);
  await page.goto(`${base}/web/invite#${'0'.repeat(64)}`);
  await page.getByRole('heading', { name: 'This invite cannot be used' }).waitFor();
  assert.match(await page.getByTestId('signup-error').textContent(), /invalid, already used or expired/);
  await page.goto(`${base}/web/invite`);
  await page.getByTestId('signup-error').filter({ hasText: 'This invite link is incomplete' }).waitFor();
  assert.deepEqual(problems, []);
});
