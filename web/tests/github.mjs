// Single sign-on through GitHub (docs/sso.md), against a real `jumpgate start --dev` and a
// stand-in for github.com (GitHub's OAuth web flow and REST API; github.com cannot be
// reached from here), both started by crates/jumpgate/tests/sso_github.rs, which runs this
// script in phases (`github:`, then `github-changed:` after it adds the user to a team, then
// `github-removed:` after it removes users), on the shared harness (harness.mjs).
//
// Besides the harness's environment:
//   JUMPGATE_GITHUB_LOGIN  the GitHub user whose login is also their SSH login (an OS user)
//   JUMPGATE_JSH           the jsh binary
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { base, env, jshSsoLogin, maybe, nodeName, open, ssoWebLogin, webSession } from './harness.mjs';

const octo = env('JUMPGATE_GITHUB_LOGIN');
const jsh = env('JUMPGATE_JSH');
// The stand-in's default password (GITHUB_DEFAULT_PASSWORD).
const githubPassword = 'correct-horse-github';

/** GitHub's sign-in and authorize form, as a person fills it (github.com's field names). */
async function githubSignIn(page, login, { cancel = false } = {}) {
  await page.locator('#login_field').fill(login);
  await page.locator('#password').fill(githubPassword);
  if (cancel) {
    await page.getByRole('button', { name: 'Cancel' }).click();
  } else {
    await page.locator('#js-oauth-authorize-btn').click();
  }
}

/** Logs `login` in at GitHub through the login page's button for `connector`. */
function webLogin(t, login, connector = 'github', options = {}) {
  return ssoWebLogin(t, connector, async (page) => {
    await page.locator('#login_field').waitFor();
    assert.match(await page.title(), /GitHub/);
    await githubSignIn(page, login, options);
  });
}

async function assertRefused(page, pattern) {
  await page.getByText('Single sign-on failed').waitFor();
  const text = await page.locator('body').innerText();
  assert.match(text, pattern);
  assert.equal(await webSession(page), null);
  return text;
}

/**
 * Starts a login in `opened`'s browser and stops GitHub's answer before it reaches the
 * proxy: the callback URL GitHub sent the browser to.
 */
async function githubAnswer(opened, login) {
  let answer = null;
  // GitHub answers the form's POST with a redirect to the callback, which Playwright
  // follows inside the browser: fetch the POST here instead, and keep its Location.
  await opened.context.route(/\/login\/oauth\/authorize$/, async (route) => {
    if (route.request().method() !== 'POST') {
      return route.continue();
    }
    const response = await route.fetch({ maxRedirects: 0 });
    answer = response.headers().location;
    return route.fulfill({ status: 200, contentType: 'text/plain', body: 'stopped before the proxy' });
  });
  await opened.page.goto(`${base}/web/login`);
  await opened.page.getByTestId('sso-github').click();
  await githubSignIn(opened.page, login);
  await opened.page.getByText('stopped before the proxy').waitFor();
  await opened.context.unroute(/\/login\/oauth\/authorize$/);
  assert.ok(answer && answer.includes('/v1/webapi/github/callback'), `GitHub's answer: ${answer}`);
  return new URL(answer);
}

maybe('github: the login page button logs the user in, roles from their teams', async (t) => {
  const { page, problems } = await webLogin(t, octo);
  await page.getByRole('heading', { name: 'Resources' }).waitFor();
  assert.equal(new URL(page.url()).pathname, '/web');
  const current = await webSession(page);
  assert.equal(current.user, octo);
  assert.deepEqual(current.roles, ['sso-gh']);
  // Their GitHub login is their SSH login, through the role's {{external.username}}.
  assert.ok(current.logins.includes(octo), JSON.stringify(current));
  assert.deepEqual(problems, []);
});

/**
 * `jsh login --auth github --browser none` in a fresh home, its printed URL followed in
 * a browser as `login` signs in at GitHub; resolves when jsh exits.
 */
async function jshLogin(t, login) {
  // jsh prints GitHub's authorize page (here, the stand-in's).
  const out = await jshSsoLogin(t, jsh, 'github', /open this page in your browser:\s+(http\S+\/login\/oauth\/authorize\?\S+)/);
  const { page } = await open(t);
  out.page = page;
  await page.goto(out.url);
  await githubSignIn(page, login);
  // Well before jsh's own 3-minute wait for the browser: it must not be what ends it.
  out.code = await Promise.race([out.exited, new Promise((resolve) => setTimeout(() => resolve('still waiting'), 30_000))]);
  return out;
}

maybe('github: jsh login --auth github --browser none, then jsh ssh with the templated login', async (t) => {
  const jshRun = await jshLogin(t, octo);
  await jshRun.page.getByText('Logged in to Jumpgate').waitFor();
  assert.equal(jshRun.code, 0, `jsh login: ${jshRun.stderr}`);
  assert.match(jshRun.stdout, new RegExp(`Logged in as: ${octo}`));
  assert.match(jshRun.stdout, /Roles: +sso-gh\n/);
  const ssh = spawnSync(jsh, ['ssh', `${octo}@${nodeName}`, 'whoami'], {
    env: { ...process.env, JUMPGATE_HOME: jshRun.home },
    encoding: 'utf8',
    timeout: 30_000,
  });
  assert.equal(ssh.status, 0, ssh.stderr);
  assert.equal(ssh.stdout.trim(), octo);
});

maybe('github: a refused jsh login ends jsh at once, saying why (teams that map to no role)', async (t) => {
  const jshRun = await jshLogin(t, 'nora');
  await jshRun.page.getByText('The Jumpgate login was refused').waitFor();
  assert.equal(jshRun.code, 1, `jsh login: ${jshRun.stderr}`);
  assert.match(jshRun.stderr, /the login was refused: .*octocats\/visitors/);
});

maybe('github: a GitHub Enterprise Server connector (its own endpoint and API URLs)', async (t) => {
  const { page } = await webLogin(t, 'grace', 'ghes');
  await page.getByRole('heading', { name: 'Resources' }).waitFor();
  const current = await webSession(page);
  assert.equal(current.user, 'grace');
  assert.deepEqual(current.roles, ['sso-gh']);
  // The same login on another GitHub server may be another person: it does not take over
  // the user github.com signed in above.
  const other = await webLogin(t, octo, 'ghes');
  await assertRefused(other.page, /signed in through the github connector "github", not through github connector "ghes"/);
});

maybe('github: gus and gone log in while GitHub has them in the team', async (t) => {
  for (const login of ['gus', 'gone']) {
    const { page } = await webLogin(t, login);
    await page.getByRole('heading', { name: 'Resources' }).waitFor();
    assert.equal((await webSession(page)).user, login);
  }
});

maybe('github: teams that map to no role are refused, naming the teams', async (t) => {
  const { page } = await webLogin(t, 'nora');
  const text = await assertRefused(page, /octocats\/visitors/);
  assert.match(text, /maps to a role/);
  assert.match(text, /teams_to_roles/);
});

maybe('github: a GitHub user named as a local (password) user is refused', async (t) => {
  const { page } = await webLogin(t, 'alice');
  await assertRefused(page, /a local user named "alice" exists/);
});

maybe('github: the user cancelling at GitHub (access_denied) is shown as GitHub said it', async (t) => {
  const { page } = await webLogin(t, octo, 'github', { cancel: true });
  await assertRefused(page, /access_denied: The user has denied your application access/);
});

maybe("github: a code GitHub does not know (bad_verification_code) is shown as GitHub said it", async (t) => {
  const opened = await open(t);
  const answer = await githubAnswer(opened, octo);
  answer.searchParams.set('code', '0123456789abcdef0123');
  await opened.page.goto(answer.href);
  await assertRefused(opened.page, /bad_verification_code/);
  assert.match(await opened.page.locator('body').innerText(), /start the login again/);
});

maybe('github: an answer whose state is not the browser\'s own login is refused', async (t) => {
  // The answer to a first login, then a second login started in the same browser: its
  // state cookie is now the second's, and the first answer no longer matches it.
  const opened = await open(t);
  const first = await githubAnswer(opened, octo);
  const second = await githubAnswer(opened, octo);
  await opened.page.goto(first.href);
  await assertRefused(opened.page, /started in another browser/);
  // A state nobody issued (or one already used: the first one, just now).
  const forged = new URL(second.href);
  forged.searchParams.set('state', 'ab'.repeat(32));
  await opened.page.goto(forged.href);
  await assertRefused(opened.page, /unknown, expired|already used/);
  await opened.page.goto(first.href);
  await assertRefused(opened.page, /unknown, expired|already used/);
  // The second answer still works in the browser that started it.
  await opened.page.goto(second.href);
  await opened.page.getByRole('heading', { name: 'Resources' }).waitFor();
  assert.equal((await webSession(opened.page)).user, octo);
});

maybe('github-changed: a team added at GitHub gives its role at the next login', async (t) => {
  const { page } = await webLogin(t, octo);
  await page.getByRole('heading', { name: 'Resources' }).waitFor();
  // teams_to_logins, read as Teleport reads it: its `logins` are roles.
  assert.deepEqual((await webSession(page)).roles, ['auditor', 'sso-gh']);
});

maybe('github-removed: a user removed from the organisation\'s teams is refused', async (t) => {
  const { page } = await webLogin(t, 'gus');
  await assertRefused(page, /GitHub lists no team for user "gus"/);
});

maybe('github-removed: a user removed from GitHub cannot log in', async (t) => {
  const { page } = await webLogin(t, 'gone');
  // GitHub itself refuses the sign-in; nobody is logged in here.
  await page.getByText('Incorrect username or password.').waitFor();
  const onProxy = await open(t);
  await onProxy.page.goto(`${base}/web/login`);
  assert.equal(await webSession(onProxy.page), null);
});
