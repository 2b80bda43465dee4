// Single sign-on through OIDC (docs/sso.md), against a real `jumpgate start --dev` and a
// real OpenID Provider (oidc-provider, tests/oidc-idp.mjs), both started by
// crates/jumpgate/tests/web_ui.rs, on the shared harness (harness.mjs).
//
// Besides the harness's environment:
//   JUMPGATE_IDP_USERS   the provider's users file (rewritten here between logins)
//   JUMPGATE_SSO_LOGIN   the OS login ann's e-mail maps to ({{email.local(external.email)}})
//   JUMPGATE_JSH         the jsh binary
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { base, env, jshSsoLogin, maybe, nodeName, open, ssoWebLogin, webSession } from './harness.mjs';

const usersFile = env('JUMPGATE_IDP_USERS');
const ssoLogin = env('JUMPGATE_SSO_LOGIN');
const jsh = env('JUMPGATE_JSH');
const annEmail = `${ssoLogin}@example.com`;

function setUser(name, claims) {
  const users = JSON.parse(readFileSync(usersFile, 'utf8'));
  if (claims === null) {
    delete users[name];
  } else {
    users[name] = claims;
  }
  writeFileSync(usersFile, JSON.stringify(users));
}

/** The provider's own login form and consent page, as a person goes through them. */
async function idpLogin(page, name) {
  await page.locator('input[name="login"]').fill(name);
  await page.locator('input[name="password"]').fill('any password: the test IdP takes it');
  await page.getByRole('button', { name: 'Sign-in' }).click();
  // A first login asks for consent; the provider's failure pages do not. A consent page
  // still showing a moment after its click (its post lost on a busy machine) is answered
  // again, as a person would.
  const consent = page.getByRole('button', { name: 'Continue' });
  for (let round = 0; round < 3; round += 1) {
    if (!(await consent.waitFor({ timeout: round === 0 ? 5_000 : 2_000 }).then(() => true, () => false))) {
      return;
    }
    const shown = page.url();
    await consent.click();
    if (await page.waitForURL((url) => url.href !== shown, { timeout: 3_000 }).then(() => true, () => false)) {
      return;
    }
  }
}

/** Logs `name` in through the login page's button for `connector`; returns the page. */
function webLoginThrough(t, connector, name) {
  return ssoWebLogin(t, connector, (page) => idpLogin(page, name));
}

/** Logs `name` in through the `idp` connector's button; returns the page. */
function webLogin(t, name) {
  return webLoginThrough(t, 'idp', name);
}

maybe('sso: the login page button logs ann in through the provider, roles from her groups', async (t) => {
  const { page, problems } = await webLogin(t, 'ann');
  await page.getByRole('heading', { name: 'Resources' }).waitFor();
  assert.equal(new URL(page.url()).pathname, '/web');
  const current = await webSession(page);
  assert.equal(current.user, annEmail);
  assert.deepEqual(current.roles, ['sso-dev']);
  // The e-mail's local part is her login, through the role's template.
  assert.ok(current.logins.includes(ssoLogin), JSON.stringify(current));
  assert.deepEqual(problems, []);
});

maybe('sso: jsh login --auth idp --browser none, then jsh ssh with the templated login', async (t) => {
  const run = await jshSsoLogin(t, jsh, 'idp', /http:\/\/127\.0\.0\.1:\d+\/auth\?\S+/);
  const { page } = await open(t);
  await page.goto(run.url);
  await idpLogin(page, 'ann');
  await page.getByText('Logged in to Jumpgate').waitFor();
  assert.equal(await run.exited, 0, `jsh login: ${run.stderr}`);
  assert.match(run.stdout, new RegExp(`Logged in as: ${annEmail.replace('.', '\\.')}`));
  assert.match(run.stdout, /Roles: +sso-dev\n/);
  const ssh = spawnSync(jsh, ['ssh', `${ssoLogin}@${nodeName}`, 'whoami'], {
    env: { ...process.env, JUMPGATE_HOME: run.home },
    encoding: 'utf8',
    timeout: 30_000,
  });
  assert.equal(ssh.status, 0, ssh.stderr);
  assert.equal(ssh.stdout.trim(), ssoLogin);
  // The browser only ever saw the result's id; collecting it again (as someone reading
  // the browser's history would) fails without jsh's secret.
  const history = page.url();
  const resultId = new URL(history).searchParams.get('result');
  assert.match(resultId, /^[0-9a-f]{64}$/);
  const other = await open(t);
  await other.page.goto(`${base}/web/login`);
  const stolen = await other.page.evaluate(async (id) => {
    const response = await fetch('/webapi/sso/result', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ result_id: id, client_secret: 'guessed' }),
    });
    return { status: response.status, body: await response.text() };
  }, resultId);
  assert.equal(stolen.status, 403, stolen.body);
  assert.match(stolen.body, /no such login result/);
});

maybe('sso: a changed group changes the roles at the next login', async (t) => {
  setUser('ann', { email: annEmail, groups: ['devs', 'auditors'] });
  const { page } = await webLogin(t, 'ann');
  await page.getByRole('heading', { name: 'Resources' }).waitFor();
  assert.deepEqual((await webSession(page)).roles, ['auditor', 'sso-dev']);
  setUser('ann', { email: annEmail, groups: ['devs'] });
});

maybe('sso: claims that map to no role are refused, saying which claims came', async (t) => {
  const { page } = await webLogin(t, 'nora');
  const body = page.locator('body');
  await body.getByText('Single sign-on failed').waitFor();
  const text = await body.innerText();
  assert.match(text, /none of their claims maps to a role/);
  assert.match(text, /groups: \[visitors\]/);
  assert.equal(await webSession(page), null);
});

maybe('sso: a provider never logs anyone in as a local (password) user', async (t) => {
  const { page } = await webLogin(t, 'mallory');
  await page.getByText('Single sign-on failed').waitFor();
  assert.match(await page.locator('body').innerText(), /a local user named "alice" exists/);
  assert.equal(await webSession(page), null);
});

maybe('sso: a user the provider no longer knows is refused', async (t) => {
  setUser('gone', { email: 'gone@example.com', groups: ['devs'] });
  const before = await webLogin(t, 'gone');
  await before.page.getByRole('heading', { name: 'Resources' }).waitFor();
  assert.deepEqual((await webSession(before.page)).roles, ['sso-dev']);
  setUser('gone', null);
  const { page } = await webLogin(t, 'gone');
  // The provider refuses, and nobody is logged in here.
  await page.waitForLoadState('load');
  assert.equal(new URL(page.url()).pathname.startsWith('/web'), false, page.url());
  const onProxy = await open(t);
  await onProxy.page.goto(`${base}/web/login`);
  assert.equal(await webSession(onProxy.page), null);
});

maybe('sso: an answer opened in another browser is refused (login CSRF), and used once', async (t) => {
  // The attacker's own login, stopped at the provider's redirect back to the proxy...
  const attacker = await open(t);
  let answer = null;
  // The provider's answer is the last of a chain of redirects after a form POST, which
  // Playwright does not route one by one: follow the chain here (with the browser's own
  // cookies) and stop it before the proxy.
  await attacker.context.route(/\/interaction\//, async (route) => {
    if (route.request().method() !== 'POST') {
      return route.continue();
    }
    let response = await route.fetch({ maxRedirects: 0 });
    let location = response.headers().location;
    while (location) {
      const next = new URL(location, route.request().url()).href;
      if (next.includes('/v1/webapi/oidc/callback')) {
        answer = next;
        return route.fulfill({ status: 200, contentType: 'text/plain', body: 'stopped before the proxy' });
      }
      response = await attacker.context.request.get(next, { maxRedirects: 0 });
      location = response.headers().location;
    }
    return route.fulfill({ response });
  });
  await attacker.page.goto(`${base}/web/login`);
  await attacker.page.getByTestId('sso-idp').click();
  await idpLogin(attacker.page, 'ann');
  await attacker.page.getByText('stopped before the proxy').waitFor();
  assert.ok(answer, 'the provider sent no answer');
  // ...opened in the victim's browser, which never started a login: refused.
  const victim = await open(t);
  await victim.page.goto(answer);
  await victim.page.getByText('Single sign-on failed').waitFor();
  assert.match(await victim.page.locator('body').innerText(), /started in another browser/);
  assert.equal(await webSession(victim.page), null);
  // The state is gone with that attempt: the same answer never works again.
  await attacker.page.goto(answer);
  await attacker.page.getByText('Single sign-on failed').waitFor();
  assert.match(await attacker.page.locator('body').innerText(), /unknown, expired|already used/);
});

maybe('sso: a login never lands on another site', async (t) => {
  const { page } = await open(t);
  await page.goto(
    `${base}/webapi/oidc/login/web?connector_id=idp&redirect_url=${encodeURIComponent('//evil.example/web')}`,
  );
  await idpLogin(page, 'ann');
  await page.getByRole('heading', { name: 'Resources' }).waitFor();
  assert.equal(new URL(page.url()).origin, base);
  assert.equal(new URL(page.url()).pathname, '/web');
});

maybe('sso: jsh opens the browser, and a login lasts at most its connector\'s max_session_ttl', async (t) => {
  const run = await jshSsoLogin(t, jsh, 'brief', /http:\/\/127\.0\.0\.1:\d+\/auth\?\S+/, { openBrowser: true });
  const { page } = await open(t);
  await page.goto(run.url);
  await idpLogin(page, 'bea');
  await page.getByText('Logged in to Jumpgate').waitFor();
  assert.equal(await run.exited, 0, `jsh login: ${run.stderr}`);
  assert.match(run.stdout, /Logged in as: bea@example\.com/);
  assert.match(run.stdout, /Roles: +sso-dev\n/);
  // "[valid for 4m]": the connector's five minutes, not the default twelve hours.
  const validFor = run.stdout.match(/\[valid for (\d+)m\]/);
  assert.ok(validFor && Number(validFor[1]) <= 5, run.stdout);
  // The web session ends then too.
  const web = await webLoginThrough(t, 'brief', 'bea');
  await web.page.getByRole('heading', { name: 'Resources' }).waitFor();
  const session = await webSession(web.page);
  const left = session.expires_unix - Date.now() / 1000;
  assert.ok(left > 0 && left <= 5 * 60 + 5, JSON.stringify(session));
});

maybe('sso: a user one connector signed in is not taken over through another', async (t) => {
  // ann signed in through `idp` above; `brief` asks the same provider, but may not take her.
  const { page } = await webLoginThrough(t, 'brief', 'ann');
  await page.getByText('Single sign-on failed').waitFor();
  assert.match(
    await page.locator('body').innerText(),
    /signed in through the oidc connector "idp", not through oidc connector "brief"/,
  );
  assert.equal(await webSession(page), null);
});
